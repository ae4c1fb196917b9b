"""When to query a task next: few queries, yet completion seen soon after it happens.

A Q3 task takes minutes; querying every 5 s would cost ~70 queries for a
6-minute task. :class:`PollSchedule` instead:

1. starts at ``--poll-interval`` and lengthens the wait as the task ages
   (never more than the task's age so far: a wait doubles at most);
2. once ``progress`` moves, estimates the finish from two readings (the rate
   of progress), and aims the next query just after the expected finish —
   early by the uncertainty of the estimate (progress is a whole percent), so
   a long task converges in a few queries; with a single reading the start is
   uncertain, so it goes only halfway to the estimate;
3. when a query at the expected finish finds the task still running, tries
   again after 2% of the estimated duration, so completion is seen within
   ~5% of it.

It is a pure object (times in, delays out) so the policy can be tested and
benchmarked without a clock.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["PollSchedule"]


@dataclass
class PollSchedule:
    """The polling policy for one task; feed it every answer, ask it for the next delay."""

    interval: float
    started: float
    queries: int = 0
    _last_queued: float | None = None
    _first_running: float | None = None
    _samples: list[tuple[float, int]] | None = None
    _aimed: bool = False

    def observe(self, now: float, status: str, progress: int | None) -> None:
        """Record one answer: ``status`` is queued or in_progress."""
        self.queries += 1
        if status == "queued" or (status == "in_progress" and not progress):
            if status == "queued":
                self._last_queued = now
            elif self._first_running is None:
                self._first_running = now
            return
        if self._first_running is None:
            self._first_running = now
        if progress is not None and progress > 0:
            samples = self._samples if self._samples is not None else []
            if not samples or progress > samples[-1][1]:
                samples.append((now, progress))
            self._samples = samples[-2:]

    def estimate(self) -> tuple[float, float] | None:
        """(expected finish, its uncertainty) from the progress readings, if any."""
        samples = self._samples
        if not samples:
            return None
        t2, p2 = samples[-1]
        if len(samples) >= 2:
            t1, p1 = samples[-2]
            moved = p2 - p1
        else:
            # One reading: the task started after it was last seen queued.
            t1 = self._last_queued if self._last_queued is not None else self.started
            p1, moved = 0, p2
        if t2 <= t1 or moved <= 0:
            return None
        rate = moved / (t2 - t1)  # percent per second
        remaining = (100 - p2) / rate
        # Progress is a whole percent: each reading may be up to 1 below the truth.
        uncertainty = remaining / moved + 1.0 / rate
        return t2 + remaining, uncertainty

    def next_delay(self, now: float) -> float:
        """Seconds to wait before the next query."""
        age = max(now - self.started, 0.0)
        floor = self.interval / 5
        if self.queries == 0:
            return self.interval
        geometric = max(self.interval, min(self.interval * 2.0 ** (self.queries - 1), age))
        found = self.estimate()
        if found is None:
            return geometric
        finish, uncertainty = found
        total = max(finish - (self._first_running or self.started), self.interval)
        samples = self._samples or []
        if len(samples) < 2:
            # One reading: the start is only known to lie after the last "queued", so
            # the rate is underestimated. Go halfway; the second reading fixes the rate.
            return max(floor, min((finish - now) / 2, max(age, self.interval)))
        if self._aimed and finish - now <= 0.02 * total:
            # We aimed at the finish and it is not there yet: look again soon.
            return max(floor, 0.02 * total)
        cap = max(age, self.interval)  # a wait at most doubles the task's age
        if uncertainty <= 0.03 * total:
            self._aimed = True
            return max(floor, min(finish - now + 0.01 * total, cap))
        self._aimed = False
        early = finish - now - uncertainty
        if early <= floor:
            return geometric
        # Aim early by the uncertainty: the next reading will be much closer to the end.
        return max(floor, min(early, cap))
