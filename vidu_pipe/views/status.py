"""Status: the manifest against the storyboard, shot by shot (``vidu-pipe status``).

=====================================  ==========  =====================================
manifest entry                         state       note
=====================================  ==========  =====================================
none, or ``pending``                   pending
``submitted``                          running     "changed" when the storyboard moved on
``completed``, same fingerprint        completed   "URL expired" past its 24-hour life
``completed``, other fingerprint       stale       the next run makes it again
``failed``                             failed      its error
``unknown`` (a create got no answer)   unknown     "a create was sent at T and no answer
                                                   came: it may be billed"
an entry of no shot in the storyboard  orphaned    left by a removed or renamed shot
=====================================  ==========  =====================================

Reading never writes: :func:`compute` takes values, and the CLI prints them as a
table (rich on a terminal, aligned text otherwise) or as JSON (``--json``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Any, Final, Literal

from vidu_pipe.constants import SIMULATOR_BASE_URL, VIDEO_URL_LIFETIME
from vidu_pipe.manifest.store import Manifest, ManifestEntry, unknown_note
from vidu_pipe.storyboard.model import Shot, Storyboard
from vidu_pipe.text import clean_text
from vidu_pipe.timestamps import parse_time

__all__ = [
    "STATES",
    "ShotStatus",
    "State",
    "StatusReport",
    "compute",
    "format_age",
    "print_status",
]

State = Literal["completed", "failed", "unknown", "running", "pending", "stale", "orphaned"]
STATES: Final[tuple[State, ...]] = (
    "completed",
    "failed",
    "unknown",
    "running",
    "pending",
    "stale",
    "orphaned",
)

#: How long the relay's video URLs work after a task finishes (SPEC §1: about 24 hours).


def format_age(seconds: float | None) -> str:
    """``just now``, ``45s``, ``12m``, ``3h``, ``2d``: how long ago, at a glance."""
    if seconds is None:
        return ""
    s = max(0, int(seconds))
    if s < 5:
        return "just now"
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m"
    if s < 86400:
        return f"{s // 3600}h"
    return f"{s // 86400}d"


@dataclass(frozen=True)
class ShotStatus:
    """One row of ``vidu-pipe status``: a shot of the storyboard, or an orphaned entry."""

    id: str
    state: State
    entry: ManifestEntry | None
    shot: Shot | None
    age: float | None
    """Seconds since the entry last changed (finished, else submitted)."""
    url_expired: bool
    changed: bool
    """The entry's fingerprint differs from what the shot renders to now."""
    note: str | None

    @property
    def task_id(self) -> str | None:
        return self.entry.task_id if self.entry is not None else None

    @property
    def error(self) -> str | None:
        return self.entry.error if self.entry is not None else None

    @property
    def video_url(self) -> str | None:
        return self.entry.video_url if self.entry is not None else None

    def to_json(self) -> dict[str, Any]:
        """Stable field names; ``status`` is the manifest's own (null: no entry)."""
        e = self.entry
        return {
            "id": self.id,
            "state": self.state,
            "status": e.status if e is not None else None,
            "task_id": self.task_id,
            "age_seconds": None if self.age is None else int(self.age),
            "error": self.error,
            "note": self.note,
            "model": self.shot.model if self.shot is not None else None,
            "duration": self.shot.duration if self.shot is not None else None,
            "video_url": self.video_url,
            "url_expired": self.url_expired,
            "changed": self.changed,
            "download": e.download.path if e is not None and e.download is not None else None,
            "progress": e.progress if e is not None else None,
            "submitted_at": e.submitted_at if e is not None else None,
            "finished_at": e.finished_at if e is not None else None,
        }


@dataclass(frozen=True)
class StatusReport:
    """Every shot of a storyboard in order, then the manifest's orphaned entries."""

    storyboard: Storyboard
    manifest_path: Path
    manifest: Manifest | None
    simulated: bool
    rows: tuple[ShotStatus, ...]

    def counts(self) -> dict[State, int]:
        """How many rows are in each state (every state present, zeros included)."""
        out: dict[State, int] = dict.fromkeys(STATES, 0)
        for row in self.rows:
            out[row.state] += 1
        return out

    def to_json(self) -> dict[str, Any]:
        """What ``vidu-pipe status --json`` prints."""
        m = self.manifest
        return {
            "storyboard": str(self.storyboard.path),
            "manifest": str(self.manifest_path),
            "manifest_found": m is not None,
            "base_url": m.base_url if m is not None else None,
            "simulated": self.simulated,
            "updated_at": m.updated_at if m is not None else None,
            "counts": self.counts(),
            "shots": [row.to_json() for row in self.rows],
        }


def _state_of(shot: Shot, entry: ManifestEntry | None) -> tuple[State, str | None]:
    if entry is None or entry.status == "pending":
        return "pending", None
    same = entry.fingerprint == shot.fingerprint
    if entry.status == "submitted":
        note = None if same else "changed: the next run abandons this task"
        if entry.progress is not None:
            note = f"{entry.progress}%" + (f"; {note}" if note else "")
        return "running", note
    if entry.status == "failed":
        return "failed", None if same else "changed since it failed"
    if entry.status == "unknown":
        # The entry's error says "a create was sent at T and no answer came: it may be billed"
        # (the runner writes it); a hand-made entry without one gets the same words here.
        note = None if entry.error else unknown_note(entry)
        if not same:
            changed = "changed since it was sent"
            note = changed if note is None else f"{note}; {changed}"
        return "unknown", note
    if not same:
        return "stale", "changed since: the next run makes it again"
    if not entry.video_url:
        return "stale", "completed without a video URL: the next run makes it again"
    return "completed", None


def _row(
    shot_id: str,
    shot: Shot | None,
    entry: ManifestEntry | None,
    now: datetime,
    base: Path,
) -> ShotStatus:
    if shot is None:
        state: State = "orphaned"
        note: str | None = "not in the storyboard"
    else:
        state, note = _state_of(shot, entry)
    age: float | None = None
    expired = False
    if entry is not None:
        when = parse_time(entry.finished_at) or parse_time(entry.submitted_at)
        if when is not None:
            age = (now - when).total_seconds()
        finished = parse_time(entry.finished_at)
        if entry.video_url and finished is not None and now - finished > VIDEO_URL_LIFETIME:
            expired = True
            saved = entry.download is not None and (base / entry.download.path).is_file()
            if state in ("completed", "stale") and not saved:
                extra = "URL expired (no download)"
                note = extra if note is None else f"{note}; {extra}"
    changed = shot is not None and entry is not None and entry.fingerprint != shot.fingerprint
    return ShotStatus(shot_id, state, entry, shot, age, expired, changed, note)


def compute(
    storyboard: Storyboard,
    manifest: Manifest | None,
    manifest_path: Path,
    *,
    now: datetime | None = None,
    simulator_base_url: str | None = None,
) -> StatusReport:
    """Every shot's state, from the storyboard as it renders now and the manifest.

    ``simulator_base_url`` marks a manifest written by the simulator; it defaults
    to :data:`vidu_pipe.constants.SIMULATOR_BASE_URL`.
    """
    if simulator_base_url is None:
        simulator_base_url = SIMULATOR_BASE_URL
    moment = now if now is not None else datetime.now(timezone.utc)
    entries: Mapping[str, ManifestEntry] = manifest.entries if manifest is not None else {}
    base = manifest_path.parent
    rows = [_row(s.id, s, entries.get(s.id), moment, base) for s in storyboard.shots]
    known = set(storyboard.ids)
    rows += [_row(i, None, e, moment, base) for i, e in entries.items() if i not in known]
    simulated = manifest is not None and manifest.base_url == simulator_base_url
    return StatusReport(storyboard, manifest_path, manifest, simulated, tuple(rows))


# --- printing -------------------------------------------------------------------

_COLOURS: Final[dict[str, str]] = {
    "completed": "green",
    "failed": "red",
    "unknown": "bold red",
    "running": "cyan",
    "pending": "dim",
    "stale": "yellow",
    "orphaned": "magenta",
}


def _header(report: StatusReport) -> str:
    m = report.manifest
    if m is None:
        where = f"{report.manifest_path} (none yet: every shot is pending)"
    else:
        where = f"{report.manifest_path}"
        if report.simulated:
            where += " (simulated: written by the built-in simulator)"
        elif m.updated_at:
            where += f", updated {m.updated_at}"
    text = f"{report.storyboard.path}: {len(report.storyboard.shots)} shots; manifest {where}"
    return clean_text(text)


def _footer(report: StatusReport) -> str:
    counts = report.counts()
    return ", ".join(f"{n} {state}" for state, n in counts.items() if n or state == "completed")


def _cells(row: ShotStatus) -> list[str]:
    # The relay's error and our note are two things: never join them into one sentence.
    detail = row.error or ""
    if row.note:
        detail = f"{detail} ({row.note})" if detail else row.note
    # The manifest's text (a relay's error, a task id) may hold escape codes: shown escaped,
    # in the plain table and the rich one alike.
    cells = [row.id, row.state, row.task_id or "", format_age(row.age), detail]
    return [clean_text(cell) for cell in cells]


def format_plain(report: StatusReport) -> str:
    """The table as aligned plain text (no colour), header and footer included."""
    head = ["SHOT", "STATE", "TASK", "AGE", "ERROR / NOTE"]
    body = [_cells(row) for row in report.rows]
    widths = [max(len(r[i]) for r in [head, *body]) for i in range(4)]
    lines = [_header(report), ""]
    for cells in [head, *body]:
        parts = [cells[i].ljust(widths[i]) for i in range(4)]
        lines.append("  ".join([*parts, cells[4]]).rstrip())
    lines += ["", _footer(report)]
    return "\n".join(lines) + "\n"


def print_status(report: StatusReport, stream: IO[str], *, terminal: bool | None = None) -> None:
    """Print the table: a rich table when ``stream`` is a terminal, else plain text.

    ``NO_COLOR`` is honoured by rich; ``terminal`` overrides the detection (tests).
    """
    if terminal is None:
        try:
            terminal = stream.isatty()
        except (AttributeError, ValueError):
            terminal = False
    if not terminal:
        stream.write(format_plain(report))
        return
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    console = Console(file=stream, highlight=False, force_terminal=True)
    if os.environ.get("NO_COLOR"):
        console.no_color = True
    console.print(_header(report), style="bold", soft_wrap=True)
    table = Table(box=None, header_style="bold", pad_edge=False)
    for name in ("shot", "state", "task", "age"):
        table.add_column(name, no_wrap=True)
    table.add_column("error / note", overflow="fold")
    for row in report.rows:
        cells = _cells(row)
        colour = _COLOURS[row.state]
        table.add_row(
            Text(cells[0], style="bold"),
            Text(cells[1], style=colour),
            Text(cells[2], style="dim"),
            cells[3],
            Text(cells[4], style="red" if row.error else "dim"),
        )
    console.print(table)
    console.print(_footer(report))
