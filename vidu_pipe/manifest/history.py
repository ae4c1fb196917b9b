"""The results cache: every completed request, by fingerprint, and its video file.

A local folder beside the storyboard (``.vidu-pipe/``, shared by every storyboard of
that folder and by other parts of vidu-pipe, never committed)::

    .vidu-pipe/results/<hex>.json    one completed request: fingerprint sha256:<hex>
    .vidu-pipe/videos/<sha256>.mp4   a video file, named by the SHA-256 of its bytes

Why beside the manifest and not inside it: the manifest is committed, and must stay
small and diff-friendly (one entry per shot, in storyboard order). A history of every
prompt ever tried would grow without bound and show up in every diff. What the
history buys after a fresh clone is small anyway: without the file a video URL lives
only 24 hours, and the committed manifest already holds the current shots' results
(every run also copies the manifest's completed entries into this cache, so a
teammate's manifest feeds it).

Each record is its own small JSON file written atomically (temporary file, rename),
so two runs of two storyboards in one folder never corrupt each other: the last
writer of one fingerprint wins, and merges what it read.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import secrets
import shutil
import stat
import threading
import warnings
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Final, Literal

from vidu_pipe.constants import SIMULATOR_BASE_URL, VIDEO_URL_LIFETIME
from vidu_pipe.errors import ConfigError
from vidu_pipe.fileio import AtomicFile, place, refuse_link, temp_path_beside, write_atomic
from vidu_pipe.manifest.store import ManifestEntry
from vidu_pipe.timestamps import parse_time

__all__ = [
    "CACHE_DIR",
    "Cache",
    "Restorable",
    "Result",
    "file_sha256",
    "results_from_manifest",
]

#: The local cache folder, beside the storyboard. Other parts of vidu-pipe keep their
#: own files in it too (e.g. ``pace.json``); this module owns ``results/`` and ``videos/``.
CACHE_DIR: Final = ".vidu-pipe"

_HEX = re.compile(r"^[0-9a-f]{64}$")
_LOCK_NAME: Final = "results.lock"
#: Seconds to wait for another process's record write (each takes milliseconds).
_LOCK_WAIT: Final = 30.0
_THREADS = threading.Lock()


def file_sha256(path: Path) -> tuple[str, int]:
    """The SHA-256 (hex) and size of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    size = 0
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
            size += len(block)
    return digest.hexdigest(), size


@dataclass(frozen=True)
class Result:
    """One completed request, as the cache remembers it."""

    fingerprint: str
    base_url: str
    task_id: str | None = None
    video_url: str | None = None
    finished_at: str | None = None
    #: SHA-256 (hex) of the video file in ``videos/``, once it was downloaded or made.
    video: str | None = None
    size: int | None = None
    #: Storyboard file names (of this folder) whose shots completed this request.
    storyboards: tuple[str, ...] = ()
    #: The shot that last completed it (for messages: "the video of opening").
    shot: str | None = None

    @property
    def simulated(self) -> bool:
        """Made by ``run --simulate``: its URL never held a video."""
        return self.base_url == SIMULATOR_BASE_URL

    def to_json(self) -> dict[str, Any]:
        """The record's JSON (stable key order)."""
        return {
            "fingerprint": self.fingerprint,
            "base_url": self.base_url,
            "task_id": self.task_id,
            "video_url": self.video_url,
            "finished_at": self.finished_at,
            "video": self.video,
            "size": self.size,
            "storyboards": list(self.storyboards),
            "shot": self.shot,
        }

    @classmethod
    def from_json(cls, data: object) -> Result | None:
        """A record, or None for anything not of its shape (a cache is never trusted
        more than a miss: a broken record only costs a create)."""
        if not isinstance(data, dict):
            return None
        try:
            fp, base = data["fingerprint"], data["base_url"]
            if not isinstance(fp, str) or not isinstance(base, str):
                return None
            text = {k: data.get(k) for k in ("task_id", "video_url", "finished_at", "shot")}
            if any(v is not None and not isinstance(v, str) for v in text.values()):
                return None
            video, size = data.get("video"), data.get("size")
            if video is not None and not (isinstance(video, str) and _HEX.match(video)):
                return None
            if size is not None and (not isinstance(size, int) or isinstance(size, bool)):
                return None
            boards = data.get("storyboards") or []
            if not isinstance(boards, list) or not all(isinstance(b, str) for b in boards):
                return None
        except KeyError:
            return None
        return cls(fp, base, video=video, size=size, storyboards=tuple(boards), **text)

    def merged(self, newer: Result) -> Result:
        """``newer`` over this record: a known video file and storyboards are kept.

        A real result is never replaced by a simulated one of the same request, and a
        video file only carries over between results of the same relay (a simulated
        placeholder never becomes the video of a real task)."""
        boards = tuple(sorted({*self.storyboards, *newer.storyboards}))
        if newer.simulated and not self.simulated:
            return replace(self, storyboards=boards)
        if newer.video or self.base_url != newer.base_url:
            video, size = newer.video, newer.size
        else:
            video, size = self.video, self.size
        return replace(newer, video=video, size=size, storyboards=boards)


@dataclass(frozen=True)
class Restorable:
    """A result that a shot can take instead of a create, and where its video is."""

    result: Result
    #: ``cache``: the file is in ``videos/``; ``url``: its URL is younger than 24 hours.
    source: Literal["cache", "url"]


class Cache:
    """The ``.vidu-pipe/`` folder of one storyboard folder. Creates nothing until written."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.results_dir = root / "results"
        self.videos_dir = root / "videos"

    @classmethod
    def beside(cls, storyboard: Path) -> Cache:
        """The cache of the storyboard at ``storyboard``: ``.vidu-pipe/`` in its folder."""
        return cls(storyboard.parent / CACHE_DIR)

    def __repr__(self) -> str:
        return f"<Cache {str(self.root)!r}>"

    # --- reading ----------------------------------------------------------------

    def _record_path(self, fingerprint: str) -> Path | None:
        algo, _, digest = fingerprint.partition(":")
        if algo != "sha256" or not _HEX.match(digest):
            return None
        return self.results_dir / f"{digest}.json"

    def get(self, fingerprint: str) -> Result | None:
        """The record of ``fingerprint``, or None."""
        path = self._record_path(fingerprint)
        if path is None:
            return None
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        found = Result.from_json(data)
        return found if found is not None and found.fingerprint == fingerprint else None

    def results(self) -> Iterator[Result]:
        """Every record in the cache (in no particular order)."""
        try:
            names = sorted(os.listdir(self.results_dir))
        except OSError:
            return
        for name in names:
            if name.endswith(".json") and _HEX.match(name[:-5]):
                found = self.get("sha256:" + name[:-5])
                if found is not None:
                    yield found

    def video_path(self, sha256: str) -> Path:
        """Where the file of that SHA-256 lives (whether or not it is there)."""
        return self.videos_dir / f"{sha256}.mp4"

    def video_of(self, result: Result | None) -> Path | None:
        """The cached file of ``result`` when it is there with its recorded size."""
        if result is None or result.video is None:
            return None
        path = self.video_path(result.video)
        try:
            info = path.stat()
        except OSError:
            return None
        if result.size is not None and info.st_size != result.size:
            return None
        return path

    def video_for(self, fingerprint: str) -> Path | None:
        """The cached video file of the request ``fingerprint``, or None."""
        return self.video_of(self.get(fingerprint))

    def restorable(
        self,
        fingerprints: Iterable[str],
        *,
        simulated: bool,
        extra: Iterable[Result] = (),
        now: datetime | None = None,
    ) -> dict[str, Restorable]:
        """Which of ``fingerprints`` a run can restore without a create.

        A simulated result restores only into a simulated run (and only from its
        cached file: the simulator that served its URL is gone); a real one only into
        a real run, from the cached file or from its URL while that is younger than
        ``VIDEO_URL_LIFETIME``. ``extra`` adds results not (yet) in the cache: the
        manifest's own completed entries.
        """
        moment = now if now is not None else datetime.now(timezone.utc)
        wanted = set(fingerprints)
        known: dict[str, Result] = {r.fingerprint: r for r in extra if r.fingerprint in wanted}
        out: dict[str, Restorable] = {}
        try:  # one listing instead of a failed open per shot (a 10,000-shot plan)
            present = set(os.listdir(self.results_dir))
        except OSError:
            present = set()
        for fp in wanted:
            path = self._record_path(fp)
            cached = self.get(fp) if path is not None and path.name in present else None
            candidates = [r for r in (cached, known.get(fp)) if r is not None]
            for result in candidates:
                if result.simulated != simulated:
                    continue
                if self.video_of(result) is not None:
                    out[fp] = Restorable(result, "cache")
                    break
                finished = parse_time(result.finished_at)
                if (
                    not simulated
                    and result.video_url
                    and finished is not None
                    and moment - finished < VIDEO_URL_LIFETIME
                ):
                    out[fp] = Restorable(result, "url")
                    break
        return out

    # --- writing ----------------------------------------------------------------

    def _folder(self, folder: Path) -> Path:
        """Make ``folder`` (inside the cache); never through a symlink (SPEC §5)."""
        for part in (self.root, folder):
            try:
                info = os.lstat(part)
            except FileNotFoundError:
                part.mkdir(exist_ok=True)
                continue
            if stat.S_ISLNK(info.st_mode) or not stat.S_ISDIR(info.st_mode):
                raise ConfigError(
                    f"{part} is a symlink or not a folder; vidu-pipe writes its cache only "
                    "into a real folder (remove it, and it is made again)"
                )
        return folder

    @contextlib.contextmanager
    def _records_locked(self) -> Iterator[None]:
        """Hold the cache's record lock (``results.lock``): a read-merge-write of a record,
        or a prune, by two runs or two threads at once would lose one side's fields."""
        self._folder(self.root)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "only soft file lock is available"
            import filelock

        # flock is per open file, not per thread: threads of one run queue on _THREADS.
        with (
            _THREADS,
            filelock.FileLock(
                self.root / _LOCK_NAME, timeout=_LOCK_WAIT, mode=0o644, thread_local=False
            ),
        ):
            yield

    def remember(self, result: Result) -> Result:
        """Record ``result`` (merged over what is known of its fingerprint); returns it."""
        path = self._record_path(result.fingerprint)
        if path is None:
            return result
        with self._records_locked():
            previous = self.get(result.fingerprint)
            merged = previous.merged(result) if previous is not None else result
            if merged == previous:
                return merged  # nothing new: no write (every run offers the manifest's entries)
            self._folder(self.results_dir)
            text = json.dumps(merged.to_json(), indent=2, ensure_ascii=False) + "\n"
            # Not durable: a record lost to a power cut costs at most one create; the
            # manifest (fsynced) stays the source of truth for what was paid for.
            write_atomic(path, text.encode("utf-8"), durable=False)
        return merged

    def add_video(self, source: Path, *, sha256: str | None = None, move: bool = False) -> Result:
        """Put the file ``source`` into ``videos/`` under its SHA-256.

        Returns a partial :class:`Result` holding only ``video`` and ``size`` (for
        :meth:`Result.merged`). A hard link where the file system allows (a
        ``--download`` copy costs no space), else a copy; ``move`` renames instead.
        """
        digest, size = file_sha256(source) if sha256 is None else (sha256, source.stat().st_size)
        self._folder(self.videos_dir)
        target = self.video_path(digest)
        # Never through a link planted at the target or at a guessable temporary name.
        refuse_link(target)
        if target.exists() and target.stat().st_size == size:
            if move:
                source.unlink()
            return Result("", "", video=digest, size=size)
        if move:
            place(source, target)
            return Result("", "", video=digest, size=size)
        # A hard link under an unpredictable name (os.link never follows a link at its
        # destination and fails if the name exists), else a copy through fileio.
        tmp = target.with_name(f".{target.name}.{secrets.token_hex(8)}.tmp")
        try:
            os.link(source, tmp)
        except OSError:
            with AtomicFile(target) as out, source.open("rb") as src:
                shutil.copyfileobj(src, out.file)
                out.commit()
        else:
            try:
                place(tmp, target)
            finally:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(tmp)
        return Result("", "", video=digest, size=size)

    def new_video_path(self, stem: str) -> Path:
        """A temporary path inside ``videos/`` to write a new file to, then :meth:`add_video`
        it with ``move=True`` (same file system: the move is a rename)."""
        self._folder(self.videos_dir)
        return temp_path_beside(self.videos_dir / f"{stem}.mp4")

    # --- pruning ----------------------------------------------------------------

    def prune(
        self, storyboard: str, needed: Iterable[str], *, dry_run: bool = False
    ) -> tuple[list[Result], list[tuple[Path, int]]]:
        """Forget the results of ``storyboard`` that no fingerprint in ``needed`` asks
        for, then the video files no remaining record names.

        A result that other storyboards of this folder also made stays (without this
        storyboard's name). Returns the results dropped and the files deleted with their
        sizes (or, with ``dry_run``, what would be).
        """
        with self._records_locked():
            return self._prune(storyboard, set(needed), dry_run=dry_run)

    def _prune(
        self, storyboard: str, keep: set[str], *, dry_run: bool
    ) -> tuple[list[Result], list[tuple[Path, int]]]:
        dropped: list[Result] = []
        remaining: list[Result] = []
        for result in self.results():
            if storyboard not in result.storyboards or result.fingerprint in keep:
                remaining.append(result)
                continue
            others = tuple(b for b in result.storyboards if b != storyboard)
            if others:
                remaining.append(replace(result, storyboards=others))
                if not dry_run:
                    path = self._record_path(result.fingerprint)
                    assert path is not None
                    data = json.dumps(replace(result, storyboards=others).to_json(), indent=2)
                    write_atomic(path, (data + "\n").encode("utf-8"), durable=False)
                continue
            dropped.append(result)
            if not dry_run:
                path = self._record_path(result.fingerprint)
                assert path is not None
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
        used = {r.video for r in remaining if r.video}
        files: list[tuple[Path, int]] = []
        try:
            names = sorted(os.listdir(self.videos_dir))
        except OSError:
            names = []
        for name in names:
            if name.endswith(".mp4") and _HEX.match(name[:-4]) and name[:-4] not in used:
                path = self.videos_dir / name
                with contextlib.suppress(FileNotFoundError):
                    files.append((path, path.stat().st_size))
                    if not dry_run:
                        path.unlink()
        return dropped, files


def results_from_manifest(
    entries: Mapping[str, ManifestEntry], *, base_url: str, storyboard: str
) -> list[Result]:
    """The completed entries of a manifest as results."""
    out = []
    for shot_id, entry in entries.items():
        if entry.status == "completed" and entry.video_url:
            out.append(
                Result(
                    fingerprint=entry.fingerprint,
                    base_url=base_url,
                    task_id=entry.task_id,
                    video_url=entry.video_url,
                    finished_at=entry.finished_at,
                    storyboards=(storyboard,),
                    shot=shot_id,
                )
            )
    return out
