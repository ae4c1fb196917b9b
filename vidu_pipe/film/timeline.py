"""The cut as an editor's timeline: OpenTimelineIO, CMX 3600 EDL, FCPXML.

One video track; one clip per shot, in storyboard order, named by shot id,
with the shot's prompt (and anything else worth keeping) in
``clip.metadata["vidu_pipe"]`` and an ``ExternalReference`` to the video file
whose ``available_range`` comes from ``join.probe`` (frames at the clip's
frame rate, starting at 0).

Formats, chosen by ``fmt`` or the file's suffix:

* ``otio`` (otio_json, built in): everything survives, metadata included.
* ``edl`` (``otio-cmx3600-adapter``, adapter ``cmx_3600``): events with timecodes, reel
  names (<= 8 characters, derived from the file name) and ``* FROM CLIP NAME`` /
  ``* FROM CLIP`` comments; names, durations and file paths survive, metadata does not.
* ``fcpxml`` (``otio-fcpx-xml-adapter``, adapter ``fcpx_xml``): clips, durations and
  file URLs survive, custom metadata does not.

The adapters are separate pip packages (an optional extra for vidu-pipe); a
missing adapter raises ``TimelineError`` naming the package to install.

OpenTimelineIO ships no type information (no ``py.typed``), so it is imported
as ``Any`` here and every value crossing this module's API is a plain type.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import opentimelineio as otio

from vidu_pipe.errors import ConfigError, ViduPipeError
from vidu_pipe.film.join import ClipInfo, probe

__all__ = [
    "Format",
    "ReadClip",
    "TimelineError",
    "TimelineShot",
    "build_timeline",
    "check_adapter",
    "read_timeline",
    "write_timeline",
]

Format = Literal["otio", "edl", "fcpxml"]

_ADAPTERS: dict[str, tuple[str, str]] = {  # format -> (OTIO adapter name, pip package)
    "otio": ("otio_json", "opentimelineio"),
    "edl": ("cmx_3600", "otio-cmx3600-adapter"),
    "fcpxml": ("fcpx_xml", "otio-fcpx-xml-adapter"),
}


class TimelineError(ViduPipeError):
    """A timeline cannot be written or read (e.g. its adapter is not installed)."""


@dataclass(frozen=True)
class TimelineShot:
    """What the timeline needs to know about one shot's chosen take."""

    id: str
    prompt: str
    path: str
    extra: Mapping[str, Any] = field(default_factory=dict)  # e.g. model, take, seed


@dataclass(frozen=True)
class ReadClip:
    """One clip as read back from a timeline file."""

    name: str
    start: float  # seconds, position on the track
    duration: float  # seconds
    target_url: str | None
    vidu_pipe: dict[str, Any]  # our metadata, {} when the format dropped it


def build_timeline(
    shots: Sequence[TimelineShot], *, name: str, infos: Sequence[ClipInfo] | None = None
) -> Any:
    """An ``otio.schema.Timeline`` of ``shots`` (probed unless ``infos`` is given)."""
    if infos is None:
        infos = [probe(s.path) for s in shots]
    track = otio.schema.Track(name="V1", kind=otio.schema.TrackKind.Video)
    for shot, info in zip(shots, infos, strict=True):
        rate = float(info.fps)
        available = otio.opentime.TimeRange(
            start_time=otio.opentime.RationalTime(0, rate),
            duration=otio.opentime.RationalTime(info.frames, rate),
        )
        ref = otio.schema.ExternalReference(
            target_url=Path(shot.path).resolve().as_uri(),  # file:///abs/path.mp4
            available_range=available,
        )
        clip = otio.schema.Clip(name=shot.id, media_reference=ref, source_range=available)
        clip.metadata["vidu_pipe"] = {"shot": shot.id, "prompt": shot.prompt, **dict(shot.extra)}
        # EDL reel names are at most 8 characters; left alone, the adapter
        # truncates the file name ("shot-01.mp4" -> "shot01mp"), which can
        # collide. Use the position plus the start of the id: unique, readable.
        clip.metadata["cmx_3600"] = {"reel": f"{len(track) + 1:03d}{_reel_chars(shot.id)}"[:8]}
        track.append(clip)
    timeline = otio.schema.Timeline(name=name)
    timeline.tracks.append(track)
    return timeline


def _reel_chars(shot_id: str) -> str:
    return "".join(c for c in shot_id.upper() if c.isascii() and c.isalnum())


def _format_of(path: str | Path, fmt: Format | None) -> Format:
    if fmt is not None:
        return fmt
    suffix = Path(path).suffix.lower().lstrip(".")
    if suffix in ("otio", "edl", "fcpxml"):
        return suffix  # type: ignore[return-value]  # narrowed by the test above
    raise TimelineError(
        f"{path}: cannot tell the timeline format from the suffix; use otio, edl or fcpxml"
    )


def _adapter(fmt: Format) -> str:
    adapter, package = _ADAPTERS[fmt]
    if adapter not in otio.adapters.available_adapter_names():
        raise ConfigError(
            f"--format {fmt} needs OpenTimelineIO's {package} adapter: "
            "pip install 'vidu-pipe[editors]'"
        )
    return adapter


def check_adapter(fmt: Format) -> None:
    """Raise :class:`ConfigError` (saying what to install) when ``fmt`` cannot be written."""
    _adapter(fmt)


def write_timeline(timeline: Any, path: str | Path, fmt: Format | None = None) -> None:
    """Write ``timeline`` as otio / edl / fcpxml (from ``fmt`` or the suffix)."""
    f = _format_of(path, fmt)
    adapter = _adapter(f)
    kwargs: dict[str, Any] = {}
    if f == "edl":
        # The EDL's timecode rate: the first clip's frame rate.
        first = next(iter(timeline.find_clips()), None)
        if first is not None:
            kwargs["rate"] = first.source_range.duration.rate
    otio.adapters.write_to_file(timeline, str(path), adapter_name=adapter, **kwargs)


def read_timeline(path: str | Path, fmt: Format | None = None) -> list[ReadClip]:
    """The clips of a timeline file, in track order, as plain values."""
    f = _format_of(path, fmt)
    kwargs: dict[str, Any] = {}
    tl = otio.adapters.read_from_file(str(path), adapter_name=_adapter(f), **kwargs)
    clips: list[ReadClip] = []
    for clip in tl.find_clips():
        rng = clip.range_in_parent()
        ref = clip.media_reference
        url = getattr(ref, "target_url", None)
        meta = clip.metadata.get("vidu_pipe")
        clips.append(
            ReadClip(
                name=str(clip.name),
                start=float(rng.start_time.to_seconds()),
                duration=float(rng.duration.to_seconds()),
                target_url=str(url) if url else None,
                vidu_pipe=dict(meta) if meta is not None else {},
            )
        )
    return clips
