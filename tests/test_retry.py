"""The one retry mechanism (execution/retry.py): explicit predicates, bounded waits."""

from __future__ import annotations

import math
import random

import pytest

from vidu_pipe.errors import AmbiguousCreateError, ApiError, QuotaError
from vidu_pipe.execution import retry


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


# fmt: off
CREATE_CASES = [
    (ApiError("429", status_code=429, retryable=True), True),
    (ApiError("relay's own 500", status_code=500, retryable=True), True),
    (ApiError("connection refused", retryable=True), True),
    (AmbiguousCreateError("no answer came"), False),
    (AmbiguousCreateError("gateway 502", status_code=502), False),
    (QuotaError("quota", status_code=403), False),
    (ApiError("wrong base URL", status_code=404, retryable=True), False),
    (ApiError("bad field", status_code=400), False),
    (ApiError("model_not_found", status_code=503), False),
]
# fmt: on


@pytest.mark.parametrize(("exc", "again"), CREATE_CASES)
def test_a_create_is_sent_again_only_when_it_surely_created_nothing(
    exc: ApiError, again: bool
) -> None:
    assert retry.create_may_retry(exc) is again


def test_a_query_is_asked_again_after_any_transient_failure() -> None:
    assert retry.query_may_retry(ApiError("dropped"))  # no status: transport
    assert retry.query_may_retry(ApiError("busy", status_code=503, retryable=True))
    assert not retry.query_may_retry(ApiError("gone", status_code=400, code="task_not_exist"))


def test_backoff_never_overflows_and_stays_capped() -> None:
    rng = random.Random(1)
    for attempt in (1, 2, 10, 1_000, 10**9):
        delay = retry.CREATE.delay(attempt, rng)
        assert math.isfinite(delay) and 0 < delay <= retry.CREATE.cap


def test_a_huge_retry_after_is_capped_and_said() -> None:
    exc = ApiError("429", status_code=429, retryable=True, retry_after=99999.0)
    delay, note = retry.QUERY.wait(1, exc, random.Random(1))
    assert delay == retry.MAX_RETRY_AFTER == 300.0
    assert note is not None and "99999" in note and "300" in note
    small = ApiError("429", status_code=429, retryable=True, retry_after=7.0)
    delay, note = retry.QUERY.wait(1, small, random.Random(1))
    assert delay == 7.0 and note is None
    # The relay's seconds are turned into run time (the simulator compresses it).
    delay, _ = retry.QUERY.wait(1, small, random.Random(1), from_wire=lambda s: s * 100)
    assert delay == 700.0


@pytest.mark.parametrize(
    ("reason", "recreated", "again"),
    [
        ("generation failed upstream, please retry", 0, True),
        ("generation failed upstream, please retry", 1, False),
        ("the input did not pass content review", 0, False),
        ("CreationPolicyViolation", 0, False),
        ("an input image could not be fetched", 0, False),
    ],
)
def test_a_failed_task_is_created_again_once_only_when_the_relay_calls_it_transient(
    reason: str, recreated: int, again: bool
) -> None:
    assert retry.may_recreate(reason, recreated) is again


@pytest.mark.anyio
async def test_retrying_stops_at_success_at_a_refusal_or_when_attempts_are_spent() -> None:
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    calls = 0

    async def flaky() -> str:
        nonlocal calls
        calls += 1
        if calls < 3:
            raise ApiError("busy", status_code=503, retryable=True)
        return "done"

    policy = retry.RetryPolicy(attempts=5, base=1.0, cap=4.0)
    rng = random.Random(2)
    got = await retry.retrying(
        flaky, policy=policy, may_retry=retry.download_may_retry, sleep=sleep, rng=rng
    )
    assert got == "done" and calls == 3 and len(slept) == 2

    async def refused() -> str:
        raise ApiError("forbidden", status_code=403)

    with pytest.raises(ApiError, match="forbidden"):
        await retry.retrying(
            refused, policy=policy, may_retry=retry.download_may_retry, sleep=sleep, rng=rng
        )

    async def always() -> str:
        raise ApiError("busy", status_code=503, retryable=True)

    slept.clear()
    with pytest.raises(ApiError, match="busy"):
        await retry.retrying(
            always, policy=policy, may_retry=retry.download_may_retry, sleep=sleep, rng=rng
        )
    assert len(slept) == 4 and all(s <= 4.0 for s in slept)
