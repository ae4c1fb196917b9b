"""vidu-pipe as a library: load, validate, plan and run a storyboard from Python.

Runs the lighthouse short against the built-in simulator (``simulate=True``: no
key, no network), into a manifest in a temporary folder so that the repository
stays clean, and prints what happened::

    python examples/library_example.py [STORYBOARD]
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import vidu_pipe

LIGHTHOUSE = Path(__file__).resolve().parent.parent / "pipelines" / "lighthouse.yaml"


def main(storyboard: Path = LIGHTHOUSE) -> int:
    # validate() lists problems instead of raising; load() raises StoryboardError.
    problems = vidu_pipe.validate(storyboard)
    if problems:
        for problem in problems:
            print(problem.format(), file=sys.stderr)
        return 2
    board: vidu_pipe.Storyboard = vidu_pipe.load(storyboard)
    print(f"{board.name}: {len(board.shots)} shots")

    with tempfile.TemporaryDirectory() as tmp:
        manifest = Path(tmp) / "lighthouse.manifest.json"
        cache = Path(tmp) / ".vidu-pipe"  # results and clips; by default beside the storyboard

        before: vidu_pipe.Plan = vidu_pipe.plan(
            board, manifest=manifest, simulate=True, cache_dir=cache
        )
        print(f"plan: {before.count('create')} to create, {before.count('skip')} up to date")

        def on_event(event: vidu_pipe.Event) -> None:
            if event.kind in ("completed", "failed"):
                print(f"  {event.shot}: {event.kind}")

        result: vidu_pipe.RunResult = vidu_pipe.run(
            board,
            simulate=True,
            manifest=manifest,
            cache_dir=cache,
            options=vidu_pipe.RunOptions(rate_per_minute=0, concurrency=10),
            on_event=on_event,
        )
        print(f"run: {len(result.completed)} completed, {len(result.failed)} failed")

        # A second plan finds everything up to date: the manifest is the source of truth.
        after = vidu_pipe.plan(board, manifest=manifest, simulate=True, cache_dir=cache)
        print(f"plan again: {after.count('create')} to create, {after.count('skip')} up to date")

        recorded = vidu_pipe.load_manifest(manifest)
        assert recorded is not None
        first = board.shots[0].id
        print(f"{first}: {recorded.entries[first].video_url}")
    return result.exit_code


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1]) if len(sys.argv) > 1 else LIGHTHOUSE))
