"""The built-in simulator of the Vidu Q3 relay endpoint (SPEC section 1).

It answers like the real relay (``POST /v1/video/generations``, ``GET
/v1/video/generations/{task_id}``, ``GET /v1/videos/{task_id}`` and the finished
videos), checks the key and the request rules, runs tasks through a queue with a
per-account cap on a simulated clock, and injects the faults a client must
survive: failures, 429 with ``Retry-After``, 5xx, slow answers, dropped
connections before and after a task is created, and a quota that runs out. It answers
as one of four kinds of relay (``SimulatorConfig(profile=...)``: ``seed``, ``new-api``,
``new-api-legacy``, ``vidu``).

Two ways in::

    sim = Simulator(SimulatorConfig(time_scale=0.001))
    async with httpx.AsyncClient(transport=sim.transport(), base_url="http://sim") as c:
        ...                                       # in-process, no socket, no key

    with running_server(sim) as base_url:         # a real loopback socket
        ...

``serve(config, host, port)`` backs ``vidu-pipe simulator``.
"""

from __future__ import annotations

from vidu_pipe.simulator._app import FaultRoute, Simulator
from vidu_pipe.simulator._config import (
    DEFAULT_DURATIONS,
    PROFILE_ENV,
    PROFILES,
    Profile,
    SimulatorConfig,
    profile_from_env,
)
from vidu_pipe.simulator._engine import SimulatorStats, TaskTimes
from vidu_pipe.simulator._server import running_server, serve
from vidu_pipe.simulator._transport import DropFlavour, SimulatorTransport
from vidu_pipe.simulator._video import placeholder_mp4, shot_placeholder

__all__ = [
    "DEFAULT_DURATIONS",
    "PROFILES",
    "PROFILE_ENV",
    "DropFlavour",
    "FaultRoute",
    "Profile",
    "Simulator",
    "SimulatorConfig",
    "SimulatorStats",
    "SimulatorTransport",
    "TaskTimes",
    "placeholder_mp4",
    "profile_from_env",
    "running_server",
    "serve",
    "shot_placeholder",
]
