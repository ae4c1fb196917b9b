"""The account's task queue, computed lazily from a clock, and its statistics.

Nothing runs in the background: every request first calls ``advance(now)``,
which replays the events (a task leaves its submission delay, a slot frees, a
task finishes) that happened since the last call, in time order. All times
here are simulated seconds since the simulator started.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

__all__ = ["Phase", "Scheduler", "SimulatorStats", "Task", "TaskTimes"]

Phase = Literal["submitted", "queued", "in_progress", "completed", "failed"]


@dataclass
class Task:
    """One simulated task: its request, its fate and its times (simulated seconds)."""

    id: str
    seq: int
    model: str
    body: dict[str, Any]
    duration: int
    aspect_ratio: str
    created: float
    ready: float  # when the account's queue sees it
    run_time: float  # generation time if it succeeds
    fail_reason: str | None
    fail_point: float  # share of run_time after which a failing task fails
    started: float | None = None
    finished: float | None = None
    inline: bool = False  # the video is answered as a data: URI (new-api-legacy)

    @property
    def busy_for(self) -> float:
        return self.run_time * (self.fail_point if self.fail_reason else 1.0)

    def phase(self, now: float) -> Phase:
        if self.finished is not None:
            return "failed" if self.fail_reason else "completed"
        if self.started is not None:
            return "in_progress"
        return "queued" if now >= self.ready else "submitted"

    def progress(self, now: float) -> int:
        """0 while waiting, rising 1-99 while generating, 100 when completed."""
        phase = self.phase(now)
        if phase == "completed":
            return 100
        if self.started is None:
            return 0
        end = self.finished if self.finished is not None else now
        share = (end - self.started) / self.run_time if self.run_time > 0 else 1.0
        return min(99, max(1, math.floor(100 * share)))


class Scheduler:
    """At most ``max_running`` tasks generate at once; the rest wait in arrival order."""

    def __init__(self, max_running: int) -> None:
        self.max_running = max_running
        self.tasks: dict[str, Task] = {}
        self._waiting: list[tuple[float, int, Task]] = []
        self._running: list[Task] = []
        self._clock = 0.0  # time of the last event replayed
        self.peak_running = 0

    def add(self, task: Task) -> None:
        self.tasks[task.id] = task
        heapq.heappush(self._waiting, (task.ready, task.seq, task))

    @property
    def running(self) -> int:
        return len(self._running)

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    def advance(self, now: float) -> None:
        """Replay every start and finish up to ``now``, earliest first."""
        while True:
            finishing = min(self._running, key=_end, default=None)
            next_end = _end(finishing) if finishing is not None else math.inf
            if self._waiting and len(self._running) < self.max_running:
                ready, _, task = self._waiting[0]
                start = max(ready, self._clock)
                if start <= now and start <= next_end:
                    heapq.heappop(self._waiting)
                    task.started = self._clock = start
                    self._running.append(task)
                    self.peak_running = max(self.peak_running, len(self._running))
                    continue
            if finishing is not None and next_end <= now:
                finishing.finished = self._clock = next_end
                self._running.remove(finishing)
                continue
            return


def _end(task: Task) -> float:
    assert task.started is not None
    return task.started + task.busy_for


@dataclass(frozen=True)
class TaskTimes:
    """One task as the simulator sees it; times in simulated seconds since start."""

    model: str
    status: str
    created: float
    started: float | None
    finished: float | None


@dataclass(frozen=True)
class SimulatorStats:
    """A snapshot of what the simulator saw, for tests and benchmarks.

    - ``creates``: tasks created (including those whose answer was then dropped).
    - ``bodies``: the JSON bodies of those creates, as received, in order.
    - ``create_times``: when each was created, in simulated seconds.
    - ``queries``: query requests per task id asked about (known or not).
    - ``refusals``: error answers by their ``code`` (``rate_limit_exceeded``, ...).
    - ``statuses``: every answer sent, by HTTP status.
    - ``drops``: connections dropped, by flavour (``before`` / ``after``).
    - ``slowed``: answers delayed on purpose.
    - ``downloads``: video downloads per task id.
    - ``peak_running`` / ``running`` / ``waiting``: tasks generating at the busiest
      moment / now; tasks submitted or queued now.
    - ``tasks``: per task, its model, status and created/started/finished times.
    """

    creates: int
    bodies: tuple[Mapping[str, Any], ...]
    create_times: tuple[float, ...]
    queries: Mapping[str, int]
    refusals: Mapping[str, int]
    statuses: Mapping[int, int]
    drops: Mapping[str, int]
    slowed: int
    downloads: Mapping[str, int]
    peak_running: int
    running: int
    waiting: int
    tasks: Mapping[str, TaskTimes]

    def max_creates_in_window(self, seconds: float = 60.0) -> int:
        """The most creates within any ``seconds`` (simulated) of each other."""
        times = sorted(self.create_times)
        best = first = 0
        for last, t in enumerate(times):
            while t - times[first] >= seconds:
                first += 1
            best = max(best, last - first + 1)
        return best
