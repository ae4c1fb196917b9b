"""The manifest store: the one object that writes a manifest during a run.

Files beside the manifest (``PATH`` is the manifest, by default
``beach-teaser.manifest.json``); :func:`run_files` names them all::

    PATH           the manifest: pretty JSON, shots in storyboard order (SPEC §4)
    PATH.journal   one JSON line per state change since PATH was last written
                   (:mod:`vidu_pipe.manifest.journal`)
    PATH.lock      who holds the run: pid, host, start time (:mod:`vidu_pipe.manifest.lock`)
    .PATH.*.tmp    a new manifest being written, until it is renamed over PATH

The journal is folded into the manifest (a *compaction*: write a temporary file,
``fsync``, rename) once it outgrows the manifest, so the total bytes written stay
linear in the number of changes. Every file is written through :mod:`vidu_pipe.fileio`:
never through a symlink, never half-written.

Readers (``plan``, ``status``, ``report``) call :func:`load_manifest`, which
replays the journal over the manifest without taking the lock. A run owns the
files through :class:`ManifestStore`; async code records through :meth:`ManifestStore.record`,
which does the ``fsync`` in a worker thread so the event loop keeps polling.
"""

from __future__ import annotations

import contextlib
import fnmatch
import logging
import os
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType, TracebackType
from typing import ClassVar

import anyio.to_thread

from vidu_pipe.errors import ManifestError
from vidu_pipe.fileio import AtomicFile, LinkError, fsync_dir, open_in_place, write_all
from vidu_pipe.manifest.journal import encode, read_journal, replay
from vidu_pipe.manifest.lock import RunLock, canonical_manifest_path, lock_path
from vidu_pipe.manifest.model import (
    MANIFEST_VERSION,
    REPAIR_HINT,
    STATUSES,
    Download,
    Manifest,
    ManifestEntry,
    Status,
    _ordered,
    error,
    parse_json,
    unknown_note,
    unknown_summary,
)
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
    "is_run_file",
    "journal_path",
    "load_manifest",
    "lock_path",
    "run_files",
    "unknown_note",
    "unknown_summary",
]

logger = logging.getLogger(__name__)


def journal_path(path: str | os.PathLike[str]) -> Path:
    """Where the journal of the manifest at ``path`` lives: ``PATH.journal``."""
    path = Path(path)
    return path.with_name(path.name + ".journal")


def run_files(path: str | os.PathLike[str]) -> tuple[Path, ...]:
    """Every file a run on the manifest at ``path`` owns: the manifest, its journal and
    its lock (temporary files too: see :func:`is_run_file`)."""
    path = Path(path)
    return (path, journal_path(path), lock_path(path))


def is_run_file(manifest: str | os.PathLike[str], candidate: str | os.PathLike[str]) -> bool:
    """Whether writing ``candidate`` would overwrite a file a run on ``manifest`` owns
    (by name through resolved folders, or by being the same file)."""
    manifest, candidate = Path(manifest), Path(candidate)
    folder = manifest.parent.resolve()
    target = candidate.parent.resolve() / candidate.name
    owned = [folder / p.name for p in run_files(manifest)]
    if target in owned:
        return True
    if target.parent == folder and fnmatch.fnmatchcase(target.name, f".{manifest.name}.*.tmp"):
        return True
    for path in owned:
        with contextlib.suppress(OSError):
            if os.path.samefile(path, target):
                return True
    return False


def _read_manifest_file(path: Path) -> Manifest | None:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise error(path, f"cannot read the manifest: {exc.strerror or exc}") from exc
    try:
        data = parse_json(raw)
    except ValueError as exc:
        raise error(path, str(exc), REPAIR_HINT) from exc
    return Manifest.from_json(data, source=path)


def _stat_key(path: Path) -> tuple[int, int, int] | None:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return (st.st_ino, st.st_mtime_ns, st.st_size)


def _load(path: Path) -> tuple[Manifest | None, int]:
    """Manifest plus journal, consistent with each other, and the number of records replayed."""
    canonical_manifest_path(path)  # a symlinked or hard-linked manifest is refused
    journal = journal_path(path)
    # A running store may compact between our reading the manifest and the journal; the
    # old manifest with the truncated journal would then miss changes. os.replace gives
    # the new manifest a new inode, so reading again until it held still is enough.
    for _ in range(20):
        before = _stat_key(path)
        manifest = _read_manifest_file(path)
        records, _ = read_journal(journal)
        if _stat_key(path) == before:
            break
        time.sleep(0.01)
    else:
        raise error(path, "the manifest kept changing while being read; try again")
    if manifest is None:
        if records:
            raise error(
                journal,
                f"a journal of {len(records)} state change(s) without its manifest {path.name}",
                "restore the manifest, or move the journal aside (the task ids it holds "
                "would be forgotten and their shots created again)",
            )
        return None, 0
    return replay(manifest, records, journal), len(records)


def check_owner(manifest: Manifest, storyboard: str, path: Path) -> None:
    """Raise :class:`ManifestError` when ``manifest`` belongs to another storyboard."""
    if manifest.storyboard != storyboard:
        raise error(
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


class ManifestStore:
    """The one writer of a manifest during a run. Use :meth:`open`, ideally as a context
    manager; :meth:`close` folds everything into the manifest and releases the lock.

    Durability rule (SPEC §5): :meth:`set` (and :meth:`record`, its async form) with
    ``durable=True`` returns only once the change is on disk (journal line written and
    ``fsync``-ed). The runner announces a create this way before sending it and records
    the task id before that shot's next request, so even ``kill -9`` leaves the id, or
    the ``unknown`` mark, to go on from.

    Calls are serialized by an internal lock: :meth:`record` runs :meth:`set` in worker
    threads while the event loop may call :meth:`set` itself.
    """

    min_journal_bytes: ClassVar[int] = 64 * 1024
    """The journal is compacted once it outgrows max(this, the last manifest written)."""

    def __init__(
        self,
        path: Path,
        lock: RunLock,
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
        #: What the manifest file says now (to leave it alone when nothing changed).
        self._on_disk: tuple[str, str, dict[str, ManifestEntry]] | None = None
        self._mutex = threading.Lock()
        self._journal_fd: int | None = None
        self._journal_size = 0
        self._manifest_size = 0
        self._compact_at = 0
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
        corrupt, is a symlink or has other hard links, or belongs to another
        ``storyboard`` — unless ``adopt`` (the manifest sits where this storyboard's own
        manifest goes: both were renamed together), which records the new name. With
        ``keep_empty=False`` a manifest that this open created is removed again on close
        if nothing was recorded in it (a run that a refused key stopped leaves nothing
        behind). A different ``base_url`` is taken (noted in :attr:`previous_base_url`).
        ``order`` (the storyboard's shot ids) orders ``shots`` in the file; entries of
        shots not in it follow, kept.
        """
        if isinstance(order, str):
            raise TypeError("order must be a sequence of shot ids, not a string")
        path = Path(path)
        # The lock belongs to the file, not to this spelling of its path; everything else
        # keeps the path as given (messages, download paths relative to its folder).
        lock = RunLock.acquire(canonical_manifest_path(path), shown=path)
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
            self._journal_fd = open_in_place(
                self._journal, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644
            )
            self._journal_size = os.fstat(self._journal_fd).st_size
        except LinkError as exc:
            raise error(
                self._journal,
                f"the journal {exc.strerror}",
                "remove it (no run is going on: this run holds the lock)",
            ) from exc
        except OSError as exc:
            raise error(self._journal, f"cannot open the journal: {exc.strerror or exc}") from exc
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
            else:
                self._on_disk = (self.storyboard, self.base_url, dict(self._entries))
                if created:
                    fsync_dir(self.path.parent)
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
        """A live, read-only view of the current entries (for a look between records:
        while :meth:`record` runs in worker threads, iterate :meth:`snapshot` instead)."""
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
            raise error(self.path, "the manifest store is closed")
        return self._journal_fd

    def set(self, shot_id: str, entry: ManifestEntry | None, *, durable: bool = True) -> None:
        """Record ``entry`` as the state of ``shot_id`` (None: the shot has no entry).

        With ``durable`` (the default) the change is ``fsync``-ed before this returns
        (about 0.1-1 ms); use it for anything that must survive a crash (a task id, a
        final status). ``durable=False`` suits progress updates: written at once, made
        durable by the next durable call or compaction. May compact the journal.
        Raises :class:`ManifestError` when the disk refuses the change (then nothing
        changed, on disk or here).
        """
        if not isinstance(shot_id, str) or not shot_id:
            raise TypeError(f"shot_id must be a non-empty string, got {shot_id!r}")
        if entry is not None and not isinstance(entry, ManifestEntry):
            raise TypeError(f"entry must be a ManifestEntry, got {type(entry).__name__}")
        with self._mutex:
            previous = self._entries.get(shot_id)
            if entry is None and previous is None:
                return
            data = encode(shot_id, previous, entry)
            fd = self._check_open()
            try:
                write_all(fd, data)
                if durable:
                    os.fsync(fd)
                    self._syncs += 1
            except OSError as exc:
                # Cut a partial line off, or the next record would follow garbage and
                # the journal would read as corrupt in the middle.
                with contextlib.suppress(OSError):
                    os.ftruncate(fd, self._journal_size)
                raise error(
                    self._journal,
                    f"cannot record shot {shot_id!r}: {exc.strerror or exc}",
                    "is the disk full? the run stops rather than lose a task id",
                ) from exc
            # Memory changes only once the disk has the change: never claim what a
            # crash would forget.
            if entry is None:
                del self._entries[shot_id]
            else:
                self._entries[shot_id] = entry
            self._journal_size += len(data)
            self._bytes_written += len(data)
            self._journal_records += 1
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

    async def record(
        self, shot_id: str, entry: ManifestEntry | None, *, durable: bool = True
    ) -> None:
        """:meth:`set` in a worker thread, so that an ``fsync`` or a compaction does not
        stall the event loop (and every other shot's polling) meanwhile."""
        await anyio.to_thread.run_sync(lambda: self.set(shot_id, entry, durable=durable))

    def compact(self) -> None:
        """Fold the journal into the manifest now: rewrite it atomically, empty the journal."""
        with self._mutex:
            self._check_open()
            self._compact()

    def _compact(self) -> None:
        data = self._snapshot(updated_at=utc_now()).dumps(self.order).encode("utf-8")
        try:
            # The rename is the commit point: readers see the old file or the new one,
            # never half of one. Until it is durable the journal is kept.
            with AtomicFile(self.path) as out:
                out.file.write(data)
                out.commit()
        except LinkError as exc:
            raise error(self.path, f"the manifest {exc.strerror}", "remove the link") from exc
        except OSError as exc:
            raise error(self.path, f"cannot write the manifest: {exc.strerror or exc}") from exc
        self._bytes_written += len(data)
        # Replaying the old journal over the new manifest changes nothing, so a crash
        # before (or during) this truncation is harmless.
        if self._journal_fd is not None:
            os.ftruncate(self._journal_fd, 0)
        self._journal_size = 0
        self._manifest_size = len(data)
        self._compactions += 1
        self._on_disk = (self.storyboard, self.base_url, dict(self._entries))
        self._compact_at = max(self.min_journal_bytes, self._manifest_size)

    def _changed(self) -> bool:
        return self._on_disk != (self.storyboard, self.base_url, self._entries)

    def close(self) -> None:
        """Fold the journal into the manifest, remove the journal, release the lock.

        The manifest is rewritten only if its content changed since it was last
        written (a run whose changes all cancelled out leaves it byte for byte). If
        that write fails the journal is kept (the next run replays it) and
        :class:`ManifestError` is raised; the lock is released either way.
        """
        with self._mutex:
            if self._closed:
                return
            self._closed = True
            try:
                if self._remove_if_empty and not self._entries:
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(self.path)  # still under the lock
                elif self._changed():
                    self._compact()
                if self._journal_fd is not None:
                    os.close(self._journal_fd)
                    self._journal_fd = None
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(self._journal)
            finally:
                if self._journal_fd is not None:
                    os.close(self._journal_fd)
                    self._journal_fd = None
                self._lock.release()
