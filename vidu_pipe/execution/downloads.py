"""The videos of finished shots: saved to ``--download DIR`` and kept in the results cache.

The run hands each finished shot to one :class:`Keeper`, which owns everything after the
task: the completed request recorded in the results cache (``.vidu-pipe/``), a simulated
run's placeholder clip made, the video saved to ``DIR/ID.mp4`` (from the cache when it
holds the file, else from its URL, with retries) and that file recorded in the shot's
entry. A download that fails never fails the shot: its task is done and on record; the
shot is named in the run's ``downloads_failed`` (exit 1). The cache is a convenience: a
failure there is said once and changes nothing else.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Literal

import anyio

from vidu_pipe.constants import VIDEO_URL_LIFETIME
from vidu_pipe.errors import ApiError, ViduPipeError
from vidu_pipe.events import Downloaded, DownloadFailed, EventSink
from vidu_pipe.execution import retry
from vidu_pipe.execution.client import ViduClient
from vidu_pipe.execution.ratelimit import Clock
from vidu_pipe.fileio import AtomicFile
from vidu_pipe.manifest.history import Cache, Result, file_sha256
from vidu_pipe.manifest.store import Download, ManifestEntry, ManifestStore
from vidu_pipe.storyboard.model import Shot
from vidu_pipe.timestamps import parse_time

__all__ = ["Keeper"]


logger = logging.getLogger(__name__)


@dataclass(frozen=True, eq=False, kw_only=True)
class Keeper:
    """The download and results-cache half of one run, built by the run with what it
    shares: the lists and callbacks are the run's own, so what is written, said and
    counted here is the run's (its manifest, events, messages and exit code)."""

    store: ManifestStore
    client: ViduClient
    #: The run's clock and random source (download retries wait on them).
    clock: Clock
    rng: random.Random
    #: ``--download DIR``; None: videos are not saved.
    download_dir: Path | None
    cache: Cache | None
    #: Writes a simulated shot's placeholder clip to a path (see ``RunOptions``).
    placeholder: Callable[[Shot, Path], None] | None
    #: The storyboard file's name, recorded with each result in the cache.
    storyboard: str
    #: The run's closing messages (appended to).
    messages: list[str]
    #: The run's shots done whose video could not be saved (appended to).
    downloads_failed: list[str]
    emit: EventSink
    #: Records a shot's entry in the manifest (the run's shielded write).
    write: Callable[[Shot, ManifestEntry], Awaitable[None]]
    #: Tells of a download that is tried again (a ``retried`` event).
    retried: Callable[[Shot, Literal["download"], int, ApiError, float], None]

    # --- the results cache ------------------------------------------------------

    async def keep(self, shot: Shot) -> Path | None:
        """Record a completed request in the cache; in a simulated run, make its clip
        (returned: the file in the cache)."""
        entry = self.store.get(shot.id)
        cache = self.cache
        if cache is None or entry is None:
            return None
        result = self._result(shot, entry)
        make = self.placeholder
        if make is not None:
            made = result
            result = await self._cache_call(
                made, lambda: _make_placeholder(cache, make, shot, made)
            )
        await self.remember(shot, result)
        if make is None:
            return None
        return await anyio.to_thread.run_sync(cache.video_of, result)

    def _result(self, shot: Shot, entry: ManifestEntry) -> Result:
        """The shot's completed request as the cache records it (no video file yet)."""
        return Result(
            fingerprint=shot.fingerprint,
            base_url=self.client.base_url,
            task_id=entry.task_id,
            video_url=entry.video_url,
            finished_at=entry.finished_at,
        )

    async def remember(self, shot: Shot, result: Result) -> None:
        """Record ``result`` in the cache as the shot's, of this storyboard."""
        cache = self.cache
        if cache is None:
            return
        named = dataclasses.replace(result, storyboards=(self.storyboard,), shot=shot.id)
        await self._cache_call(named, lambda: cache.remember(named))

    async def _cache_call(self, fallback: Result, work: Callable[[], Result]) -> Result:
        """Run cache work off the event loop. The cache is a convenience: a failure there
        is said once and never fails the shot (the manifest holds what was paid for)."""
        try:
            return await anyio.to_thread.run_sync(work)
        except (OSError, ViduPipeError) as exc:
            text = f"the results cache was not written: {exc}"
            if text not in self.messages:
                self.messages.append(text)
            logger.debug("cache", exc_info=True)
            return fallback

    async def copy_download(self, shot: Shot, source: Path) -> None:
        """``--download``: the restored video from the cache, without the network."""
        dest = self.destination(shot)
        try:
            size, sha256 = await anyio.to_thread.run_sync(_copy_file, source, dest)
        except OSError as exc:
            self._download_failed(shot, f"cannot save {dest}: {exc.strerror or exc}")
            return
        await self._record_download(shot, dest, size, sha256)

    # --- downloads ------------------------------------------------------------

    def destination(self, shot: Shot) -> Path:
        """Where ``--download`` saves the shot's video: ``DIR/ID.mp4``."""
        folder = self.download_dir
        assert folder is not None
        # Shot ids match [A-Za-z0-9][A-Za-z0-9._-]*, so this never leaves the folder.
        return folder / f"{shot.id}.mp4"

    def download_record(self, dest: Path, size: int, sha256: str) -> Download:
        """The saved file as the shot's entry records it (its path from the manifest's)."""
        return Download(path=_relative(dest, self.store.path.parent), size=size, sha256=sha256)

    async def ensure_download(self, shot: Shot, entry: ManifestEntry) -> None:
        """For an up-to-date shot: save the video again only if missing or corrupt; from the
        results cache when it holds the file (no network: the URL may be long dead), else
        a simulated run makes its clip again, else from the URL."""
        dest = self.destination(shot)
        if entry.download is not None and await anyio.to_thread.run_sync(
            _file_matches, dest, entry.download.size, entry.download.sha256
        ):
            return
        cache = self.cache
        cached = None
        if cache is not None:
            cached = await anyio.to_thread.run_sync(_cached_video, cache, entry)
        if cached is None and self.placeholder is not None:
            cached = await self.keep(shot)  # simulated: its URL never held a video
        if cached is not None:
            await self.copy_download(shot, cached)
        elif entry.video_url:
            await self.download(shot, entry.video_url)
        elif entry.download is not None:
            # A video that came inline has no URL: the cache's copy was all.
            self._download_failed(
                shot,
                f"{dest} is missing or changed, and its video came inline (no URL to fetch "
                f"it from, none in the cache): `--force --only {shot.id}` makes it again",
            )

    async def download(self, shot: Shot, url: str) -> None:
        """Save the video at ``url`` as the shot's, retrying what may pass next time."""
        dest = self.destination(shot)

        async def once() -> tuple[int, str]:
            dest.parent.mkdir(parents=True, exist_ok=True)
            return await self.client.download(url, dest)

        def told(attempt: int, exc: ApiError, delay: float, note: str | None) -> None:
            self.retried(shot, "download", attempt, exc, delay)

        try:
            size, sha256 = await retry.retrying(
                once,
                policy=retry.DOWNLOAD,
                may_retry=retry.download_may_retry,
                sleep=self.clock.sleep,
                rng=self.rng,
                from_wire=self.clock.from_wire,
                on_retry=told,
            )
        except ApiError as exc:
            self._download_failed(shot, f"{exc.message} ({self._dead_url_hint(shot)})")
            return
        except OSError as exc:
            self._download_failed(shot, f"cannot save {dest}: {exc.strerror or exc}")
            return
        entry = await self._record_download(shot, dest, size, sha256)
        if entry is not None:
            await self.cache_file(shot, entry, dest, sha256)

    async def _record_download(
        self, shot: Shot, dest: Path, size: int, sha256: str
    ) -> ManifestEntry | None:
        """The saved file into the shot's entry (returned), and its ``downloaded`` event."""
        entry = self.store.get(shot.id)
        if entry is not None:
            entry = entry.replace(download=self.download_record(dest, size, sha256))
            await self.write(shot, entry)
        self.emit(Downloaded(shot=shot.id, path=str(dest), size=size, sha256=sha256))
        return entry

    async def cache_file(self, shot: Shot, entry: ManifestEntry, dest: Path, sha256: str) -> None:
        """The saved file goes into the cache too (a hard link: no second copy on disk),
        so that a revert restores it long after its URL expired."""
        cache = self.cache
        if cache is None or entry.fingerprint != shot.fingerprint:
            return
        kept = await self._cache_call(Result("", ""), lambda: cache.add_video(dest, sha256=sha256))
        if kept.video:
            result = self._result(shot, entry)
            await self.remember(shot, dataclasses.replace(result, video=kept.video, size=kept.size))

    def _dead_url_hint(self, shot: Shot) -> str:
        """What to do about a video URL that did not serve the video. Its 24-hour life is
        blamed only when the URL is that old (SPEC: videos "can still be had" till then)."""
        entry = self.store.get(shot.id)
        finished = parse_time(entry.finished_at) if entry is not None else None
        again = f"`--force --only {shot.id}` makes the video again"
        if finished is not None and datetime.now(timezone.utc) - finished > VIDEO_URL_LIFETIME:
            assert entry is not None
            return (
                f"its URL is from {entry.finished_at}, and video URLs expire after about "
                f"24 hours; {again}"
            )
        return f"the relay did not serve it; a rerun tries again, or {again}"

    def _download_failed(self, shot: Shot, error: str) -> None:
        """The task is done and recorded; only its file is missing. The shot keeps its
        outcome (completed, up to date, restored); the run exits 1."""
        self.downloads_failed.append(shot.id)
        path = str(self.destination(shot))
        self.emit(DownloadFailed(shot=shot.id, path=path, error=error))


def _cached_video(cache: Cache, entry: ManifestEntry) -> Path | None:
    """The results cache's file of an up-to-date entry's video, or None: the file it was
    downloaded as (by SHA-256), or the cached video of this very task. A file downloaded
    before is checked whole: the cache hard-links downloads, and a file edited in place
    is edited in the cache too."""
    known = entry.download
    candidates = [] if known is None else [cache.video_path(known.sha256)]
    record = cache.get(entry.fingerprint)
    if record is not None and record.task_id is not None and record.task_id == entry.task_id:
        found = cache.video_of(record)
        if found is not None:
            candidates.append(found)
    for path in candidates:
        if known is None:
            return path
        if _file_matches(path, known.size, known.sha256):
            return path
    return None


def _file_matches(path: Path, size: int, sha256: str) -> bool:
    try:
        return path.stat().st_size == size and file_sha256(path) == (sha256, size)
    except OSError:
        return False


def _copy_file(source: Path, dest: Path) -> tuple[int, str]:
    """Copy ``source`` to ``dest`` atomically, hashing while copying; (size, sha256)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    size = 0
    # fileio: an unpredictable temporary name, never through a link planted at dest.
    with AtomicFile(dest) as out, source.open("rb") as src:
        for block in iter(lambda: src.read(1 << 20), b""):
            digest.update(block)
            out.file.write(block)
            size += len(block)
        out.commit()
    return size, digest.hexdigest()


def _make_placeholder(
    cache: Cache, make: Callable[[Shot, Path], None], shot: Shot, result: Result
) -> Result:
    """Write the shot's placeholder clip into the cache; ``result`` with its file."""
    tmp = cache.new_video_path(shot.id)
    try:
        make(shot, tmp)
        kept = cache.add_video(tmp, move=True)
    finally:
        tmp.unlink(missing_ok=True)
    return dataclasses.replace(result, video=kept.video, size=kept.size)


def _relative(path: Path, start: Path) -> str:
    try:
        return os.path.relpath(path, start)
    except ValueError:
        return str(path.resolve())
