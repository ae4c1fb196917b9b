"""Events: what a run reports as it goes (progress display, ``--json`` lines, tests).

Every event is one flat JSON object with stable field names::

    {"event": "created", "shot": "opening", "time": "2026-11-24T12:00:03Z", "task_id": "task_…"}

=================  ==========================================================
event              extra fields
=================  ==========================================================
``run-started``    storyboard, manifest, create, resume, skip, concurrency, rate
``skipped``        reason ("up to date")
``waiting``        reason ("rate-limit" | "concurrency"), seconds (expected wait, may be null)
``created``        task_id, attempt
``resumed``        task_id
``progress``       task_id, status ("queued" | "in_progress"), progress (0-100 or null)
``retried``        what ("create" | "query" | "download"), attempt, error, delay
``rate-limited``   retry_after (seconds the whole run pauses)
``completed``      task_id, video_url, seconds (since created or resumed)
``failed``         task_id (or null), error
``not-started``    reason (max-creates reached, quota spent, interrupted)
``downloaded``     path, size, sha256
``interrupted``    (none: Ctrl-C or SIGTERM; no new tasks, running ones resume next run)
``run-finished``   completed, failed, not_started, running, skipped, created, exit_code
=================  ==========================================================
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from vidu_pipe.timestamps import utc_now

__all__ = ["Event", "EventSink"]


@dataclass(frozen=True)
class Event:
    """One thing that happened in a run. ``shot`` is None for run-wide events."""

    kind: str
    shot: str | None = None
    data: dict[str, Any] = field(default_factory=dict)
    time: str = field(default_factory=utc_now)

    def to_json(self) -> str:
        return json.dumps(
            {"event": self.kind, "shot": self.shot, "time": self.time, **self.data},
            ensure_ascii=False,
        )


EventSink = Callable[[Event], None]
