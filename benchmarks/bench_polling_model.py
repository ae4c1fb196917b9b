"""The polling policy in a model of the benchmark's relay, on a virtual clock.

    python benchmarks/bench_polling_model.py [--interval 1] [--seeds 50]

``bench_runner.py`` part 4 runs the real runner against the simulator: one random draw of
queue times per case, and a minute of real time. This drives the same policy objects
(:class:`PollSchedule`, :class:`PaceBook`, the wake-ups of :class:`Pacer`) the way the
runner does, with no clock and no sockets, over many draws: 12 shots of one kind at
concurrency 4, each waiting 1-5 s (uniform) before generating for exactly ``span`` seconds,
progress as each relay profile reports it. It prints, per profile and span, the mean
queries per task and the detection lag (% of the generating time) at the median draw's
median and at the worst draw's worst, first with nothing learned and then with the pace of
the first run as history. Takes a few seconds.
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
    """(status, progress) as the client reads the profile's answer for a task not done."""
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


def summary(results: list[Result], span: float) -> tuple[float, int, float, float]:
    """(mean queries, most queries, median draw's median lag %, worst lag %)."""
    queries = [q for r in results for q in r.queries]
    medians = [statistics.median(r.lags) for r in results]
    worst = max(max(r.lags) for r in results)
    return (
        statistics.mean(queries),
        max(queries),
        100 * statistics.median(medians) / span,
        100 * worst / span,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--interval", type=float, default=5.0)
    parser.add_argument("--seeds", type=int, default=50)
    parser.add_argument("--profiles", nargs="*", default=list(PROFILES))
    parser.add_argument("--spans", nargs="*", type=float, default=list(SPANS))
    parser.add_argument(
        "--queue",
        nargs=2,
        type=float,
        default=[1.0, 5.0],
        metavar=("LOW", "HIGH"),
        help="seconds queued before generating, drawn uniformly (issue 9 measured 1 1)",
    )
    args = parser.parse_args(argv)
    print(
        f"--poll-interval {args.interval:g}, queued {args.queue[0]:g}-{args.queue[1]:g} s,"
        f" {args.seeds} draws; q mean / q max, lag median / worst (% of the generating"
        " time); first run | rerun with history"
    )
    queue = (args.queue[0], args.queue[1])
    for profile in args.profiles:
        for span in args.spans:
            first, again = [], []
            for seed in range(args.seeds):
                rng = random.Random(seed)
                book = PaceBook()
                first.append(
                    simulate(profile, span, interval=args.interval, rng=rng, book=book, queue=queue)
                )
                book = PaceBook(book.summary())
                again.append(
                    simulate(profile, span, interval=args.interval, rng=rng, book=book, queue=queue)
                )
            a, b = summary(first, span), summary(again, span)
            print(
                f"{profile:<15} {span:>5g}  {a[0]:5.1f} {a[1]:3d} {a[2]:5.1f}% {a[3]:5.1f}%"
                f"  | {b[0]:5.1f} {b[1]:3d} {b[2]:5.1f}% {b[3]:5.1f}%"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
