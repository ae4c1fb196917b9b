"""The command line: parse arguments, call the library, format, map errors to exit codes.

Decisions live in the library (:mod:`vidu_pipe.api`); this module only turns
arguments into calls and results into text. Exit codes come from
:mod:`vidu_pipe.constants` (SPEC §3). What only some commands need is imported
inside them, so that ``validate`` (pre-commit hooks) and ``--help`` start fast.

How to add to it (the help text teaches; a test walks the parser to hold this):

- A command is two functions: ``_add_NAME(sub)`` builds its parser with
  :func:`_command` (a one-line ``help`` for the command list, a ``description``,
  and at least one example, shown as the epilog) and ``_cmd_NAME(args) -> int``
  runs it. Add ``_add_NAME`` to ``_COMMANDS`` at the bottom.
- A flag or argument is added with :func:`_flag`: ``help`` is one line, lower
  case, no final full stop, saying what it does and ending with its default in
  parentheses: ``(default: off)`` for a switch, ``(default: 4)``, or
  ``(default: run.concurrency in the storyboard, else 4)`` where the storyboard's
  ``run:`` can set it. ``_flag`` refuses an empty help.
- Flags shared by commands have one helper (``_add_selection``), so that they
  read the same everywhere.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import textwrap
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, NoReturn

from vidu_pipe._version import __version__
from vidu_pipe.constants import (
    DEFAULT_BASE_URL,
    EXIT_CONFIG,
    EXIT_INTERRUPTED,
    EXIT_INVALID,
    EXIT_OK,
)
from vidu_pipe.errors import Problem, StoryboardError, ViduPipeError

if TYPE_CHECKING:
    from _typeshed import SupportsWrite

__all__ = ["build_parser", "main"]


class _Parser(argparse.ArgumentParser):
    """argparse, with usage errors exiting 2 through our own path (no traceback) and
    help printed by rich-argparse (imported only when help is asked for)."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        print(f"{self.prog}: error: {message}", file=sys.stderr)
        raise SystemExit(EXIT_INVALID)

    def print_help(self, file: SupportsWrite[str] | None = None) -> None:
        try:
            from rich_argparse import RawDescriptionRichHelpFormatter
        except ImportError:  # a broken install: plain help beats a traceback
            super().print_help(file)
            return

        class Formatter(RawDescriptionRichHelpFormatter):
            # Help text is plain text: "pip install 'vidu-pipe[editors]'" must not lose its
            # "[editors]" to rich's markup parser.
            help_markup = False
            text_markup = False

        plain = self.formatter_class
        self.formatter_class = Formatter
        try:
            super().print_help(file)
        finally:
            self.formatter_class = plain


# --- building the parser -------------------------------------------------------------

Handler = Callable[[argparse.Namespace], int]


def _flag(parser: argparse.ArgumentParser, *names: str, help: str, **kwargs: Any) -> None:
    """Add a flag or argument; ``help`` is required (see this module's docstring)."""
    if not help.strip():
        raise ValueError(f"{names[0]} needs a help line")
    parser.add_argument(*names, help=help, **kwargs)


def _command(
    sub: argparse._SubParsersAction[_Parser],
    name: str,
    handler: Handler,
    *,
    help: str,
    description: str,
    examples: Sequence[str],
) -> _Parser:
    """Add a command with its one-line help, its description and its examples."""
    if not examples:
        raise ValueError(f"command {name} needs an example")
    epilog = "examples:\n" + "\n".join(f"  {line}" for line in examples)
    parser = sub.add_parser(
        name,
        help=help,
        # Wrapped here: the raw formatter keeps the examples' lines as written.
        description=textwrap.fill(description, 78),
        epilog=epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.set_defaults(handler=handler)
    return parser


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
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError("must be a number more than 0")
    return value


def _fraction(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError("must be from 0 to 1")
    return value


def _add_file(p: argparse.ArgumentParser) -> None:
    _flag(p, "file", metavar="FILE", help="the storyboard (YAML)")


def _add_manifest(p: argparse.ArgumentParser) -> None:
    _flag(
        p,
        "--manifest",
        metavar="PATH",
        help="where the manifest is (default: FILE with .yaml replaced by .manifest.json)",
    )


def _add_selection(p: argparse.ArgumentParser) -> None:
    """--only, --tag, --force and --manifest, as plan and run share them."""
    _flag(
        p,
        "--only",
        action="append",
        default=[],
        metavar="ID",
        help="only shots whose id (or id before .takeN) matches this glob; repeatable "
        "(default: all shots)",
    )
    _flag(
        p,
        "--tag",
        action="append",
        default=[],
        metavar="T",
        help="only shots with this tag; repeatable; with --only a shot must match both "
        "(default: all shots)",
    )
    _flag(
        p,
        "--force",
        action="store_true",
        help="create selected shots again even when up to date, never a running task "
        "(default: off)",
    )
    _add_manifest(p)


def _add_json(p: argparse.ArgumentParser, what: str = "one JSON document on stdout") -> None:
    _flag(p, "--json", action="store_true", help=f"machine-readable output: {what} (default: off)")


def _add_retry_unknown(p: argparse.ArgumentParser) -> None:
    _flag(
        p,
        "--retry-unknown",
        action="store_true",
        help="create again the shots whose last create got no answer: they may be billed "
        "twice (default: off, such shots are held)",
    )


def build_parser() -> argparse.ArgumentParser:
    """The whole command line: every command, flag and help line."""
    parser = _Parser(
        prog="vidu-pipe",
        description=textwrap.fill(
            "Storyboard-as-code for the Vidu Q3 video models: YAML shots in, videos and a "
            "manifest out. A second run redoes only what is missing, failed or changed.",
            78,
        ),
        epilog="examples:\n"
        "  vidu-pipe init my-film                 start a project\n"
        "  vidu-pipe validate film.storyboard.yaml\n"
        "  vidu-pipe plan film.storyboard.yaml    what a run would do and bill\n"
        "  vidu-pipe run film.storyboard.yaml --simulate\n"
        "\n"
        "`vidu-pipe COMMAND --help` explains a command. Exit codes: 0 ok, 1 a shot\n"
        "failed, 2 invalid storyboard or usage, 3 configuration or key, 130 interrupted.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _flag(
        parser,
        "--version",
        action="version",
        version=f"vidu-pipe {__version__}",
        help="print the version and exit",
    )
    sub = parser.add_subparsers(
        dest="command", metavar="COMMAND", parser_class=_Parser, title="commands"
    )
    sub.required = True
    for add in _COMMANDS:
        add(sub)
    return parser


# --- the entry point ----------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``vidu-pipe`` and ``python -m vidu_pipe``; returns the exit code."""
    with _interruptible():
        try:
            args = build_parser().parse_args(argv)
            handler: Handler = args.handler
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


class _Terminated(KeyboardInterrupt):
    """SIGTERM, turned into what Ctrl-C raises, so that both end the same way (130)."""


def _on_sigterm(signum: int, frame: object) -> NoReturn:
    raise _Terminated


@contextmanager
def _interruptible() -> Iterator[None]:
    """From the first line of ``main``: SIGTERM ends like Ctrl-C (exit 130, no
    traceback) instead of killing the process with 143. ``run`` installs its own
    handlers for the run itself; the previous handler is put back on the way out
    (``main`` may be called in-process, by tests or a host program)."""
    try:
        previous = signal.signal(signal.SIGTERM, _on_sigterm)
    except ValueError:  # not the main thread: signals are not ours to handle
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _print_problems(problems: Sequence[Problem], out: IO[str]) -> None:
    for problem in problems:
        print(problem.format(), file=out)


def _count(n: int, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else "s")


# --- validate -------------------------------------------------------------------------------


def _add_validate(sub: argparse._SubParsersAction[_Parser]) -> None:
    p = _command(
        sub,
        "validate",
        _cmd_validate,
        help="check storyboards against every rule of the endpoint; no network, no key",
        description="Check storyboards: schema, templates, assets and the endpoint's field "
        "rules. Every problem is printed as FILE:LINE:COL: shot 'ID': field: message, with a "
        "hint where one helps. Exit 0 when all are valid, 2 otherwise.",
        examples=["vidu-pipe validate film.storyboard.yaml", "vidu-pipe validate pipelines/*.yaml"],
    )
    _flag(p, "files", nargs="+", metavar="FILE", help="storyboards to check (one or more)")
    _add_json(p, "{ok, files, problems} on stdout")


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
        doc = {"ok": not problems, "files": results, "problems": [p.as_dict() for p in problems]}
        json.dump(doc, sys.stdout, indent=2, ensure_ascii=False)
        print()
    else:
        _print_problems(problems, sys.stdout)
        if problems:
            bad = sum(1 for r in results if not r["ok"])
            print(f"{_count(len(problems), 'problem')} in {_count(bad, 'file')}", file=sys.stderr)
    return EXIT_INVALID if problems else EXIT_OK


# --- plan -----------------------------------------------------------------------------------


def _add_plan(sub: argparse._SubParsersAction[_Parser]) -> None:
    p = _command(
        sub,
        "plan",
        _cmd_plan,
        help="what a run would do to each shot, and what it would bill; no network",
        description="Render every selected shot and compare it with the manifest: a table of "
        "what a run would do (skip, restore, resume, hold or create) and why, then the bill "
        "(tasks and seconds of video per model). --bodies adds the exact request bodies.",
        examples=[
            "vidu-pipe plan film.storyboard.yaml",
            "vidu-pipe plan film.storyboard.yaml --only 'hero-*' --bodies",
            "vidu-pipe plan film.storyboard.yaml --json | jq .summary",
        ],
    )
    _add_file(p)
    _add_selection(p)
    _flag(
        p,
        "--simulate",
        action="store_true",
        help="plan what `run --simulate` would do (default: off)",
    )
    _flag(
        p,
        "--bodies",
        action="store_true",
        help="show each request body exactly as it would be sent (default: off)",
    )
    _add_json(p, "every shot with its action, reason and request body")
    _add_retry_unknown(p)


def _cmd_plan(args: argparse.Namespace) -> int:
    import shutil

    from vidu_pipe.api import manifest_path_for, plan
    from vidu_pipe.views.plan import format_bodies, format_table, plan_json

    # The manifest flag goes to the library as given: None means "the storyboard's own",
    # which may be adopted after a rename; a path the user typed is checked for its owner.
    the_plan = plan(
        args.file,
        manifest=args.manifest,
        only=args.only,
        tags=args.tag,
        force=args.force,
        simulate=args.simulate,
        retry_unknown=args.retry_unknown,
    )
    where = manifest_path_for(the_plan.storyboard, args.manifest)
    if args.json:
        json.dump(plan_json(the_plan, where), sys.stdout, indent=2, ensure_ascii=False)
        print()
    elif args.bodies:
        sys.stdout.write(format_bodies(the_plan, where))
    else:
        width = shutil.get_terminal_size((100, 24)).columns
        sys.stdout.write(format_table(the_plan, where, width=width))
    return EXIT_OK


# --- run ------------------------------------------------------------------------------------


def _add_run(sub: argparse._SubParsersAction[_Parser]) -> None:
    p = _command(
        sub,
        "run",
        _cmd_run,
        help="run the shots that need it and write the manifest",
        description="Create a task for every selected shot that is new, failed or changed, "
        "resume the ones still running, skip the ones up to date, and record every task in "
        "the manifest as it goes. Ctrl-C stops creating; a second run resumes. The key is "
        "read from the environment variable VIDU_API_KEY only.",
        examples=[
            "vidu-pipe run film.storyboard.yaml --simulate     # no key, no network",
            "VIDU_API_KEY=sk-... vidu-pipe run film.storyboard.yaml --download videos",
            "vidu-pipe run film.storyboard.yaml --tag act1 --json > events.jsonl",
        ],
    )
    _add_file(p)
    _flag(
        p,
        "--base-url",
        metavar="URL",
        help=f"the relay's base URL (default: env VIDU_BASE_URL, else {DEFAULT_BASE_URL})",
    )
    _flag(
        p,
        "--simulate",
        action="store_true",
        help="run against the built-in simulator in-process; no key, no network (default: off)",
    )
    _flag(
        p,
        "--concurrency",
        type=_positive_int,
        metavar="N",
        help="most tasks created and not yet finished at once "
        "(default: run.concurrency in the storyboard, else 4)",
    )
    _flag(
        p,
        "--rate",
        type=_non_negative_int,
        metavar="N",
        help="most creates in any 60 seconds; 0 for no limit "
        "(default: run.rate_per_minute in the storyboard, else 20)",
    )
    _flag(
        p,
        "--poll-interval",
        type=_positive_float,
        metavar="SECONDS",
        help="first wait between two queries of a task; it grows as the task ages "
        "(default: run.poll_interval in the storyboard, else 5)",
    )
    _add_selection(p)
    _flag(
        p,
        "--download",
        metavar="DIR",
        help="save each video as DIR/ID.mp4 (default: run.download in the storyboard, else off)",
    )
    _flag(
        p,
        "--max-creates",
        type=_non_negative_int,
        metavar="N",
        help="create at most N tasks in this run; the rest wait for the next "
        "(default: run.max_creates in the storyboard, else no cap)",
    )
    _flag(
        p,
        "--timeout",
        type=_positive_float,
        metavar="SECONDS",
        help="stop waiting for one task after this long; it stays on record and the next run "
        "resumes it (default: run.timeout in the storyboard, else 1800)",
    )
    _add_json(p, "one JSON event per line on stdout, the summary on stderr")
    _flag(
        p, "--quiet", "-q", action="store_true", help="print only the final summary (default: off)"
    )
    _flag(
        p,
        "--keep-going",
        action="store_true",
        help="run the valid selected shots even when other shots are invalid; list those and "
        "exit 2 (default: off, any invalid shot stops the run)",
    )
    _add_retry_unknown(p)


def _cmd_run(args: argparse.Namespace) -> int:
    import anyio

    from vidu_pipe.api import SIMULATE_TIME_SCALE, arun, load, manifest_path_for, options_for
    from vidu_pipe.views.progress import choose_mode, open_progress

    storyboard = load(args.file, keep_going=args.keep_going)
    broken = _broken_selected(storyboard, args)
    options = options_for(
        storyboard,
        concurrency=args.concurrency,
        rate_per_minute=args.rate,
        poll_interval=args.poll_interval,
        timeout=args.timeout,
        max_creates=args.max_creates,
        download_dir=Path(args.download) if args.download else None,
        handle_signals=True,
        retry_unknown=args.retry_unknown or None,
    )
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
        + (f"{len(result.unknown)} held (no answer to a create), " if result.unknown else "")
        + (f"{len(result.running)} still running (resumed next run), " if result.running else "")
        + (f"{len(result.restored)} restored (no create), " if result.restored else "")
        + f"{len(result.skipped)} up to date "
        f"({_count(result.created, 'task')} created); "
        + (_downloads_failed(result.downloads_failed) if result.downloads_failed else "")
        + f"manifest: {where}",
        file=out,
    )
    if broken:
        # A duplicated id is one shot's name written twice: list (and count) it once.
        ids = list(dict.fromkeys(b.id for b in broken))
        print(f"vidu-pipe: {_count(len(ids), 'invalid shot')} not run: {', '.join(ids)}", file=out)
    return result.exit_code  # the result's, as its run-finished event says (2 for broken)


def _downloads_failed(ids: tuple[str, ...]) -> str:
    """The summary's note of shots done whose video could not be saved (they still count
    as completed, up to date or restored: their task is fine; the run exits 1)."""
    n = len(ids)
    return f"{n} download{'s' if n != 1 else ''} failed ({', '.join(ids)}); "


def _broken_selected(storyboard: Any, args: argparse.Namespace) -> list[Any]:
    """``--keep-going``: the selected shots that did not validate, their problems printed."""
    if not storyboard.broken:
        return []
    from vidu_pipe.api import select_broken

    broken = select_broken(storyboard, args.only, args.tag)
    _print_problems([p for b in broken for p in b.problems], sys.stderr)
    return broken


# --- status ---------------------------------------------------------------------------------


def _add_status(sub: argparse._SubParsersAction[_Parser]) -> None:
    p = _command(
        sub,
        "status",
        _cmd_status,
        help="the manifest against the storyboard: each shot's state",
        description="Each shot as the manifest records it, against what the storyboard "
        "renders now: completed, failed, running, pending, stale (changed since it was made) "
        "or orphaned (no longer in the storyboard), with task id, age and error.",
        examples=["vidu-pipe status film.storyboard.yaml", "vidu-pipe status FILE --json"],
    )
    _add_file(p)
    _add_manifest(p)
    _add_json(p, "counts and every shot's state")


def _cmd_status(args: argparse.Namespace) -> int:
    from vidu_pipe.api import status
    from vidu_pipe.views.status import print_status

    report = status(args.file, manifest=args.manifest)
    if args.json:
        json.dump(report.to_json(), sys.stdout, indent=2, ensure_ascii=False)
        print()
    else:
        print_status(report, sys.stdout)
    return EXIT_OK


# --- schema ---------------------------------------------------------------------------------


def _add_schema(sub: argparse._SubParsersAction[_Parser]) -> None:
    p = _command(
        sub,
        "schema",
        _cmd_schema,
        help="print a JSON Schema (storyboard or request)",
        description="Print the JSON Schema (2020-12) of a storyboard or of a request body: "
        "the source of truth that validate uses, for editors and other tools.",
        examples=[
            "vidu-pipe schema storyboard > schemas/storyboard.schema.json",
            "vidu-pipe schema request",
        ],
    )
    _flag(
        p,
        "name",
        nargs="?",
        choices=["storyboard", "request"],
        default="storyboard",
        help="which schema (default: storyboard)",
    )


def _cmd_schema(args: argparse.Namespace) -> int:
    from vidu_pipe.api import schema_text

    sys.stdout.write(schema_text(args.name))
    return EXIT_OK


# --- report ---------------------------------------------------------------------------------


def _add_report(sub: argparse._SubParsersAction[_Parser]) -> None:
    p = _command(
        sub,
        "report",
        _cmd_report,
        help="write an HTML contact sheet of the storyboard with its videos",
        description="One self-contained HTML page (works offline): a summary, then every "
        "shot in order with its prompt, inputs, status and video.",
        examples=["vidu-pipe report film.storyboard.yaml -o report.html"],
    )
    _add_file(p)
    _flag(
        p,
        "-o",
        "--output",
        metavar="PATH",
        default="report.html",
        help="the HTML file to write (default: report.html)",
    )
    _add_manifest(p)


def _cmd_report(args: argparse.Namespace) -> int:
    from vidu_pipe.api import load, report

    storyboard = load(args.file)
    output = report(storyboard, args.output, manifest=args.manifest)
    print(f"{output}: contact sheet of {_count(len(storyboard.shots), 'shot')}")
    return EXIT_OK


# --- simulator ------------------------------------------------------------------------------


def _add_simulator(sub: argparse._SubParsersAction[_Parser]) -> None:
    p = _command(
        sub,
        "simulator",
        _cmd_simulator,
        help="serve the built-in simulator of the endpoint on loopback",
        description="A stand-in for the relay: the task routes and video files, the key "
        "check, the request rules, a per-account cap of 5 running tasks, faults on demand, "
        "and the answers of four kinds of relay (--profile).",
        examples=[
            "vidu-pipe simulator --port 8000 --time-scale 0.01",
            "VIDU_API_KEY=sk-x vidu-pipe run FILE --base-url http://127.0.0.1:8000",
        ],
    )
    _flag(p, "--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)")
    _flag(p, "--port", type=_port, default=8000, help="port to listen on (default: 8000)")
    _flag(
        p,
        "--time-scale",
        type=_positive_float,
        default=1.0,
        metavar="X",
        help="real seconds per simulated second; 0.01 makes a 3-minute task take 1.8 s "
        "(default: 1)",
    )
    _flag(
        p,
        "--fail-rate",
        type=_fraction,
        default=0.0,
        metavar="P",
        help="chance from 0 to 1 that a task fails (default: 0)",
    )
    _flag(
        p,
        "--profile",
        choices=["seed", "new-api", "new-api-legacy", "vidu"],
        default="seed",
        help="which kind of relay to answer as: the endpoint document (seed), new-api, "
        "new-api before 2026-02 (new-api-legacy) or Vidu's own words (vidu) (default: seed)",
    )
    _flag(p, "--key", metavar="K", help="the only bearer key accepted (default: any key)")
    _flag(
        p,
        "--seed",
        type=int,
        help="random seed for task ids and faults (default: a fresh one each start)",
    )
    _flag(
        p,
        "--rate-limit",
        type=_positive_int,
        metavar="N",
        help="answer 429 above N creates a minute (default: no limit)",
    )
    _flag(
        p,
        "--quota",
        type=_non_negative_int,
        metavar="N",
        help="answer 403 after N creates, a spent quota (default: no quota)",
    )


def _cmd_simulator(args: argparse.Namespace) -> int:
    from vidu_pipe.api import serve_simulator

    serve_simulator(
        host=args.host,
        port=args.port,
        key=args.key,
        time_scale=args.time_scale,
        seed=args.seed,  # None: a fresh one, so that task ids of two runs never collide
        profile=args.profile,
        fail_rate=args.fail_rate,
        rate_limit_per_minute=args.rate_limit,
        quota=args.quota,
    )
    return EXIT_OK


# --- init -----------------------------------------------------------------------------------


def _add_init(sub: argparse._SubParsersAction[_Parser]) -> None:
    p = _command(
        sub,
        "init",
        _cmd_init,
        help="start a project: a storyboard that validates, templates/, .gitignore, pre-commit",
        description="Write a small commented storyboard showing every mode, a template in "
        "templates/, a copy of the storyboard schema for editors, .gitignore entries for a "
        "run's working files, videos and the local cache, and a pre-commit config that "
        "validates storyboards. Never overwrites: if any of these files exists, nothing is "
        "written (exit 2).",
        examples=[
            "vidu-pipe init my-film && cd my-film && vidu-pipe run film.storyboard.yaml --simulate"
        ],
    )
    _flag(
        p,
        "dir",
        nargs="?",
        default=".",
        metavar="DIR",
        help="the project folder, created if missing (default: the current folder)",
    )


def _cmd_init(args: argparse.Namespace) -> int:
    from vidu_pipe.api import INIT_STORYBOARD, init_project

    for path in init_project(args.dir):
        print(f"wrote {path}")
    storyboard = Path(args.dir) / INIT_STORYBOARD
    print(f"next: vidu-pipe validate {storyboard} && vidu-pipe run {storyboard} --simulate")
    return EXIT_OK


# --- the film: cut, pick, prune ---------------------------------------------------------


def _add_cut(sub: argparse._SubParsersAction[_Parser]) -> None:
    p = _command(
        sub,
        "cut",
        _cmd_cut,
        help="the chosen takes, in storyboard order, as one film or an editor's timeline",
        description="Join the chosen take of every selected shot (its pick, else take 1) into "
        "one MP4, without re-encoding when the clips share codec, size and frame rate; or "
        "write the cut as a timeline. Videos not downloaded yet are fetched into the local "
        "cache (.vidu-pipe/) first; a shot whose video cannot be had is named (exit 1).",
        examples=[
            "vidu-pipe run film.storyboard.yaml --simulate && vidu-pipe cut film.storyboard.yaml",
            "vidu-pipe cut film.storyboard.yaml --format otio -o film.otio",
        ],
    )
    _add_file(p)
    _flag(
        p,
        "-o",
        "--output",
        metavar="PATH",
        help="the file to write (default: film.mp4, or film.otio / film.edl / film.fcpxml)",
    )
    _flag(
        p,
        "--format",
        choices=["mp4", "otio", "edl", "fcpxml"],
        default="mp4",
        help="the film, or a timeline: otio, edl, fcpxml (edl and fcpxml need "
        "pip install 'vidu-pipe[editors]') (default: mp4)",
    )
    _flag(
        p,
        "--only",
        action="append",
        default=[],
        metavar="ID",
        help="only shots whose id (or id before .takeN) matches this glob; repeatable; a take "
        "named exactly is cut even when not picked (default: all shots)",
    )
    _flag(
        p,
        "--tag",
        action="append",
        default=[],
        metavar="T",
        help="only shots with this tag; repeatable (default: all shots)",
    )
    _add_manifest(p)


def _cmd_cut(args: argparse.Namespace) -> int:
    from vidu_pipe.api import cut

    result = cut(
        args.file,
        output=args.output,
        fmt=args.format,
        only=args.only,
        tags=args.tag,
        manifest=args.manifest,
    )
    what = "film" if result.format == "mp4" else f"{result.format} timeline"
    if result.fetched:
        print(f"fetched into the cache first: {', '.join(result.fetched)}")
    print(
        f"{result.output}: {what} of {_count(len(result.shots), 'shot')}, "
        f"{result.duration:.2f} s" + (f", {result.width}x{result.height}" if result.width else "")
    )
    if result.method == "remux":
        print("joined without re-encoding (the clips share codec, size and frame rate)")
    elif result.method == "reencode":
        print(f"re-encoded to {result.width}x{result.height} (the first clip's format):")
        for reason in result.reasons:
            print(f"  {reason}")
    return EXIT_OK


def _add_pick(sub: argparse._SubParsersAction[_Parser]) -> None:
    p = _command(
        sub,
        "pick",
        _cmd_pick,
        help="record take K as the chosen take of shot ID (pick: K in the storyboard)",
        description="Write pick: K into the storyboard for shot ID, editing only that line: "
        "comments, key order, quoting and line endings stay as they are. cut puts the chosen "
        "take in the film; the report marks it.",
        examples=["vidu-pipe pick film.storyboard.yaml closeup.take2"],
    )
    _add_file(p)
    _flag(p, "take", metavar="ID.takeK", help="the take to choose, e.g. closeup.take2")
    _flag(
        p,
        "--dry-run",
        action="store_true",
        help="say which line would change, write nothing (default: off)",
    )


def _cmd_pick(args: argparse.Namespace) -> int:
    from vidu_pipe.api import pick

    done = pick(args.file, args.take, dry_run=args.dry_run)
    was = f" (was {done.previous})" if done.previous is not None else ""
    would = " (dry run: not written)" if args.dry_run else ""
    print(f"{done.path}:{done.line}: {done.shot}: pick: {done.take}{was}{would}")
    return EXIT_OK


def _add_prune(sub: argparse._SubParsersAction[_Parser]) -> None:
    p = _command(
        sub,
        "prune",
        _cmd_prune,
        help="drop manifest entries of removed shots and cached results no shot needs",
        description="Drop the manifest entries of shots that left the storyboard, and the "
        "results and videos in the local cache (.vidu-pipe/) that no shot of it renders any "
        "more. A reverted prompt whose result was pruned is paid for again.",
        examples=["vidu-pipe prune film.storyboard.yaml --dry-run"],
    )
    _add_file(p)
    _flag(
        p,
        "--dry-run",
        action="store_true",
        help="list what would be dropped, change nothing (default: off)",
    )
    _add_manifest(p)


def _cmd_prune(args: argparse.Namespace) -> int:
    from vidu_pipe.api import prune

    done = prune(args.file, manifest=args.manifest, dry_run=args.dry_run)
    verb = "would drop" if done.dry_run else "dropped"
    for shot_id in done.entries:
        print(f"manifest entry {shot_id} (no longer in the storyboard)")
    for fp in done.results:
        print(f"cached result {fp}")
    size = sum(n for _, n in done.files)
    for path, n in done.files:
        print(f"cached video {path} ({n} bytes)")
    print(
        f"{verb} {len(done.entries)} manifest "
        + ("entry" if len(done.entries) == 1 else "entries")
        + f", {_count(len(done.results), 'cached result')}, "
        f"{_count(len(done.files), 'video file')} ({size / 1e6:.1f} MB)"
    )
    return EXIT_OK


#: The functions that add each command's parser, in the order ``--help`` lists them.
_COMMANDS: list[Callable[[argparse._SubParsersAction[_Parser]], None]] = [
    _add_init,
    _add_validate,
    _add_plan,
    _add_run,
    _add_status,
    _add_report,
    _add_schema,
    _add_simulator,
    _add_cut,
    _add_pick,
    _add_prune,
]
