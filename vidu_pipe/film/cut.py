"""Cut: the chosen take of every selected shot, in storyboard order, as one film.

``vidu-pipe cut FILE [-o film.mp4] [--format mp4|otio|edl|fcpxml]``. For each shot
whose take is the chosen one (a shot without takes, or its ``pick``, take 1 by
default) the video is found, in this order:

1. the ``--download`` file the manifest records, when it is still there;
2. the results cache (``.vidu-pipe/videos/``): a file downloaded or, for a simulated
   run, the placeholder clip the run made (so ``cut`` after ``run --simulate`` is an
   *animatic*: the film's timing before a credit is spent);
3. the relay's URL, while it is younger than its 24-hour life: fetched into the cache.

A shot whose video cannot be had is named with the reason; nothing is written then
(exit 1). The clips are joined without re-encoding when they share codec, size and
frame rate, and re-encoded to the first clip's format otherwise (``join``); or
written as a timeline (``timeline``). Blocking video work runs in a worker thread.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Literal

import anyio
import httpx

from vidu_pipe.constants import EXIT_FAILED, SIMULATOR_BASE_URL, VIDEO_URL_LIFETIME
from vidu_pipe.errors import ApiError, UsageError, ViduPipeError
from vidu_pipe.fileio import place, refuse_link, temp_path_beside
from vidu_pipe.manifest.history import Cache, Result
from vidu_pipe.manifest.store import Manifest, ManifestEntry
from vidu_pipe.planner import select
from vidu_pipe.storyboard.model import Shot, Storyboard
from vidu_pipe.timestamps import parse_time

__all__ = ["FORMATS", "CutError", "CutResult", "Video", "acut", "locate"]

CutFormat = Literal["mp4", "otio", "edl", "fcpxml"]
FORMATS: tuple[CutFormat, ...] = ("mp4", "otio", "edl", "fcpxml")


class CutError(ViduPipeError):
    """Raised when shots of the cut have no video to be had (each one named); exit 1."""

    exit_code = EXIT_FAILED


@dataclass(frozen=True)
class Video:
    """Where the video of one shot of the cut is, or why there is none."""

    shot: Shot
    path: Path | None = None
    #: A fresh URL to fetch into the cache (when there is no local file).
    url: str | None = None
    problem: str | None = None
    base_url: str | None = None


@dataclass(frozen=True)
class CutResult:
    """What ``cut`` wrote."""

    output: Path
    format: CutFormat
    shots: tuple[str, ...]
    duration: float
    #: ``remux`` (no re-encoding) or ``reencode`` for an MP4; None for a timeline.
    method: str | None = None
    reasons: tuple[str, ...] = ()
    width: int = 0
    height: int = 0
    frames: int = 0
    #: Shots whose video was fetched from its URL into the cache first.
    fetched: tuple[str, ...] = field(default=())


def _fresh(entry_or_result: ManifestEntry | Result, now: datetime) -> bool:
    finished = parse_time(entry_or_result.finished_at)
    return finished is not None and now - finished < VIDEO_URL_LIFETIME


def _age(finished_at: str | None, now: datetime) -> str:
    finished = parse_time(finished_at)
    if finished is None:
        return "long ago"
    hours = (now - finished).total_seconds() / 3600
    return f"{hours:.0f} h ago" if hours < 48 else f"{hours / 24:.0f} days ago"


def locate(
    shot: Shot,
    manifest: Manifest | None,
    manifest_path: Path,
    cache: Cache,
    *,
    now: datetime | None = None,
) -> Video:
    """Where the video of ``shot``'s current request is: a file, a fresh URL, or neither."""
    moment = now if now is not None else datetime.now(timezone.utc)
    entry = manifest.get(shot.id) if manifest is not None else None
    current = entry is not None and entry.fingerprint == shot.fingerprint
    base = manifest.base_url if manifest is not None else None
    simulated = base == SIMULATOR_BASE_URL
    if current and entry is not None and entry.status == "completed" and entry.download:
        saved = manifest_path.parent / entry.download.path
        with contextlib.suppress(OSError):
            if saved.is_file() and saved.stat().st_size == entry.download.size:
                return Video(shot, path=saved)
    record = cache.get(shot.fingerprint)
    # A simulated placeholder never stands in for a real video (nor the other way).
    cached = (
        cache.video_of(record)
        if record is not None and (manifest is None or record.simulated == simulated)
        else None
    )
    if cached is not None:
        return Video(shot, path=cached)
    if (
        current
        and entry is not None
        and entry.status == "completed"
        and not simulated
        and entry.video_url
        and _fresh(entry, moment)
    ):
        return Video(shot, url=entry.video_url, base_url=base)
    if record is not None and not record.simulated and record.video_url and _fresh(record, moment):
        return Video(shot, url=record.video_url, base_url=record.base_url)
    return Video(shot, problem=_why_not(shot, entry, current, simulated, moment))


def _why_not(
    shot: Shot, entry: ManifestEntry | None, current: bool, simulated: bool, now: datetime
) -> str:
    if entry is None or entry.status == "pending":
        return "not made yet (run it first)"
    if not current:
        return "changed since its video was made (run it first)"
    if entry.status == "failed":
        return f"its task failed ({entry.error or 'no reason given'}); run it again"
    if entry.status == "submitted":
        return "its task is still running (run again to finish it)"
    if simulated:
        return "a simulated result whose placeholder clip is not in the cache (run --simulate)"
    if entry.download is not None and not entry.video_url:
        return (
            f"its video came inline (no URL) and neither its saved file "
            f"{entry.download.path} nor the cache holds it: `vidu-pipe run FILE --force "
            f"--only {shot.id}` makes it again"
        )
    return (
        f"its video URL expired (the task finished {_age(entry.finished_at, now)}) and it was "
        f"never downloaded: `vidu-pipe run FILE --force --only {shot.id}` makes it again"
    )


def _chosen(board: Storyboard, only: Sequence[str], tags: Sequence[str]) -> list[Shot]:
    # A take named exactly (--only closeup.take3) is cut even when it is not the pick.
    shots = [shot for shot in select(board, only, tags) if shot.chosen or shot.id in only]
    if not shots:
        raise UsageError(
            "the selected shots are takes that are not chosen: pick one with "
            "`vidu-pipe pick FILE ID.takeK`, or select the shot by its id"
        )
    return shots


async def _fetch(
    videos: list[Video], cache: Cache, storyboard: str, transport: httpx.AsyncBaseTransport | None
) -> tuple[list[Video], list[str]]:
    """Download the videos that are URLs into the cache, four at a time."""
    from vidu_pipe.execution.client import ViduClient

    out = list(videos)
    problems: list[str] = []
    limiter = anyio.CapacityLimiter(4)

    async def one(index: int, video: Video, client: ViduClient) -> None:
        assert video.url is not None
        async with limiter:
            tmp = await anyio.to_thread.run_sync(cache.new_video_path, video.shot.id)
            try:
                _size, sha256 = await client.download(video.url, tmp)
                kept = await anyio.to_thread.run_sync(
                    lambda: cache.add_video(tmp, sha256=sha256, move=True)
                )
            except (ApiError, OSError) as exc:
                text = exc.message if isinstance(exc, ApiError) else str(exc)
                problems.append(f"shot '{video.shot.id}': could not fetch its video: {text}")
                return
            finally:
                tmp.unlink(missing_ok=True)
        assert kept.video is not None
        known = cache.get(video.shot.fingerprint)
        result = Result(
            fingerprint=video.shot.fingerprint,
            base_url=video.base_url or "",
            task_id=known.task_id if known else None,
            video_url=video.url,
            finished_at=known.finished_at if known else None,
            video=kept.video,
            size=kept.size,
            storyboards=(storyboard,),
            shot=video.shot.id,
        )
        await anyio.to_thread.run_sync(cache.remember, result)
        out[index] = Video(video.shot, path=cache.video_path(kept.video))

    wanted = [(i, v) for i, v in enumerate(videos) if v.path is None and v.url is not None]
    if wanted:
        async with (
            ViduClient("http://video.invalid", None, transport=transport) as client,
            anyio.create_task_group() as tg,
        ):
            for index, video in wanted:
                tg.start_soon(one, index, video, client)
    return out, sorted(problems)


def _write(fmt: CutFormat, board: Storyboard, videos: Sequence[Video], output: Path) -> CutResult:
    """The blocking part: join or write the timeline into a temporary file, then rename."""
    from vidu_pipe.film import join, timeline

    paths = [v.path for v in videos]
    assert all(p is not None for p in paths)
    files = [p for p in paths if p is not None]
    output.parent.mkdir(parents=True, exist_ok=True)
    # fileio: an unpredictable name made O_EXCL (PyAV and OTIO open it by name), and the
    # rename refuses a link planted at the output.
    refuse_link(output)
    tmp = temp_path_beside(output)
    ids = tuple(v.shot.id for v in videos)
    try:
        if fmt == "mp4":
            joined = join.join(files, tmp)
            place(tmp, output)
            names = {str(p): f"shot '{v.shot.id}'" for v, p in zip(videos, files, strict=True)}
            reasons = [_named(reason, names) for reason in joined.reasons]
            return CutResult(
                output,
                fmt,
                ids,
                joined.duration,
                method=joined.method,
                reasons=tuple(reasons),
                width=joined.width,
                height=joined.height,
                frames=joined.frames,
            )
        infos = [join.probe(p) for p in files]
        shots = [
            timeline.TimelineShot(
                v.shot.id,
                v.shot.prompt,
                str(p),
                {
                    "model": v.shot.model,
                    "duration": v.shot.duration,
                    "take": v.shot.take,
                    "fingerprint": v.shot.fingerprint,
                },
            )
            for v, p in zip(videos, files, strict=True)
        ]
        built = timeline.build_timeline(shots, name=board.name, infos=infos)
        timeline.write_timeline(built, tmp, fmt)
        place(tmp, output)
        return CutResult(
            output,
            fmt,
            ids,
            sum(i.duration for i in infos),
            frames=sum(i.frames for i in infos),
        )
    finally:
        tmp.unlink(missing_ok=True)


async def acut(
    board: Storyboard,
    manifest: Manifest | None,
    *,
    manifest_path: Path,
    output: Path,
    fmt: CutFormat = "mp4",
    only: Sequence[str] = (),
    tags: Sequence[str] = (),
    cache_dir: Path | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
    now: datetime | None = None,
) -> CutResult:
    """Find (and fetch) the chosen takes' videos and write the film or its timeline.

    Raises :class:`CutError` naming every shot whose video cannot be had (nothing is
    written then), :class:`UsageError` for a selection with no chosen take.
    """
    if fmt not in FORMATS:
        raise UsageError(f"--format {fmt!r}: one of {', '.join(FORMATS)}")
    if fmt in ("edl", "fcpxml"):
        from vidu_pipe.film.timeline import check_adapter

        check_adapter(fmt)  # before any download: a missing extra is said at once
    cache = Cache(cache_dir) if cache_dir is not None else Cache.beside(board.path)
    shots = _chosen(board, only, tags)
    videos = [locate(s, manifest, manifest_path, cache, now=now) for s in shots]
    missing = [f"shot '{v.shot.id}': {v.problem}" for v in videos if v.problem]
    if missing:
        raise CutError(_listing(board, missing))
    fetched = tuple(v.shot.id for v in videos if v.path is None)
    videos, failed = await _fetch(videos, cache, board.path.name, transport)
    if failed:
        raise CutError(_listing(board, failed))
    result = await anyio.to_thread.run_sync(_write, fmt, board, videos, output)
    return dataclasses.replace(result, fetched=fetched)


def _named(reason: str, names: dict[str, str]) -> str:
    """A join reason with the clips' file paths replaced by their shots' ids."""
    for path, name in sorted(names.items(), key=lambda item: -len(item[0])):
        reason = reason.replace(path, name)
    return reason


def _listing(board: Storyboard, problems: list[str]) -> str:
    head = f"{board.path}: {len(problems)} shot" + ("" if len(problems) == 1 else "s")
    return head + " of the cut have no video:\n" + "\n".join(f"  {p}" for p in problems)
