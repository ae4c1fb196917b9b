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
:func:`_field` and a one-line description. The class registers itself in
:data:`KINDS`; the README's event table is :func:`markdown_table` (a test keeps
the two equal). Readers that meet a kind they do not know ignore it.
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
    "Downloaded",
    "Event",
    "EventSink",
    "Failed",
    "Interrupted",
    "NotStarted",
    "Progress",
    "Queued",
    "RateLimited",
    "Resumed",
    "Retried",
    "RunFinished",
    "RunStarted",
    "ShotEvent",
    "Skipped",
    "Waiting",
    "markdown_table",
]

#: Every event kind -> its class, in the order the classes are defined.
KINDS: dict[str, type[Event]] = {}

#: The fields every event has; the kind's own fields come after them.
_COMMON = ("shot", "time")


def _field(doc: str = "") -> Any:
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

    shot: str


# --- run-wide -----------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class RunStarted(Event):
    """The run planned its shots and starts."""

    kind: ClassVar[str] = "run-started"
    storyboard: str = _field()
    manifest: str = _field()
    create: int = _field("shots to create")
    resume: int = _field("shots whose task is polled again")
    skip: int = _field("shots up to date")
    concurrency: int = _field()
    rate: int = _field("creates per minute; 0: no limit")


# --- one shot -----------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class Skipped(ShotEvent):
    """The shot is up to date: no request at all."""

    kind: ClassVar[str] = "skipped"
    reason: str = _field()


@dataclass(frozen=True, kw_only=True)
class Queued(ShotEvent):
    """The shot waits for a concurrency slot (every slot holds a running task)."""

    kind: ClassVar[str] = "queued"
    running: int = _field("tasks holding the slots")
    limit: int = _field("`--concurrency`")


@dataclass(frozen=True, kw_only=True)
class Waiting(ShotEvent):
    """The shot's create waits for the rate limit."""

    kind: ClassVar[str] = "waiting"
    reason: Literal["rate-limit"] = _field("`rate-limit`")
    seconds: float = _field("the expected wait")


@dataclass(frozen=True, kw_only=True)
class Created(ShotEvent):
    """A task was created (and its id is on disk)."""

    kind: ClassVar[str] = "created"
    task_id: str = _field()
    attempt: int = _field("tasks created for the shot so far, this one included")


@dataclass(frozen=True, kw_only=True)
class Resumed(ShotEvent):
    """A task of an earlier run is polled again."""

    kind: ClassVar[str] = "resumed"
    task_id: str = _field()


@dataclass(frozen=True, kw_only=True)
class Progress(ShotEvent):
    """The relay reported a new status or progress for the task."""

    kind: ClassVar[str] = "progress"
    task_id: str = _field()
    status: str = _field("`queued`, `in_progress`")
    progress: int | None = _field("0-100, or null: relays' progress is not a measurement")


@dataclass(frozen=True, kw_only=True)
class Retried(ShotEvent):
    """A request failed in a way that is safe to repeat; it is tried again after a delay."""

    kind: ClassVar[str] = "retried"
    what: Literal["create", "query", "download"] = _field("`create`, `query`, `download`")
    attempt: int = _field()
    error: str = _field()
    delay: float = _field("seconds")


@dataclass(frozen=True, kw_only=True)
class RateLimited(ShotEvent):
    """The relay answered a create with 429: every create pauses."""

    kind: ClassVar[str] = "rate-limited"
    retry_after: float = _field("seconds the whole run pauses")


@dataclass(frozen=True, kw_only=True)
class Completed(ShotEvent):
    """The task finished with a video."""

    kind: ClassVar[str] = "completed"
    task_id: str = _field()
    video_url: str = _field()
    seconds: float = _field("since created or resumed")


@dataclass(frozen=True, kw_only=True)
class Failed(ShotEvent):
    """The shot failed in this run (its task, its create, or its download)."""

    kind: ClassVar[str] = "failed"
    task_id: str | None = _field("null when no task is concerned")
    error: str = _field()


@dataclass(frozen=True, kw_only=True)
class NotStarted(ShotEvent):
    """The shot was not created in this run."""

    kind: ClassVar[str] = "not-started"
    reason: str = _field("max-creates reached, quota spent, interrupted, ...")


@dataclass(frozen=True, kw_only=True)
class Downloaded(ShotEvent):
    """The shot's video was saved (``--download``)."""

    kind: ClassVar[str] = "downloaded"
    path: str = _field()
    size: int = _field("bytes")
    sha256: str = _field()


# --- the end of a run --------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class Interrupted(Event):
    """Ctrl-C or SIGTERM: no new tasks; running ones resume on the next run."""

    kind: ClassVar[str] = "interrupted"


@dataclass(frozen=True, kw_only=True)
class RunFinished(Event):
    """The last event of a run."""

    kind: ClassVar[str] = "run-finished"
    completed: int = _field()
    failed: int = _field()
    not_started: int = _field()
    running: int = _field("tasks left running by an interruption")
    skipped: int = _field()
    created: int = _field()
    exit_code: int = _field()


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
