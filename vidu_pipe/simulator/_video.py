"""A small, valid, playable MP4 built in code: the simulator's finished videos.

The clip is H.264 Constrained Baseline in an ISO base media file. Its one
keyframe codes every macroblock as I_PCM (raw samples, so no transform or
entropy coder is needed); every later frame is a P frame whose macroblocks are
all skipped, which repeats the keyframe for a handful of bytes. The result is a
few kilobytes per clip, plays in browsers and players, and has the length and
shape that the task asked for.
"""

from __future__ import annotations

import struct
from functools import lru_cache

__all__ = ["FRAME_RATE", "frame_size", "sample_mp4"]

FRAME_RATE = 24
_TIMESCALE = 12288  # ticks per second in the media header; 512 ticks per frame at 24 fps

# Display sizes; the coded size is the next multiple of 16 and the rest is cropped.
_SIZES = {"16:9": (128, 72), "9:16": (72, 128), "1:1": (96, 96)}

# Colour bars (Y, Cb, Cr in the 16-235/16-240 video range): white, yellow, cyan,
# green, magenta, red, blue, grey. None of them is zero, which keeps the raw
# samples free of start-code look-alikes.
_BARS = (
    (235, 128, 128),
    (210, 16, 146),
    (170, 166, 16),
    (145, 54, 34),
    (106, 202, 222),
    (81, 90, 240),
    (41, 240, 110),
    (126, 128, 128),
)


def frame_size(aspect_ratio: str) -> tuple[int, int]:
    """Width and height in pixels of the clip for ``aspect_ratio`` (16:9 when unknown)."""
    return _SIZES.get(aspect_ratio, _SIZES["16:9"])


@lru_cache(maxsize=64)
def sample_mp4(seconds: int = 5, aspect_ratio: str = "16:9") -> bytes:
    """An MP4 of ``seconds`` (1-60) seconds of colour bars in ``aspect_ratio``.

    Deterministic: the same arguments always give the same bytes.
    """
    seconds = max(1, min(int(seconds), 60))
    width, height = frame_size(aspect_ratio)
    mbs_w, mbs_h = -(-width // 16), -(-height // 16)
    sps = _nal(3, 7, _sps(mbs_w, mbs_h, width, height))
    pps = _nal(3, 8, _pps())
    frames = [_nal(3, 5, _idr_slice(mbs_w, mbs_h))]
    frames += [_nal(2, 1, _skip_slice(n, mbs_w * mbs_h)) for n in range(1, seconds * FRAME_RATE)]
    samples = [struct.pack(">I", len(f)) + f for f in frames]
    return _mp4(samples, sps, pps, width, height)


class _Bits:
    """An MSB-first bit writer with the Exp-Golomb codes of H.264."""

    def __init__(self) -> None:
        self._bits: list[int] = []

    def u(self, n: int, value: int) -> None:
        self._bits.extend((value >> (n - 1 - i)) & 1 for i in range(n))

    def ue(self, value: int) -> None:
        code = value + 1
        self.u(2 * code.bit_length() - 1, code)

    def se(self, value: int) -> None:
        self.ue(2 * value - 1 if value > 0 else -2 * value)

    def align_zero(self) -> None:
        while len(self._bits) % 8:
            self._bits.append(0)

    def raw(self, data: bytes) -> None:
        for byte in data:
            self.u(8, byte)

    def trailing(self) -> bytes:
        self._bits.append(1)
        self.align_zero()
        out = bytearray()
        for i in range(0, len(self._bits), 8):
            byte = 0
            for bit in self._bits[i : i + 8]:
                byte = (byte << 1) | bit
            out.append(byte)
        return bytes(out)


def _nal(ref_idc: int, unit_type: int, rbsp: bytes) -> bytes:
    out = bytearray([(ref_idc << 5) | unit_type])
    zeros = 0
    for byte in rbsp:
        if zeros >= 2 and byte <= 3:
            out.append(3)  # emulation prevention: no 00 00 0x inside a NAL unit
            zeros = 0
        out.append(byte)
        zeros = zeros + 1 if byte == 0 else 0
    return bytes(out)


def _sps(mbs_w: int, mbs_h: int, width: int, height: int) -> bytes:
    b = _Bits()
    b.u(8, 66)  # profile_idc: Baseline
    b.u(8, 0b11000000)  # constraint_set0 and set1: Constrained Baseline
    b.u(8, 30)  # level 3.0
    b.ue(0)  # seq_parameter_set_id
    b.ue(0)  # log2_max_frame_num_minus4
    b.ue(2)  # pic_order_cnt_type 2: output order is decoding order
    b.ue(1)  # max_num_ref_frames
    b.u(1, 0)  # gaps_in_frame_num_value_allowed_flag
    b.ue(mbs_w - 1)
    b.ue(mbs_h - 1)
    b.u(1, 1)  # frame_mbs_only_flag
    b.u(1, 1)  # direct_8x8_inference_flag
    crop_right, crop_bottom = (mbs_w * 16 - width) // 2, (mbs_h * 16 - height) // 2
    if crop_right or crop_bottom:
        b.u(1, 1)
        for offset in (0, crop_right, 0, crop_bottom):  # left, right, top, bottom in 2-pixel units
            b.ue(offset)
    else:
        b.u(1, 0)
    b.u(1, 0)  # vui_parameters_present_flag
    return b.trailing()


def _pps() -> bytes:
    b = _Bits()
    b.ue(0)  # pic_parameter_set_id
    b.ue(0)  # seq_parameter_set_id
    b.u(1, 0)  # entropy_coding_mode_flag: CAVLC
    b.u(1, 0)  # bottom_field_pic_order_in_frame_present_flag
    b.ue(0)  # num_slice_groups_minus1
    b.ue(0)  # num_ref_idx_l0_default_active_minus1
    b.ue(0)  # num_ref_idx_l1_default_active_minus1
    b.u(1, 0)  # weighted_pred_flag
    b.u(2, 0)  # weighted_bipred_idc
    b.se(0)  # pic_init_qp_minus26
    b.se(0)  # pic_init_qs_minus26
    b.se(0)  # chroma_qp_index_offset
    b.u(1, 0)  # deblocking_filter_control_present_flag
    b.u(1, 0)  # constrained_intra_pred_flag
    b.u(1, 0)  # redundant_pic_cnt_present_flag
    return b.trailing()


def _idr_slice(mbs_w: int, mbs_h: int) -> bytes:
    b = _Bits()
    b.ue(0)  # first_mb_in_slice
    b.ue(7)  # slice_type: I (all slices of the picture)
    b.ue(0)  # pic_parameter_set_id
    b.u(4, 0)  # frame_num
    b.ue(0)  # idr_pic_id
    b.u(1, 0)  # no_output_of_prior_pics_flag
    b.u(1, 0)  # long_term_reference_flag
    b.se(0)  # slice_qp_delta
    for _row in range(mbs_h):
        for col in range(mbs_w):
            y, cb, cr = _BARS[col * len(_BARS) // mbs_w]
            b.ue(25)  # mb_type I_PCM
            b.align_zero()  # pcm_alignment_zero_bit
            b.raw(bytes([y]) * 256 + bytes([cb]) * 64 + bytes([cr]) * 64)
    return b.trailing()


def _skip_slice(frame_num: int, mbs: int) -> bytes:
    b = _Bits()
    b.ue(0)  # first_mb_in_slice
    b.ue(5)  # slice_type: P (all slices of the picture)
    b.ue(0)  # pic_parameter_set_id
    b.u(4, frame_num % 16)
    b.u(1, 0)  # num_ref_idx_active_override_flag
    b.u(1, 0)  # ref_pic_list_modification_flag_l0
    b.u(1, 0)  # adaptive_ref_pic_marking_mode_flag: sliding window
    b.se(0)  # slice_qp_delta
    b.ue(mbs)  # mb_skip_run: every macroblock repeats the reference
    return b.trailing()


def _box(kind: bytes, *parts: bytes) -> bytes:
    payload = b"".join(parts)
    return struct.pack(">I", 8 + len(payload)) + kind + payload


def _full_box(kind: bytes, version: int, flags: int, *parts: bytes) -> bytes:
    return _box(kind, struct.pack(">I", (version << 24) | flags), *parts)


_MATRIX = struct.pack(">9I", 0x10000, 0, 0, 0, 0x10000, 0, 0, 0, 0x40000000)


def _mp4(samples: list[bytes], sps: bytes, pps: bytes, width: int, height: int) -> bytes:
    ftyp = _box(b"ftyp", b"isom", struct.pack(">I", 0x200), b"isom", b"iso2", b"avc1", b"mp41")
    media_duration = len(samples) * (_TIMESCALE // FRAME_RATE)
    movie_duration = len(samples) * 1000 // FRAME_RATE

    def moov(chunk_offset: int) -> bytes:
        mvhd = _full_box(
            b"mvhd",
            0,
            0,
            struct.pack(">IIII", 0, 0, 1000, movie_duration),
            struct.pack(">IH", 0x10000, 0x100),
            bytes(10),
            _MATRIX,
            bytes(24),
            struct.pack(">I", 2),
        )
        tkhd = _full_box(
            b"tkhd",
            0,
            3,  # enabled, in movie
            struct.pack(">IIIII", 0, 0, 1, 0, movie_duration),
            bytes(8),
            struct.pack(">hhhH", 0, 0, 0, 0),
            _MATRIX,
            struct.pack(">II", width << 16, height << 16),
        )
        mdhd = _full_box(
            b"mdhd", 0, 0, struct.pack(">IIIIHH", 0, 0, _TIMESCALE, media_duration, 0x55C4, 0)
        )
        hdlr = _full_box(b"hdlr", 0, 0, bytes(4), b"vide", bytes(12), b"VideoHandler\x00")
        avcc = _box(
            b"avcC",
            bytes([1, sps[1], sps[2], sps[3], 0xFF, 0xE1]),
            struct.pack(">H", len(sps)),
            sps,
            bytes([1]),
            struct.pack(">H", len(pps)),
            pps,
        )
        avc1 = _box(
            b"avc1",
            bytes(6),
            struct.pack(">H", 1),  # data_reference_index
            bytes(16),
            struct.pack(">HHIIIH", width, height, 0x480000, 0x480000, 0, 1),
            bytes([9]) + b"vidu-pipe".ljust(31, b"\x00"),
            struct.pack(">Hh", 0x18, -1),
            avcc,
        )
        stbl = _box(
            b"stbl",
            _full_box(b"stsd", 0, 0, struct.pack(">I", 1), avc1),
            _full_box(
                b"stts", 0, 0, struct.pack(">III", 1, len(samples), _TIMESCALE // FRAME_RATE)
            ),
            _full_box(b"stss", 0, 0, struct.pack(">II", 1, 1)),
            _full_box(b"stsc", 0, 0, struct.pack(">IIII", 1, 1, len(samples), 1)),
            _full_box(
                b"stsz",
                0,
                0,
                struct.pack(">II", 0, len(samples)),
                b"".join(struct.pack(">I", len(s)) for s in samples),
            ),
            _full_box(b"stco", 0, 0, struct.pack(">II", 1, chunk_offset)),
        )
        dinf = _box(
            b"dinf", _full_box(b"dref", 0, 0, struct.pack(">I", 1), _full_box(b"url ", 0, 1))
        )
        minf = _box(b"minf", _full_box(b"vmhd", 0, 1, bytes(8)), dinf, stbl)
        trak = _box(b"trak", tkhd, _box(b"mdia", mdhd, hdlr, minf))
        return _box(b"moov", mvhd, trak)

    # The chunk offset does not change the size of moov, so measure once and rebuild.
    offset = len(ftyp) + len(moov(0)) + 8
    return ftyp + moov(offset) + _box(b"mdat", *samples)
