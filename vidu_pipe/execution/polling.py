"""When to query a task next: few queries, yet completion seen soon after it happens.

A Q3 task takes minutes; querying every 5 s would cost ~70 queries for a
6-minute task. :class:`PollSchedule` instead:

1. starts at ``--poll-interval`` and lets the wait grow with the age of the
   task's current phase (queued, then generating), doubling at most — the
   growth starts again when the task starts generating; while queued it stops
   growing at six intervals, so a short task behind a long queue is not missed
   (a long queue costs one query per 30 s);
2. once ``progress`` moves, estimates the finish from two readings (the rate
   of progress) and waits until just before it, early by the uncertainty of
   the estimate (progress is a whole percent); each reading is closer, so a
   long task converges in a few queries. With one reading the start is not
   known, so it takes a second reading within one interval;
3. when the estimate is sharp (within 3% of the task's length) it aims just
   after the expected finish, and if the task is not done there looks again
   after 2% of its length — so completion is seen within ~5% of it.

It is a pure object (times in, delays out) so the policy can be tested and
benchmarked without a clock.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["PollSchedule"]

_QUEUED_CAP = 6


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
    _phase_queries: int = 0
    _phase_start: float | None = None

    def observe(self, now: float, status: str, progress: int | None) -> None:
        """Record one answer: ``status`` is queued or in_progress."""
        self.queries += 1
        self._phase_queries += 1
        if status == "queued":
            self._last_queued = now
            return
        if self._first_running is None:
            # Generating now: the waits grow again from the interval, from here.
            self._first_running = now
            self._phase_start = self._last_queued if self._last_queued is not None else self.started
            self._phase_queries = 1
        if progress:
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
        if self.queries == 0:
            return self.interval
        phase_start = self._phase_start if self._phase_start is not None else self.started
        age = max(now - phase_start, 0.0)
        cap = max(age, self.interval)  # a wait at most doubles the phase's age
        geometric = min(self.interval * 2.0 ** (self._phase_queries - 1), cap)
        found = self.estimate()
        if found is None:
            if self._first_running is None:
                # Still queued: the task may be short once it starts, so the wait
                # stops growing at six intervals (30 s by default).
                geometric = min(geometric, _QUEUED_CAP * self.interval)
            return max(self.interval, geometric)
        finish, uncertainty = found
        samples = self._samples or []
        total = max(self._length(), 1e-9)  # the task's length, from its rate
        remaining = finish - now
        floor = min(self.interval / 5, 0.02 * total)
        if len(samples) < 2:
            # One reading: the start is only known to lie after the last "queued", so
            # the rate is uncertain. A second reading within one interval fixes it.
            return max(floor, min(self.interval, remaining / 2))
        if uncertainty <= 0.03 * total or remaining <= 2 * floor:
            if self._aimed and remaining <= 0.01 * total:
                # We aimed at the finish and it is not there yet: look again soon.
                return max(floor, 0.02 * total)
            self._aimed = True
            return max(floor, min(remaining + 0.01 * total, cap))
        self._aimed = False
        # Aim early by the uncertainty; when the readings are too close together to
        # say much, go halfway to the estimate. Never more than doubling the age.
        early = remaining - uncertainty
        return max(floor, min(early if early > floor else remaining / 2, cap))

    def _length(self) -> float:
        """The task's whole generating time, from the rate of its progress."""
        samples = self._samples or []
        if len(samples) >= 2:
            (t1, p1), (t2, p2) = samples[-2], samples[-1]
            return 100 * (t2 - t1) / (p2 - p1)
        t2, p2 = samples[-1]
        t1 = self._last_queued if self._last_queued is not None else self.started
        return 100 * max(t2 - t1, 1e-9) / p2
