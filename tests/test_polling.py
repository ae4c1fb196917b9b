"""PollSchedule, the polling policy, as a pure object: a task is simulated, no clock runs.

The promise (runner issue): for a task whose progress rises linearly, 10 s to 10 minutes
long, the default ``--poll-interval 5`` spends at most 10 queries and sees completion
within 5% of the task's duration after it happened.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vidu_pipe.execution.polling import PollSchedule

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
    # double up to 30 s; while generating they grow with its age (1.3x per query).
    assert waits[-1] >= min(longest, 0.3 * (now - waits[-1]) - 1e-9, 5.0 * 8)


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
