"""The simulator's knobs: one frozen dataclass, checked when it is built."""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Literal

from vidu_pipe.errors import ConfigError
from vidu_pipe.storyboard.schemas import MODELS

__all__ = [
    "DEFAULT_DURATIONS",
    "PROFILES",
    "PROFILE_ENV",
    "Profile",
    "SimulatorConfig",
    "profile_from_env",
]

#: The kinds of relay the simulator can answer as (see the README's "The simulator").
Profile = Literal["seed", "new-api", "new-api-legacy", "vidu"]
PROFILES: tuple[Profile, ...] = ("seed", "new-api", "new-api-legacy", "vidu")
#: The environment variable that picks the profile of ``run --simulate``'s simulator.
PROFILE_ENV = "VIDU_PIPE_SIM_PROFILE"


def profile_from_env(env: Mapping[str, str] = os.environ) -> Profile:
    """The profile named by ``VIDU_PIPE_SIM_PROFILE`` (default ``seed``); ConfigError if
    it names none."""
    value = env.get(PROFILE_ENV, "").strip() or "seed"
    for profile in PROFILES:
        if value == profile:
            return profile
    raise ConfigError(
        f"{PROFILE_ENV}={value!r} is no simulator profile; use one of {', '.join(PROFILES)}"
    )


# Seconds a 5-second clip spends generating, low to high. Shaped like the real
# service: Q3 takes about 2-6 minutes, Turbo is faster than Pro, 1080p slower
# than 540p. A longer clip takes a little longer (see SimulatorConfig.durations).
DEFAULT_DURATIONS: Mapping[str, tuple[float, float]] = MappingProxyType(
    {
        "viduq3t-540p": (120.0, 170.0),
        "viduq3t-720p": (135.0, 195.0),
        "viduq3t-1080p": (160.0, 230.0),
        "viduq3p-540p": (150.0, 220.0),
        "viduq3p-720p": (180.0, 260.0),
        "viduq3p-1080p": (220.0, 330.0),
    }
)


def _default_durations() -> Mapping[str, tuple[float, float]]:
    return MappingProxyType(dict(DEFAULT_DURATIONS))


@dataclass(frozen=True)
class SimulatorConfig:
    """Everything the simulated relay can be told; the defaults behave like a healthy relay.

    Times are in *simulated* seconds and pass ``time_scale`` times as fast in real
    time: with ``time_scale=0.001`` a 3-minute task takes 0.18 s. Rates are shares
    from 0 to 1, drawn from ``random.Random`` streams seeded by ``seed``, so one
    seed and one sequence of requests always give the same faults and tasks.

    - ``key``: the bearer key to require; None accepts any or no key.
    - ``profile``: the kind of relay answered as. ``"seed"``: SPEC section 1 (progress that
      rises with the work, ``video_url``). ``"new-api"``: the open-source new-api relay (the
      ``{"code","message","data"}`` wrapper with ``NOT_START``/``SUBMITTED``/``IN_PROGRESS``,
      progress fixed at ``"10%"`` queued and ``"30%"`` for the whole generation,
      ``result_url``, Vidu's own answer under ``data``; an OpenAI video object with
      ``metadata.url`` on ``/v1/videos/{id}``). ``"new-api-legacy"``: its releases before
      2026-02 (Vidu's numeric task ids, no ``result_url``: the success URL sits in
      ``fail_reason``). ``"vidu"``: Vidu's own words (``state``: created, queueing,
      processing, success, failed; no progress; ``creations[0].url``).
    - ``inline_rate``: share of successes whose video comes as a ``data:`` URI (new-api-legacy
      only: in ``fail_reason``), to exercise clients.
    - ``says_generating``: False for a relay that answers "queued" (in its profile's words)
      until a task is done, never "generating" (progress stays 0), to exercise clients.
    - ``fail_rate``: share of tasks that fail; a prompt containing ``fail_marker`` always fails.
    - ``max_running``: tasks of the account generating at once; the rest stay queued.
    - ``rate_limit_per_minute``: creates admitted in any 60 simulated seconds; more get 429.
    - ``retry_after``: the ``Retry-After`` of a 429, in simulated seconds; None means
      "until the rate window admits a create again" (1 s for an injected 429).
    - ``create_error_rate`` / ``query_error_rate``: share answered ``error_status`` (5xx);
      a create answered so created nothing.
    - ``drop_rate``: share of creates and queries whose connection drops before the
      relay sees them (nothing created); ``drop_after_rate``: share whose answer is lost
      after the relay acted (the task exists).
    - ``slow_rate`` / ``slow_seconds``: share of answers delayed, and by how long.
    - ``quota``: creates the account can pay for; then 403 ``insufficient_user_quota``.
    - ``durations``: per model, the (low, high) generation time of a 5-second clip; a clip
      of ``d`` seconds takes ``0.85 + 0.03 * d`` times that.
    - ``queue_seconds``: (low, high) time a task waits as submitted before the account's
      queue sees it.
    - ``video_ttl``: how long a finished video's URL works (about 24 hours); None: forever.
    - ``primary_query_404``: answer 404 on ``GET /v1/video/generations/{id}`` so that a
      client's fallback to ``GET /v1/videos/{id}`` can be tested.
    """

    key: str | None = field(default=None, repr=False)
    time_scale: float = 1.0
    seed: int = 0
    profile: Profile = "seed"
    inline_rate: float = 0.0
    says_generating: bool = True
    fail_rate: float = 0.0
    fail_marker: str = "[[fail]]"
    max_running: int = 5
    rate_limit_per_minute: int | None = None
    retry_after: float | None = None
    create_error_rate: float = 0.0
    query_error_rate: float = 0.0
    error_status: int = 500
    drop_rate: float = 0.0
    drop_after_rate: float = 0.0
    slow_rate: float = 0.0
    slow_seconds: float = 30.0
    quota: int | None = None
    durations: Mapping[str, tuple[float, float]] = field(default_factory=_default_durations)
    queue_seconds: tuple[float, float] = (1.0, 5.0)
    video_ttl: float | None = 86400.0
    primary_query_404: bool = False

    def __post_init__(self) -> None:
        problems: list[str] = []
        if not (math.isfinite(self.time_scale) and self.time_scale > 0):
            problems.append(f"time_scale must be a positive number, not {self.time_scale}")
        if self.profile not in PROFILES:
            problems.append(f"profile must be one of {', '.join(PROFILES)}, not {self.profile!r}")
        for name in (
            "inline_rate",
            "fail_rate",
            "create_error_rate",
            "query_error_rate",
            "drop_rate",
            "drop_after_rate",
            "slow_rate",
        ):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                problems.append(f"{name} must be from 0 to 1, not {value}")
        if self.max_running < 1:
            problems.append(f"max_running must be at least 1, not {self.max_running}")
        if self.rate_limit_per_minute is not None and self.rate_limit_per_minute < 1:
            problems.append(
                f"rate_limit_per_minute must be at least 1 (or None for no limit), "
                f"not {self.rate_limit_per_minute}"
            )
        for name in ("retry_after", "slow_seconds", "video_ttl"):
            value = getattr(self, name)
            if value is not None and not value >= 0:
                problems.append(f"{name} must not be negative, not {value}")
        if not 500 <= self.error_status <= 599:
            problems.append(f"error_status must be a 5xx status, not {self.error_status}")
        if self.quota is not None and self.quota < 0:
            problems.append(f"quota must not be negative, not {self.quota}")
        if not self.fail_marker:
            problems.append("fail_marker must not be empty")
        missing = [m for m in MODELS if m not in self.durations]
        if missing:
            problems.append(f"durations lacks {', '.join(missing)}")
        for name, span in [*self.durations.items(), ("queue_seconds", self.queue_seconds)]:
            low, high = span
            if not 0 <= low <= high:
                problems.append(f"{name}: the range must be 0 <= low <= high, not {span}")
        if problems:
            raise ConfigError("invalid simulator settings: " + "; ".join(problems))
