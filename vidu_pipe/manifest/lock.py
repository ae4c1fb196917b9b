"""The run lock: one run per manifest, by the manifest file's identity.

``PATH.lock`` is held with :mod:`filelock` (``flock`` on POSIX, ``msvcrt`` on Windows;
imported only when a run takes the lock, so ``import vidu_pipe`` never needs ``fcntl``).
The holder writes its pid, host and start time into the lock file, so a second run fails
at once naming it.

A lock tied to a path string would let two runs write one file reached by two names
(``a.manifest.json`` and a symlink or hard link to it). So the manifest is named by its
identity: the folder is resolved (links and all), and a manifest that is itself a
symlink or has other hard links is refused — then one file has exactly one lock path.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import socket
import stat
import sys
import time
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vidu_pipe.errors import ConfigError
from vidu_pipe.fileio import LinkError, open_in_place, write_all
from vidu_pipe.manifest.model import error
from vidu_pipe.timestamps import utc_now

if TYPE_CHECKING:
    from filelock import BaseFileLock

__all__ = ["RunLock", "canonical_manifest_path", "lock_path"]


def lock_path(path: str | os.PathLike[str]) -> Path:
    """Where the lock file of the manifest at ``path`` lives: ``PATH.lock``."""
    path = Path(path)
    return path.with_name(path.name + ".lock")


def canonical_manifest_path(path: Path) -> Path:
    """The one name of the manifest at ``path``: its folder resolved through links.

    Raises :class:`~vidu_pipe.errors.ManifestError` when the manifest is a symlink or
    has other hard links: two names would mean two locks for one file.
    """
    folder = path.parent.resolve()
    real = folder / path.name
    try:
        st = os.lstat(real)
    except FileNotFoundError:
        return real
    except OSError as exc:
        raise error(path, f"cannot read the manifest: {exc.strerror or exc}") from exc
    if stat.S_ISLNK(st.st_mode):
        raise error(
            path,
            f"the manifest is a symbolic link (to {os.readlink(real)}); vidu-pipe does not "
            "write through links, and a second name would let two runs write it at once",
            "give the real file with --manifest, or replace the link by the file",
        )
    if st.st_nlink > 1:
        raise error(
            path,
            f"the manifest has {st.st_nlink - 1} other hard link(s); two names would let two "
            "runs write it at once",
            "keep one name (remove the other links), or copy the file",
        )
    return real


class RunLock:
    """The exclusive lock of one manifest, taken by :meth:`acquire` (never blocks)."""

    def __init__(self, path: Path, lock: BaseFileLock) -> None:
        self.path = path
        self._lock = lock

    @classmethod
    def acquire(cls, manifest: Path, *, shown: Path | None = None) -> RunLock:
        """Lock ``manifest`` (a canonical path, see :func:`canonical_manifest_path`).

        Raises :class:`ConfigError` at once when another run holds it, naming that
        run's pid, host and start time; :class:`ManifestError` when the lock file cannot
        be made (a symlink planted there is refused, not followed). Messages name the
        manifest as ``shown`` (the path the user gave), when given: the lock is on the
        file's identity, the words are in the user's terms.
        """
        name = manifest if shown is None else shown
        with warnings.catch_warnings():
            # "only soft file lock is available" where there is no fcntl: handled below.
            warnings.simplefilter("ignore")
            import filelock

        path = lock_path(manifest)
        # Without flock (and off Windows) filelock falls back to an existence lock, whose
        # marker file is its own (it writes its pid and host there itself).
        native = filelock.has_fcntl or sys.platform == "win32"

        def claim(fd: int) -> None:
            # Whatever was written here before is a stale holder's; the lock is ours.
            info = {"pid": os.getpid(), "host": socket.gethostname(), "started_at": utc_now()}
            os.ftruncate(fd, 0)
            os.lseek(fd, 0, os.SEEK_SET)  # not os.pwrite: Windows has none
            write_all(fd, (json.dumps(info) + "\n").encode())

        lock = filelock.FileLock(
            path, timeout=0, mode=0o644, thread_local=False, on_acquired=claim if native else None
        )
        try:
            lock.acquire(blocking=False)
        except filelock.Timeout:
            raise ConfigError(
                f"{name}: in use by another run ({_holder(path)})\n"
                "    hint: wait for it to finish, or stop it; a run that dies releases "
                "the lock by itself"
            ) from None
        except OSError as exc:
            what = (
                "is a symbolic link; vidu-pipe does not write through links"
                if exc.errno == errno.ELOOP or os.path.islink(path)
                else f"cannot be created: {exc.strerror or exc}"
            )
            raise error(
                name,
                f"the lock file {path.name} {what}",
                "remove it if no run is going on, and check that the manifest's folder is writable",
            ) from exc
        return cls(path, lock)

    def release(self) -> None:
        """Remove the lock file and let go of it."""
        # Unlinked while still held, so no run takes over a doomed file unnoticed
        # (filelock checks that the inode it locked is still linked).
        with contextlib.suppress(OSError):
            os.unlink(self.path)
        self._lock.release(force=True)


def _holder(path: Path) -> str:
    # The holder writes its details just after taking the lock; give it a moment.
    for _ in range(10):
        with contextlib.suppress(ValueError, KeyError, TypeError, OSError, LinkError):
            fd = open_in_place(path, os.O_RDONLY)
            try:
                info: Any = json.loads(os.read(fd, 4096).decode("utf-8"))
            finally:
                os.close(fd)
            return f"pid {info['pid']} on {info['host']}, started {info['started_at']}"
        time.sleep(0.01)
    return "a process that has not said who it is"
