"""Benchmarks of the runner against the in-process simulator, with time compressed.

    python benchmarks/bench_runner.py

Prints four sets of figures (all times in *run seconds*: the runner and the simulator
share one compression factor, so a 60-second task takes 60 run seconds, and e.g. 0.3 s
of real time at ``time_scale=0.005``):

1. makespan of 500 shots against the lower bound max(N/R * 60 s, ceil(N/C) * T)
   (R creates a minute, C tasks at once, every task T seconds long);
2. queries per task and detection lag (the time between the task finishing at the relay
   and the runner reporting it completed) for tasks of 10 s to 10 minutes;
3. bytes the manifest store wrote for a 2,000-shot run, against the final manifest's size;
4. for every relay profile of the simulator (seed, new-api, new-api-legacy, vidu): 12 shots of
   one kind at concurrency 4, tasks of 10 s to 10 minutes, queries per task and detection lag,
   first with nothing learned, then a rerun that finds the pace in ``.vidu-pipe/pace.json``;
   queued 1 s first (issue 9's setting), then 1-5 s. ``bench_polling_model.py`` gives the same
   figures over many draws, on a virtual clock.

Takes about four minutes on two cores (printed in the order 1, 2, 4, 3).
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import anyio
import yaml

from vidu_pipe.api import arun, load
from vidu_pipe.events import Event
from vidu_pipe.execution.client import ViduClient
from vidu_pipe.execution.runner import RunOptions, execute
from vidu_pipe.manifest.store import ManifestStore
from vidu_pipe.planner import plan as make_plan
from vidu_pipe.simulator import PROFILES, Profile, Simulator, SimulatorConfig
from vidu_pipe.storyboard.schemas import MODELS

BASE = "http://relay.bench"
#: Run seconds per real second for parts 1 and 2: a 60-second task takes 0.6 s.
SCALE = 0.01
KEY = "sk-bench"
#: Part 4: tasks of 10 s to 10 minutes, and a compression that keeps a run of 12 x 10 min short.
PROFILE_SPANS = (10.0, 30.0, 60.0, 180.0, 600.0)
PROFILE_SCALE = 0.002


def profile_scale(span: float) -> float:
    """Compression for part 4: a task takes about 0.8 s of real time, so that the event
    loop's ~1 ms lateness stays well under 1% of it."""
    return 0.8 / span


def write_board(folder: Path, shots: Sequence[dict[str, Any]], name: str = "board") -> Path:
    doc = {"version": 1, "defaults": {"model": "viduq3t-540p", "duration": 5}, "shots": shots}
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    return path


def simulator(
    scale: float,
    spans: dict[str, float],
    *,
    queue: tuple[float, float],
    profile: Profile = "seed",
    max_running: int = 100_000,
) -> Simulator:
    """A relay whose account cap is out of the way; ``spans``: seconds per model (a
    5-second clip takes exactly its model's span)."""
    return Simulator(
        SimulatorConfig(
            time_scale=scale,
            durations={m: (spans.get(m, 60.0),) * 2 for m in MODELS},
            queue_seconds=queue,
            max_running=max_running,
            seed=1,
            profile=profile,
        )
    )


# --- 1. makespan ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Makespan:
    n: int
    rate: int
    concurrency: int
    task: float
    makespan: float  # run start to the last completion reported
    relay_span: float  # first create to the last task finished, at the relay
    peak_running: int
    busiest_minute: int
    spacing: float  # mean time between two creates
    real: float

    @property
    def bound(self) -> float:
        return max(self.n / self.rate * 60.0, math.ceil(self.n / self.concurrency) * self.task)


async def makespan(n: int, rate: int, concurrency: int, task: float, scale: float) -> Makespan:
    with tempfile.TemporaryDirectory() as folder:
        path = write_board(Path(folder), [{"id": f"s{i:04d}", "prompt": f"p{i}"} for i in range(n)])
        sim = simulator(scale, dict.fromkeys(MODELS, task), queue=(0.0, 0.0))
        marks: dict[str, float] = {}

        def on_event(event: Event) -> None:
            if event.kind in ("run-started", "run-finished"):
                marks[event.kind] = sim.now()

        started = time.monotonic()
        result = await arun(
            path,
            base_url=BASE,
            options=RunOptions(
                time_scale=scale, concurrency=concurrency, rate_per_minute=rate, poll_interval=5.0
            ),
            on_event=on_event,
            transport=sim.transport(),
            env={"VIDU_API_KEY": KEY},
        )
        real = time.monotonic() - started
        assert result.exit_code == 0 and len(result.completed) == n, result
        st = sim.stats()
        finished = [t.finished for t in st.tasks.values() if t.finished is not None]
        return Makespan(
            n=n,
            rate=rate,
            concurrency=concurrency,
            task=task,
            makespan=marks["run-finished"] - marks["run-started"],
            relay_span=max(finished) - min(st.create_times),
            peak_running=st.peak_running,
            busiest_minute=st.max_creates_in_window(60.0),
            spacing=(max(st.create_times) - min(st.create_times)) / (n - 1),
            real=real,
        )


async def timed_run(
    path: Path, sim: Simulator, options: RunOptions, *, force: bool = False
) -> list[tuple[str, int, float]]:
    """Run ``path`` against ``sim``; per task: (model, queries, detection lag), the lag
    being the time between the task finishing at the relay and the run reporting it."""
    seen: dict[str, float] = {}

    def on_event(event: Event) -> None:
        if event.kind == "completed":
            seen[event.data["task_id"]] = sim.now()

    result = await arun(
        path,
        base_url=BASE,
        force=force,
        options=options,
        on_event=on_event,
        transport=sim.transport(),
        env={"VIDU_API_KEY": KEY},
    )
    assert result.exit_code == 0, result
    st = sim.stats()
    out = []
    for task_id, task in st.tasks.items():
        assert task.finished is not None
        out.append((task.model, st.queries[task_id], seen[task_id] - task.finished))
    return out


# --- 2. polling ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Polled:
    duration: float
    queries: list[int]
    lags: list[float]


async def polling(
    spans: Sequence[float], *, takes: int, scale: float, queue: tuple[float, float]
) -> list[Polled]:
    """One model per duration (so each task's length is known), ``takes`` tasks each."""
    assert len(spans) <= len(MODELS)
    per_model = dict(zip(MODELS, spans, strict=False))
    with tempfile.TemporaryDirectory() as folder:
        shots = [
            {"id": f"{model}-{k}", "model": model, "prompt": f"{model} take {k}"}
            for model in per_model
            for k in range(takes)
        ]
        path = write_board(Path(folder), shots)
        sim = simulator(scale, per_model, queue=queue)
        options = RunOptions(
            time_scale=scale, concurrency=len(shots), rate_per_minute=0, poll_interval=5.0
        )
        out: dict[str, Polled] = {m: Polled(s, [], []) for m, s in per_model.items()}
        for model, queries, lag in await timed_run(path, sim, options):
            out[model].queries.append(queries)
            out[model].lags.append(lag)
        return sorted(out.values(), key=lambda p: p.duration)


# --- 4. polling per relay profile, nothing learned and with history -----------------------


@dataclass(frozen=True)
class ProfileRun:
    profile: str
    span: float
    queries: list[int]
    lags: list[float]  # seconds

    @property
    def mean_queries(self) -> float:
        return statistics.mean(self.queries)

    def lag_percent(self, which: str) -> float:
        value = statistics.median(self.lags) if which == "median" else max(self.lags)
        return 100 * value / self.span


async def profile_run(
    folder: Path,
    profile: Profile,
    span: float,
    *,
    scale: float,
    shots: int = 12,
    queue: tuple[float, float] = (1.0, 5.0),
    poll_interval: float = 5.0,
) -> ProfileRun:
    """``shots`` shots of one kind (same model, duration, aspect ratio, mode) at concurrency
    4, each generating ``span`` seconds after ``queue`` seconds (drawn uniformly) of queue;
    the relay caps the account at 5 tasks generating. Run in ``folder``: a second call
    there finds the pace learned."""
    path = write_board(folder, [{"id": f"s{i:02d}", "prompt": f"take {i}"} for i in range(shots)])
    sim = simulator(scale, dict.fromkeys(MODELS, span), queue=queue, profile=profile, max_running=5)
    options = RunOptions(
        time_scale=scale, concurrency=4, rate_per_minute=0, poll_interval=poll_interval
    )
    tasks = await timed_run(path, sim, options, force=True)
    queries = [q for _, q, _ in tasks]
    lags = [lag for _, _, lag in tasks]
    return ProfileRun(profile, span, queries, lags)


# --- 3. manifest bytes ---------------------------------------------------------------------


async def manifest_bytes(n: int, scale: float) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as folder:
        path = write_board(
            Path(folder),
            [
                {"id": f"shot-{i:05d}", "prompt": f"shot {i}, a quiet beach at dawn"}
                for i in range(n)
            ],
        )
        board = load(path)
        sim = simulator(scale, dict.fromkeys(MODELS, 60.0), queue=(1.0, 5.0))
        manifest = path.with_suffix(".manifest.json")
        started = time.monotonic()
        store = ManifestStore.open(manifest, storyboard=path.name, base_url=BASE, order=board.ids)
        try:
            async with ViduClient(BASE, KEY, transport=sim.transport()) as client:
                result = await execute(
                    make_plan(board, None),
                    store=store,
                    client=client,
                    options=RunOptions(time_scale=scale, concurrency=100, rate_per_minute=0),
                )
        finally:
            store.close()
        assert result.exit_code == 0 and len(result.completed) == n
        stats = store.statistics()
        size = manifest.stat().st_size
        return {
            "bytes_written": stats.bytes_written,
            "final_size": size,
            "journal_records": stats.journal_records,
            "compactions": stats.compactions,
            "syncs": stats.syncs,
            "real": time.monotonic() - started,
        }


# --- report --------------------------------------------------------------------------------


def part1() -> None:
    print("1. makespan of 500 shots (run seconds; bound = max(N/R*60, ceil(N/C)*T))")
    print(
        f"   {'R/min':>5} {'C':>3} {'T':>5} {'bound':>7} {'makespan':>9} {'ratio':>6}"
        f" {'relay span':>10} {'peak run':>8} {'max/60s':>7} {'spacing':>7} {'real s':>6}"
    )
    for rate, concurrency, task in ((20, 40, 60.0), (20, 20, 60.0), (120, 10, 60.0)):
        m = anyio.run(makespan, 500, rate, concurrency, task, SCALE)
        print(
            f"   {m.rate:>5} {m.concurrency:>3} {m.task:>5g} {m.bound:>7.0f} {m.makespan:>9.1f}"
            f" {m.makespan / m.bound:>6.3f} {m.relay_span:>10.1f} {m.peak_running:>8}"
            f" {m.busiest_minute:>7} {m.spacing:>7.3f} {m.real:>6.1f}"
        )
    print(
        f"   (time_scale {SCALE}: each wake-up of the event loop is ~1 ms late, i.e."
        f" ~{0.001 / SCALE:g} run s, which widens the create spacing above 60/R)"
    )


def part2() -> None:
    print("2. queries per task and detection lag, --poll-interval 5 (3 tasks per duration)")
    spans_a = (10.0, 20.0, 30.0, 60.0, 120.0, 180.0)
    spans_b = (45.0, 90.0, 240.0, 300.0, 450.0, 600.0)
    for label, queue in (("no queue", (0.0, 0.0)), ("queued 1-5 s first", (1.0, 5.0))):
        print(f"   {label}:")
        print(
            f"   {'task s':>7} {'queries':>8} {'max q':>6} {'lag s':>7} {'max lag s':>9}"
            f" {'lag %':>6} {'max lag %':>9}"
        )
        rows: list[Polled] = []
        for spans in (spans_a, spans_b):
            rows += anyio.run(lambda s=spans, q=queue: polling(s, takes=3, scale=SCALE, queue=q))
        for p in sorted(rows, key=lambda r: r.duration):
            print(
                f"   {p.duration:>7g} {statistics.mean(p.queries):>8.1f} {max(p.queries):>6}"
                f" {statistics.mean(p.lags):>7.2f} {max(p.lags):>9.2f}"
                f" {100 * statistics.mean(p.lags) / p.duration:>6.1f}"
                f" {100 * max(p.lags) / p.duration:>9.1f}"
            )


def part4() -> None:
    print("4. per relay profile: 12 shots of one kind, concurrency 4, --poll-interval 1 for")
    print("   tasks under 60 s and 5 from 60 s; queries per task (mean / max) and detection lag")
    print("   (% of the task's generating time, median / worst); first run, then a rerun with")
    print("   history. Queued 1 s first (issue 9's setting), then 1-5 s (the simulator's default:")
    print("   tasks of one kind no longer finish together)")
    for queue in ((1.0, 1.0), (1.0, 5.0)):
        print(f"   queued {queue[0]:g}-{queue[1]:g} s:")
        print(
            f"   {'profile':<15} {'task s':>6} {'q mean':>7} {'q max':>6} {'lag med':>8}"
            f" {'lag max':>8} | {'q mean':>7} {'q max':>6} {'lag med':>8} {'lag max':>8}"
        )
        for profile in PROFILES:
            for span in PROFILE_SPANS:
                with tempfile.TemporaryDirectory() as folder:
                    run = partial(
                        profile_run,
                        Path(folder),
                        profile,
                        span,
                        scale=profile_scale(span),
                        queue=queue,
                        poll_interval=1.0 if span < 60 else 5.0,
                    )
                    first = anyio.run(run)
                    again = anyio.run(run)
                print(
                    f"   {profile:<15} {span:>6g} {first.mean_queries:>7.1f}"
                    f" {max(first.queries):>6} {first.lag_percent('median'):>7.1f}%"
                    f" {first.lag_percent('max'):>7.1f}% | {again.mean_queries:>7.1f}"
                    f" {max(again.queries):>6} {again.lag_percent('median'):>7.1f}%"
                    f" {again.lag_percent('max'):>7.1f}%"
                )


def part3() -> None:
    print("3. manifest bytes written for 2,000 shots (create, progress, completion each)")
    b = anyio.run(manifest_bytes, 2000, 0.001)
    print(
        f"   written {b['bytes_written']:,.0f} B; final manifest {b['final_size']:,.0f} B;"
        f" ratio {b['bytes_written'] / b['final_size']:.2f}; {b['journal_records']:,.0f} journal"
        f" records, {b['compactions']:.0f} compactions, {b['syncs']:,.0f} fsyncs;"
        f" {b['real']:.1f} s real"
    )


PARTS = {"1": part1, "2": part2, "3": part3, "4": part4}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--parts", default="1,2,4,3", help="which parts, in order (1,2,4,3)")
    args = parser.parse_args(argv)
    total = time.monotonic()
    for n, name in enumerate(args.parts.split(",")):
        if n:
            print()
        PARTS[name.strip()]()
    print()
    print(f"total {time.monotonic() - total:.0f} s real")
    return 0


if __name__ == "__main__":
    sys.exit(main())
