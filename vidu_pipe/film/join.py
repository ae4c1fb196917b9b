"""Probe video clips and join them, in order, into one browser-playable MP4.

``join`` takes one of two paths and says which in its result:

* **remux** (no decoding): when every clip's video stream has the same codec,
  size, pixel format, frame rate, sample aspect ratio *and* identical codec
  extradata. Packets are copied as they are; only their timestamps are shifted
  so each clip starts where the previous one ended. The extradata check
  matters: an MP4 carries the H.264 SPS/PPS once, in the sample description
  (``avcC``), so clips made with different encoder settings (CABAC vs CAVLC,
  reference count, profile...) must not share it even when size and rate match.
* **reencode**: otherwise. Every clip is decoded and re-encoded with libx264 to
  the *first* clip's size and frame rate (the film's format is set by its first
  shot). A clip of another shape is scaled to fit inside that frame keeping its
  aspect ratio and **letterboxed/pillarboxed** with black bars (never stretched,
  never cropped); another frame rate is converted with the ``fps`` filter
  (frames dropped/duplicated; the clip keeps its duration).

Only the first video stream of each clip is used. vidu-pipe always requests
``audio: false, bgm: false``, so clips have no sound; if any clip does have
audio, the result's ``dropped_audio`` lists it.

The output is always written with ``movflags=+faststart`` (index first), so a
browser can start playing it before it has loaded the whole file.

Memory stays flat with the number of clips: clips are opened one at a time and
packets stream from demuxer to muxer; only the MP4 index grows (a few bytes
per frame).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Literal

import av
import av.error
import av.filter
from av.container.input import InputContainer
from av.video.frame import VideoFrame
from av.video.stream import VideoStream

from vidu_pipe.errors import ViduPipeError

__all__ = [
    "ClipInfo",
    "JoinError",
    "JoinResult",
    "join",
    "mp4_top_level_boxes",
    "probe",
    "remux_key",
]

_FASTSTART = {"movflags": "+faststart"}


class JoinError(ViduPipeError):
    """A clip cannot be read or has no video stream."""


@dataclass(frozen=True)
class ClipInfo:
    """What ``probe`` learns about a clip (its first video stream)."""

    path: str
    codec: str  # e.g. "h264"
    profile: str | None  # e.g. "High", "Constrained Baseline"
    width: int
    height: int
    pix_fmt: str | None  # e.g. "yuv420p"
    fps: Fraction  # average frame rate
    duration: float  # seconds
    frames: int  # number of video frames
    time_base: Fraction
    sample_aspect_ratio: Fraction | None
    extradata_sha256: str  # fingerprint of the codec's global header (SPS/PPS)
    has_audio: bool


@dataclass
class JoinResult:
    """What ``join`` did."""

    path: str
    method: Literal["remux", "reencode"]
    reasons: list[str]  # why it re-encoded (empty for remux)
    width: int
    height: int
    fps: Fraction
    frames: int  # frames written
    duration: float  # seconds, from the written timestamps
    letterboxed: list[str] = field(default_factory=list)  # clips scaled + padded
    dropped_audio: list[str] = field(default_factory=list)  # clips whose audio was left out


def _video_stream(container: InputContainer, path: str) -> VideoStream:
    if not container.streams.video:
        raise JoinError(f"{path}: no video stream")
    return container.streams.video[0]


def probe(path: str | Path) -> ClipInfo:
    """Read a clip's video properties from its header (decodes nothing).

    The frame count comes from the container index (``stream.frames``); when a
    container does not record it, the packets are counted (still no decoding).
    """
    p = str(path)
    try:
        container = av.open(p)
    except av.error.FFmpegError as exc:
        raise JoinError(f"{p}: cannot open: {exc}") from exc
    with container:
        vs = _video_stream(container, p)
        cc = vs.codec_context
        tb = vs.time_base or Fraction(1, 90000)
        fps = vs.average_rate or vs.guessed_rate or Fraction(24)
        frames = vs.frames
        if frames <= 0:
            frames = sum(1 for pkt in container.demux(vs) if pkt.size)
            container.seek(0)
        if vs.duration is not None:
            duration = float(vs.duration * tb)
        elif container.duration is not None:
            duration = container.duration / av.time_base
        else:
            duration = float(frames / fps)
        return ClipInfo(
            path=p,
            codec=cc.name,
            profile=cc.profile,
            width=cc.width,
            height=cc.height,
            pix_fmt=cc.pix_fmt,
            fps=fps,
            duration=duration,
            frames=frames,
            time_base=tb,
            sample_aspect_ratio=cc.sample_aspect_ratio,
            extradata_sha256=hashlib.sha256(cc.extradata or b"").hexdigest(),
            has_audio=bool(container.streams.audio),
        )


def remux_key(info: ClipInfo) -> tuple[object, ...]:
    """Clips whose keys are equal can be joined by copying packets."""
    sar = info.sample_aspect_ratio if info.sample_aspect_ratio not in (None, 0) else Fraction(1)
    return (info.codec, info.width, info.height, info.pix_fmt, info.fps, sar, info.extradata_sha256)


_KEY_NAMES = (
    "codec",
    "size",
    "size",
    "pixel format",
    "frame rate",
    "sample aspect ratio",
    "codec headers (SPS/PPS)",
)


def _mismatches(infos: Sequence[ClipInfo]) -> list[str]:
    """Human-readable reasons why the clips cannot be remuxed together."""
    first = remux_key(infos[0])
    reasons: list[str] = []
    for info in infos[1:]:
        key = remux_key(info)
        diff = sorted(
            {_KEY_NAMES[i] for i, (a, b) in enumerate(zip(first, key, strict=True)) if a != b}
        )
        if len(diff) > 1:  # other differences imply different headers: don't list them
            diff.remove(_KEY_NAMES[-1])
        if diff:
            verb = "differs" if len(diff) == 1 else "differ"
            reasons.append(f"{info.path}: {', '.join(diff)} {verb} from {infos[0].path}")
    return reasons


def join(paths: Sequence[str | Path], out: str | Path) -> JoinResult:
    """Concatenate ``paths`` in order into the MP4 ``out`` (remux when possible)."""
    if not paths:
        raise ValueError("nothing to join")
    infos = [probe(p) for p in paths]
    dropped = [i.path for i in infos if i.has_audio]
    reasons = _mismatches(infos)
    if reasons:
        result = _reencode(infos, str(out))
        result.reasons = reasons
    else:
        result = _remux(infos, str(out))
    result.dropped_audio = dropped
    return result


def mp4_top_level_boxes(path: str | Path) -> list[str]:
    """The MP4's top-level box types in file order, e.g. ["ftyp", "moov", "mdat"].

    "moov" before "mdat" means faststart: a browser can play while downloading.
    """
    boxes: list[str] = []
    with open(path, "rb") as f:
        while header := f.read(8):
            if len(header) < 8:
                break
            size, kind = int.from_bytes(header[:4], "big"), header[4:8].decode("latin-1")
            boxes.append(kind)
            if size == 1:  # 64-bit size follows
                size = int.from_bytes(f.read(8), "big")
                f.seek(size - 16, 1)
            elif size == 0:  # box extends to the end of the file
                break
            else:
                f.seek(size - 8, 1)
    return boxes


# --- remux -------------------------------------------------------------------


def _remux(infos: Sequence[ClipInfo], out_path: str) -> JoinResult:
    """Copy the packets of every clip, shifting timestamps to follow on.

    All timestamps are handled in one working time base (the first clip's
    stream time base); ``packet.rescale_ts`` converts each clip's packets into
    it, and ``OutputContainer.mux`` converts to whatever time base the MP4
    muxer settled on when it wrote the header.
    """
    first = infos[0]
    frame_ticks = max(1, round(1 / (first.fps * first.time_base)))  # one frame, working tb
    frames = 0
    offset = 0  # where the current clip starts, working tb
    last_dts: int | None = None
    with (
        av.open(first.path) as tmpl_in,
        av.open(out_path, "w", format="mp4", container_options=_FASTSTART) as out,
    ):
        # Copies codec parameters, including the extradata (avcC), from clip 1.
        ost = out.add_stream_from_template(_video_stream(tmpl_in, first.path))
        work_tb = first.time_base
        for info in infos:
            with av.open(info.path) as src:
                ist = _video_stream(src, info.path)
                # Rescale factor from this clip's time base to the working one,
                # as integers: Fraction arithmetic per packet would cost more
                # than the muxing itself. (Packet.rescale_ts in PyAV 18 wants
                # an av.rational.AVRational and raises TypeError for a Fraction.)
                num, den = (Fraction(ist.time_base or work_tb) / work_tb).as_integer_ratio()
                start: int | None = None  # clip's first presentation time, working tb
                end = 0  # clip's end (pts + duration), working tb, relative to start
                for pkt in src.demux(ist):
                    if pkt.size == 0 or pkt.pts is None or pkt.dts is None:
                        continue  # the demuxer's final flush packet / broken packet
                    if num != den:  # into the working time base, rounding to nearest
                        pkt.pts = (pkt.pts * num + den // 2) // den
                        pkt.dts = (pkt.dts * num + den // 2) // den
                        pkt.duration = ((pkt.duration or 0) * num + den // 2) // den
                    pkt.time_base = work_tb
                    if start is None:
                        # The clip's first presentation time: the stream's start
                        # time (which accounts for an edit list / B-frame delay),
                        # else the first packet's pts (an I frame).
                        if ist.start_time is not None and ist.time_base is not None:
                            start = round(ist.start_time * ist.time_base / work_tb)
                        else:
                            start = pkt.pts
                    dur = pkt.duration or frame_ticks
                    end = max(end, pkt.pts - start + dur)
                    pkt.pts += offset - start
                    dts = pkt.dts + offset - start
                    # Decode timestamps must strictly increase across the seam
                    # (clips with different B-frame delays could collide).
                    if last_dts is not None and dts <= last_dts:
                        dts = last_dts + 1
                    pkt.dts = min(dts, pkt.pts)
                    last_dts = pkt.dts
                    pkt.duration = dur
                    pkt.stream = ost
                    out.mux(pkt)
                    frames += 1
                offset += end
    return JoinResult(
        path=out_path,
        method="remux",
        reasons=[],
        width=first.width,
        height=first.height,
        fps=first.fps,
        frames=frames,
        duration=float(offset * work_tb),
    )


# --- re-encode -----------------------------------------------------------------


def _even(n: int) -> int:
    return n - n % 2


def _filtered_frames(
    info: ClipInfo, width: int, height: int, fps: Fraction
) -> Iterator[VideoFrame]:
    """Decode a clip and yield it at width x height (fit + pad), ``fps``, yuv420p."""
    with av.open(info.path) as src:
        ist = _video_stream(src, info.path)
        ist.thread_type = "AUTO"  # frame + slice threads for decoding
        graph = av.filter.Graph()
        buf = graph.add_buffer(template=ist)
        nodes = [
            buf,
            graph.add(
                "scale",
                f"{width}:{height}:force_original_aspect_ratio=decrease:force_divisible_by=2",
            ),
            graph.add("pad", f"{width}:{height}:(ow-iw)/2:(oh-ih)/2:black"),
            graph.add("setsar", "1"),
            graph.add("fps", f"{fps.numerator}/{fps.denominator}"),
            graph.add("format", "yuv420p"),
            graph.add("buffersink"),
        ]
        graph.link_nodes(*nodes).configure()

        def drain() -> Iterator[VideoFrame]:
            while True:
                try:
                    yield graph.vpull()
                except (BlockingIOError, av.error.EOFError):
                    return

        for frame in src.decode(ist):
            graph.vpush(frame)
            yield from drain()
        graph.vpush(None)  # end of stream: lets fps emit its last frame(s)
        yield from drain()


def _reencode(infos: Sequence[ClipInfo], out_path: str) -> JoinResult:
    """Decode every clip and encode one H.264 stream at the first clip's format."""
    first = infos[0]
    width, height, fps = _even(first.width), _even(first.height), first.fps
    letterboxed = [i.path for i in infos if (i.width, i.height) != (width, height)]
    n = 0
    with av.open(out_path, "w", format="mp4", container_options=_FASTSTART) as out:
        ost = out.add_stream("libx264", rate=fps)
        ost.width, ost.height, ost.pix_fmt = width, height, "yuv420p"
        cc = ost.codec_context
        cc.time_base = 1 / fps
        cc.gop_size = max(1, round(fps * 2))
        # High profile 4:2:0 8-bit plays in every browser; veryfast keeps it quick.
        cc.options = {"preset": "veryfast", "crf": "20", "profile": "high"}
        for info in infos:
            for frame in _filtered_frames(info, width, height, fps):
                # Renumber: one tick of 1/fps per frame, continuous across clips.
                frame.pts = n
                frame.time_base = 1 / fps
                frame.pict_type = av.video.frame.PictureType.NONE  # let x264 choose
                out.mux(ost.encode(frame))
                n += 1
        out.mux(ost.encode(None))
    return JoinResult(
        path=out_path,
        method="reencode",
        reasons=[],
        width=width,
        height=height,
        fps=fps,
        frames=n,
        duration=float(n / fps),
        letterboxed=letterboxed,
    )
