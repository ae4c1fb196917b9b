"""The public API: ``vidu_pipe.__all__`` is what it says, and each name is the library's own
object (no re-wrapped function whose signature drifts from the one it calls)."""

from __future__ import annotations

import inspect
import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import vidu_pipe
import vidu_pipe.api
import vidu_pipe.events
import vidu_pipe.execution.runner
import vidu_pipe.film.cut
import vidu_pipe.film.pick
import vidu_pipe.manifest.store
import vidu_pipe.planner
import vidu_pipe.storyboard.model
import vidu_pipe.views.status

REPO = Path(__file__).resolve().parent.parent

FUNCTIONS = {
    "arun",
    "cut",
    "init_project",
    "load",
    "load_manifest",
    "pick",
    "plan",
    "prune",
    "report",
    "run",
    "status",
    "validate",
}
TYPES = {
    "CutResult",
    "Manifest",
    "ManifestEntry",
    "Picked",
    "Plan",
    "PruneResult",
    "RunOptions",
    "RunResult",
    "Shot",
    "StatusReport",
    "Step",
    "Storyboard",
}
ERRORS = {
    "AmbiguousCreateError",
    "ApiError",
    "AuthError",
    "ConfigError",
    "CutError",
    "ManifestError",
    "Problem",  # not an exception: what a StoryboardError carries
    "QuotaError",
    "StoryboardError",
    "UsageError",
    "ViduPipeError",
}
#: What a run's on_event receives: every event class (EventSink, a typing alias without a
#: docstring, stays in vidu_pipe.events).
EVENTS = {
    name
    for name in vidu_pipe.events.__all__
    if isinstance(getattr(vidu_pipe.events, name), type)
    and issubclass(getattr(vidu_pipe.events, name), vidu_pipe.events.Event)
}


def test_exported_members() -> None:
    exported = set(vidu_pipe.__all__)
    assert exported == FUNCTIONS | TYPES | ERRORS | EVENTS | {"__version__"}
    assert len(vidu_pipe.__all__) == len(exported)  # no name twice
    assert vidu_pipe.__all__ == sorted(vidu_pipe.__all__)
    for name in exported:  # every name resolves (the lazy table has it)
        assert getattr(vidu_pipe, name) is not None, name
    assert set(dir(vidu_pipe)) >= exported


def test_every_event_kind_is_exported() -> None:
    for kind, cls in vidu_pipe.events.KINDS.items():
        assert getattr(vidu_pipe, cls.__name__) is cls, kind


@pytest.mark.parametrize(
    ("name", "home"),
    [
        *((name, vidu_pipe.api) for name in sorted(FUNCTIONS - {"load_manifest"})),
        ("load_manifest", vidu_pipe.manifest.store),
        ("PruneResult", vidu_pipe.api),
        ("CutResult", vidu_pipe.film.cut),
        ("CutError", vidu_pipe.film.cut),
        ("Picked", vidu_pipe.film.pick),
        ("StatusReport", vidu_pipe.views.status),
        ("RunResult", vidu_pipe.execution.runner),
        ("RunOptions", vidu_pipe.execution.runner),
        ("Plan", vidu_pipe.planner),
        ("Storyboard", vidu_pipe.storyboard.model),
    ],
)
def test_an_exported_name_is_the_librarys_own_object(name: str, home: object) -> None:
    """Not a wrapper: ``vidu_pipe.plan`` once re-wrapped api.plan and dropped ``retry_unknown``."""
    assert getattr(vidu_pipe, name) is getattr(home, name)


@pytest.mark.parametrize("name", sorted(FUNCTIONS - {"load_manifest"}))
def test_signatures_are_the_apis(name: str) -> None:
    assert inspect.signature(getattr(vidu_pipe, name)) == inspect.signature(
        getattr(vidu_pipe.api, name)
    )


def test_plan_takes_retry_unknown() -> None:
    assert "retry_unknown" in inspect.signature(vidu_pipe.plan).parameters


def test_an_unknown_name_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        vidu_pipe.nope  # noqa: B018


def test_the_readmes_library_example_runs(tmp_path: Path) -> None:
    """The ```python block under **The library.** in the README, run as written (from the
    repository, whose pipelines/ it names), with the manifest and cache kept out of it."""
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("**The library.**") :]
    found = re.search(r"```python\n(.*?)```", section, re.S)
    assert found, "README: no python block under **The library.**"
    code = found.group(1)
    assert "vidu_pipe.plan(" in code and "vidu_pipe.run(" in code
    # A copy of pipelines/ (storyboards, templates), so the run writes nothing in the repo.
    shutil.copytree(
        REPO / "pipelines", tmp_path / "pipelines", ignore=shutil.ignore_patterns("*.json")
    )
    script = textwrap.dedent(code) + "\nassert result.exit_code == 0, result\n"
    done = subprocess.run(
        [sys.executable, "-c", script],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert '"event": "run-finished"' in done.stdout
