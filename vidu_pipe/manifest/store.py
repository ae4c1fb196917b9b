"""The manifest: the run's source of truth, and the one object that writes it.

Three files live side by side (``PATH`` is the manifest, by default
``beach-teaser.manifest.json``)::

    PATH           the manifest: pretty JSON, shots in storyboard order (SPEC §4)
    PATH.journal   one JSON line per state change since PATH was last written (a whole
                   entry the first time a shot is journaled, then only what changed)
    PATH.lock      who holds the run: pid, host, start time (flock'ed while held)

Why a journal: SPEC §5 wants a created task's id on disk before anything else
happens to that shot, so every state change must be durable at once. Rewriting
the whole manifest for each of ~8,000 changes of a 2,000-shot run would write a
quadratic number of bytes; appending one line and ``fsync``-ing it is cheap. The
journal is folded into the manifest (a *compaction*: write a temporary file,
``fsync``, ``os.replace``) once it outgrows the manifest, so the total bytes
written stay linear in the number of changes.

Readers (``plan``, ``status``, ``report``) call :func:`load_manifest`, which
replays the journal over the manifest without taking the lock. A run owns the
files through :class:`ManifestStore`, the only mutable object of a run.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import json
import logging
import math
import os
import socket
import stat
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType, TracebackType
from typing import Any, ClassVar, Final, Literal

from vidu_pipe.errors import ConfigError, ManifestError
from vidu_pipe.timestamps import utc_now

__all__ = [
    "MANIFEST_VERSION",
    "STATUSES",
    "Download",
    "Manifest",
    "ManifestEntry",
    "ManifestStore",
    "Status",
    "StoreStatistics",
    "check_owner",
    "journal_path",
    "load_manifest",
    "lock_path",
]

logger = logging.getLogger(__name__)

MANIFEST_VERSION: Final = 1

Status = Literal["pending", "submitted", "completed", "failed"]
STATUSES: Final[tuple[Status, ...]] = ("pending", "submitted", "completed", "failed")

_REPAIR_HINT = (
    "the manifest records tasks already paid for: repair it by hand, or move it aside and "
    "rerun (the tasks it lists would then be created again)"
)

# Keys that would only ever hold a credential. The store never sees the API key, but a
# request body that somehow carried headers must not reach a file under version control.
_SECRET_KEYS: Final = frozenset(
    {
        "authorization",
        "headers",
        "apikey",
        "xapikey",
        "key",
        "token",
        "accesstoken",
        "secret",
        "password",
        "bearer",
    }
)


def journal_path(path: str | os.PathLike[str]) -> Path:
    """Where the journal of the manifest at ``path`` lives: ``PATH.journal``."""
    path = Path(path)
    return path.with_name(path.name + ".journal")


def lock_path(path: str | os.PathLike[str]) -> Path:
    """Where the lock file of the manifest at ``path`` lives: ``PATH.lock``."""
    path = Path(path)
    return path.with_name(path.name + ".lock")


def _error(where: object, what: str, hint: str | None = None) -> ManifestError:
    message = f"{where}: {what}"
    if hint:
        message += f"\n    hint: {hint}"
    return ManifestError(message)


def _describe(value: object) -> str:
    text = repr(value)
    if len(text) > 40:
        text = text[:37] + "..."
    return f"{text} ({type(value).__name__})"


def _json_value(value: object, where: str) -> Any:
    """A deep, plain-JSON copy of ``value``; refuses what JSON cannot hold and credentials.

    Messages name the offending place, never a value that might be secret.
    """
    if value is None or isinstance(value, (str, bool, int)):
        # Values are not judged: a prompt may well begin "Bearer of good news"; the request
        # is built from a whitelist of fields and never holds the key.
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"{where} is {value!r}, which JSON cannot hold")
        return value
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise TypeError(f"{where} has a key {key!r} that is not a string")
            if key.lower().replace("-", "").replace("_", "") in _SECRET_KEYS:
                raise ValueError(
                    f"{where}.{key} looks like a credential; the manifest never stores one"
                )
            out[key] = _json_value(item, f"{where}.{key}")
        return out
    if isinstance(value, (list, tuple)):
        return [_json_value(item, f"{where}.{i}") for i, item in enumerate(value)]
    raise TypeError(f"{where} holds a {type(value).__name__}, which JSON cannot hold")


def _check_optional_str(name: str, value: object) -> None:
    if value is not None and not isinstance(value, str):
        raise TypeError(f"'{name}' must be a string or null, got {_describe(value)}")


def _is_int(value: object) -> bool:
    # bool is an int subclass; `"attempts": true` is not a count.
    return isinstance(value, int) and not isinstance(value, bool)


@dataclass(frozen=True)
class Download:
    """Where ``--download`` saved a shot's video, and what it saved."""

    path: str
    size: int
    sha256: str

    def __post_init__(self) -> None:
        if not isinstance(self.path, str):
            raise TypeError(f"'download.path' must be a string, got {_describe(self.path)}")
        if not _is_int(self.size) or self.size < 0:
            raise TypeError(f"'download.size' must be an integer >= 0, got {_describe(self.size)}")
        if not isinstance(self.sha256, str):
            raise TypeError(f"'download.sha256' must be a string, got {_describe(self.sha256)}")

    def to_json(self) -> dict[str, Any]:
        """``{"path", "size", "sha256"}``."""
        return {"path": self.path, "size": self.size, "sha256": self.sha256}

    @classmethod
    def from_json(cls, data: object) -> Download:
        """Read a ``download`` object; raises ``ValueError``/``TypeError`` naming the key."""
        if not isinstance(data, dict):
            raise TypeError(f"'download' must be an object or null, got {_describe(data)}")
        keys = ("path", "size", "sha256")
        for key in data:
            if key not in keys:
                raise ValueError(f"'download' has an unknown key {key!r}")
        for key in keys:
            if key not in data:
                raise ValueError(f"'download' lacks the key {key!r}")
        return cls(path=data["path"], size=data["size"], sha256=data["sha256"])


# The order of an entry's keys in the file (SPEC §4); progress and download follow,
# and only when set, so that a finished entry keeps the SPEC's shape.
_ENTRY_KEYS: Final = (
    "status",
    "fingerprint",
    "request",
    "task_id",
    "video_url",
    "attempts",
    "error",
    "submitted_at",
    "finished_at",
    "progress",
    "download",
)
_REQUIRED_ENTRY_KEYS: Final = ("status", "fingerprint")


@dataclass(frozen=True)
class ManifestEntry:
    """What the manifest knows about one shot.

    ``request`` is the exact body sent (or to be sent); it is copied on construction
    and exposed read-only. Use :meth:`replace` to derive the next state.
    Construction checks every type and raises ``TypeError``/``ValueError``.
    """

    status: Status
    fingerprint: str
    request: Mapping[str, Any] = field(default_factory=dict)
    task_id: str | None = None
    video_url: str | None = None
    attempts: int = 0
    error: str | None = None
    submitted_at: str | None = None
    finished_at: str | None = None
    progress: int | None = None
    download: Download | None = None

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(
                f"'status' must be one of {', '.join(STATUSES)}, got {_describe(self.status)}"
            )
        if not isinstance(self.fingerprint, str):
            raise TypeError(f"'fingerprint' must be a string, got {_describe(self.fingerprint)}")
        if not isinstance(self.request, Mapping):
            raise TypeError(f"'request' must be an object, got {_describe(self.request)}")
        # A private copy: a caller mutating its dict later cannot change what was recorded.
        object.__setattr__(self, "request", MappingProxyType(_json_value(self.request, "request")))
        for name in ("task_id", "video_url", "error", "submitted_at", "finished_at"):
            _check_optional_str(name, getattr(self, name))
        if not _is_int(self.attempts) or self.attempts < 0:
            raise TypeError(f"'attempts' must be an integer >= 0, got {_describe(self.attempts)}")
        if self.progress is not None and (
            not _is_int(self.progress) or not 0 <= self.progress <= 100
        ):
            raise TypeError(
                f"'progress' must be an integer 0-100 or null, got {_describe(self.progress)}"
            )
        if self.download is not None and not isinstance(self.download, Download):
            raise TypeError(
                f"'download' must be a Download or None, got {_describe(self.download)}"
            )

    def replace(self, **changes: Any) -> ManifestEntry:
        """A copy with ``changes`` applied (``dataclasses.replace``), checked again."""
        return dataclasses.replace(self, **changes)

    def to_json(self) -> dict[str, Any]:
        """The entry as plain JSON, keys in the SPEC's order."""
        out: dict[str, Any] = {
            "status": self.status,
            "fingerprint": self.fingerprint,
            "request": _json_value(self.request, "request"),
            "task_id": self.task_id,
            "video_url": self.video_url,
            "attempts": self.attempts,
            "error": self.error,
            "submitted_at": self.submitted_at,
            "finished_at": self.finished_at,
        }
        if self.progress is not None:
            out["progress"] = self.progress
        if self.download is not None:
            out["download"] = self.download.to_json()
        return out

    @classmethod
    def from_json(cls, data: object, *, shot: str | None = None) -> ManifestEntry:
        """Read an entry: missing optional keys take their defaults; present keys must
        have the right type. A bad entry raises :class:`ManifestError` naming ``shot``."""
        try:
            return cls._parse(data)
        except (TypeError, ValueError) as exc:
            who = f"shot {shot!r}" if shot is not None else "manifest entry"
            raise ManifestError(f"{who}: {exc}") from exc

    @classmethod
    def _parse(cls, data: object) -> ManifestEntry:
        if not isinstance(data, dict):
            raise TypeError(f"an entry must be a JSON object, got {_describe(data)}")
        for key in data:
            if key not in _ENTRY_KEYS:
                raise ValueError(f"unknown key {key!r}")
        for key in _REQUIRED_ENTRY_KEYS:
            if key not in data:
                raise ValueError(f"missing key {key!r}")
        fields = dict(data)
        raw_download = fields.pop("download", None)
        download = None if raw_download is None else Download.from_json(raw_download)
        return cls(**fields, download=download)


def _ordered(entries: Mapping[str, ManifestEntry], order: Sequence[str]) -> list[str]:
    """Shot ids in ``order`` first, then the others in their present order."""
    listed = dict.fromkeys(order)
    return [s for s in listed if s in entries] + [s for s in entries if s not in listed]


@dataclass(frozen=True)
class Manifest:
    """A manifest as a value: what one reading of the files said.

    ``entries`` is read-only and keeps the file's order.
    """

    storyboard: str
    base_url: str
    updated_at: str | None = None
    entries: Mapping[str, ManifestEntry] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "entries", MappingProxyType(dict(self.entries)))

    def get(self, shot_id: str) -> ManifestEntry | None:
        """The entry of ``shot_id``, or None."""
        return self.entries.get(shot_id)

    def to_json(self, order: Sequence[str] = ()) -> dict[str, Any]:
        """The whole manifest as plain JSON; ``shots`` in ``order``, then the rest."""
        return {
            "manifest_version": MANIFEST_VERSION,
            "storyboard": self.storyboard,
            "base_url": self.base_url,
            "updated_at": self.updated_at,
            "shots": {s: self.entries[s].to_json() for s in _ordered(self.entries, order)},
        }

    def dumps(self, order: Sequence[str] = ()) -> str:
        """The canonical text of the file: indent 2, UTF-8 as is, a final newline.

        Every entry spans its own block of lines, so changing one shot changes only
        that shot's lines (and ``updated_at``) in a diff.
        """
        return json.dumps(self.to_json(order), indent=2, ensure_ascii=False) + "\n"

    @classmethod
    def from_json(cls, data: object, *, source: object = "manifest") -> Manifest:
        """Read a parsed manifest; anything not of our shape raises :class:`ManifestError`
        naming ``source``."""
        if not isinstance(data, dict):
            raise _error(
                source,
                f"not a manifest: expected a JSON object, got {_describe(data)}",
                "use --manifest to pick another path, or move this file aside",
            )
        version = data.get("manifest_version")
        if version != MANIFEST_VERSION or not _is_int(version):
            raise _error(
                source,
                f"manifest_version is {_describe(version)}; this vidu-pipe reads version "
                f"{MANIFEST_VERSION}",
                "written by another vidu-pipe version? upgrade it, or use --manifest to pick "
                "another path",
            )
        known = ("manifest_version", "storyboard", "base_url", "updated_at", "shots")
        for key in data:
            if key not in known:
                raise _error(source, f"unknown top-level key {key!r}", _REPAIR_HINT)
        for key in ("storyboard", "base_url"):
            if not isinstance(data.get(key), str):
                raise _error(
                    source,
                    f"{key!r} must be a string, got {_describe(data.get(key))}",
                    _REPAIR_HINT,
                )
        updated_at = data.get("updated_at")
        if updated_at is not None and not isinstance(updated_at, str):
            raise _error(
                source, f"'updated_at' must be a string, got {_describe(updated_at)}", _REPAIR_HINT
            )
        shots = data.get("shots", {})
        if not isinstance(shots, dict):
            raise _error(source, f"'shots' must be an object, got {_describe(shots)}", _REPAIR_HINT)
        entries: dict[str, ManifestEntry] = {}
        for shot_id, raw in shots.items():
            try:
                entries[shot_id] = ManifestEntry._parse(raw)
            except (TypeError, ValueError) as exc:
                raise _error(source, f"shot {shot_id!r}: {exc}", _REPAIR_HINT) from exc
        return cls(
            storyboard=data["storyboard"],
            base_url=data["base_url"],
            updated_at=updated_at,
            entries=entries,
        )


def _read_manifest_file(path: Path) -> Manifest | None:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise _error(path, f"cannot read the manifest: {exc.strerror or exc}") from exc
    try:
        data = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise _error(
            path, f"not UTF-8 text ({exc.reason} at byte {exc.start})", _REPAIR_HINT
        ) from exc
    except json.JSONDecodeError as exc:
        raise _error(
            path, f"not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}", _REPAIR_HINT
        ) from exc
    return Manifest.from_json(data, source=path)


#: One journal record: a whole entry, or (for a shot the journal or manifest already
#: holds) only the keys that changed, ``{"shot": ..., "set": {...}}``.
_Record = tuple[str, "ManifestEntry | dict[str, Any]"]


def _read_journal(path: Path) -> tuple[list[_Record], int]:
    """The records of a journal, and its size in bytes.

    A last line without its newline is a record torn by a crash in mid-write: it is
    ignored when it does not parse. Any complete line that is bad is corruption,
    since a crash cannot produce it.
    """
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return [], 0
    except OSError as exc:
        raise _error(path, f"cannot read the journal: {exc.strerror or exc}") from exc
    # Split on b"\n" only: str.splitlines() would also split on U+2028 and friends,
    # which json.dumps(ensure_ascii=False) leaves raw inside strings.
    lines = raw.split(b"\n")
    tail = lines.pop()
    hint = (
        "the journal holds state changes not yet folded into the manifest; repair the line, "
        "or move the journal aside (changes it holds would be lost)"
    )
    records: list[_Record] = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            data = json.loads(line.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise _error(f"{path}:{number}", f"corrupt journal line: {exc}", hint) from exc
        records.append(_journal_record(data, f"{path}:{number}", hint))
    if tail.strip(b"\0 \t\r"):
        try:
            data = json.loads(tail.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError):
            logger.info("%s: ignoring a torn last line (%d bytes)", path, len(tail))
        else:
            records.append(_journal_record(data, f"{path}:{len(lines) + 1}", hint))
    return records, len(raw)


def _journal_record(data: object, where: str, hint: str) -> _Record:
    if not isinstance(data, dict) or set(data) not in ({"shot", "entry"}, {"shot", "set"}):
        raise _error(where, 'a journal line must be {"shot": ..., "entry" or "set": {...}}', hint)
    shot = data["shot"]
    if not isinstance(shot, str) or not shot:
        raise _error(where, f"'shot' must be a non-empty string, got {_describe(shot)}", hint)
    if "set" in data:
        changes = data["set"]
        if not isinstance(changes, dict) or not set(changes) <= set(_ENTRY_KEYS):
            raise _error(where, f"shot {shot!r}: 'set' must map entry keys to values", hint)
        return shot, changes
    try:
        return shot, ManifestEntry._parse(data["entry"])
    except (TypeError, ValueError) as exc:
        raise _error(where, f"shot {shot!r}: {exc}", hint) from exc


def _apply(previous: ManifestEntry | None, record: ManifestEntry | dict[str, Any]) -> ManifestEntry:
    """One record over the shot's previous entry (``ValueError`` when it cannot apply)."""
    if isinstance(record, ManifestEntry):
        return record
    if previous is None:
        raise ValueError("the journal changes a shot that it never recorded")
    merged = {**previous.to_json(), **record}
    return ManifestEntry._parse(merged)  # a null progress or download: unset


def _replay(manifest: Manifest, records: Sequence[_Record], where: object = "journal") -> Manifest:
    """The manifest with the journal's records applied in order; the last per shot wins."""
    if not records:
        return manifest
    entries = dict(manifest.entries)
    for shot, record in records:
        try:
            entries[shot] = _apply(entries.get(shot), record)
        except (TypeError, ValueError) as exc:
            raise _error(where, f"shot {shot!r}: {exc}", _REPAIR_HINT) from exc
    return dataclasses.replace(manifest, entries=entries)


def _stat_key(path: Path) -> tuple[int, int, int] | None:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return (st.st_ino, st.st_mtime_ns, st.st_size)


def _load(path: Path) -> tuple[Manifest | None, int]:
    """Manifest plus journal, consistent with each other, and the number of records replayed."""
    journal = journal_path(path)
    # A running store may compact between our reading the manifest and the journal; the
    # old manifest with the truncated journal would then miss changes. os.replace gives
    # the new manifest a new inode, so reading again until it held still is enough.
    for _ in range(20):
        before = _stat_key(path)
        manifest = _read_manifest_file(path)
        records, _ = _read_journal(journal)
        if _stat_key(path) == before:
            break
        time.sleep(0.01)
    else:
        raise _error(path, "the manifest kept changing while being read; try again")
    if manifest is None:
        if records:
            raise _error(
                journal,
                f"a journal of {len(records)} state change(s) without its manifest {path.name}",
                "restore the manifest, or move the journal aside (the task ids it holds "
                "would be forgotten and their shots created again)",
            )
        return None, 0
    return _replay(manifest, records, journal), len(records)


def check_owner(manifest: Manifest, storyboard: str, path: Path) -> None:
    """Raise :class:`ManifestError` when ``manifest`` belongs to another storyboard."""
    if manifest.storyboard != storyboard:
        raise _error(
            path,
            f"this manifest belongs to storyboard {manifest.storyboard!r}, not {storyboard!r}",
            "use --manifest to pick another path",
        )


def load_manifest(path: str | os.PathLike[str]) -> Manifest | None:
    """Read the manifest at ``path`` with its journal replayed, without taking the lock.

    Returns None when there is no manifest. Raises :class:`ManifestError` when the
    manifest or journal is corrupt or not ours; nothing is ever written here.
    """
    return _load(Path(path))[0]


@dataclass(frozen=True)
class StoreStatistics:
    """What a :class:`ManifestStore` has written so far."""

    bytes_written: int
    """Journal lines plus whole manifests written, in bytes."""
    compactions: int
    """Times the manifest was rewritten."""
    journal_records: int
    """State changes appended to the journal."""
    journal_bytes: int
    """Current size of the journal."""
    syncs: int
    """``fsync`` calls on the journal."""


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def _fsync_dir(folder: Path) -> None:
    # A rename or a new file is durable only once its folder's entry is.
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class _Lock:
    """An exclusive ``flock`` on ``PATH.lock``, which names its holder."""

    def __init__(self, path: Path, fd: int) -> None:
        self.path = path
        self._fd = fd

    @classmethod
    def acquire(cls, path: Path, manifest: Path) -> _Lock:
        while True:
            try:
                fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
            except OSError as exc:
                raise _error(
                    manifest,
                    f"cannot create the lock file {path.name}: {exc.strerror or exc}",
                    "check that the manifest's folder exists and is writable",
                ) from exc
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = cls._holder(fd)
                os.close(fd)
                raise ConfigError(
                    f"{manifest}: in use by another run ({holder})\n"
                    "    hint: wait for it to finish, or stop it; a run that dies releases "
                    "the lock by itself"
                ) from None
            except OSError as exc:
                os.close(fd)
                raise _error(manifest, f"cannot lock {path.name}: {exc.strerror or exc}") from exc
            # The previous holder unlinks the file on release; if it did so between our
            # open and our flock, we hold a lock on a deleted file while a third run may
            # create and lock a fresh one. Only the file still at `path` counts.
            try:
                current = os.stat(path)
            except FileNotFoundError:
                os.close(fd)
                continue
            mine = os.fstat(fd)
            if (current.st_dev, current.st_ino) != (mine.st_dev, mine.st_ino):
                os.close(fd)
                continue
            # Whatever was written here before is a stale holder's; the flock is ours.
            info = {"pid": os.getpid(), "host": socket.gethostname(), "started_at": utc_now()}
            os.ftruncate(fd, 0)
            os.pwrite(fd, (json.dumps(info) + "\n").encode(), 0)
            return cls(path, fd)

    @staticmethod
    def _holder(fd: int) -> str:
        # The holder writes its details just after taking the lock; give it a moment.
        for _ in range(10):
            try:
                info = json.loads(os.pread(fd, 4096, 0).decode("utf-8"))
                return f"pid {info['pid']} on {info['host']}, started {info['started_at']}"
            except (ValueError, KeyError, TypeError, OSError):
                time.sleep(0.01)
        return "a process that has not said who it is"

    def release(self) -> None:
        # Unlink while still holding the flock, so nobody takes over a doomed file
        # unnoticed (see the inode check in acquire).
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass
        finally:
            os.close(self._fd)


class ManifestStore:
    """The one writer of a manifest during a run. Use :meth:`open`, ideally as a context
    manager; :meth:`close` folds everything into the manifest and releases the lock.

    Durability rule (SPEC §5): :meth:`set` with ``durable=True`` returns only once the
    change is on disk (journal line written and ``fsync``-ed). The runner records a
    shot's task id this way before that shot's next request, so even ``kill -9`` right
    after leaves the id to resume from.

    Calls are serialized by an internal lock, so worker threads may share a store.
    """

    min_journal_bytes: ClassVar[int] = 64 * 1024
    """The journal is compacted once it outgrows max(this, the last manifest written)."""

    def __init__(
        self,
        path: Path,
        lock: _Lock,
        *,
        storyboard: str,
        base_url: str,
        order: Sequence[str],
        entries: Mapping[str, ManifestEntry],
    ) -> None:
        """Internal: use :meth:`ManifestStore.open`."""
        self.path = path
        self.storyboard = storyboard
        self.base_url = base_url
        self.order: tuple[str, ...] = tuple(order)
        self.previous_base_url: str | None = None
        """The manifest's base URL when it differed from this run's (then replaced)."""
        self.recovered_records = 0
        """Journal records of an earlier, unfinished run replayed on open."""
        self._journal = journal_path(path)
        self._lock = lock
        self._entries: dict[str, ManifestEntry] = dict(entries)
        self._mutex = threading.Lock()
        self._journal_fd: int | None = None
        self._journal_size = 0
        self._manifest_size = 0
        self._compact_at = 0
        self._changes_since_compaction = 0
        self._bytes_written = 0
        self._compactions = 0
        self._journal_records = 0
        self._syncs = 0
        self._closed = False
        self._remove_if_empty = False

    @classmethod
    def open(
        cls,
        path: str | os.PathLike[str],
        *,
        storyboard: str,
        base_url: str,
        order: Sequence[str],
        adopt: bool = False,
        keep_empty: bool = True,
    ) -> ManifestStore:
        """Lock the manifest at ``path``, load it with its journal, and get ready to write.

        Raises :class:`ConfigError` at once when another run holds the manifest (naming
        its pid, host and start time), and :class:`ManifestError` when the manifest is
        corrupt or belongs to another ``storyboard`` — unless ``adopt`` (the manifest
        sits where this storyboard's own manifest goes: both were renamed together),
        which records the new name. With ``keep_empty=False`` a manifest that this open
        created is removed again on close if nothing was recorded in it (a run that a
        refused key stopped leaves nothing behind). A different ``base_url`` is taken (noted in
        :attr:`previous_base_url`). ``order`` (the storyboard's shot ids) orders
        ``shots`` in the file; entries of shots not in it follow, kept.
        """
        path = Path(path)
        if isinstance(order, str):
            raise TypeError("order must be a sequence of shot ids, not a string")
        lock = _Lock.acquire(lock_path(path), path)
        try:
            existing, recovered = _load(path)
            if existing is not None and not adopt:
                check_owner(existing, storyboard, path)
            store = cls(
                path,
                lock,
                storyboard=storyboard,
                base_url=base_url,
                order=order,
                entries=existing.entries if existing is not None else {},
            )
            store.recovered_records = recovered
            store._remove_if_empty = existing is None and not keep_empty
            store._start(existing)
        except BaseException:
            lock.release()
            raise
        return store

    def _start(self, existing: Manifest | None) -> None:
        created = not self._journal.exists()
        try:
            self._journal_fd = os.open(self._journal, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            self._journal_size = os.fstat(self._journal_fd).st_size
        except OSError as exc:
            raise _error(self._journal, f"cannot open the journal: {exc.strerror or exc}") from exc
        if existing is not None:
            self._manifest_size = os.stat(self.path).st_size
            if existing.base_url != self.base_url:
                self.previous_base_url = existing.base_url
                logger.warning(
                    "%s: base URL was %s, now %s", self.path, existing.base_url, self.base_url
                )
        try:
            # Write at once when there is no manifest yet (so the journal never exists
            # without one), when a crashed run left a journal (folding it in also drops
            # a torn last line before we append after it), or when the base URL moved.
            renamed = existing is not None and existing.storyboard != self.storyboard
            if (
                existing is None
                or self._journal_size > 0
                or self.previous_base_url is not None
                or renamed
            ):
                self._compact()
            elif created:
                _fsync_dir(self.path.parent)
        except BaseException:
            os.close(self._journal_fd)
            self._journal_fd = None
            raise
        self._compact_at = max(self.min_journal_bytes, self._manifest_size)

    def __enter__(self) -> ManifestStore:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"<ManifestStore {str(self.path)!r} {state}, {len(self._entries)} shots>"

    @property
    def entries(self) -> Mapping[str, ManifestEntry]:
        """A live, read-only view of the current entries."""
        return MappingProxyType(self._entries)

    def get(self, shot_id: str) -> ManifestEntry | None:
        """The current entry of ``shot_id``, or None."""
        return self._entries.get(shot_id)

    def snapshot(self) -> Manifest:
        """The current state as a value, entries in the order they would be written."""
        with self._mutex:
            return self._snapshot(updated_at=None)

    def _snapshot(self, updated_at: str | None) -> Manifest:
        ordered = {s: self._entries[s] for s in _ordered(self._entries, self.order)}
        return Manifest(self.storyboard, self.base_url, updated_at, ordered)

    def statistics(self) -> StoreStatistics:
        """Bytes written, compactions, journal records so far."""
        return StoreStatistics(
            bytes_written=self._bytes_written,
            compactions=self._compactions,
            journal_records=self._journal_records,
            journal_bytes=self._journal_size,
            syncs=self._syncs,
        )

    def _check_open(self) -> int:
        if self._closed or self._journal_fd is None:
            raise _error(self.path, "the manifest store is closed")
        return self._journal_fd

    def set(self, shot_id: str, entry: ManifestEntry, *, durable: bool = True) -> None:
        """Record ``entry`` as the state of ``shot_id``.

        With ``durable`` (the default) the change is ``fsync``-ed before this returns
        (about 0.1-1 ms); use it for anything that must survive a crash (a task id, a
        final status). ``durable=False`` suits progress updates: written at once, made
        durable by the next durable call or compaction. May compact the journal.
        """
        if not isinstance(shot_id, str) or not shot_id:
            raise TypeError(f"shot_id must be a non-empty string, got {shot_id!r}")
        if not isinstance(entry, ManifestEntry):
            raise TypeError(f"entry must be a ManifestEntry, got {type(entry).__name__}")
        with self._mutex:
            # A shot already on record journals only what changed (a progress tick is a
            # few bytes, not the whole request again).
            previous = self._entries.get(shot_id)
            new = entry.to_json()
            record: dict[str, Any]
            if previous is None:
                record = {"shot": shot_id, "entry": new}
            else:
                old = previous.to_json()
                changes = {k: v for k, v in new.items() if old.get(k, None) != v}
                changes.update({k: None for k in old if k not in new})
                record = {"shot": shot_id, "set": changes}
            line = json.dumps(record, ensure_ascii=False, separators=(",", ":"))
            data = (line + "\n").encode("utf-8")
            fd = self._check_open()
            try:
                _write_all(fd, data)
                if durable:
                    os.fsync(fd)
                    self._syncs += 1
            except OSError as exc:
                # Cut a partial line off, or the next record would follow garbage and
                # the journal would read as corrupt in the middle.
                with contextlib.suppress(OSError):
                    os.ftruncate(fd, self._journal_size)
                raise _error(
                    self._journal,
                    f"cannot record shot {shot_id!r}: {exc.strerror or exc}",
                    "is the disk full? the run stops rather than lose a task id",
                ) from exc
            # Memory changes only once the disk has the change: never claim what a
            # crash would forget.
            self._entries[shot_id] = entry
            self._journal_size += len(data)
            self._bytes_written += len(data)
            self._journal_records += 1
            self._changes_since_compaction += 1
            if self._journal_size > self._compact_at:
                try:
                    self._compact()
                except ManifestError as exc:
                    # The change itself is safe in the journal; try again only after as
                    # much journal again, so a failing disk cannot make this quadratic.
                    logger.warning("%s", exc)
                    self._compact_at = self._journal_size + max(
                        self.min_journal_bytes, self._manifest_size
                    )

    def remove(self, shot_ids: Sequence[str]) -> None:
        """Drop the entries of ``shot_ids`` (``vidu-pipe prune``) and rewrite the manifest
        at once: the atomic rewrite is the only record, so a crash before it changes
        nothing and one after it leaves the shorter manifest."""
        with self._mutex:
            self._check_open()
            for shot_id in shot_ids:
                self._entries.pop(shot_id, None)
            self._compact()

    def compact(self) -> None:
        """Fold the journal into the manifest now: rewrite it atomically, empty the journal."""
        with self._mutex:
            self._check_open()
            self._compact()

    def _compact(self) -> None:
        data = self._snapshot(updated_at=utc_now()).dumps(self.order).encode("utf-8")
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666)
            try:
                with contextlib.suppress(FileNotFoundError):
                    os.fchmod(fd, stat.S_IMODE(os.stat(self.path).st_mode))
                _write_all(fd, data)
                os.fsync(fd)
            finally:
                os.close(fd)
            self._bytes_written += len(data)
            # The rename is the commit point: readers see the old file or the new one,
            # never half of one. Until it is durable the journal is kept.
            os.replace(tmp, self.path)
            _fsync_dir(self.path.parent)
        except BaseException as exc:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            if isinstance(exc, OSError):
                raise _error(
                    self.path, f"cannot write the manifest: {exc.strerror or exc}"
                ) from exc
            raise
        # Replaying the old journal over the new manifest changes nothing, so a crash
        # before (or during) this truncation is harmless.
        if self._journal_fd is not None:
            os.ftruncate(self._journal_fd, 0)
        self._journal_size = 0
        self._manifest_size = len(data)
        self._compactions += 1
        self._changes_since_compaction = 0
        self._compact_at = max(self.min_journal_bytes, self._manifest_size)

    def close(self) -> None:
        """Fold the journal into the manifest, remove the journal, release the lock.

        The manifest is rewritten only if something changed since it was last
        written. If that write fails the journal is kept (the next run replays it)
        and :class:`ManifestError` is raised; the lock is released either way.
        """
        with self._mutex:
            if self._closed:
                return
            self._closed = True
            try:
                if self._changes_since_compaction:
                    self._compact()
                if self._journal_fd is not None:
                    os.close(self._journal_fd)
                    self._journal_fd = None
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(self._journal)
                if self._remove_if_empty and not self._entries:
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(self.path)  # still under the lock
            finally:
                if self._journal_fd is not None:
                    os.close(self._journal_fd)
                    self._journal_fd = None
                self._lock.release()
