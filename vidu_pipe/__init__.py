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

__version__ = "0.1.0"

# `plan` and `validate` are both submodules and functions of the API. Importing a
# submodule binds its name on the package, so the submodules load first and the
# functions below are bound after them: `vidu_pipe.plan` is the function.
from . import plan as _plan_module  # noqa: F401
from . import validate as _validate_module  # noqa: F401
from .errors import (
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
    from .api import arun, load, run
    from .events import Event
    from .manifest import Manifest, ManifestEntry, load_manifest
    from .plan import Plan, Step
    from .runner import RunOptions, RunResult
    from .storyboard import Shot, Storyboard

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
    "Manifest": "manifest",
    "ManifestEntry": "manifest",
    "load_manifest": "manifest",
    "Plan": "plan",
    "Step": "plan",
    "RunOptions": "runner",
    "RunResult": "runner",
    "Shot": "storyboard",
    "Storyboard": "storyboard",
}


def validate(path: Path | str) -> list[Problem]:
    """Every problem in a storyboard file (an empty list when it is valid); no network."""
    from .api import validate as _validate

    return _validate(path)


def plan(
    storyboard: Storyboard | Path | str,
    *,
    manifest: Path | str | None = None,
    only: Sequence[str] = (),
    tags: Sequence[str] = (),
    force: bool = False,
    simulate: bool = False,
) -> Plan:
    """What a run would do to each selected shot, from the manifest on disk; no network."""
    from .api import plan as _plan

    return _plan(
        storyboard, manifest=manifest, only=only, tags=tags, force=force, simulate=simulate
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
