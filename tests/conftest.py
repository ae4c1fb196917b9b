"""Fixtures shared by several test modules."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from vidu_pipe.simulator import Simulator, SimulatorConfig, running_server
from vidu_pipe.storyboard.schemas import MODELS


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_auto_num_workers(config: pytest.Config) -> int:
    """``-n auto`` (pyproject's addopts) starts two workers per CPU, not one: most of the
    suite's wall time is waiting (simulated tasks, child processes, sockets), not
    computing. ``PYTEST_XDIST_AUTO_NUM_WORKERS`` still decides when set; ``-n 0`` runs
    the suite in one process."""
    chosen = os.environ.get("PYTEST_XDIST_AUTO_NUM_WORKERS", "")
    if chosen.isdigit():
        return int(chosen)
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cpus = os.cpu_count() or 1
    return 2 * cpus


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
