"""Fixtures shared by several test modules."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from vidu_pipe.simulator import Simulator, SimulatorConfig, running_server
from vidu_pipe.storyboard.schemas import MODELS


@pytest.fixture
def relay(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[Simulator, str]]:
    """A quick simulated relay over a loopback socket (every model takes 0.2 run-seconds,
    no queue) and its URL; ``VIDU_API_KEY`` set to the module's ``KEY``. A module may set
    ``RELAY_SEED``; test modules that need another relay define their own ``relay``."""
    key = request.module.KEY
    sim = Simulator(
        SimulatorConfig(
            key=key,
            durations={m: (0.2, 0.2) for m in MODELS},
            queue_seconds=(0.0, 0.0),
            max_running=100,
            seed=getattr(request.module, "RELAY_SEED", 0),
        )
    )
    monkeypatch.setenv("VIDU_API_KEY", key)
    with running_server(sim) as url:
        yield sim, url
