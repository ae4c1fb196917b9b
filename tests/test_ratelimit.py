"""CreateGate: creates spaced evenly (no burst), at most N in any 60-second window, and a
429 pauses every submitter at once.

The gate runs on virtual time (:class:`VirtualClock`): run time passes only when the gate
sleeps, and by exactly what it asks, so the checks are exact and no scheduler delay under
CPU load can stretch a gap (a compressed wall clock did: at ``Clock(0.002)`` a 1 ms late
wake-up is half a run second)."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from itertools import pairwise

import anyio
import anyio.lowlevel
import pytest

from vidu_pipe.execution.ratelimit import Clock, CreateGate


@dataclass(frozen=True)
class VirtualClock(Clock):
    """A :class:`Clock` whose time moves only by sleeping: ``sleep(s)`` adds ``s`` and yields.

    That is the true time only while one task sleeps at a time, as the gate does (it sleeps
    holding its lock, and the others wait for the lock, not the clock); a second sleeper at
    once fails the test instead of bending time."""

    state: dict[str, float] = field(default_factory=lambda: {"now": 0.0, "sleeping": 0, "slept": 0})

    def now(self) -> float:
        return self.state["now"]

    async def sleep(self, seconds: float) -> None:
        assert not self.state["sleeping"], "two tasks sleep at once: virtual time is wrong"
        self.state["sleeping"] = 1
        try:
            self.state["now"] += max(0.0, seconds)
            self.state["slept"] += 1
            await anyio.lowlevel.checkpoint()
        finally:
            self.state["sleeping"] = 0


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def most_in_window(times: list[float], window: float = 60.0) -> int:
    times = sorted(times)
    best = first = 0
    for last, t in enumerate(times):
        while t - times[first] >= window:
            first += 1
        best = max(best, last - first + 1)
    return best


async def acquire_all(gate: CreateGate, n: int, *, on_acquired=None) -> list[float]:
    """``n`` submitters asking at once; the run time at which each got through."""
    times: list[float] = []

    async def submitter() -> None:
        await gate.acquire()
        times.append(gate.clock.now())
        if on_acquired is not None:
            on_acquired(len(times))

    async with anyio.create_task_group() as tg:
        for _ in range(n):
            tg.start_soon(submitter)
    return sorted(times)


@pytest.mark.anyio
@pytest.mark.parametrize("per_minute", [1, 7, 20, 60])
async def test_creates_are_spaced_evenly_and_never_more_than_n_per_window(
    per_minute: int,
) -> None:
    gate = CreateGate(per_minute, VirtualClock())
    n = min(3 * per_minute + 1, 61)
    start = gate.clock.now()
    times = await acquire_all(gate, n)
    spacing = 60.0 / per_minute
    assert times[0] == start, "the first create waits for nothing"
    gaps = [b - a for a, b in pairwise(times)]
    assert min(gaps) >= spacing - 1e-6, "no burst: every create waits its spacing"
    assert most_in_window(times) <= per_minute
    # ...and the rate is used, not just respected: one spacing apart, not more.
    assert times[-1] - times[0] <= (n - 1) * (spacing + 1.0) + 2.0
    assert max(gaps) == pytest.approx(spacing)


@pytest.mark.anyio
async def test_no_limit_lets_every_create_through_at_once() -> None:
    clock = VirtualClock()
    gate = CreateGate(0, clock)
    with anyio.fail_after(30.0):  # a hang, not a measure (virtual time measures)
        times = await acquire_all(gate, 200)
    assert times[-1] - times[0] < 0.5
    assert times == [0.0] * 200 and clock.state["slept"] == 0, "nobody waited at all"


@pytest.mark.anyio
async def test_a_429_pauses_every_submitter_until_retry_after() -> None:
    gate = CreateGate(30, VirtualClock())  # spacing 2 s
    refused_at: list[float] = []

    def on_acquired(count: int) -> None:
        if count == 1:  # the first create is answered 429, Retry-After 40 s
            refused_at.append(gate.clock.now())
            pause = gate.refused(40.0)
            assert 40.0 <= pause <= 44.0 + 1e-9  # the hint, plus at most 10% jitter

    times = await acquire_all(gate, 6, on_acquired=on_acquired)
    after = times[1:]
    assert min(after) >= refused_at[0] + 40.0 - 1e-6, "nobody goes out during the pause"
    gaps = [b - a for a, b in pairwise(after)]
    # They restart one (doubled) spacing apart, not all at once.
    assert min(gaps) >= 2.0 - 1e-6
    assert gate.rate_limited == 1


@pytest.mark.anyio
async def test_without_retry_after_the_pause_doubles_up_to_a_cap() -> None:
    gate = CreateGate(0, VirtualClock())
    pauses = [gate.refused(None) for _ in range(5)]
    assert pauses[0] < pauses[1] < pauses[2], "each 429 doubles the pause"
    assert all(p <= 8.0 * 1.1 for p in pauses), "up to 8x, no further"
    assert gate.expected_wait() > 0


@pytest.mark.anyio
async def test_after_a_429_the_spacing_doubles_then_creeps_back() -> None:
    gate = CreateGate(60, VirtualClock())  # spacing 1 s
    gate.refused(0.0)
    slow = await acquire_all(gate, 3)
    assert min(b - a for a, b in pairwise(slow)) >= 2.0 - 1e-6
    for _ in range(20):
        gate.created()
    assert gate.backoff == 1.0
    fast = await acquire_all(gate, 3)
    assert max(b - a for a, b in pairwise(fast)) < 1.5


@pytest.mark.anyio
async def test_the_window_holds_whatever_mix_of_429s_and_creates() -> None:
    """Random 429s and successes never let more than N creates into a 60 s window."""
    rng = random.Random(5)
    gate = CreateGate(10, VirtualClock())

    def on_acquired(_count: int) -> None:
        if rng.random() < 0.2:
            gate.refused(rng.choice([None, 0.5, 3.0]))
        else:
            gate.created()

    times = await acquire_all(gate, 40, on_acquired=on_acquired)
    assert most_in_window(times) <= 10
    assert min(b - a for a, b in pairwise(times)) >= 6.0 - 1e-6


def test_clock_converts_hints_and_time() -> None:
    clock = Clock(0.01)
    assert clock.from_wire(0.3) == pytest.approx(30.0)
    assert Clock().from_wire(7.0) == 7.0
