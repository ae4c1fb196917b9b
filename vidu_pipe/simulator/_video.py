"""Placeholder clips: real, browser-playable H.264 MP4s that show what a shot would be.

The simulator's finished videos, and the clips a simulated run keeps in the cache
(``run --simulate`` then ``cut`` makes an *animatic*: the film's timing before a
single credit is spent). A clip shows a title (the shot id, or "vidu-pipe
simulator"), the prompt word-wrapped, a frame counter, a progress bar and a square
sweeping once a second, on a background coloured from the title.

How (PyAV, whose wheels carry FFmpeg's libraries with libx264):

* The wheels' FFmpeg has no ``drawtext`` filter (no freetype) and Pillow is not a
  dependency, so text is drawn with a 5x7 bitmap font below (printable ASCII; any
  other character is drawn as ``?``).
* Frames are raw ``yuv420p`` planes in ``bytearray`` objects (no numpy), laid out
  with the strides FFmpeg pads lines to. The static picture is drawn once; per
  frame only the luma of the bottom panel changes, so chroma is never redrawn.
* ``libx264`` with ``preset=ultrafast``, ``tune=stillimage``: no CABAC, no 8x8
  transform, no B-frames, so x264 signals Constrained Baseline, which every
  browser decodes. A key frame every second (joins and seeks cut anywhere);
  ``movflags=+faststart`` puts the index first, so a browser plays while loading.

This replaced a hand-written encoder (I_PCM keyframe + skipped P frames) that
could show colour bars only.
"""

from __future__ import annotations

import hashlib
import tempfile
import textwrap
from fractions import Fraction
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from vidu_pipe.storyboard.model import Shot

__all__ = [
    "FRAME_RATE",
    "PLACEHOLDER_SCALE",
    "frame_size",
    "placeholder_mp4",
    "placeholder_size",
    "sample_mp4",
    "shot_placeholder",
]

FRAME_RATE = 24

#: The clips a simulated run makes are this share of the shot's real size (1080p ->
#: 640x360): a 10-shot storyboard encodes in about a second instead of about six
#: (figures in the README), and the clips keep the relative sizes of the real ones.
PLACEHOLDER_SCALE = Fraction(1, 3)

# The simulator's own clips (it knows no shot): small, as a relay's sample.
_SIZES = {"16:9": (128, 72), "9:16": (72, 128), "1:1": (96, 96)}

_HEIGHTS = {"540p": 540, "720p": 720, "1080p": 1080}


def frame_size(aspect_ratio: str) -> tuple[int, int]:
    """Width and height of the simulator's clip for ``aspect_ratio`` (16:9 when unknown)."""
    return _SIZES.get(aspect_ratio, _SIZES["16:9"])


def placeholder_size(
    model: str, aspect_ratio: str, scale: Fraction = PLACEHOLDER_SCALE
) -> tuple[int, int]:
    """The frame size of a shot's placeholder: the model's resolution (``viduq3p-720p``:
    720 lines on the short side) in ``aspect_ratio``, times ``scale``, rounded to even."""
    short = _HEIGHTS.get(model.rsplit("-", 1)[-1], 720)
    a, _, b = aspect_ratio.partition(":")
    w, h = (int(a), int(b)) if a.isdigit() and b.isdigit() and int(a) and int(b) else (16, 9)
    long = short * max(w, h) // min(w, h)
    width, height = (long, short) if w >= h else (short, long)

    def even(n: int) -> int:
        value = int(n * scale)
        return max(64, value - value % 2)

    return even(width), even(height)


def shot_placeholder(shot: Shot, target: Path) -> None:
    """Write the placeholder clip of ``shot`` (its id, prompt, duration, shape) to ``target``."""
    width, height = placeholder_size(shot.model, str(shot.request.get("aspect_ratio", "16:9")))
    placeholder_mp4(
        target,
        title=shot.id,
        text=shot.prompt,
        seconds=shot.duration,
        width=width,
        height=height,
    )


@lru_cache(maxsize=64)
def sample_mp4(seconds: int = 5, aspect_ratio: str = "16:9") -> bytes:
    """The simulator's video: an MP4 of ``seconds`` (1-60) in ``aspect_ratio``.

    Deterministic: the same arguments always give the same bytes.
    """
    seconds = max(1, min(int(seconds), 60))
    width, height = frame_size(aspect_ratio)
    # Through a file: the muxer's faststart pass reopens its output by name.
    with tempfile.TemporaryDirectory(prefix="vidu-pipe-clip-") as folder:
        path = Path(folder) / "clip.mp4"
        placeholder_mp4(
            path,
            title="vidu-pipe",
            text=f"simulated {seconds} s {aspect_ratio}",
            seconds=seconds,
            width=width,
            height=height,
            crf=40,  # a sample: small matters more than sharp (a 16 s clip stays < 64 kB)
        )
        return path.read_bytes()


# --- 5x7 bitmap font ---------------------------------------------------------
# Glyphs for ASCII 0x20..0x7E, 7 characters each: one per row, top to bottom.
# Each character is a base-32 digit ("0".."V") whose 5 bits are the row's
# pixels, most significant bit = leftmost pixel. (Original artwork; the
# readable source lives in the prototype's _gen/glyphs.py.)
_FONT = (
    "00000004444404AA00000AAVAVAA4FKE5U4PP248JJCIK8LID440000024888428422248"
    "04LEL40044V4400000C48000V00000000CC122488GEHJLPHE4C4444EEH1248VV2421HE"
    "26AIV22VGU11HE68GUHHEV124888EHHEHHEEHHF12C0CC0CC00CC0C48248G84200V0V00"
    "8421248EH12404EH1DLLEEHHVHHHUHHUHHUEHGGGHESIHHHISVGGUGGVVGGUGGGEHGNHHF"
    "HHHVHHHE44444E72222ICHIKOKIHGGGGGGVHRLLHHHHHPLJHHEHHHHHEUHHUGGGEHHHLID"
    "UHHUKIHFGGE11UV444444HHHHHHEHHHHHA4HHHLLLAHHA4AHHHHA4444V1248GVE88888E"
    "G884221E22222E4AH0000000000V840000000E1FHFGGMPHHU00EGGHE11DJHHF00EHVGE"
    "698S8880FHHF1EGGMPHHH40C444E20622ICGGIKOKIC44444E00QLLHH00MPHHH00EHHHE"
    "00UHUGG00DJF1100MPGGG00EGE1U88S889600HHHJD00HHHA400HHLLA00HA4AH00HHF1E"
    "00V248V244844244444448442448008L200"
)
_B32 = "0123456789ABCDEFGHIJKLMNOPQRSTUV"
_GLYPH_W, _GLYPH_H = 5, 7
_CELL_W, _CELL_H = 6, 9  # one column / two rows of spacing
_DESCENDERS = frozenset("gjpqy")  # drawn one font pixel lower, into the spacing


def _glyph_runs() -> dict[str, list[list[tuple[int, int]]]]:
    """Per character and glyph row: the runs ``(x0, x1)`` of set pixels."""
    table: dict[str, list[list[tuple[int, int]]]] = {}
    for i in range(95):
        rows: list[list[tuple[int, int]]] = []
        for r in range(_GLYPH_H):
            bits = _B32.index(_FONT[i * 7 + r])
            runs: list[tuple[int, int]] = []
            x = 0
            while x < _GLYPH_W:
                if bits & (1 << (_GLYPH_W - 1 - x)):
                    x0 = x
                    while x < _GLYPH_W and bits & (1 << (_GLYPH_W - 1 - x)):
                        x += 1
                    runs.append((x0, x))
                else:
                    x += 1
            rows.append(runs)
        table[chr(0x20 + i)] = rows
    return table


_RUNS = _glyph_runs()


def _ascii(text: str) -> str:
    """Printable ASCII only; tabs/newlines become spaces, the rest ``?``."""
    return "".join(c if " " <= c <= "~" else (" " if c.isspace() else "?") for c in text)


class _Canvas:
    """A yuv420p image in three bytearrays laid out with the frame's strides."""

    def __init__(self, width: int, height: int, strides: tuple[int, int, int]) -> None:
        self.w, self.h = width, height
        self.sy, self.su, self.sv = strides
        self.y = bytearray(self.sy * height)
        self.u = bytearray(self.su * (height // 2))
        self.v = bytearray(self.sv * (height // 2))

    def fill(self, x0: int, y0: int, x1: int, y1: int, yuv: tuple[int, int, int] | int) -> None:
        """Fill the rectangle [x0, x1) x [y0, y1), clipped; an int sets luma only."""
        x0, x1 = max(0, x0), min(self.w, x1)
        y0, y1 = max(0, y0), min(self.h, y1)
        if x0 >= x1 or y0 >= y1:
            return
        luma = yuv if isinstance(yuv, int) else yuv[0]
        row = bytes([luma]) * (x1 - x0)
        for yy in range(y0, y1):
            o = yy * self.sy
            self.y[o + x0 : o + x1] = row
        if isinstance(yuv, int):
            return
        cx0, cx1 = x0 // 2, (x1 + 1) // 2
        urow, vrow = bytes([yuv[1]]) * (cx1 - cx0), bytes([yuv[2]]) * (cx1 - cx0)
        for cy in range(y0 // 2, (y1 + 1) // 2):
            self.u[cy * self.su + cx0 : cy * self.su + cx1] = urow
            self.v[cy * self.sv + cx0 : cy * self.sv + cx1] = vrow

    def text(self, x: int, y: int, s: str, scale: int, yuv: tuple[int, int, int] | int) -> None:
        """Draw ``s`` with its top-left corner at (x, y), each font pixel ``scale`` px."""
        for ch in _ascii(s):
            top = y + scale if ch in _DESCENDERS else y
            for r, runs in enumerate(_RUNS[ch]):
                for a, b in runs:
                    self.fill(
                        x + a * scale, top + r * scale, x + b * scale, top + (r + 1) * scale, yuv
                    )
            x += _CELL_W * scale

    def shadowed(self, x: int, y: int, s: str, scale: int) -> None:
        """White text with a one-font-pixel dark drop shadow, readable on any colour."""
        off = max(1, scale // 2)
        self.text(x + off, y + off, s, scale, _BLACK)
        self.text(x, y, s, scale, _WHITE)


_WHITE = (235, 128, 128)  # limited-range BT.709 white / black / panel grey
_BLACK = (16, 128, 128)
_PANEL = (28, 128, 128)


def _background(title: str) -> tuple[int, int, int]:
    """A dark, saturated colour picked from a hash of the title (stable across runs)."""
    hue = int.from_bytes(hashlib.sha256(title.encode()).digest()[:2], "big") / 65536.0
    # HSV -> RGB with s=0.6, v=0.5, then RGB -> limited-range BT.709 YCbCr.
    i, f = int(hue * 6) % 6, hue * 6 - int(hue * 6)
    v, s = 0.5, 0.6
    p, q, t = v * (1 - s), v * (1 - s * f), v * (1 - s * (1 - f))
    r, g, b = [(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q)][i]
    yf = 0.2126 * r + 0.7152 * g + 0.0722 * b
    cb = (b - yf) / 1.8556
    cr = (r - yf) / 1.5748
    return (round(16 + 219 * yf), round(128 + 224 * cb), round(128 + 224 * cr))


def placeholder_mp4(
    target: Path,
    *,
    title: str,
    text: str,
    seconds: float,
    width: int,
    height: int,
    fps: int = FRAME_RATE,
    crf: int = 30,
) -> None:
    """Write an H.264/yuv420p MP4 (faststart) of ``seconds`` to the file ``target``.

    ``width`` and ``height`` must be even (yuv420p) and at least 64. The clip has
    exactly ``round(seconds * fps)`` frames (at least one), timestamps 0, 1, 2... in
    a 1/fps time base, and a key frame every second.
    """
    import av  # ~40 ms: only when a clip is made, never for `validate`

    duration_s, subtitle = seconds, text
    if width % 2 or height % 2 or width < 64 or height < 64:
        raise ValueError(f"width and height must be even and >= 64, got {width}x{height}")
    if fps <= 0 or duration_s <= 0:
        raise ValueError("fps and duration_s must be positive")
    n_frames = max(1, round(duration_s * fps))

    # Strides come from a real frame: FFmpeg pads lines for SIMD alignment.
    probe = av.VideoFrame(width, height, "yuv420p")
    strides = (probe.planes[0].line_size, probe.planes[1].line_size, probe.planes[2].line_size)
    cv = _Canvas(width, height, strides)

    short = min(width, height)
    bg = _background(title)
    cv.fill(0, 0, width, height, bg)

    # Bottom panel (neutral chroma): holds the counter, the progress bar and the
    # moving square, which are then drawn in luma only, frame by frame.
    small = max(1, short // 240)  # font pixel size for prompt and counter
    bar_h = max(4, short // 60)
    panel_h = _CELL_H * small + bar_h + 3 * bar_h
    panel_y = height - panel_h
    panel_y -= panel_y % 2
    cv.fill(0, panel_y, width, height, _PANEL)

    margin = max(8, width // 24)
    # Centred: players and the report put their own labels in the top corners.
    label = "SIMULATED PLACEHOLDER"
    cv.shadowed((width - _CELL_W * small * len(label)) // 2, margin // 2, label, small)

    # Title: as big as fits on one line (cap ~1/9 of the short side per glyph row).
    t = _ascii(title) or "?"
    big = max(1, min(short // 80, (width - 2 * margin) // (_CELL_W * len(t))))
    title_y = max(margin, height // 5)
    cv.shadowed((width - _CELL_W * big * len(t)) // 2, title_y, t, big)

    # Subtitle: word-wrapped prompt, centred, with an ellipsis if it overflows.
    cols = max(8, (width - 2 * margin) // (_CELL_W * small))
    top = title_y + _CELL_H * big + _CELL_H * small
    max_lines = max(1, (panel_y - top - _CELL_H * small) // (_CELL_H * small))
    lines = textwrap.wrap(_ascii(subtitle), cols) or [""]
    if len(lines) > max_lines:
        lines = lines[:max_lines]
        lines[-1] = lines[-1][: cols - 3].rstrip() + "..."
    for k, line in enumerate(lines):
        cv.shadowed(
            (width - _CELL_W * small * len(line)) // 2, top + k * _CELL_H * small, line, small
        )

    static_y = bytes(cv.y)
    static_u, static_v = bytes(cv.u), bytes(cv.v)
    text_y = panel_y + bar_h
    bar_y = height - 2 * bar_h
    sq = _CELL_H * small  # the moving square, as tall as the counter text
    counter_w = _CELL_W * small * len(f"{n_frames:>4}/{n_frames}  {n_frames / fps:6.2f}s")
    track_x0, track_x1 = margin + counter_w + margin, width - margin - sq

    with av.open(
        str(target), "w", format="mp4", container_options={"movflags": "+faststart"}
    ) as out:
        st = out.add_stream("libx264", rate=Fraction(fps))
        st.width, st.height, st.pix_fmt = width, height, "yuv420p"
        cc = st.codec_context
        cc.time_base = Fraction(1, fps)
        cc.gop_size = fps  # a key frame every second: cheap seeking, joins cut anywhere
        # One thread: x264's output is then the same bytes on every machine.
        cc.options = {"preset": "ultrafast", "tune": "stillimage", "crf": str(crf), "threads": "1"}
        # BT.709 tags: what the YCbCr maths above used; browsers assume it for HD anyway.
        cc.colorspace = cc.color_primaries = cc.color_trc = 1
        for i in range(n_frames):
            cv.y[:] = static_y
            cv.text(margin, text_y, f"{i + 1:>4}/{n_frames}  {i / fps:6.2f}s", small, 235)
            cv.fill(0, bar_y, (width * (i + 1)) // n_frames, bar_y + bar_h, 180)
            # Square sweeping back and forth once per second.
            phase = (i % fps) / fps
            frac = 2 * phase if phase < 0.5 else 2 - 2 * phase
            sx = track_x0 + round(frac * max(0, track_x1 - track_x0))
            cv.fill(sx, text_y, sx + sq, text_y + sq, 235)
            frame = av.VideoFrame(width, height, "yuv420p")
            # The stub says `bytes`, the implementation takes any buffer (no copy needed).
            frame.planes[0].update(cv.y)  # type: ignore[arg-type]
            frame.planes[1].update(static_u)
            frame.planes[2].update(static_v)
            frame.pts = i
            frame.time_base = Fraction(1, fps)
            out.mux(st.encode(frame))
        out.mux(st.encode(None))  # flush delayed frames
