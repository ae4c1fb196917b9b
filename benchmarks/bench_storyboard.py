"""How fast the storyboard language is: validate + plan of a 10,000-shot storyboard,
and `vidu-pipe validate` of a small file as a whole process.

    python benchmarks/bench_storyboard.py [--shots 10000] [--repeat 3]

Prints figures; targets (on a 2-core machine): <= 2 s for 10,000 shots, <= 0.3 s
for the process. Times are the best of --repeat runs (the machine is shared).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import vidu_pipe
from vidu_pipe.planner import plan
from vidu_pipe.storyboard.build import load

ROOT = Path(__file__).resolve().parent.parent
MODES = ("text", "image", "first-last", "reference")


def make_storyboard(n: int) -> str:
    """A storyboard shaped like a generated one: shared templates and vars, every mode,
    per-shot vars, and a prompt template that differs in a fifth of the shots."""
    lines = [
        "version: 1",
        "defaults: {model: viduq3p-720p, duration: 5, aspect_ratio: 16:9, seed: 7}",
        "vars: {style: 'cinematic, golden hour'}",
        "assets:",
    ]
    lines += [f"  a{i}: https://cdn.example.com/a{i}.png" for i in range(8)]
    lines += ["templates:", "  look: '{{ style }}, soft light'", "shots:"]
    for i in range(n):
        mode = MODES[i % 4]
        lines.append(f"  - id: s{i:05d}")
        lines.append(f"    vars: {{n: {i}, place: 'beach {i % 37}'}}")
        if i % 5 == 0:
            lines.append(
                f"    prompt: 'Shot {i}: wide view of {{{{ place }}}}, {{% include \"look\" %}}'"
            )
        else:
            lines.append(
                "    prompt: 'Shot {{ n }}: the camera moves along {{ place }}, {{ style }}'"
            )
        if mode == "image":
            lines.append(f"    image: a{i % 8}")
        elif mode == "first-last":
            lines += [f"    image: a{i % 8}", f"    last_image: a{(i + 1) % 8}"]
        elif mode == "reference":
            lines.append(f"    reference_image_urls: [a{i % 8}, a{(i + 3) % 8}]")
            first, second = f"a{i % 8}", f"a{(i + 3) % 8}"
            # replaces the prompt written above: reference shots name their images
            lines[-2] = (
                f"    prompt: \"{{{{ ref('{first}') }}}} walks by {{{{ ref('{second}') }}}}\""
            )
        if i % 10 == 0:
            lines.append("    model: viduq3t-540p" if mode != "reference" else "    duration: 8")
    return "\n".join(lines) + "\n"


def best(fn, repeat: int) -> float:  # type: ignore[no-untyped-def]
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--shots", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        big = Path(tmp) / "big.yaml"
        big.write_text(make_storyboard(args.shots), encoding="utf-8")
        size = big.stat().st_size
        board = load(big)
        assert len(board.shots) == args.shots
        t_validate = best(lambda: load(big), args.repeat)
        t_plan = best(lambda: plan(load(big), None), args.repeat)
        print(f"storyboard: {args.shots} shots, {size / 1e6:.2f} MB of YAML")
        print(f"  validate (load, check, render):  {t_validate:.2f} s")
        print(f"  validate + plan:                 {t_plan:.2f} s  (target <= 2 s)")
        small = ROOT / "pipelines" / "beach-teaser.yaml"
        cmd = [sys.executable, "-m", "vidu_pipe", "validate", str(small)]
        runs = max(args.repeat, 5)
        t_proc = best(lambda: subprocess.run(cmd, check=True, capture_output=True), runs)
        t_python = best(lambda: subprocess.run([sys.executable, "-c", "pass"], check=True), runs)
        print(f"process `vidu-pipe validate {small.name}`: {t_proc:.3f} s (target <= 0.3 s)")
        print(f"  of which a bare `python -c pass`:    {t_python:.3f} s")
        print(f"vidu-pipe {vidu_pipe.__version__}")


if __name__ == "__main__":
    main()
