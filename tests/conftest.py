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


#: The tests that take longest (4-26 s on a 2-core machine with -n auto), longest first.
#: They are collected first, so that the workers start them at once, instead of one of
#: them starting late and keeping the run going while the other workers sit idle. A
#: renamed test is simply not moved (nothing fails).
LONGEST_FIRST = (
    "test_kill9.py::test_kill_9_during_creates_never_pays_twice_and_retry_unknown_completes",
    "test_runner.py::test_through_the_runner_polling_stays_within_10_queries_and_5_percent",
    "test_exported_members.py::test_the_readmes_library_example_runs",
    "test_run_cli.py::test_only_tag_force_and_max_creates_through_the_cli",
    "test_run_cli.py::test_the_key_never_appears_in_output_manifest_or_journal",
    "test_properties.py::test_no_traceback_on_random_structures",
    "test_progress.py::test_json_lines_on_stdout_and_the_summary_on_stderr",
    "test_integrations.py::test_library_example_runs",
    "test_runner.py::test_the_pace_is_learned_and_kept_beside_the_storyboard",
    "test_properties.py::test_plausible_storyboards_render_exactly_and_validly",
    "test_fuzz_cli.py::test_fuzz_validate",
    "test_run_cli.py::test_download_saves_mp4s_recorded_in_the_manifest_and_refetches_only_what_is_bad",
    "test_kill9.py::test_kill_9_mid_flight_then_a_rerun_pays_for_each_shot_once",
    "test_kill9.py::test_ctrl_c_once_exits_130_with_the_ids_saved_and_the_rerun_resumes",
    "test_fuzz_cli.py::test_fuzz_plan",
    "test_fuzz_cli.py::test_fuzz_run_simulate",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """:data:`LONGEST_FIRST` first, in its order; every other test keeps its place (the
    sort is stable). With ``--maxschedchunk 1`` (pyproject's addopts) xdist hands tests
    out one by one, in this order, to whichever worker is free."""
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.nodeid.removeprefix("tests/"), len(rank)))


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


#: The time scale of ``run --simulate`` (and ``simulate=True``) under :func:`quick_simulate`.
QUICK_SIMULATE_TIME_SCALE = 0.002


@pytest.fixture
def quick_simulate(monkeypatch: pytest.MonkeyPatch) -> None:
    """``run --simulate`` and ``simulate=True`` in this process at 1/500 instead of the
    product's 1/100: the simulated tasks (2-6 simulated minutes) take 0.2-0.7 s, not 1-4 s,
    and the 30-minute task timeout is still 3.6 s away on a loaded machine (1/1000 was
    hardly quicker). For tests about what a simulated run does, not how long it takes; a
    module opts in with ``pytestmark = pytest.mark.usefixtures("quick_simulate")``. The
    product's own scale stays covered by the tests that run ``--simulate`` in a child
    process (test_progress, test_run_cli) and by those that do not opt in."""
    monkeypatch.setattr("vidu_pipe.api.SIMULATE_TIME_SCALE", QUICK_SIMULATE_TIME_SCALE)
