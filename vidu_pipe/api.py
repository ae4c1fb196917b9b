"""The library API: ``load``, ``validate``, ``plan``, ``run`` — what the CLI calls.

::

    import vidu_pipe

    board = vidu_pipe.load("pipelines/lighthouse.yaml")        # StoryboardError if invalid
    print(vidu_pipe.plan(board).count("create"))               # what a run would create
    result = vidu_pipe.run(board, simulate=True)               # no key, no network
    assert result.exit_code == 0
"""

from __future__ import annotations

import functools
import os
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, ParamSpec, TypeVar

import anyio
import httpx

from vidu_pipe.constants import SIMULATE_TIME_SCALE, SIMULATOR_BASE_URL
from vidu_pipe.errors import ConfigError, Problem, StoryboardError, UsageError
from vidu_pipe.events import EventSink
from vidu_pipe.execution.runner import RunOptions, RunResult, execute
from vidu_pipe.manifest.store import Manifest, ManifestEntry, check_owner, load_manifest
from vidu_pipe.planner import Plan, select
from vidu_pipe.planner import plan as _plan
from vidu_pipe.storyboard.build import load
from vidu_pipe.storyboard.model import Storyboard

if TYPE_CHECKING:
    from vidu_pipe.views.status import StatusReport

_P = ParamSpec("_P")
_T = TypeVar("_T")

__all__ = [
    "SIMULATE_TIME_SCALE",
    "SIMULATOR_BASE_URL",
    "init_project",
    "load",
    "plan",
    "report",
    "run",
    "status",
    "validate",
]


def validate(path: Path | str) -> list[Problem]:
    """Every problem in a storyboard file (an empty list when it is valid)."""
    try:
        load(path)
    except StoryboardError as exc:
        return exc.problems
    return []


def _storyboard(source: Storyboard | Path | str) -> Storyboard:
    return source if isinstance(source, Storyboard) else load(source)


def manifest_path_for(storyboard: Storyboard, manifest: Path | str | None) -> Path:
    """``--manifest``, or the storyboard's path with ``.manifest.json``; a usage error
    when it names a folder (``--manifest .``) or nothing at all."""
    if manifest is None:
        return storyboard.default_manifest_path
    path = Path(manifest)
    if not str(manifest).strip() or path.name in ("", ".", "..") or path.is_dir():
        raise UsageError(f"--manifest {str(manifest)!r} must name a file, not a folder")
    return path


def plan(
    storyboard: Storyboard | Path | str,
    *,
    manifest: Path | str | None = None,
    only: Sequence[str] = (),
    tags: Sequence[str] = (),
    force: bool = False,
    simulate: bool = False,
) -> Plan:
    """What a run would do to each selected shot, from the manifest on disk."""
    board = _storyboard(storyboard)
    path = manifest_path_for(board, manifest)
    found = load_manifest(path)
    _check_manifest(found, path, board, simulate=simulate, explicit=manifest is not None)
    return _plan(
        board,
        found,
        only=only,
        tags=tags,
        force=force,
        trusted=_trusted(found, simulate),
        resumable=not simulate,  # `run --simulate` starts a fresh simulator
    )


def status(
    storyboard: Storyboard | Path | str, *, manifest: Path | str | None = None
) -> StatusReport:
    """The manifest against the storyboard, shot by shot; reads, never writes."""
    from vidu_pipe.views.status import compute

    board = _storyboard(storyboard)
    path = manifest_path_for(board, manifest)
    return compute(board, load_manifest(path), path)


def report(
    storyboard: Storyboard | Path | str,
    output: Path | str,
    *,
    manifest: Path | str | None = None,
) -> Path:
    """Write the HTML contact sheet to ``output``; returns where it went. A usage error
    when ``output`` is a folder, or the storyboard or its manifest."""
    from vidu_pipe.views.report import write_report

    board = _storyboard(storyboard)
    path = manifest_path_for(board, manifest)
    target = Path(output)
    if not str(output).strip() or target.is_dir():
        raise UsageError(f"-o {str(output)!r} must name a file, not a folder")
    if target.exists() and target.resolve() in (board.path.resolve(), path.resolve()):
        raise UsageError(f"-o {output} would overwrite the storyboard or its manifest")
    return write_report(board, load_manifest(path), manifest_path=path, output=target)


#: The storyboard ``vidu-pipe init`` writes (``*.storyboard.yaml``: the pre-commit hook's
#: default ``files`` pattern picks it up).
INIT_STORYBOARD = "film.storyboard.yaml"
#: What ``vidu-pipe init`` writes: path in the project -> file in ``vidu_pipe/init_files``.
INIT_FILES: dict[str, str] = {
    INIT_STORYBOARD: "storyboard.yaml",
    "templates/look.j2": "templates/look.j2",
    ".gitignore": "gitignore",
    ".pre-commit-config.yaml": "pre-commit-config.yaml",
}
#: Where ``init`` writes its copy of the storyboard schema (the storyboard's first line
#: points editors at it; ``vidu-pipe schema storyboard`` prints the current one).
INIT_SCHEMA = "schemas/storyboard.schema.json"


def init_project(folder: Path | str = ".") -> list[Path]:
    """Start a project in ``folder`` (created if missing): a storyboard that validates,
    ``templates/``, ``.gitignore`` entries, a pre-commit config and a copy of the
    storyboard schema. Never overwrites: when any of those files exists, nothing is
    written (a usage error names them). Returns the files written."""
    from importlib.resources import files

    from vidu_pipe.storyboard.schemas import schema_path

    root = Path(folder)
    if root.exists() and not root.is_dir():
        raise UsageError(f"{root} exists and is not a folder")
    source = files("vidu_pipe").joinpath("init_files")
    contents = {name: source.joinpath(src).read_bytes() for name, src in INIT_FILES.items()}
    contents[INIT_SCHEMA] = schema_path("storyboard").read_bytes()
    targets = {root / name: data for name, data in contents.items()}
    # lexists: a dangling symlink is there too, and writing through it is never right.
    taken = [str(path) for path in targets if os.path.lexists(path)]
    if taken:
        raise UsageError(
            f"init never overwrites, and these exist already: {', '.join(taken)} "
            "(nothing was written; choose another folder, or move them away)"
        )
    written: list[Path] = []
    try:
        for path, data in targets.items():
            path.parent.mkdir(parents=True, exist_ok=True)
            with path.open("xb") as fh:  # "x": fails rather than overwrite a newcomer
                fh.write(data)
            written.append(path)
    except OSError:
        for path in written:
            path.unlink(missing_ok=True)
        raise
    return written


def _check_manifest(
    existing: Manifest | None, path: Path, board: Storyboard, *, simulate: bool, explicit: bool
) -> None:
    """What ``plan`` and ``run`` both refuse: simulating into a manifest of real tasks, and
    a ``--manifest`` that belongs to another storyboard."""
    if existing is None:
        return
    real_tasks = any(e.task_id for e in existing.entries.values())
    if simulate and existing.base_url != SIMULATOR_BASE_URL and real_tasks:
        raise ConfigError(
            f"{path} records real tasks at {existing.base_url}; a simulated run would mix "
            "simulated results into it (use --manifest to simulate into another file)"
        )
    if explicit:
        check_owner(existing, board.path.name, path)


def _trusted(manifest: Manifest | None, simulate: bool) -> bool:
    """Simulated results never count as up to date for a real run."""
    return manifest is None or manifest.base_url != SIMULATOR_BASE_URL or simulate


def options_for(storyboard: Storyboard, **flags: object) -> RunOptions:
    """RunOptions from defaults, overlaid by the storyboard's ``run:``, overlaid by
    the flags that are not None (the command line wins)."""
    s = storyboard.run
    base = RunOptions()
    from_board: dict[str, object] = {
        "concurrency": s.concurrency,
        "rate_per_minute": s.rate_per_minute,
        "poll_interval": s.poll_interval,
        "timeout": s.timeout,
        "max_creates": s.max_creates,
        "download_dir": (storyboard.path.parent / s.download) if s.download else None,
    }
    merged = {k: v for k, v in from_board.items() if v is not None}
    merged.update({k: v for k, v in flags.items() if v is not None})
    return replace(base, **merged)  # type: ignore[arg-type]


async def arun(
    storyboard: Storyboard | Path | str,
    *,
    simulate: bool = False,
    base_url: str | None = None,
    manifest: Path | str | None = None,
    only: Sequence[str] = (),
    tags: Sequence[str] = (),
    force: bool = False,
    options: RunOptions | None = None,
    on_event: EventSink | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
    env: Mapping[str, str] | None = None,
) -> RunResult:
    """Run the shots that need it and write the manifest (``run`` is the blocking form).

    ``simulate`` runs against the built-in simulator in-process (no key, no network);
    ``transport`` replaces the network (tests); ``env`` replaces ``os.environ`` for
    ``VIDU_API_KEY`` and ``VIDU_BASE_URL``. Raises :class:`StoryboardError`,
    :class:`UsageError`, :class:`ConfigError` (and :class:`AuthError`) before or instead
    of a result; a result's ``exit_code`` says how the shots went.
    """
    from vidu_pipe.execution.client import ViduClient, resolve_api_key, resolve_base_url
    from vidu_pipe.manifest.store import ManifestStore

    environ = os.environ if env is None else env
    board = _storyboard(storyboard)
    opts = options if options is not None else options_for(board)
    fresh_simulator = False
    if simulate:
        if base_url is not None:
            raise UsageError(
                "--simulate runs the built-in simulator in-process and records it as such; "
                "to run against a served simulator (vidu-pipe simulator), give --base-url "
                "without --simulate"
            )
        from vidu_pipe.simulator import Simulator, SimulatorConfig, profile_from_env

        if transport is None:
            # A fresh seed per run: task ids of two simulated runs must never collide.
            seed = int.from_bytes(os.urandom(4), "big")
            profile = profile_from_env(environ)  # VIDU_PIPE_SIM_PROFILE: which relay to play
            sim = Simulator(
                SimulatorConfig(time_scale=SIMULATE_TIME_SCALE, seed=seed, profile=profile)
            )
            transport = sim.transport()
            opts = replace(opts, time_scale=SIMULATE_TIME_SCALE)
            fresh_simulator = True
        url = SIMULATOR_BASE_URL
        key: str | None = None
    else:
        url = resolve_base_url(base_url, environ)
        key = resolve_api_key(environ)
    path = manifest_path_for(board, manifest)
    if opts.download_dir is not None:
        _check_folder(opts.download_dir)  # before anything is paid for
    select(board, only, tags)  # a selection typo is refused before any file is touched
    existing = load_manifest(path)
    _check_manifest(existing, path, board, simulate=simulate, explicit=manifest is not None)
    adopt = manifest is None  # the storyboard's own manifest, renamed along with it
    if existing is not None and existing.base_url == SIMULATOR_BASE_URL and not simulate:
        _forget_simulated(path, existing, board, adopt=adopt)
    with ManifestStore.open(
        path,
        storyboard=board.path.name,
        base_url=url,
        order=board.ids,
        adopt=adopt,
        keep_empty=False,  # a run stopped before recording anything leaves no file
    ) as store:
        # Planned under the lock: a second run cannot plan the same creates meanwhile.
        the_plan = _plan(
            board,
            store.snapshot(),
            only=only,
            tags=tags,
            force=force,
            resumable=not fresh_simulator,
        )
        async with ViduClient(url, key, transport=transport) as client:
            return await execute(
                the_plan, store=store, client=client, options=opts, on_event=on_event
            )


def _check_folder(folder: Path) -> None:
    """``--download DIR`` must be a folder we can write, found out before paying."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".vidu-pipe-write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise UsageError(
            f"--download {folder}: cannot write there ({exc.strerror or exc})"
        ) from None


def _forget_simulated(path: Path, existing: Manifest, board: Storyboard, *, adopt: bool) -> None:
    """Before a real run on a manifest the simulator wrote: its entries become pending.

    Done under the simulator's own base URL and folded in before the real run opens
    the file, so that no crash can leave simulated videos under a real base URL.
    """
    from vidu_pipe.manifest.store import ManifestStore

    with ManifestStore.open(
        path, storyboard=board.path.name, base_url=SIMULATOR_BASE_URL, order=board.ids, adopt=adopt
    ) as store:
        for shot_id, entry in existing.entries.items():
            if entry.status != "pending":
                store.set(
                    shot_id,
                    ManifestEntry(
                        status="pending",
                        fingerprint=entry.fingerprint,
                        request=entry.request,
                        error="only simulated so far",
                    ),
                    durable=False,
                )
        store.compact()


def _blocking(function: Callable[_P, Awaitable[_T]]) -> Callable[_P, _T]:
    """The blocking form of a coroutine function, with the same (typed) signature."""

    @functools.wraps(function)
    def blocking(*args: _P.args, **kwargs: _P.kwargs) -> _T:
        return anyio.run(functools.partial(function, *args, **kwargs))

    return blocking


#: Run the shots that need it and write the manifest: :func:`arun`, blocking.
run = _blocking(arun)
