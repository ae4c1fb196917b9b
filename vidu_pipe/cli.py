"""The command line: parse arguments, call the library, turn errors into exit codes.

Exit codes (SPEC §3): 0 every selected shot completed (or: valid), 1 one or
more failed, 2 invalid storyboard or usage, 3 configuration or authentication
problem, 130 interrupted. What only ``run`` needs is imported lazily so that
``validate`` starts fast (it runs in pre-commit hooks).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, TextIO

from vidu_pipe._version import __version__
from vidu_pipe.constants import EXIT_CONFIG, EXIT_INTERRUPTED, EXIT_INVALID, EXIT_OK
from vidu_pipe.errors import Problem, StoryboardError, UsageError, ViduPipeError

if TYPE_CHECKING:
    from vidu_pipe.storyboard.model import Storyboard

__all__ = ["main"]


class _Parser(argparse.ArgumentParser):
    """argparse, but usage errors exit 2 through our own path (no traceback, same format)."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        print(f"{self.prog}: error: {message}", file=sys.stderr)
        raise SystemExit(EXIT_INVALID)


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def _non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError("must be 0 or more")
    return value


def _port(text: str) -> int:
    value = int(text)
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError("must be a port number from 0 to 65535")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError("must be more than 0")
    return value


def _add_selection(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--only",
        action="append",
        default=[],
        metavar="ID",
        help="only shots whose id (or id before .takeN) matches this glob; repeatable",
    )
    p.add_argument(
        "--tag", action="append", default=[], metavar="T", help="only shots with this tag"
    )
    p.add_argument("--force", action="store_true", help="rerun selected shots even when up to date")
    p.add_argument(
        "--manifest",
        metavar="PATH",
        help="manifest path (default: the storyboard's path with .manifest.json)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="vidu-pipe",
        description="Storyboard-as-code for Vidu Q3: YAML shots in, videos and a manifest out.",
    )
    parser.add_argument("--version", action="version", version=f"vidu-pipe {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

    p = sub.add_parser("validate", help="check storyboards; no network")
    p.add_argument("files", nargs="+", metavar="FILE")
    p.add_argument("--json", action="store_true", help="machine-readable output")

    p = sub.add_parser("plan", help="show the request bodies and what a run would do")
    p.add_argument("file", metavar="FILE")
    _add_selection(p)
    p.add_argument("--simulate", action="store_true", help="plan a run --simulate")
    p.add_argument("--json", action="store_true", help="machine-readable output")

    p = sub.add_parser("run", help="run the shots that need it and write the manifest")
    p.add_argument("file", metavar="FILE")
    p.add_argument("--base-url", metavar="URL", help="endpoint base (env VIDU_BASE_URL)")
    p.add_argument(
        "--simulate", action="store_true", help="run against the built-in simulator in-process"
    )
    p.add_argument("--concurrency", type=_positive_int, metavar="N")
    p.add_argument("--rate", type=_non_negative_int, metavar="N", help="creates per minute")
    p.add_argument("--poll-interval", type=_positive_float, metavar="SECONDS")
    _add_selection(p)
    p.add_argument("--download", metavar="DIR", help="save each video as DIR/ID.mp4")
    p.add_argument("--max-creates", type=_non_negative_int, metavar="N")
    p.add_argument("--timeout", type=_positive_float, metavar="SECONDS")
    p.add_argument(
        "--json", action="store_true", help="JSON lines of events on stdout; summary on stderr"
    )
    p.add_argument("--quiet", "-q", action="store_true", help="only the final summary")

    p = sub.add_parser("status", help="the manifest against the storyboard")
    p.add_argument("file", metavar="FILE")
    p.add_argument("--manifest", metavar="PATH")
    p.add_argument("--json", action="store_true", help="machine-readable output")

    p = sub.add_parser("schema", help="print a JSON Schema")
    p.add_argument("name", nargs="?", choices=["storyboard", "request"], default="storyboard")

    p = sub.add_parser("report", help="an HTML contact sheet of the storyboard with its videos")
    p.add_argument("file", metavar="FILE")
    p.add_argument("-o", "--output", metavar="PATH", default="report.html")
    p.add_argument("--manifest", metavar="PATH")

    p = sub.add_parser("simulator", help="serve the built-in simulator of the endpoint")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=_port, default=8000)
    p.add_argument("--time-scale", type=_positive_float, default=1.0, metavar="X")
    p.add_argument("--fail-rate", type=float, default=0.0, metavar="P")
    p.add_argument("--dialect", choices=["seed", "new-api"], default="seed")
    p.add_argument("--key", metavar="K", help="the bearer key it accepts (default: any)")
    p.add_argument(
        "--seed", type=int, help="random seed for task ids and faults (default: a fresh one)"
    )
    p.add_argument(
        "--rate-limit", type=_positive_int, metavar="N", help="answer 429 above N creates a minute"
    )
    p.add_argument("--quota", type=_non_negative_int, metavar="N", help="403 after N creates")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``vidu-pipe`` and ``python -m vidu_pipe``; returns the exit code."""
    args = build_parser().parse_args(argv)
    handler = _COMMANDS[args.command]
    try:
        return handler(args)
    except StoryboardError as exc:
        _print_problems(exc.problems, sys.stderr)
        return EXIT_INVALID
    except ViduPipeError as exc:
        print(f"vidu-pipe: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("vidu-pipe: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # `vidu-pipe plan x.yaml | head`: the reader left; that is not an error.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_OK
    except OSError as exc:
        # A file the command was pointed at cannot be read or written.
        where = f" {exc.filename}" if exc.filename else ""
        print(f"vidu-pipe: error:{where}: {exc.strerror or exc}", file=sys.stderr)
        return EXIT_CONFIG


def _print_problems(problems: Sequence[Problem], out: TextIO) -> None:
    for problem in problems:
        print(problem.format(), file=out)


# --- validate ---------------------------------------------------------------


def _cmd_validate(args: argparse.Namespace) -> int:
    from vidu_pipe.storyboard.build import load

    results: list[dict[str, Any]] = []
    problems: list[Problem] = []
    for file in args.files:
        try:
            storyboard = load(file)
        except StoryboardError as exc:
            problems.extend(exc.problems)
            results.append({"file": file, "ok": False, "problems": len(exc.problems)})
            continue
        results.append({"file": file, "ok": True, "shots": len(storyboard.shots)})
        if not args.json:
            print(f"{file}: ok ({_count(len(storyboard.shots), 'shot')})")
    if args.json:
        json.dump(
            {
                "ok": not problems,
                "files": results,
                "problems": [p.as_dict() for p in problems],
            },
            sys.stdout,
            indent=2,
            ensure_ascii=False,
        )
        print()
    else:
        _print_problems(problems, sys.stdout)
        if problems:
            bad = sum(1 for r in results if not r["ok"])
            print(
                f"{_count(len(problems), 'problem')} in {_count(bad, 'file')}",
                file=sys.stderr,
            )
    return EXIT_INVALID if problems else EXIT_OK


def _count(n: int, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else "s")


# --- plan -------------------------------------------------------------------


def _manifest_path(args: argparse.Namespace, storyboard: Storyboard) -> Path:
    from vidu_pipe.api import manifest_path_for

    return manifest_path_for(storyboard, getattr(args, "manifest", None))


def _cmd_plan(args: argparse.Namespace) -> int:
    from vidu_pipe.api import plan
    from vidu_pipe.storyboard.build import load

    storyboard = load(args.file)
    manifest_path = _manifest_path(args, storyboard)
    the_plan = plan(
        storyboard,
        manifest=manifest_path,
        only=args.only,
        tags=args.tag,
        force=args.force,
        simulate=args.simulate,
    )
    billing = the_plan.billing()
    if args.json:
        doc = {
            "storyboard": str(storyboard.path),
            "manifest": str(manifest_path),
            "shots": [
                {
                    "id": step.shot.id,
                    "action": step.action,
                    "reason": step.reason,
                    "mode": step.shot.mode,
                    "model": step.shot.model,
                    "duration": step.shot.duration,
                    "fingerprint": step.shot.fingerprint,
                    "request": step.shot.request,
                }
                for step in the_plan.steps
            ],
            "summary": {
                "create": the_plan.count("create"),
                "resume": the_plan.count("resume"),
                "skip": the_plan.count("skip"),
                "billing": {m: {"tasks": t, "seconds": s} for m, (t, s) in billing.items()},
            },
        }
        json.dump(doc, sys.stdout, indent=2, ensure_ascii=False)
        print()
        return EXIT_OK
    where = str(manifest_path) + ("" if manifest_path.exists() else " (none yet)")
    print(f"{storyboard.path}: {_count(len(the_plan.steps), 'shot')}; manifest {where}")
    print()
    width = max((len(s.shot.id) for s in the_plan.steps), default=0)
    for step in the_plan.steps:
        shot = step.shot
        print(
            f"{step.action:<7} {shot.id:<{width}}  {shot.mode:<10} {shot.model:<14}"
            f" {shot.duration:>2}s  {step.reason}"
        )
        if step.action != "skip":
            body = json.dumps(shot.request, indent=2, ensure_ascii=False)
            print("\n".join("    " + line for line in body.splitlines()))
    print()
    print(
        f"{the_plan.count('create')} to create, {the_plan.count('resume')} to resume, "
        f"{the_plan.count('skip')} up to date"
    )
    if billing:
        parts = [f"{m}: {_count(t, 'task')}, {s} s" for m, (t, s) in billing.items()]
        total_t = sum(t for t, _ in billing.values())
        total_s = sum(s for _, s in billing.values())
        print(f"would bill {_count(total_t, 'task')}, {total_s} s of video: " + "; ".join(parts))
    return EXIT_OK


# --- schema -----------------------------------------------------------------


def _cmd_schema(args: argparse.Namespace) -> int:
    from vidu_pipe.storyboard.schemas import schema_path

    sys.stdout.write(schema_path(args.name).read_text(encoding="utf-8"))
    return EXIT_OK


# --- run --------------------------------------------------------------------


def _cmd_run(args: argparse.Namespace) -> int:
    from vidu_pipe.api import SIMULATE_TIME_SCALE, arun, manifest_path_for, options_for
    from vidu_pipe.storyboard.build import load
    from vidu_pipe.views.progress import choose_mode, open_progress

    storyboard = load(args.file)
    options = options_for(
        storyboard,
        concurrency=args.concurrency,
        rate_per_minute=args.rate,
        poll_interval=args.poll_interval,
        timeout=args.timeout,
        max_creates=args.max_creates,
        download_dir=Path(args.download) if args.download else None,
        handle_signals=True,
    )

    import anyio

    # --json keeps stdout pure JSON lines (one event each); everything else goes to stderr.
    mode = choose_mode(sys.stdout, json=args.json, quiet=args.quiet)
    with open_progress(
        sys.stdout,
        mode,
        downloads=options.download_dir is not None,
        time_scale=SIMULATE_TIME_SCALE if args.simulate else 1.0,
        label="simulated time" if args.simulate else None,
    ) as on_event:
        result = anyio.run(
            lambda: arun(
                storyboard,
                simulate=args.simulate,
                base_url=args.base_url,
                manifest=args.manifest,
                only=args.only,
                tags=args.tag,
                force=args.force,
                options=options,
                on_event=on_event,
            )
        )
    out = sys.stderr if args.json else sys.stdout
    for message in result.messages:
        print(f"vidu-pipe: {message}", file=out)
    where = manifest_path_for(storyboard, args.manifest)
    print(
        f"{len(result.completed)} completed, {len(result.failed)} failed, "
        f"{len(result.not_started)} not started, "
        + (f"{len(result.running)} still running (resumed next run), " if result.running else "")
        + f"{len(result.skipped)} up to date "
        f"({_count(result.created, 'task')} created); manifest: {where}",
        file=out,
    )
    return result.exit_code


# --- status and report -----------------------------------------------------


def _cmd_status(args: argparse.Namespace) -> int:
    from vidu_pipe.manifest.store import load_manifest
    from vidu_pipe.storyboard.build import load
    from vidu_pipe.views.status import compute, print_status

    storyboard = load(args.file)
    manifest_path = _manifest_path(args, storyboard)
    report = compute(storyboard, load_manifest(manifest_path), manifest_path)
    if args.json:
        json.dump(report.to_json(), sys.stdout, indent=2, ensure_ascii=False)
        print()
    else:
        print_status(report, sys.stdout)
    return EXIT_OK


def _cmd_report(args: argparse.Namespace) -> int:
    from vidu_pipe.manifest.store import load_manifest
    from vidu_pipe.storyboard.build import load
    from vidu_pipe.views.report import write_report

    storyboard = load(args.file)
    manifest_path = _manifest_path(args, storyboard)
    target = Path(args.output)
    if not args.output.strip() or target.is_dir():
        raise UsageError(f"-o {args.output!r} must name a file, not a folder")
    if target.exists() and target.resolve() in (
        storyboard.path.resolve(),
        manifest_path.resolve(),
    ):
        raise UsageError(f"-o {args.output} would overwrite the storyboard or its manifest")
    output = write_report(
        storyboard,
        load_manifest(manifest_path),
        manifest_path=manifest_path,
        output=target,
    )
    print(f"{output}: contact sheet of {_count(len(storyboard.shots), 'shot')}")
    return EXIT_OK


# --- simulator --------------------------------------------------------------


def _cmd_simulator(args: argparse.Namespace) -> int:
    from vidu_pipe.simulator import SimulatorConfig, serve

    if not 0.0 <= args.fail_rate <= 1.0:
        raise UsageError("--fail-rate must be from 0 to 1")
    config = SimulatorConfig(
        key=args.key,
        time_scale=args.time_scale,
        # A fresh seed unless told: task ids of two simulator runs must not collide.
        seed=args.seed if args.seed is not None else int.from_bytes(os.urandom(4), "big"),
        dialect=args.dialect,
        fail_rate=args.fail_rate,
        rate_limit_per_minute=args.rate_limit,
        quota=args.quota,
    )
    serve(config, host=args.host, port=args.port)
    return EXIT_OK


_COMMANDS = {
    "validate": _cmd_validate,
    "plan": _cmd_plan,
    "schema": _cmd_schema,
    "run": _cmd_run,
    "status": _cmd_status,
    "report": _cmd_report,
    "simulator": _cmd_simulator,
}
