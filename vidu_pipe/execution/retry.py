"""The one retry mechanism of a run: when a failed request may be sent again, and after how long.

Nothing is retried by default: each kind of request has an explicit predicate, as stamina's
``on=`` is (stamina itself sleeps on the wall clock, and a run's clock is compressed with the
simulator, so the waits are computed here and slept on the run's :class:`Clock`)::

    request   sent again when                                          never when
    --------  -------------------------------------------------------  ------------------------
    create    the relay surely created nothing: the connection was     no answer came (it may
              refused, or it answered 429 or a 5xx with its own error  exist and be billed),
              body (SPEC §5)                                           403, 404/405, 4xx
    query     any transient failure (a query only reads)               4xx other than 408/429
    download  408, 429, 5xx and any transport failure                  other statuses
    probe     a transport failure that may pass (connect error,        any HTTP answer (the
              dropped answer)                                          relay is there)

The probe (``vidu_pipe.api``: is a new relay there before a manifest moves to it?) retries
through :func:`retrying` too, with :data:`PROBE`. The create and query loops of the runner
(``runner._create``, ``runner._wait``) do not call :func:`retrying`: between attempts they
also record write-ahead marks, emit events and watch the task's deadline and the run's
interruption, so they use the same pieces (``policy.wait``, ``policy.more``, the
predicates) step by step instead.

Waits grow exponentially with jitter, capped, with no arithmetic that can overflow however
many attempts are made. A relay's ``Retry-After`` is honoured up to :data:`MAX_RETRY_AFTER`
(a ``Retry-After: 99999`` would stop the run for 28 hours, beyond ``--timeout``); the cap is
said in the retry's note.

A task the relay failed with a reason it calls transient ("generation failed upstream,
please retry") is created again once (:func:`may_recreate`): the relay refunds failed tasks,
so this does not pay twice. A content-review failure is never created again by itself.
"""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Final, TypeVar

from vidu_pipe.errors import AmbiguousCreateError, ApiError, QuotaError
from vidu_pipe.failures import failure_kind

__all__ = [
    "CREATE",
    "DOWNLOAD",
    "MAX_RETRY_AFTER",
    "PROBE",
    "QUERY",
    "RECREATES",
    "RetryPolicy",
    "capped_retry_after",
    "create_may_retry",
    "download_may_retry",
    "may_recreate",
    "probe_may_retry",
    "query_may_retry",
    "retrying",
]

_T = TypeVar("_T")

#: The longest a relay's Retry-After makes a run wait, in seconds.
MAX_RETRY_AFTER: Final = 300.0
#: How many times one shot's task is created again in a run after a transient failure.
RECREATES: Final = 1


@dataclass(frozen=True)
class RetryPolicy:
    """Attempts (None: unbounded, the caller's deadline bounds them) and the backoff."""

    attempts: int | None
    base: float = 1.0
    cap: float = 60.0

    def delay(self, attempt: int, rng: random.Random) -> float:
        """Capped exponential backoff with jitter (half fixed, half random) for ``attempt``
        (1-based). The exponent is bounded first, so no attempt count overflows a float."""
        exponent = min(max(attempt - 1, 0), 32)
        delay = min(self.cap, self.base * 2.0**exponent)
        return delay * (0.5 + 0.5 * rng.random())

    def wait(
        self,
        attempt: int,
        exc: ApiError,
        rng: random.Random,
        *,
        from_wire: Callable[[float], float] = float,
    ) -> tuple[float, str | None]:
        """Seconds (run time) to wait before the next attempt, honouring ``Retry-After``
        (the relay's seconds, turned into run time by ``from_wire``) up to
        :data:`MAX_RETRY_AFTER`; and a note when it was capped."""
        delay = self.delay(attempt, rng)
        hint = capped_retry_after(exc.retry_after)
        if hint is None:
            return delay, None
        note = None
        if exc.retry_after is not None and hint < exc.retry_after:
            note = f"the relay asked to wait {exc.retry_after:g} s; waiting {hint:g} s at most"
        return max(delay, from_wire(hint)), note

    def more(self, attempt: int) -> bool:
        """Whether another attempt may follow attempt number ``attempt``."""
        return self.attempts is None or attempt < self.attempts


CREATE: Final = RetryPolicy(attempts=8)
QUERY: Final = RetryPolicy(attempts=None)
DOWNLOAD: Final = RetryPolicy(attempts=3)
#: The probe of a relay before a manifest moves to it: a few quick tries, on the wall clock
#: (no run, and so no run clock, exists yet); an unreachable relay is said within a second.
PROBE: Final = RetryPolicy(attempts=3, base=0.2, cap=1.0)


def capped_retry_after(seconds: float | None) -> float | None:
    """A relay's ``Retry-After`` in seconds, at most :data:`MAX_RETRY_AFTER`."""
    return None if seconds is None else min(seconds, MAX_RETRY_AFTER)


def create_may_retry(exc: ApiError) -> bool:
    """Whether a failed create may be sent again: only when it surely created nothing.

    The never-pay-twice rule, spelled out: an :class:`AmbiguousCreateError` (no answer, a
    gateway's 5xx, garbage) may have created a billed task; a 403 means quota or a ban; a
    404/405 a wrong base URL; other 4xx a request the relay refuses as it is. Left are 429,
    the relay's own 5xx and a connection that never stood (``retryable`` on the error).
    """
    if isinstance(exc, (AmbiguousCreateError, QuotaError)):
        return False
    if exc.status_code in (403, 404, 405):
        return False
    return exc.retryable


def query_may_retry(exc: ApiError) -> bool:
    """Whether a failed query may be asked again: any transient failure (it only reads)."""
    return exc.retryable or exc.status_code is None


def download_may_retry(exc: ApiError) -> bool:
    """Whether a failed download may be tried again: 408, 429, 5xx, transport failures."""
    return exc.retryable


def probe_may_retry(exc: ApiError) -> bool:
    """Whether a probe that got no HTTP answer may be sent again (a transient failure)."""
    return exc.status_code is None and exc.retryable


def may_recreate(reason: str | None, recreated: int) -> bool:
    """Whether a task that failed for ``reason`` is created again, ``recreated`` times so far."""
    return recreated < RECREATES and failure_kind(reason) == "transient"


async def retrying(
    call: Callable[[], Awaitable[_T]],
    *,
    policy: RetryPolicy,
    may_retry: Callable[[ApiError], bool],
    sleep: Callable[[float], Awaitable[None]],
    rng: random.Random,
    from_wire: Callable[[float], float] = float,
    on_retry: Callable[[int, ApiError, float, str | None], None] = lambda *_: None,
) -> _T:
    """``await call()`` until it succeeds, ``may_retry`` refuses its error, or the policy's
    attempts are spent (then the last error is raised). ``on_retry(attempt, error, delay,
    note)`` is told before each wait; ``sleep`` is the run's clock."""
    attempt = 0
    while True:
        attempt += 1
        try:
            return await call()
        except ApiError as exc:
            if not (may_retry(exc) and policy.more(attempt)):
                raise
            delay, note = policy.wait(attempt, exc, rng, from_wire=from_wire)
            on_retry(attempt, exc, delay, note)
            await sleep(delay)
