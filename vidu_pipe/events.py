"""Events: what a run reports as it goes (progress display, ``--json`` lines, tests).

Every event is a small frozen value, one class per kind, so that mypy follows each
field from the runner that makes it to every reader. As JSON (``--json``) every
event is one flat object with stable field names: ``event`` (the kind), ``shot``
(null for run-wide events), ``time``, then the kind's own fields in the order
they are declared::

    {"event": "created", "shot": "opening", "time": "2026-11-24T12:00:03Z",
     "task_id": "task_…", "attempt": 1}

Adding a kind is a one-class change: subclass :class:`ShotEvent` (or
:class:`Event` for a run-wide one), set ``kind``, declare its fields with
:func:`described` and a one-line description, and set ``settles`` if the event ends
the shot's part in the run. The class registers itself in :data:`KINDS`; the
README's event table is :func:`markdown_table` (a test keeps the two equal). The
progress display counts a shot that such an event settles and prints a default
log line for it; a dedicated line is a branch in ``vidu_pipe.views.progress``.
Scripts reading ``--json`` ignore kinds they do not know.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

from vidu_pipe.timestamps import utc_now

__all__ = [
    "KINDS",
    "Completed",
    "Created",
    "DownloadFailed",
    "Downloaded",
    "Event",
    "EventSink",
    "Failed",
    "Held",
    "Interrupted",
    "NotStarted",
    "Outcome",
    "Progress",
    "Queued",
    "RateLimited",
    "Restored",
    "Resumed",
    "Retried",
    "RunFinished",
    "RunStarted",
    "ShotEvent",
    "Skipped",
    "Waiting",
    "described",
    "markdown_table",
]

#: Every event kind -> its class, in the order the classes are defined.
KINDS: dict[str, type[Event]] = {}

#: How a shot's part in a run ends (the phases the progress display counts as done).
Outcome = Literal["completed", "failed", "skipped", "not-started", "held"]

#: The fields every event has; the kind's own fields come after them.
_COMMON = ("shot", "time")


def described(doc: str = "") -> Any:
    """A kind's own field, with the one-line description the README's table shows."""
    return field(metadata={"doc": doc})


@dataclass(frozen=True, kw_only=True)
class Event:
    """One thing that happened in a run. ``shot`` is None for run-wide events."""

    #: The event's name in JSON (``"event": ...``) and in the README's table.
    kind: ClassVar[str] = ""

    shot: str | None = None
    time: str = field(default_factory=utc_now)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        kind = cls.__dict__.get("kind")
        if kind:
            if kind in KINDS:
                raise TypeError(f"event kind {kind!r} is defined twice")
            KINDS[kind] = cls

    @property
    def data(self) -> dict[str, Any]:
        """The kind's own fields, by name, in declaration order (what ``to_json`` adds)."""
        return {
            f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name not in _COMMON
        }

    def to_json(self) -> str:
        """One line of ``--json`` output."""
        return json.dumps(
            {"event": self.kind, "shot": self.shot, "time": self.time, **self.data},
            ensure_ascii=False,
        )


@dataclass(frozen=True, kw_only=True)
class ShotEvent(Event):
    """An event about one shot."""

    #: The outcome this event gives the shot in this run, if it ends its part in it.
    settles: ClassVar[Outcome | None] = None

    shot: str


# --- run-wide -----------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class RunStarted(Event):
    """The run planned its shots and starts."""

    kind: ClassVar[str] = "run-started"
    storyboard: str = described()
    manifest: str = described()
    create: int = described("shots to create")
    resume: int = described("shots whose task is polled again")
    skip: int = described("shots up to date")
    # A default: added after the others (callers that build this event keep working).
    restore: int = field(
        default=0, metadata={"doc": "shots that take an earlier result of their request"}
    )
    concurrency: int = described()
    rate: int = described("creates per minute; 0: no limit")


# --- one shot -----------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class Skipped(ShotEvent):
    """The shot is up to date: no request at all."""

    kind: ClassVar[str] = "skipped"
    settles: ClassVar[Outcome | None] = "skipped"
    reason: str = described()


@dataclass(frozen=True, kw_only=True)
class Restored(ShotEvent):
    """The shot's request was completed before and its video can still be had: the run
    records that result instead of creating a task (no request to the relay)."""

    kind: ClassVar[str] = "restored"
    settles: ClassVar[Outcome | None] = "skipped"
    task_id: str | None = described("the earlier task")
    video_url: str | None = described()
    finished_at: str | None = described("when the earlier task finished")
    source: Literal["cache", "url"] = described(
        "`cache`: the cached file; `url`: the URL, younger than 24 hours"
    )


@dataclass(frozen=True, kw_only=True)
class Queued(ShotEvent):
    """The shot waits for a concurrency slot: every one holds a running task."""

    kind: ClassVar[str] = "queued"
    limit: int = described("`--concurrency`: tasks running now")
    ahead: int = described("shots already waiting for a slot")


@dataclass(frozen=True, kw_only=True)
class Waiting(ShotEvent):
    """The shot's create waits for the rate limit."""

    kind: ClassVar[str] = "waiting"
    reason: Literal["rate-limit"] = described("`rate-limit`")
    seconds: float = described("the expected wait")


@dataclass(frozen=True, kw_only=True)
class Created(ShotEvent):
    """A task was created (and its id is on disk)."""

    kind: ClassVar[str] = "created"
    task_id: str = described()
    attempt: int = described("tasks created for the shot so far, this one included")


@dataclass(frozen=True, kw_only=True)
class Resumed(ShotEvent):
    """A task of an earlier run is polled again."""

    kind: ClassVar[str] = "resumed"
    task_id: str = described()


@dataclass(frozen=True, kw_only=True)
class Progress(ShotEvent):
    """The relay reported a new status or progress for the task."""

    kind: ClassVar[str] = "progress"
    task_id: str = described()
    status: str = described("`queued`, `in_progress`")
    progress: int | None = described("0-100, or null: relays' progress is not a measurement")


@dataclass(frozen=True, kw_only=True)
class Retried(ShotEvent):
    """A request failed in a way that is safe to repeat; it is tried again after a delay."""

    kind: ClassVar[str] = "retried"
    what: Literal["create", "query", "download"] = described("`create`, `query`, `download`")
    attempt: int = described()
    error: str = described()
    delay: float = described("seconds")
    # A default: added after the others (callers that build this event keep working).
    task_id: str | None = field(
        default=None,
        metadata={
            "doc": "the task that failed, when the relay called its failure transient and "
            "it is created again once; null when a request failed"
        },
    )


@dataclass(frozen=True, kw_only=True)
class RateLimited(ShotEvent):
    """The relay answered a create with 429: every create pauses."""

    kind: ClassVar[str] = "rate-limited"
    retry_after: float = described("seconds the whole run pauses")


@dataclass(frozen=True, kw_only=True)
class Completed(ShotEvent):
    """The task finished with a video."""

    kind: ClassVar[str] = "completed"
    settles: ClassVar[Outcome | None] = "completed"
    task_id: str = described()
    video_url: str = described()
    seconds: float = described("since created or resumed")


@dataclass(frozen=True, kw_only=True)
class Failed(ShotEvent):
    """The shot failed in this run (its task or its create; a download that fails is
    ``download-failed``, and a create with no answer is ``held``)."""

    kind: ClassVar[str] = "failed"
    settles: ClassVar[Outcome | None] = "failed"
    task_id: str | None = described("null when no task is concerned")
    error: str = described()


@dataclass(frozen=True, kw_only=True)
class Held(ShotEvent):
    """A create of the shot got no answer (in this run or an earlier one): a task may exist
    and be billed. The shot is not failed and not created again unless ``--retry-unknown``
    (the run still exits 1 while such shots remain)."""

    kind: ClassVar[str] = "held"
    settles: ClassVar[Outcome | None] = "held"
    submitted_at: str | None = described("when the create with no answer was sent")
    error: str = described()


@dataclass(frozen=True, kw_only=True)
class NotStarted(ShotEvent):
    """The shot was not created in this run."""

    kind: ClassVar[str] = "not-started"
    settles: ClassVar[Outcome | None] = "not-started"
    reason: str = described("max-creates reached, quota spent, interrupted, ...")


@dataclass(frozen=True, kw_only=True)
class Downloaded(ShotEvent):
    """The shot's video was saved (``--download``)."""

    kind: ClassVar[str] = "downloaded"
    path: str = described()
    size: int = described("bytes")
    sha256: str = described()


@dataclass(frozen=True, kw_only=True)
class DownloadFailed(ShotEvent):
    """The shot's task is done (completed, up to date or restored) but its video could not
    be saved (``--download``): the shot keeps its outcome and the run exits 1."""

    kind: ClassVar[str] = "download-failed"
    path: str = described("where the video was to be saved")
    error: str = described()


# --- the end of a run --------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class Interrupted(Event):
    """Ctrl-C or SIGTERM: no new tasks; running ones resume on the next run."""

    kind: ClassVar[str] = "interrupted"


@dataclass(frozen=True, kw_only=True)
class RunFinished(Event):
    """The last event of a run."""

    kind: ClassVar[str] = "run-finished"
    completed: int = described()
    failed: int = described()
    not_started: int = described()
    running: int = described("tasks left running by an interruption")
    skipped: int = described()
    restored: int = field(default=0, metadata={"doc": ""})
    created: int = described()
    unknown: int = field(
        default=0,
        metadata={"doc": "shots held: a create got no answer, it may be billed; not in failed"},
    )
    broken: int = field(default=0, metadata={"doc": "invalid shots left out by --keep-going"})
    download_failed: int = field(
        default=0, metadata={"doc": "shots done whose video could not be saved"}
    )
    exit_code: int = described("the exit code the process ends with")


EventSink = Callable[[Event], None]


def markdown_table() -> str:
    """The README's event table, from the classes above (one row per kind)."""
    rows = ["| event | fields besides `event`, `shot`, `time` |", "|---|---|"]
    for kind, cls in KINDS.items():
        parts = []
        for f in dataclasses.fields(cls):
            if f.name in _COMMON:
                continue
            doc = f.metadata.get("doc", "")
            parts.append(f"`{f.name}`" + (f" ({doc})" if doc else ""))
        rows.append(f"| `{kind}` | {', '.join(parts) or '—'} |")
    return "\n".join(rows) + "\n"
