"""Writing files safely: the one home of atomic writes (a leaf module).

Every file vidu-pipe writes (the manifest, its journal and lock, downloaded videos, the
report) goes through here, so that three promises hold in one place (SPEC §5):

- **Never half-written.** A whole file is written to a temporary file *in the target's
  folder* (``tempfile``: an unpredictable name, created ``O_EXCL`` and without following
  links), ``fsync``-ed, renamed over the target, and the folder ``fsync``-ed so the
  rename survives a power cut.
- **Never through a link.** A symlink planted at the final path is refused, not followed
  (``os.replace`` would merely replace the link, but a user who planted it meant
  something by it: say so). Files opened in place (the journal) use ``O_NOFOLLOW``.
- **Never through a second name.** A file opened in place that has other hard links is
  refused: writing it would change a file elsewhere.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import os
import stat
import tempfile
from pathlib import Path
from types import TracebackType
from typing import BinaryIO

__all__ = [
    "AtomicFile",
    "LinkError",
    "fsync_dir",
    "open_in_place",
    "place",
    "refuse_link",
    "temp_path_beside",
    "write_all",
    "write_atomic",
]

_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_BINARY = getattr(os, "O_BINARY", 0)


class LinkError(OSError):
    """A path that vidu-pipe would write is a symlink, or a file with other hard links."""


@functools.cache
def _umask() -> int:
    # os.umask can only be read by setting it; done once, at the first write.
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def refuse_link(path: str | os.PathLike[str]) -> None:
    """Raise :class:`LinkError` when ``path`` is a symlink (dangling or not)."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if stat.S_ISLNK(st.st_mode):
        raise LinkError(
            errno.ELOOP, "is a symbolic link; vidu-pipe does not write through links", str(path)
        )


def fsync_dir(folder: str | os.PathLike[str]) -> None:
    """Make a rename or a new file in ``folder`` durable; a no-op where folders cannot be
    opened (Windows)."""
    flags = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0)
    try:
        fd = os.open(folder, flags)
    except OSError:
        return
    try:
        with contextlib.suppress(OSError):
            os.fsync(fd)
    finally:
        os.close(fd)


def write_all(fd: int, data: bytes) -> None:
    """``os.write`` until every byte is written (a write may be short)."""
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def open_in_place(path: str | os.PathLike[str], flags: int, mode: int = 0o644) -> int:
    """``os.open`` that never follows a link at ``path`` and refuses a file with other
    hard links (:class:`LinkError`). ``flags`` may include ``O_CREAT``."""
    try:
        fd = os.open(path, flags | _NOFOLLOW | _BINARY, mode)
    except OSError as exc:
        if exc.errno == errno.ELOOP or (os.path.islink(path) and exc.errno != errno.ENOENT):
            raise LinkError(
                errno.ELOOP, "is a symbolic link; vidu-pipe does not write through links", str(path)
            ) from None
        raise
    if not _NOFOLLOW:  # pragma: no cover - platforms without O_NOFOLLOW
        try:
            refuse_link(path)
        except BaseException:
            os.close(fd)
            raise
    st = os.fstat(fd)
    if st.st_nlink > 1:
        os.close(fd)
        raise LinkError(
            errno.EMLINK,
            f"has {st.st_nlink - 1} other hard link(s); vidu-pipe does not write a file "
            "reached by two names",
            str(path),
        )
    return fd


class AtomicFile:
    """A new version of ``path``, written to a temporary file beside it and renamed over
    ``path`` by :meth:`commit`. Leaving the ``with`` block without committing removes the
    temporary file and leaves ``path`` as it was.

    The new file keeps the mode of the file it replaces (else 0666 less the umask).
    Raises :class:`LinkError` when ``path`` is a symlink, before anything is written.
    ``durable=False`` skips the two ``fsync`` calls (still all or nothing, but a power cut
    may lose the new version): for files that are a cache, rewritten by the thousand.
    """

    def __init__(self, path: str | os.PathLike[str], *, durable: bool = True) -> None:
        self.path = Path(path)
        self.durable = durable
        refuse_link(self.path)
        try:
            mode = stat.S_IMODE(os.stat(self.path).st_mode)
        except FileNotFoundError:
            mode = 0o666 & ~_umask()
        # mkstemp: a random name, O_CREAT|O_EXCL|O_NOFOLLOW, in the target's folder so the
        # rename stays on one file system.
        fd, temp = tempfile.mkstemp(
            dir=self.path.parent, prefix=f".{self.path.name}.", suffix=".tmp"
        )
        self.temp = Path(temp)
        fchmod = getattr(os, "fchmod", None)  # Windows before 3.13 has none
        if fchmod is not None:
            with contextlib.suppress(OSError):
                fchmod(fd, mode)
        self.file: BinaryIO = os.fdopen(fd, "wb")
        self._done = False

    def commit(self) -> None:
        """Flush, ``fsync``, rename over the target and ``fsync`` its folder."""
        self.file.flush()
        if self.durable:
            os.fsync(self.file.fileno())
        self.file.close()
        # Checked again: a link planted while we wrote is not written through either.
        refuse_link(self.path)
        os.replace(self.temp, self.path)
        self._done = True
        if self.durable:
            fsync_dir(self.path.parent)

    def discard(self) -> None:
        """Remove the temporary file (idempotent; nothing happens after a commit)."""
        if self._done:
            return
        self._done = True
        with contextlib.suppress(OSError):
            self.file.close()
        with contextlib.suppress(OSError):
            os.unlink(self.temp)

    def __enter__(self) -> AtomicFile:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.discard()


def write_atomic(path: str | os.PathLike[str], data: bytes, *, durable: bool = True) -> None:
    """Replace ``path`` by ``data``, all or nothing (see :class:`AtomicFile`)."""
    with AtomicFile(path, durable=durable) as out:
        out.file.write(data)
        out.commit()


def temp_path_beside(path: str | os.PathLike[str]) -> Path:
    """A new, empty file beside ``path`` for a writer that opens files by name (PyAV,
    OpenTimelineIO), to be :func:`place`-d over ``path`` or removed by the caller.

    Its name is unpredictable and it is created ``O_EXCL`` without following links
    (``tempfile.mkstemp``), so nothing planted in the folder beforehand is written
    through. It keeps the suffix of ``path`` (writers pick the format by it).
    """
    target = Path(path)
    fd, temp = tempfile.mkstemp(
        dir=target.parent, prefix=f".{target.stem}.", suffix=f".tmp{target.suffix}"
    )
    os.close(fd)
    return Path(temp)


def place(temp: str | os.PathLike[str], path: str | os.PathLike[str]) -> None:
    """Rename the finished file ``temp`` over ``path`` and ``fsync`` the folder; a symlink
    at ``path`` is refused (:class:`LinkError`), not replaced."""
    refuse_link(path)
    os.replace(temp, path)
    fsync_dir(Path(path).parent)
