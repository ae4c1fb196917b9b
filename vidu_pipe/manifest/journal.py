"""The journal: one JSON line per state change, appended and ``fsync``-ed, replayed on load.

``PATH.journal`` holds the changes since the manifest at ``PATH`` was last written. A
line is one of::

    {"shot": ID, "entry": {...}}   the shot's whole entry (the first time it is journaled)
    {"shot": ID, "set": {...}}     only the keys that changed (null unsets progress/download)
    {"shot": ID, "drop": true}     the shot has no entry any more (a write-ahead record
                                   taken back: the create surely created nothing)

Why a journal: SPEC §5 wants a created task's id on disk before anything else happens
to that shot, so every state change must be durable at once. Rewriting the whole
manifest for each of ~8,000 changes of a 2,000-shot run would write a quadratic number
of bytes; appending one line and ``fsync``-ing it is cheap.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

from vidu_pipe.fileio import LinkError, refuse_link
from vidu_pipe.manifest.model import (
    ENTRY_KEYS,
    REPAIR_HINT,
    Manifest,
    ManifestEntry,
    describe,
    error,
    parse_json,
)

__all__ = ["DROP", "Change", "Record", "encode", "read_journal", "replay"]

logger = logging.getLogger(__name__)

#: A record's change: a whole entry, only the keys that changed, or :data:`DROP`.
Change = ManifestEntry | dict[str, Any] | None
#: One journal record: (shot id, change).
Record = tuple[str, Change]
#: The change that removes a shot's entry.
DROP: Final = None

_HINT: Final = (
    "the journal holds state changes not yet folded into the manifest; repair the line, "
    "or move the journal aside (changes it holds would be lost)"
)


def encode(shot_id: str, previous: ManifestEntry | None, entry: ManifestEntry | None) -> bytes:
    """The journal line (with its newline) that turns ``previous`` into ``entry``."""
    record: dict[str, Any]
    if entry is None:
        record = {"shot": shot_id, "drop": True}
    elif previous is None:
        record = {"shot": shot_id, "entry": entry.to_json()}
    else:
        # A shot already on record journals only what changed (a progress tick is a few
        # bytes, not the whole request again).
        old, new = previous.to_json(), entry.to_json()
        changes = {k: v for k, v in new.items() if old.get(k, None) != v}
        changes.update({k: None for k in old if k not in new})
        record = {"shot": shot_id, "set": changes}
    line = json.dumps(record, ensure_ascii=False, separators=(",", ":"))
    return (line + "\n").encode("utf-8")


def read_journal(path: Path) -> tuple[list[Record], int]:
    """The records of a journal, and its size in bytes.

    A last line without its newline is a record torn by a crash in mid-write: it is
    ignored when it does not parse. Any complete line that is bad is corruption,
    since a crash cannot produce it.
    """
    try:
        refuse_link(path)
        raw = path.read_bytes()
    except FileNotFoundError:
        return [], 0
    except LinkError as exc:
        raise error(path, f"the journal {exc.strerror}", "remove the link") from exc
    except OSError as exc:
        raise error(path, f"cannot read the journal: {exc.strerror or exc}") from exc
    # Split on b"\n" only: str.splitlines() would also split on U+2028 and friends,
    # which json.dumps(ensure_ascii=False) leaves raw inside strings.
    lines = raw.split(b"\n")
    tail = lines.pop()
    records: list[Record] = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            data = parse_json(line)
        except ValueError as exc:
            raise error(f"{path}:{number}", f"corrupt journal line: {exc}", _HINT) from exc
        records.append(_record(data, f"{path}:{number}"))
    if tail.strip(b"\0 \t\r"):
        try:
            data = parse_json(tail)
        except ValueError:
            logger.info("%s: ignoring a torn last line (%d bytes)", path, len(tail))
        else:
            records.append(_record(data, f"{path}:{len(lines) + 1}"))
    return records, len(raw)


def _record(data: object, where: str) -> Record:
    shapes = ({"shot", "entry"}, {"shot", "set"}, {"shot", "drop"})
    if not isinstance(data, dict) or set(data) not in shapes:
        raise error(
            where, 'a journal line must be {"shot": ..., "entry", "set" or "drop": ...}', _HINT
        )
    shot = data["shot"]
    if not isinstance(shot, str) or not shot:
        raise error(where, f"'shot' must be a non-empty string, got {describe(shot)}", _HINT)
    if "drop" in data:
        if data["drop"] is not True:
            raise error(where, f"shot {shot!r}: 'drop' must be true", _HINT)
        return shot, DROP
    if "set" in data:
        changes = data["set"]
        if not isinstance(changes, dict) or not set(changes) <= set(ENTRY_KEYS):
            raise error(where, f"shot {shot!r}: 'set' must map entry keys to values", _HINT)
        return shot, changes
    try:
        return shot, ManifestEntry.parse(data["entry"])
    except (TypeError, ValueError) as exc:
        raise error(where, f"shot {shot!r}: {exc}", _HINT) from exc


def _apply(previous: ManifestEntry | None, change: Change) -> ManifestEntry | None:
    """One change over the shot's previous entry (``ValueError`` when it cannot apply)."""
    if change is DROP or isinstance(change, ManifestEntry):
        return change
    if previous is None:
        raise ValueError("the journal changes a shot that it never recorded")
    merged = {**previous.to_json(), **change}
    return ManifestEntry.parse(merged)  # a null progress or download: unset


def replay(manifest: Manifest, records: Sequence[Record], where: object = "journal") -> Manifest:
    """The manifest with the journal's records applied in order; the last per shot wins."""
    if not records:
        return manifest
    entries: dict[str, ManifestEntry] = dict(manifest.entries)
    for shot, change in records:
        try:
            entry = _apply(entries.get(shot), change)
        except (TypeError, ValueError) as exc:
            raise error(where, f"shot {shot!r}: {exc}", REPAIR_HINT) from exc
        if entry is None:
            entries.pop(shot, None)
        else:
            entries[shot] = entry
    return dataclasses.replace(manifest, entries=entries)
