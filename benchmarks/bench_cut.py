"""Benchmarks of the film: the join behind ``vidu-pipe cut``, and placeholder clips.

    python benchmarks/bench_cut.py [--counts 10 50 100] [--dir DIR]

1. Joining N five-second 1280x720 clips without re-encoding (N = 10, 50, 100): seconds,
   MB/s read, and memory. Each N runs in a fresh child process, so that its peak RSS
   (a process-lifetime high-water mark) belongs to that join alone. The clips are like
   real 720p generations (~3 MB each: 5 Mbit/s of noise, made once with PyAV; 10
   distinct ones, the rest hard links, which the join reads all the same).
2. Placeholder clips of the lighthouse short (10 shots, what ``run --simulate`` makes):
   at the size they are made (a third of the model's resolution) and at full size.

Takes about a minute on two cores (most of it making the clips the first time).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from vidu_pipe.film.join import join, mp4_top_level_boxes, probe  # noqa: E402


def _peak_rss_mb() -> float:
    scale = 1 if sys.platform == "darwin" else 1024  # ru_maxrss: KiB on Linux
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale / 2**20


def make_clips(folder: Path, count: int, distinct: int = 10) -> list[Path]:
    """``count`` 1280x720 five-second clips of ~5 Mbit/s (``distinct`` real ones)."""
    import av

    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / f"clip{i:03d}.mp4" for i in range(count)]
    started = time.perf_counter()
    for i, path in enumerate(paths):
        if path.exists():
            continue
        if i >= distinct:
            os.link(paths[i % distinct], path)
            continue
        with av.open(
            str(path), "w", format="mp4", container_options={"movflags": "+faststart"}
        ) as out:
            stream = out.add_stream("libx264", rate=Fraction(24))
            stream.width, stream.height, stream.pix_fmt = 1280, 720, "yuv420p"
            stream.codec_context.bit_rate = 5_000_000
            stream.codec_context.gop_size = 24
            stream.codec_context.options = {"preset": "ultrafast"}
            for n in range(120):
                frame = av.VideoFrame(1280, 720, "yuv420p")
                frame.planes[0].update(os.urandom(frame.planes[0].line_size * 720))
                for plane in (frame.planes[1], frame.planes[2]):
                    plane.update(bytes([128]) * (plane.line_size * 360))
                frame.pts = n
                out.mux(stream.encode(frame))
            out.mux(stream.encode(None))
    print(f"clips ready in {time.perf_counter() - started:.1f} s", file=sys.stderr)
    return paths


def child(out: str, paths: list[str]) -> None:
    """Join ``paths`` into ``out``; one JSON line of measurements."""
    before = _peak_rss_mb()
    started = time.perf_counter()
    result = join(paths, out)
    seconds = time.perf_counter() - started
    size = sum(os.path.getsize(p) for p in paths)
    info = probe(out)
    boxes = mp4_top_level_boxes(out)
    print(
        json.dumps(
            {
                "clips": len(paths),
                "method": result.method,
                "seconds": seconds,
                "mb": size / 1e6,
                "mb_per_s": size / 1e6 / seconds,
                "duration": info.duration,
                "frames": info.frames,
                "faststart": boxes.index("moov") < boxes.index("mdat"),
                "rss_before_mb": before,
                "rss_peak_mb": _peak_rss_mb(),
            }
        )
    )


def bench_join(folder: Path, counts: list[int]) -> None:
    paths = make_clips(folder, max(counts))
    print("| clips | seconds | MB read | MB/s | film | peak RSS (at start) |")
    print("|---|---|---|---|---|---|")
    for n in counts:
        out = folder / f"film{n}.mp4"
        done = subprocess.run(
            [sys.executable, __file__, "--child", str(out), *map(str, paths[:n])],
            check=True,
            capture_output=True,
            text=True,
        )
        r = json.loads(done.stdout.strip().splitlines()[-1])
        assert r["method"] == "remux" and r["faststart"], r
        assert abs(r["duration"] - 5 * n) < 1e-6 and r["frames"] == 120 * n, r
        print(
            f"| {n} | {r['seconds']:.2f} | {r['mb']:.0f} | {r['mb_per_s']:.0f} | "
            f"{r['duration']:.0f} s | {r['rss_peak_mb']:.0f} MB ({r['rss_before_mb']:.0f} MB) |"
        )


def bench_placeholders() -> None:
    from vidu_pipe.simulator._video import placeholder_mp4, placeholder_size
    from vidu_pipe.storyboard.build import load

    board = load(REPO / "pipelines" / "lighthouse.yaml")
    seconds = sum(s.duration for s in board.shots)
    with tempfile.TemporaryDirectory() as tmp:
        for label, scale in (("a third (as made)", Fraction(1, 3)), ("full", Fraction(1))):
            started = time.perf_counter()
            for shot in board.shots:
                aspect = str(shot.request.get("aspect_ratio", "16:9"))
                width, height = placeholder_size(shot.model, aspect, scale)
                placeholder_mp4(
                    Path(tmp) / f"{shot.id}.mp4",
                    title=shot.id,
                    text=shot.prompt,
                    seconds=shot.duration,
                    width=width,
                    height=height,
                )
            took = time.perf_counter() - started
            print(
                f"placeholders of lighthouse.yaml ({len(board.shots)} shots, {seconds} s of "
                f"video) at {label} size: {took:.2f} s"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--counts", type=int, nargs="+", default=[10, 50, 100])
    parser.add_argument("--dir", default=str(Path(tempfile.gettempdir()) / "vidu-bench-cut"))
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child[0], args.child[1:])
        return
    bench_join(Path(args.dir), args.counts)
    bench_placeholders()


if __name__ == "__main__":
    main()
