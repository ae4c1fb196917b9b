"""vidu-pipe: storyboard-as-code for Vidu Q3 video generation.

The library API, typed::

    import vidu_pipe

    board = vidu_pipe.load("pipelines/lighthouse.yaml")    # a Storyboard, or StoryboardError
    problems = vidu_pipe.validate("pipelines/lighthouse.yaml")  # [] when valid
    steps = vidu_pipe.plan(board)                          # what a run would do, no network
    result = vidu_pipe.run(board, simulate=True)           # a RunResult; no key, no network

Names are imported on first use, so that ``import vidu_pipe`` (and the
``vidu-pipe validate`` pre-commit hook) stays fast: httpx and anyio load only
when a run does.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vidu_pipe._version import __version__
from vidu_pipe.errors import (
    AmbiguousCreateError,
    ApiError,
    AuthError,
    ConfigError,
    ManifestError,
    Problem,
    QuotaError,
    StoryboardError,
    UsageError,
    ViduPipeError,
)

if TYPE_CHECKING:
    from vidu_pipe.api import arun, load, run
    from vidu_pipe.events import Event
    from vidu_pipe.execution.runner import RunOptions, RunResult
    from vidu_pipe.manifest.store import Manifest, ManifestEntry, load_manifest
    from vidu_pipe.planner import Plan, Step
    from vidu_pipe.storyboard.model import Shot, Storyboard

__all__ = [
    "AmbiguousCreateError",
    "ApiError",
    "AuthError",
    "ConfigError",
    "Event",
    "Manifest",
    "ManifestEntry",
    "ManifestError",
    "Plan",
    "Problem",
    "QuotaError",
    "RunOptions",
    "RunResult",
    "Shot",
    "Step",
    "Storyboard",
    "StoryboardError",
    "UsageError",
    "ViduPipeError",
    "__version__",
    "arun",
    "load",
    "load_manifest",
    "plan",
    "run",
    "validate",
]

# name -> the module that defines it; resolved on first attribute access (PEP 562).
_LAZY = {
    "arun": "api",
    "load": "api",
    "run": "api",
    "Event": "events",
    "Manifest": "manifest.store",
    "ManifestEntry": "manifest.store",
    "load_manifest": "manifest.store",
    "Plan": "planner",
    "Step": "planner",
    "RunOptions": "execution.runner",
    "RunResult": "execution.runner",
    "Shot": "storyboard.model",
    "Storyboard": "storyboard.model",
}


def validate(path: Path | str) -> list[Problem]:
    """Every problem in a storyboard file (an empty list when it is valid); no network."""
    from vidu_pipe.api import validate as _validate

    return _validate(path)


def plan(
    storyboard: Storyboard | Path | str,
    *,
    manifest: Path | str | None = None,
    only: Sequence[str] = (),
    tags: Sequence[str] = (),
    force: bool = False,
    simulate: bool = False,
    cache_dir: Path | str | None = None,
) -> Plan:
    """What a run would do to each selected shot, from the manifest on disk (and the
    results cache, ``.vidu-pipe/`` beside the storyboard unless ``cache_dir``); no network."""
    from vidu_pipe.api import plan as _plan

    return _plan(
        storyboard,
        manifest=manifest,
        only=only,
        tags=tags,
        force=force,
        simulate=simulate,
        cache_dir=cache_dir,
    )


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
