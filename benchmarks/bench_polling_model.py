"""The polling policy in a model of the benchmark's relay, on a virtual clock.

    python benchmarks/bench_polling_model.py [--interval auto|SECONDS] [--seeds 50]

``bench_runner.py`` part 4 runs the real runner against the simulator: one random draw of
queue times per case, and a minute of real time. This drives the same policy objects
(:class:`PollSchedule`, :class:`PaceBook`, the wake-ups of :class:`Pacer`) the way the
runner does, with no clock and no sockets, over many draws: 12 shots of one kind at
concurrency 4, each queued (for a time drawn uniformly) before generating for ``span`` seconds,
progress as each relay profile reports it. It prints, per profile and span, the queries per
task and the detection lag (% of the generating time), first with nothing learned and then
with the pace of the first run as history; queued 1 s first (issue 9's setting) and 1-5 s.
Takes about ten seconds.
"""

from __future__ import annotations

import argparse
import heapq
import math
import random
import statistics
import sys
from dataclasses import dataclass, field

from vidu_pipe.execution.polling import PaceBook, PollSchedule

KIND = "viduq3t-540p/5s/default/text"
PROFILES = ("seed", "new-api", "new-api-legacy", "vidu")
SPANS = (10.0, 20.0, 30.0, 60.0, 180.0, 600.0)


def answer(profile: str, now: float, start: float, span: float) -> tuple[str, int | None]:
    """(status, progress) as the client reads the profile's answer for a task not done.
    ``queued-only``: a relay that says "queued" until the task is done."""
    if profile == "queued-only":
        return "queued", None
    if now < start:
        return "queued", None if profile == "vidu" else 0
    if profile == "seed":
        return "in_progress", min(99, max(1, math.floor(100 * (now - start) / span)))
    if profile == "vidu":
        return "in_progress", None
    return "in_progress", 30


@dataclass
class _Task:
    created: float
    start: float
    finish: float
    schedule: PollSchedule
    wake_at: float
    queries: int = 0
    seen: float | None = None
    waiting: bool = field(default=True)


@dataclass(frozen=True)
class Result:
    queries: list[int]
    lags: list[float]  # fraction of the span


def simulate(
    profile: str,
    span: float,
    *,
    interval: float,
    rng: random.Random,
    book: PaceBook,
    queue: tuple[float, float] = (1.0, 5.0),
    shots: int = 12,
    concurrency: int = 4,
) -> Result:
    """One run: ``shots`` tasks through ``concurrency`` slots; a slot creates its next task
    the moment its last one is seen done."""
    tasks: list[_Task] = []
    heap: list[tuple[float, int]] = []
    created = 0

    def create(now: float) -> None:
        nonlocal created
        if created >= shots:
            return
        created += 1
        start = now + rng.uniform(*queue)
        schedule = book.schedule(KIND, interval, now)
        task = _Task(now, start, start + span, schedule, now + schedule.next_delay(now))
        tasks.append(task)
        heapq.heappush(heap, (task.wake_at, len(tasks) - 1))

    for _ in range(concurrency):
        create(0.0)
    while heap:
        at, index = heapq.heappop(heap)
        task = tasks[index]
        if not task.waiting or at != task.wake_at:
            continue  # done already, or rescheduled by a wake-up
        now = at
        task.queries += 1
        schedule = task.schedule
        if now >= task.finish:
            task.seen, task.waiting = now, False
            # As Pacer.done: learn, and wake the tasks of the kind.
            book.done(KIND, schedule, now)
            for j, other in enumerate(tasks):
                if other.waiting:
                    other.schedule.wake(book.expected(KIND))
                    until = min(other.wake_at, now + other.schedule.next_delay(now))
                    if until != other.wake_at:
                        other.wake_at = until
                        heapq.heappush(heap, (until, j))
            create(now)
            continue
        status, progress = answer(profile, now, task.start, span)
        schedule.observe(now, status, progress)
        book.not_done(KIND, schedule, now)
        task.wake_at = now + schedule.next_delay(now)
        heapq.heappush(heap, (task.wake_at, index))
    return Result([t.queries for t in tasks], [(t.seen or 0.0) - t.finish for t in tasks])


def summary(results: list[Result], span: float) -> tuple[float, int, float, float, float]:
    """(mean queries, most queries, the median run's median lag %, the median run's worst
    lag %, the worst lag of all runs %)."""
    queries = [q for r in results for q in r.queries]
    medians = [statistics.median(r.lags) for r in results]
    worsts = [max(r.lags) for r in results]
    return (
        statistics.mean(queries),
        max(queries),
        100 * statistics.median(medians) / span,
        100 * statistics.median(worsts) / span,
        100 * max(worsts) / span,
    )


def interval_for(span: float, interval: str) -> float:
    """``auto``: 1 s for tasks under a minute, else 5 s (the default)."""
    if interval == "auto":
        return 1.0 if span < 60 else 5.0
    return float(interval)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--interval", default="auto", help="--poll-interval; auto: 1 under 60 s, else 5"
    )
    parser.add_argument("--seeds", type=int, default=50)
    parser.add_argument("--profiles", nargs="*", default=list(PROFILES))
    parser.add_argument("--spans", nargs="*", type=float, default=list(SPANS))
    parser.add_argument(
        "--queue",
        nargs=2,
        type=float,
        default=None,
        metavar=("LOW", "HIGH"),
        help="seconds queued before generating, drawn uniformly (default: 1 1, then 1 5)",
    )
    args = parser.parse_args(argv)
    queues = [(args.queue[0], args.queue[1])] if args.queue else [(1.0, 1.0), (1.0, 5.0)]
    print(
        f"12 shots of one kind, concurrency 4, {args.seeds} runs each; queries per task (mean,"
        " most); lag as % of the generating time: the median run's median and worst, and the"
        " worst of all runs; first run | rerun with the pace kept"
    )
    for queue in queues:
        print(f"queued {queue[0]:g}-{queue[1]:g} s, --poll-interval {args.interval}:")
        print(
            f"{'profile':<15} {'task s':>6} {'int':>3}  {'q':>5} {'max':>3} {'med':>6}"
            f" {'worst':>6} {'all':>6}  | {'q':>5} {'max':>3} {'med':>6} {'worst':>6} {'all':>6}"
        )
        for profile in args.profiles:
            for span in args.spans:
                interval = interval_for(span, args.interval)
                first, again = [], []
                for seed in range(args.seeds):
                    rng = random.Random(seed)
                    book = PaceBook()
                    first.append(
                        simulate(profile, span, interval=interval, rng=rng, book=book, queue=queue)
                    )
                    book = PaceBook(book.summary())
                    again.append(
                        simulate(profile, span, interval=interval, rng=rng, book=book, queue=queue)
                    )
                a, b = summary(first, span), summary(again, span)
                print(
                    f"{profile:<15} {span:>6g} {interval:>3g}  {a[0]:5.1f} {a[1]:3d}"
                    f" {a[2]:5.1f}% {a[3]:5.1f}% {a[4]:5.1f}%  | {b[0]:5.1f} {b[1]:3d}"
                    f" {b[2]:5.1f}% {b[3]:5.1f}% {b[4]:5.1f}%"
                )
    return 0


if __name__ == "__main__":
    sys.exit(main())
