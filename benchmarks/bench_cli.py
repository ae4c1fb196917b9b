"""How fast the command line starts, as whole processes: ``vidu-pipe --help``,
``vidu-pipe run --help`` (rich-argparse) and ``vidu-pipe validate`` of a small file,
next to ``python -c pass`` (the interpreter alone).

    python benchmarks/bench_cli.py [--repeat 15]

Target (2-core machine): <= 0.3 s each. Prints the best and the median of --repeat
runs (the machine is shared; the best is the least disturbed).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

CASES = {
    "python -c pass": [sys.executable, "-c", "pass"],
    "vidu-pipe --help": [sys.executable, "-m", "vidu_pipe", "--help"],
    "vidu-pipe run --help": [sys.executable, "-m", "vidu_pipe", "run", "--help"],
    "vidu-pipe validate (small file)": [
        sys.executable,
        "-m",
        "vidu_pipe",
        "validate",
        str(ROOT / "pipelines" / "beach-teaser.yaml"),
    ],
}


def measure(command: list[str], repeat: int) -> list[float]:
    """Wall seconds of ``repeat`` runs of ``command`` (its output is discarded)."""
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
        times.append(time.perf_counter() - start)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=15, help="runs per command (default: 15)")
    args = parser.parse_args()
    print(f"{'command':<34} {'best':>7} {'median':>7}")
    for name, command in CASES.items():
        times = measure(command, args.repeat)
        print(f"{name:<34} {min(times):7.3f} {statistics.median(times):7.3f}")


if __name__ == "__main__":
    main()
