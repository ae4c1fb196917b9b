"""PollSchedule, the polling policy, as a pure object: a task is simulated, no clock runs.

The promise (runner issue): for a task whose progress rises linearly, 10 s to 10 minutes
long, the default ``--poll-interval 5`` spends at most 10 queries and sees completion
within 5% of the task's duration after it happened.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vidu_pipe.execution.polling import (
    Known,
    Learned,
    PaceBook,
    PollSchedule,
    load_pace,
    pace_path,
    save_pace,
)

MAX_QUERIES = 10
MAX_LAG = 0.05  # of the task's generation time


@dataclass(frozen=True)
class Outcome:
    queries: int
    lag: float  # seconds between the task finishing and the query that saw it
    delays: tuple[float, ...]


def poll_linear_task(
    duration: float, *, interval: float = 5.0, queued: float = 0.0, limit: int = 500
) -> Outcome:
    """Drive a PollSchedule as the runner does against a task created at 0 that waits
    ``queued`` seconds, then progresses linearly for ``duration`` seconds (progress as the
    relay reports it: a whole percent, 1-99 while generating, as the simulator does)."""
    started = queued
    finished = started + duration
    schedule = PollSchedule(interval, started=0.0)
    now = 0.0
    delays: list[float] = []
    delay = schedule.next_delay(now)
    while True:
        assert delay > 0, f"a non-positive wait {delay} at {now}"
        delays.append(delay)
        now += delay
        if now >= finished:
            return Outcome(len(delays), now - finished, tuple(delays))
        assert len(delays) < limit, "the schedule never reached the end of the task"
        if now < started:
            status, progress = "queued", 0
        else:
            share = (now - started) / duration
            status, progress = "in_progress", min(99, max(1, math.floor(100 * share)))
        schedule.observe(now, status, progress)
        delay = schedule.next_delay(now)


def assert_within_budget(outcome: Outcome, duration: float) -> None:
    assert outcome.queries <= MAX_QUERIES, (outcome.queries, outcome.delays)
    assert outcome.lag <= MAX_LAG * duration, (
        f"completion seen {outcome.lag:.2f} s late ({100 * outcome.lag / duration:.1f}% of "
        f"{duration} s); waits {[round(d, 2) for d in outcome.delays]}"
    )


@pytest.mark.parametrize(
    "duration",
    [
        pytest.param(10.0),
        pytest.param(12.0),
        pytest.param(15.0),
        20.0,
        30.0,
        45.0,
        60.0,
        90.0,
        120.0,
        180.0,
        240.0,
        300.0,
        360.0,
        450.0,
        600.0,
    ],
)
def test_a_linear_task_is_seen_finished_within_5_percent_in_at_most_10_queries(
    duration: float,
) -> None:
    assert_within_budget(poll_linear_task(duration), duration)


@settings(max_examples=300, deadline=None, derandomize=True)
@given(duration=st.floats(min_value=17.5, max_value=600.0))
def test_property_linear_tasks_from_17_s_to_10_minutes(duration: float) -> None:
    assert_within_budget(poll_linear_task(duration), duration)


@settings(max_examples=200, deadline=None, derandomize=True)
@given(duration=st.floats(min_value=10.0, max_value=17.5))
def test_property_linear_tasks_from_10_to_17_s(duration: float) -> None:
    assert_within_budget(poll_linear_task(duration), duration)


@settings(max_examples=200, deadline=None, derandomize=True)
@given(
    duration=st.floats(min_value=60.0, max_value=600.0),
    queued=st.floats(min_value=0.0, max_value=480.0),
)
def test_property_a_queue_costs_one_query_per_30_s_and_no_lag(
    duration: float, queued: float
) -> None:
    """While queued the wait stops growing at 6 intervals (30 s), so that a task behind
    a long queue is not missed (a Q3 task takes minutes, SPEC §1; a task shorter than
    30 s may still finish within one queued wait): the queue costs a query per 30 s.
    Past 30 queries the hard budget wins (see test_no_task_costs_more_than_40_queries),
    so queues up to 8 minutes are held to this."""
    outcome = poll_linear_task(duration, queued=queued)
    assert outcome.queries <= MAX_QUERIES + math.ceil(queued / 30.0)
    assert outcome.lag <= MAX_LAG * duration + 1e-9, outcome


@pytest.mark.parametrize(
    ("queued", "duration"),
    [
        (2.0, 60.0),
        (5.0, 120.0),
        (5.0, 300.0),
        (60.0, 300.0),
        (20.0, 40.0),
        pytest.param(20.0, 12.0),
        pytest.param(120.0, 30.0),
        pytest.param(300.0, 95.0),
        pytest.param(300.0, 200.0),
        pytest.param(178.0, 167.0),
    ],
)
def test_a_task_queued_first_is_still_seen_within_5_percent(queued: float, duration: float) -> None:
    """Vidu runs about 5 tasks of an account at once and queues the rest (SPEC §1)."""
    outcome = poll_linear_task(duration, queued=queued)
    assert outcome.lag <= MAX_LAG * duration, outcome
    assert outcome.queries <= MAX_QUERIES + math.ceil(queued / 30.0), outcome


def test_the_first_wait_is_the_poll_interval() -> None:
    assert PollSchedule(5.0, started=100.0).next_delay(100.0) == 5.0
    assert PollSchedule(0.5, started=0.0).next_delay(0.0) == 0.5


@pytest.mark.parametrize(("status", "longest"), [("queued", 30.0), ("in_progress", math.inf)])
def test_without_progress_the_wait_grows_but_never_beyond_the_tasks_age(
    status: str, longest: float
) -> None:
    schedule = PollSchedule(5.0, started=0.0)
    now, waits = 0.0, []
    for _ in range(12):
        wait = schedule.next_delay(now)
        waits.append(wait)
        assert wait >= 5.0
        assert wait <= max(now, 5.0) + 1e-9  # never more than the age so far
        assert wait <= longest  # while queued: at most 6 intervals
        now += wait
        schedule.observe(now, status, None)
    assert waits == sorted(waits)
    # A task that never moves is queried less and less often: while queued the waits
    # double up to 30 s; while generating they grow with its age (1.3x per query), counted
    # from the start of generation: here between the create and the first answer, at 5 s.
    start = 0.0 if status == "queued" else 2.5
    assert waits[-1] >= min(longest, 0.3 * (now - waits[-1] - start) - 1e-9, 5.0 * 8)


def test_progress_readings_shorten_the_wait_to_the_expected_finish() -> None:
    """Two readings 10% apart over 10 s say 100 s in all: the next query aims near the end."""
    schedule = PollSchedule(5.0, started=0.0)
    schedule.observe(40.0, "in_progress", 40)
    schedule.observe(50.0, "in_progress", 50)
    finish, uncertainty = schedule.estimate() or (0.0, 0.0)
    assert finish == pytest.approx(100.0)
    assert 0 < uncertainty < 10.0
    wait = schedule.next_delay(50.0)
    assert 50.0 + wait <= 100.0 + 0.05 * 100  # not beyond the tolerated lag
    assert 50.0 + wait >= 100.0 - 15.0  # and not a timid small step


def test_close_to_the_end_the_wait_stays_short() -> None:
    """Readings 98% and 99% a second apart: the end is about a second away, so the next
    query must not wait anything like the task's age (here 344 s)."""
    schedule = PollSchedule(5.0, started=0.0)
    for now in (5.0, 10.0, 20.0, 40.0, 80.0, 160.0):
        schedule.observe(now, "queued", 0)
    schedule.observe(320.0, "in_progress", 85)
    schedule.observe(343.2, "in_progress", 98)
    schedule.observe(344.25, "in_progress", 99)
    assert schedule.next_delay(344.25) <= 10.0


def test_estimate_needs_moving_progress() -> None:
    schedule = PollSchedule(5.0, started=0.0)
    assert schedule.estimate() is None
    schedule.observe(5.0, "queued", 0)
    assert schedule.estimate() is None
    schedule.observe(10.0, "in_progress", 0)
    assert schedule.estimate() is None


# --- progress that says nothing, the pace, the hard bounds (issue 9) -------------------------


def poll_task(
    duration: float,
    answer: Callable[[float, int], tuple[str, int | None]],
    *,
    interval: float = 5.0,
    pace: Known | None = None,
    wakes: Callable[[int], bool] = lambda _: False,
) -> Outcome:
    """Drive a PollSchedule against a task done at ``duration``; ``answer(now, n)`` gives
    the status and progress of the n-th answer before that."""
    schedule = PollSchedule(interval, started=0.0, pace=pace)
    now, delays = 0.0, []
    delay = schedule.next_delay(now)
    while True:
        assert delay > 0 and math.isfinite(delay), delay
        delays.append(delay)
        now += delay
        if now >= duration:
            return Outcome(len(delays), now - duration, tuple(delays))
        status, progress = answer(now, len(delays))
        schedule.observe(now, status, progress)
        if wakes(len(delays)):
            schedule.wake(pace)
        delay = schedule.next_delay(now)


def new_api(now: float, n: int) -> tuple[str, int | None]:
    """new-api: 10% while queued for 3 s, then 30% for the whole generation."""
    return ("queued", 10) if now < 3.0 else ("in_progress", 30)


@pytest.mark.parametrize("duration", [60.0, 180.0, 600.0, 1800.0])
@pytest.mark.parametrize(
    "answer",
    [
        pytest.param(new_api, id="fixed 30%"),
        pytest.param(lambda now, n: ("in_progress", None), id="no progress"),
        pytest.param(lambda now, n: ("in_progress", 99 - n % 50), id="backwards"),
        pytest.param(lambda now, n: ("in_progress", min(99, 20 + 10 * n)), id="steps per query"),
    ],
)
def test_progress_that_says_nothing_never_makes_a_storm(
    duration: float, answer: Callable[[float, int], tuple[str, int | None]]
) -> None:
    """The seed's bug: new-api's fixed 30% made a task cost 175 queries (one every 0.1 s)."""
    outcome = poll_task(duration, answer)
    # Nothing known: about 1.3x the age between queries, so a logarithmic count.
    assert outcome.queries <= 4 + math.ceil(math.log(duration / 20.0) / math.log(1.3)) + 2
    assert outcome.lag <= 0.3 * duration + 5.0


def test_fixed_and_backwards_progress_are_detected() -> None:
    fixed = PollSchedule(5.0, started=0.0)
    for now in (5.0, 10.0, 15.0, 20.0, 26.0):
        fixed.observe(now, *new_api(now, 0))
    assert fixed.progress_kind == "fixed" and fixed.estimate() is None
    backwards = PollSchedule(5.0, started=0.0)
    for now, progress in ((5.0, 40), (10.0, 60), (15.0, 20)):
        backwards.observe(now, "in_progress", progress)
    assert backwards.progress_kind == "backwards" and backwards.estimate() is None
    moving = PollSchedule(5.0, started=0.0)
    for now, progress in ((5.0, 5), (10.0, 10)):
        moving.observe(now, "in_progress", progress)
    assert moving.progress_kind == "moving" and moving.estimate() is not None


@pytest.mark.parametrize("duration", [60.0, 240.0, 600.0])
def test_a_learned_pace_finds_a_task_without_progress_in_a_few_queries(duration: float) -> None:
    pace = Known(generating=(0.99 * duration, duration, 1.01 * duration))
    outcome = poll_task(duration, lambda now, n: ("in_progress", None), pace=pace)
    assert outcome.queries <= 6, outcome
    assert outcome.lag <= 0.05 * duration, outcome


def test_a_task_slower_than_its_pace_is_still_seen_soon() -> None:
    pace = Known(generating=(190.0, 200.0, 210.0))
    outcome = poll_task(400.0, lambda now, n: ("in_progress", 30), pace=pace)
    assert outcome.lag <= 0.15 * 400.0, outcome
    assert outcome.queries <= 25, outcome


def test_tasks_of_one_kind_interleave_their_queries() -> None:
    """Four tasks of a kind, offsets from the pace book: together they look far more often
    than one of them does, so the first to finish is seen within a few percent."""
    book = PaceBook()
    kind = "viduq3p-720p/5s/16:9/text"
    ages: list[float] = []
    for _ in range(4):
        schedule = PollSchedule(5.0, started=0.0, offset=book.join(kind))
        now = 0.0
        while now < 600.0:
            now += schedule.next_delay(now)
            ages.append(now)
            schedule.observe(now, "in_progress", None)
    ages.sort()
    late = [b / a for a, b in itertools.pairwise(ages) if a > 100.0]
    assert max(late) <= 1.12, max(late)


@settings(max_examples=300, deadline=None, derandomize=True)
@given(
    duration=st.floats(min_value=1.0, max_value=1800.0),
    interval=st.floats(min_value=0.01, max_value=60.0),
    answers=st.lists(
        st.tuples(
            st.sampled_from(["queued", "in_progress"]),
            st.one_of(st.none(), st.integers(min_value=0, max_value=100)),
        ),
        min_size=1,
        max_size=60,
    ),
    pace=st.one_of(
        st.none(),
        st.floats(min_value=0.5, max_value=3000.0).map(
            lambda p: Known(generating=(0.8 * p, p, 1.2 * p), total=(p, 1.1 * p, 2 * p))
        ),
    ),
    wake_every=st.integers(min_value=0, max_value=5),
)
def test_no_task_up_to_30_minutes_costs_more_than_40_queries(
    duration: float,
    interval: float,
    answers: list[tuple[str, int | None]],
    pace: Known | None,
    wake_every: int,
) -> None:
    """Whatever the relay answers, whatever was learned, whatever the poll interval."""
    outcome = poll_task(
        duration,
        lambda now, n: answers[n % len(answers)],
        interval=interval,
        pace=pace,
        wakes=lambda n: wake_every > 0 and n % wake_every == 0,
    )
    # +1: the runner's one last query at the --timeout deadline.
    assert outcome.queries + 1 <= 40, outcome.queries


def test_no_arithmetic_overflows_after_thousands_of_queries() -> None:
    """The seed's PollSchedule raised OverflowError (2.0 ** n) after ~1,000 queries."""
    schedule = PollSchedule(0.001, started=0.0)
    now = 0.0
    for _ in range(5000):
        schedule.observe(now, "in_progress", 30)
        delay = schedule.next_delay(now)
        assert math.isfinite(delay) and delay > 0
        now += 1e-6  # a caller that ignores the delay
    queued = PollSchedule(0.001, started=0.0)
    for n in range(5000):
        queued.observe(n * 1e-6, "queued", None)
        assert math.isfinite(queued.next_delay(n * 1e-6))


def test_the_pace_is_kept_between_runs(tmp_path: Path) -> None:
    path = pace_path(tmp_path / "board.yaml")
    assert path == tmp_path / ".vidu-pipe" / "pace.json"
    assert load_pace(path, "https://relay") == {}
    save_pace(path, "https://relay", {"k": Learned(120.0, 5.0, 3)})
    save_pace(path, "https://other", {"k": Learned(60.0, 1.0, 1)})
    assert load_pace(path, "https://relay") == {"k": Learned(120.0, 5.0, 3)}
    assert load_pace(path, "https://other") == {"k": Learned(60.0, 1.0, 1)}
    assert not [p for p in path.parent.iterdir() if p.name != "pace.json"]  # no temp left


@pytest.mark.parametrize(
    "content",
    [
        "not json",
        "[" * 100_000,
        '{"version": 2, "relays": {"https://relay": {"k": {"seconds": "NaN"}}}}',
        '{"version": 2, "relays": {"https://relay": {"k": {"seconds": 1e999}}}}',
        '{"version": 3, "relays": {}}',
        '{"version": 2, "relays": {"https://relay": {"k": {"seconds": -5, "n": 1}}}}',
        # Version 1 kept create-to-done times (queue included): not generating times.
        '{"version": 1, "relays": {"https://relay": {"k": {"seconds": 60, "n": 1}}}}',
    ],
)
def test_a_corrupt_pace_file_is_ignored(tmp_path: Path, content: str) -> None:
    path = pace_path(tmp_path / "board.yaml")
    path.parent.mkdir()
    path.write_text(content)
    assert load_pace(path, "https://relay") == {}
    save_pace(path, "https://relay", {"k": Learned(10.0, 0.0, 1)})  # and replaced by a good one
    assert load_pace(path, "https://relay") == {"k": Learned(10.0, 0.0, 1)}


def test_the_pace_file_is_never_written_through_a_link(tmp_path: Path) -> None:
    precious = tmp_path / "precious.txt"
    precious.write_text("keep me")
    path = pace_path(tmp_path / "board.yaml")
    path.parent.mkdir()
    path.symlink_to(precious)
    assert load_pace(path, "https://relay") == {}
    save_pace(path, "https://relay", {"k": Learned(10.0, 0.0, 1)})
    assert precious.read_text() == "keep me"


def test_a_link_planted_at_the_pace_file_is_left_a_link(tmp_path: Path) -> None:
    precious = tmp_path / "precious.txt"
    precious.write_text("keep me")
    path = pace_path(tmp_path / "board.yaml")
    path.parent.mkdir()
    path.symlink_to(precious)
    save_pace(path, "https://relay", {"k": Learned(10.0, 0.0, 1)})
    # Refused, not replaced: whoever planted it meant something by it (SPEC §5).
    assert path.is_symlink() and precious.read_text() == "keep me"
