"""vidu-pipe: storyboard-as-code for Vidu Q3 video generation.

The library API, typed::

    import vidu_pipe

    board = vidu_pipe.load("pipelines/lighthouse.yaml")    # a Storyboard, or StoryboardError
    problems = vidu_pipe.validate("pipelines/lighthouse.yaml")  # [] when valid
    steps = vidu_pipe.plan(board)                          # what a run would do, no network
    result = vidu_pipe.run(board, simulate=True)           # a RunResult; no key, no network

What is exported (``__all__``): the functions ``load``, ``validate``, ``plan``,
``run``/``arun``, ``status``, ``report``, ``cut``, ``pick``, ``prune``,
``init_project`` and ``load_manifest``; the types they take and return (``Storyboard``,
``Shot``, ``Plan``, ``Step``, ``RunOptions``, ``RunResult``, ``StatusReport``,
``CutResult``, ``Picked``, ``PruneResult``, ``Manifest``, ``ManifestEntry``); the events
a run's ``on_event`` receives (``Event``, ``ShotEvent`` and every kind; the sink's type
is ``vidu_pipe.events.EventSink``, a typing alias); the error tree.
Not exported: the CLI's helpers (``vidu_pipe.api.options_for``, ``manifest_path_for``),
and the simulator (``vidu_pipe.simulator``, a test and demo tool with its own API).

Names are imported on first use, so that ``import vidu_pipe`` (and the
``vidu-pipe validate`` pre-commit hook) stays fast: httpx and anyio load only
when a run does.
"""

from __future__ import annotations

import importlib
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
    from vidu_pipe.api import (
        PruneResult,
        arun,
        cut,
        init_project,
        load,
        pick,
        plan,
        prune,
        report,
        run,
        status,
        validate,
    )
    from vidu_pipe.events import (
        Completed,
        Created,
        Downloaded,
        DownloadFailed,
        Event,
        Failed,
        Held,
        Interrupted,
        NotStarted,
        Progress,
        Queued,
        RateLimited,
        Restored,
        Resumed,
        Retried,
        RunFinished,
        RunStarted,
        ShotEvent,
        Skipped,
        Waiting,
    )
    from vidu_pipe.execution.runner import RunOptions, RunResult
    from vidu_pipe.film.cut import CutError, CutResult
    from vidu_pipe.film.pick import Picked
    from vidu_pipe.manifest.store import Manifest, ManifestEntry, load_manifest
    from vidu_pipe.planner import Plan, Step
    from vidu_pipe.storyboard.model import Shot, Storyboard
    from vidu_pipe.views.status import StatusReport

__all__ = [
    "AmbiguousCreateError",
    "ApiError",
    "AuthError",
    "Completed",
    "ConfigError",
    "Created",
    "CutError",
    "CutResult",
    "DownloadFailed",
    "Downloaded",
    "Event",
    "Failed",
    "Held",
    "Interrupted",
    "Manifest",
    "ManifestEntry",
    "ManifestError",
    "NotStarted",
    "Picked",
    "Plan",
    "Problem",
    "Progress",
    "PruneResult",
    "Queued",
    "QuotaError",
    "RateLimited",
    "Restored",
    "Resumed",
    "Retried",
    "RunFinished",
    "RunOptions",
    "RunResult",
    "RunStarted",
    "Shot",
    "ShotEvent",
    "Skipped",
    "StatusReport",
    "Step",
    "Storyboard",
    "StoryboardError",
    "UsageError",
    "ViduPipeError",
    "Waiting",
    "__version__",
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
]

# name -> the module that defines it; resolved on first attribute access (PEP 562). The
# functions are the api's own objects, never re-wrapped here: a wrapper drifts from them
# (one dropped ``plan``'s ``retry_unknown``).
_LAZY = {
    "arun": "api",
    "cut": "api",
    "init_project": "api",
    "load": "api",
    "pick": "api",
    "plan": "api",
    "prune": "api",
    "report": "api",
    "run": "api",
    "status": "api",
    "validate": "api",
    "PruneResult": "api",
    "load_manifest": "manifest.store",
    "Manifest": "manifest.store",
    "ManifestEntry": "manifest.store",
    "Plan": "planner",
    "Step": "planner",
    "RunOptions": "execution.runner",
    "RunResult": "execution.runner",
    "Shot": "storyboard.model",
    "Storyboard": "storyboard.model",
    "CutError": "film.cut",
    "CutResult": "film.cut",
    "Picked": "film.pick",
    "StatusReport": "views.status",
    "Completed": "events",
    "Created": "events",
    "Downloaded": "events",
    "DownloadFailed": "events",
    "Event": "events",
    "Failed": "events",
    "Held": "events",
    "Interrupted": "events",
    "NotStarted": "events",
    "Progress": "events",
    "Queued": "events",
    "RateLimited": "events",
    "Restored": "events",
    "Resumed": "events",
    "Retried": "events",
    "RunFinished": "events",
    "RunStarted": "events",
    "ShotEvent": "events",
    "Skipped": "events",
    "Waiting": "events",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
