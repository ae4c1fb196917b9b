"""The create-rate limit and the shared 429 gate.

Creates are what the relay meters, so every create of a run passes one
:class:`CreateGate`:

- at most ``per_minute`` creates in any 60-second window, spaced evenly from
  the first one (no burst at start: a fresh run does not fire 20 creates in
  its first second and then sit idle);
- a 429 pauses *every* submitter until its ``Retry-After`` has passed (one
  shared gate, not one per shot: the relay is saturated for all of them), and
  then lets them restart one spacing apart rather than all at once;
- after a 429 the spacing doubles (up to 8x) and creeps back to the configured
  rate with each create that goes through.

Time comes from a :class:`Clock`, so a simulated run can compress it.
"""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import anyio

__all__ = ["Clock", "CreateGate"]

_WINDOW = 60.0
_MAX_BACKOFF = 8.0
#: After a 429 with no rate limit configured, restarts are still spread this far apart.
_MIN_SPREAD = 0.5


@dataclass(frozen=True)
class Clock:
    """Run time in seconds. ``scale`` < 1 compresses it: with 0.01, ``sleep(60)``
    takes 0.6 real seconds (the simulator is compressed by the same factor)."""

    scale: float = 1.0

    def now(self) -> float:
        return anyio.current_time() / self.scale

    async def sleep(self, seconds: float) -> None:
        await anyio.sleep(max(0.0, seconds) * self.scale)

    def from_wire(self, seconds: float) -> float:
        """A relay's hint (real seconds, e.g. Retry-After) in run seconds."""
        return seconds / self.scale


class CreateGate:
    """One gate that every create passes through. See the module docstring."""

    def __init__(self, per_minute: int, clock: Clock, *, rng: random.Random | None = None):
        self.per_minute = per_minute
        self.clock = clock
        self.spacing = _WINDOW / per_minute if per_minute > 0 else 0.0
        self.backoff = 1.0
        self.blocked_until = float("-inf")
        self._next = float("-inf")
        self._recent: deque[float] = deque()
        self._lock = anyio.Lock()
        self._rng = rng or random.Random()
        self.rate_limited = 0

    def expected_wait(self) -> float:
        """Roughly how long a create asked for now would wait (for progress display)."""
        return max(0.0, max(self._next, self.blocked_until) - self.clock.now())

    async def acquire(self, admit: Callable[[], bool] | None = None) -> bool:
        """Wait until one more create may be sent, and count it as sent.

        ``admit`` runs once the gate opens, still holding it: the runner announces the
        create on disk there. When it returns False nothing is counted and neither is this
        acquire (False). The next create waits a full spacing from when this one was
        admitted (so the rate is used), and at least 3/4 of one from when it could go out
        (so a slow announcement does not bunch it with the next).
        """
        async with self._lock:  # FIFO: creates go out in the order they asked
            while True:
                now = self.clock.now()
                ready = max(self._next, self.blocked_until)
                if self.per_minute > 0 and len(self._recent) >= self.per_minute:
                    ready = max(ready, self._recent[0] + _WINDOW)
                if ready <= now:
                    break
                # Wake at least every few seconds: a 429 elsewhere may move the gate.
                await self.clock.sleep(min(ready - now, 5.0))
            admitted = self.clock.now()
            if admit is not None and not admit():
                return False
            now = self.clock.now()
            self._recent.append(now)
            while self.per_minute > 0 and len(self._recent) > self.per_minute:
                self._recent.popleft()
            spread = (self.spacing or (_MIN_SPREAD if self.backoff > 1.0 else 0.0)) * self.backoff
            self._next = max(admitted + spread, now + 0.75 * spread)
            return True

    def created(self) -> None:
        """A create went through: ease the backoff towards the configured rate."""
        self.backoff = max(1.0, self.backoff * 0.8)

    def refused(self, retry_after: float | None) -> float:
        """A create got 429: pause everyone and slow down. Returns the pause in run seconds."""
        self.rate_limited += 1
        self.backoff = min(_MAX_BACKOFF, self.backoff * 2.0)
        pause = retry_after if retry_after is not None else max(self.spacing, 1.0) * self.backoff
        # A little jitter so that two runs sharing one key do not restart in lockstep.
        pause *= 1.0 + 0.1 * self._rng.random()
        self.blocked_until = max(self.blocked_until, self.clock.now() + pause)
        return pause
