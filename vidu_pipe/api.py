"""The library API: ``load``, ``validate``, ``plan``, ``run`` — what the CLI calls.

::

    import vidu_pipe

    board = vidu_pipe.load("pipelines/lighthouse.yaml")        # StoryboardError if invalid
    print(vidu_pipe.plan(board).count("create"))               # what a run would create
    result = vidu_pipe.run(board, simulate=True)               # no key, no network
    assert result.exit_code == 0
"""

from __future__ import annotations

import contextlib
import functools
import os
import random
import tempfile
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Literal, ParamSpec, TypeVar

import anyio
import httpx

from vidu_pipe.constants import SIMULATE_TIME_SCALE, SIMULATOR_BASE_URL
from vidu_pipe.errors import (
    ApiError,
    ConfigError,
    ManifestError,
    Problem,
    StoryboardError,
    UsageError,
)
from vidu_pipe.events import EventSink
from vidu_pipe.execution.runner import RunOptions, RunResult, execute
from vidu_pipe.film.pick import Picked, pick
from vidu_pipe.manifest.history import Cache, Restorable, results_from_manifest
from vidu_pipe.manifest.store import (
    Manifest,
    ManifestEntry,
    ManifestStore,
    check_owner,
    load_manifest,
)
from vidu_pipe.planner import Plan, select, select_broken
from vidu_pipe.planner import plan as _plan
from vidu_pipe.storyboard.build import load
from vidu_pipe.storyboard.model import Storyboard

if TYPE_CHECKING:
    from vidu_pipe.execution.client import ViduClient
    from vidu_pipe.film.cut import CutFormat, CutResult
    from vidu_pipe.simulator import Profile
    from vidu_pipe.views.status import StatusReport

_P = ParamSpec("_P")
_T = TypeVar("_T")

__all__ = [
    "SIMULATE_TIME_SCALE",
    "SIMULATOR_BASE_URL",
    "Picked",
    "PruneResult",
    "arun",
    "cut",
    "init_project",
    "load",
    "pick",
    "plan",
    "prune",
    "report",
    "run",
    "schema_text",
    "select_broken",
    "serve_simulator",
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


def _storyboard(source: Storyboard | Path | str, *, keep_going: bool = False) -> Storyboard:
    return source if isinstance(source, Storyboard) else load(source, keep_going=keep_going)


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
    cache_dir: Path | str | None = None,
    retry_unknown: bool = False,
) -> Plan:
    """What a run would do to each selected shot, from the manifest on disk (and the
    results cache: ``cache_dir``, by default ``.vidu-pipe/`` beside the storyboard).

    ``retry_unknown`` plans creates for the shots whose last create got no answer
    (``unknown``: they may be billed); without it they are held."""
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
        restorable=_restorable(
            _cache(board, cache_dir), board, found, only, tags, simulate=simulate
        ),
        retry_unknown=retry_unknown,
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


def schema_text(name: Literal["storyboard", "request"] = "storyboard") -> str:
    """The JSON Schema (2020-12) of a storyboard or of a request body, as text: the
    source of truth ``validate`` uses (``vidu-pipe schema``)."""
    from vidu_pipe.storyboard.schemas import schema_path

    return schema_path(name).read_text(encoding="utf-8")


def serve_simulator(
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    key: str | None = None,
    time_scale: float = 1.0,
    seed: int | None = None,
    profile: Profile = "seed",
    fail_rate: float = 0.0,
    rate_limit_per_minute: int | None = None,
    quota: int | None = None,
) -> None:
    """Serve the built-in simulator of the endpoint until interrupted
    (``vidu-pipe simulator``); ``seed`` None draws a fresh one, so that the task ids of
    two simulator runs never collide."""
    from vidu_pipe.simulator import SimulatorConfig, serve

    config = SimulatorConfig(
        key=key,
        time_scale=time_scale,
        seed=seed if seed is not None else int.from_bytes(os.urandom(4), "big"),
        profile=profile,
        fail_rate=fail_rate,
        rate_limit_per_minute=rate_limit_per_minute,
        quota=quota,
    )
    serve(config, host=host, port=port)


def _cache(board: Storyboard, cache_dir: Path | str | None) -> Cache:
    return Cache(Path(cache_dir)) if cache_dir is not None else Cache.beside(board.path)


def _restorable(
    cache: Cache,
    board: Storyboard,
    manifest: Manifest | None,
    only: Sequence[str],
    tags: Sequence[str],
    *,
    simulate: bool,
) -> dict[str, Restorable]:
    """The selected shots' requests that the results cache (or the manifest itself)
    completed before, with a video still to be had: a run restores them."""
    extra = (
        results_from_manifest(
            manifest.entries, base_url=manifest.base_url, storyboard=board.path.name
        )
        if manifest is not None
        else []
    )
    return cache.restorable(
        [shot.fingerprint for shot in select(board, only, tags)], simulated=simulate, extra=extra
    )


def _remember_manifest(cache: Cache, manifest: Manifest, storyboard: str) -> None:
    """Copy a manifest's completed entries into the results cache (a teammate's manifest,
    or one written before the cache existed), so that a later revert restores them."""
    for result in results_from_manifest(
        manifest.entries, base_url=manifest.base_url, storyboard=storyboard
    ):
        cache.remember(result)


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
    cache_dir: Path | str | None = None,
    keep_going: bool = False,
) -> RunResult:
    """Run the shots that need it and write the manifest (``run`` is the blocking form).

    ``simulate`` runs against the built-in simulator in-process (no key, no network);
    ``transport`` replaces the network (tests); ``env`` replaces ``os.environ`` for
    ``VIDU_API_KEY`` and ``VIDU_BASE_URL``; ``cache_dir`` moves the results cache
    (default: ``.vidu-pipe/`` beside the storyboard). ``keep_going`` (a path given) runs the
    valid shots of a storyboard with broken ones (see ``Storyboard.broken``; the result names
    the selected ones in ``broken``, and its ``exit_code`` is 2 for them). Raises
    :class:`StoryboardError`, :class:`UsageError`, :class:`ConfigError` (and
    :class:`AuthError`) before or instead of a result; a result's ``exit_code`` says how the
    shots went.
    """
    from vidu_pipe.execution.client import ViduClient, resolve_api_key, resolve_base_url

    environ = os.environ if env is None else env
    board = _storyboard(storyboard, keep_going=keep_going)
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
        # No pace is learned (nor read) from the simulator: it is no relay, and its times
        # are its profile's at its own scale.
        opts = replace(opts, learn_pace=False)
        url = SIMULATOR_BASE_URL
        key: str | None = None
    else:
        url = resolve_base_url(base_url, environ)
        key = resolve_api_key(environ)
    path = manifest_path_for(board, manifest)
    cache = _cache(board, cache_dir)
    opts = replace(opts, cache=cache)
    if simulate:
        from vidu_pipe.simulator import shot_placeholder

        # The simulator's URLs die with it: the run makes each shot's clip locally.
        opts = replace(opts, placeholder=shot_placeholder)
    if opts.download_dir is not None:
        _check_folder(opts.download_dir)  # before anything is paid for
    broken = tuple(b.id for b in select_broken(board, only, tags))  # --keep-going
    if not select(board, only, tags):  # a selection typo is refused before any file is touched
        return RunResult(broken=broken)  # only broken shots selected: nothing to do
    existing = load_manifest(path)
    _check_manifest(existing, path, board, simulate=simulate, explicit=manifest is not None)
    adopt = manifest is None  # the storyboard's own manifest, renamed along with it
    async with ViduClient(url, key, transport=transport) as client:
        if existing is not None and existing.base_url != url:
            # Moving the manifest to another relay rewrites it (and forgets simulated
            # results): only once that relay has answered, so that a mistyped
            # --base-url changes nothing on disk.
            await _probe(client)
        if existing is not None and existing.base_url == SIMULATOR_BASE_URL and not simulate:
            await anyio.to_thread.run_sync(
                functools.partial(_forget_simulated, path, existing, board, adopt=adopt)
            )
        # Opening may compact and closing does: blocking I/O, kept off the event loop.
        store = await anyio.to_thread.run_sync(
            functools.partial(
                ManifestStore.open,
                path,
                storyboard=board.path.name,
                base_url=url,
                order=board.ids,
                adopt=adopt,
                keep_empty=False,  # a run stopped before recording anything leaves no file
            )
        )
        try:
            # Planned under the lock: a second run cannot plan the same creates meanwhile.
            snapshot = store.snapshot()
            if existing is not None and existing.base_url == url:
                with contextlib.suppress(OSError, ConfigError):  # a cache never stops a run
                    await anyio.to_thread.run_sync(
                        _remember_manifest, cache, existing, board.path.name
                    )
            restorable = await anyio.to_thread.run_sync(
                functools.partial(
                    _restorable, cache, board, snapshot, only, tags, simulate=simulate
                )
            )
            the_plan = _plan(
                board,
                snapshot,
                only=only,
                tags=tags,
                force=force,
                resumable=not fresh_simulator,
                restorable=restorable,
                retry_unknown=opts.retry_unknown,
            )
            result = await execute(
                the_plan,
                store=store,
                client=client,
                options=opts,
                on_event=on_event,
                broken=broken,
            )
        except BaseException:
            # The run's own error says more than a failed close (a full disk fails both).
            with anyio.CancelScope(shield=True), contextlib.suppress(ManifestError):
                await anyio.to_thread.run_sync(store.close)
            raise
        await anyio.to_thread.run_sync(store.close)
        return result


async def _probe(client: ViduClient) -> None:
    """Ask the relay about a task that does not exist: any HTTP answer shows it is there.

    Raises :class:`ConfigError` when it cannot be reached, :class:`AuthError` when it
    refuses the key; either way before anything is written.
    """
    from vidu_pipe.execution.retry import PROBE, probe_may_retry, retrying

    async def ask() -> None:
        try:
            await client.query("vidu-pipe-probe")
        except ApiError as exc:
            if exc.status_code is None:
                raise
            # Any HTTP answer (a 404 for the made-up task) shows the relay is there. A
            # refused key raises AuthError, not an ApiError: it passes through untried.

    try:
        await retrying(
            ask, policy=PROBE, may_retry=probe_may_retry, sleep=anyio.sleep, rng=random.Random()
        )
    except ApiError as exc:
        raise ConfigError(
            f"cannot reach the relay at {client.base_url}: {exc.message} (check --base-url / "
            "VIDU_BASE_URL and the network); nothing was changed"
        ) from None


def _check_folder(folder: Path) -> None:
    """``--download DIR`` must be a folder we can write, found out before paying."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        # An unpredictable name, created exclusively: a planted link is never written.
        with tempfile.TemporaryFile(dir=folder, prefix=".vidu-pipe-write-test-"):
            pass
    except (OSError, ValueError) as exc:  # ValueError: a NUL in the path
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise UsageError(f"--download {str(folder)!r}: cannot write there ({reason})") from None


def _forget_simulated(path: Path, existing: Manifest, board: Storyboard, *, adopt: bool) -> None:
    """Before a real run on a manifest the simulator wrote: its entries become pending.

    Done under the simulator's own base URL and folded in before the real run opens
    the file, so that no crash can leave simulated videos under a real base URL.
    """

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


def cut(
    storyboard: Storyboard | Path | str,
    *,
    output: Path | str | None = None,
    fmt: CutFormat = "mp4",
    only: Sequence[str] = (),
    tags: Sequence[str] = (),
    manifest: Path | str | None = None,
    cache_dir: Path | str | None = None,
) -> CutResult:
    """The chosen take of every selected shot, in storyboard order, as one MP4 (or a
    timeline: ``fmt`` otio, edl, fcpxml) at ``output`` (default ``film.<fmt>``).

    Videos not downloaded yet are fetched into the cache first. Raises
    :class:`~vidu_pipe.film.cut.CutError` naming every shot whose video cannot be had
    (nothing is written then), :class:`UsageError` for an output that is a folder, the
    storyboard or its manifest.
    """
    from vidu_pipe.film.cut import acut

    board = _storyboard(storyboard)
    path = manifest_path_for(board, manifest)
    target = Path(output if output is not None else f"film.{fmt}")
    if not str(target).strip() or target.is_dir():
        raise UsageError(f"-o {str(output)!r} must name a file, not a folder")
    if target.exists() and target.resolve() in (board.path.resolve(), path.resolve()):
        raise UsageError(f"-o {target} would overwrite the storyboard or its manifest")
    found = load_manifest(path)
    _check_manifest(found, path, board, simulate=False, explicit=manifest is not None)
    return anyio.run(
        functools.partial(
            acut,
            board,
            found,
            manifest_path=path,
            output=target,
            fmt=fmt,
            only=only,
            tags=tags,
            cache_dir=Path(cache_dir) if cache_dir is not None else None,
        )
    )


@dataclass(frozen=True)
class PruneResult:
    """What ``prune`` dropped (or, with ``dry_run``, would drop)."""

    #: Manifest entries of shots no longer in the storyboard.
    entries: tuple[str, ...]
    #: Cached results (by fingerprint) of this storyboard that no shot renders any more.
    results: tuple[str, ...]
    #: Cached video files no remaining result names, with their sizes in bytes.
    files: tuple[tuple[Path, int], ...]
    dry_run: bool


def prune(
    storyboard: Storyboard | Path | str,
    *,
    manifest: Path | str | None = None,
    dry_run: bool = False,
    cache_dir: Path | str | None = None,
) -> PruneResult:
    """Drop the manifest entries of shots that left the storyboard, and the cached
    results (and video files) that no shot of it renders any more.

    A result that another storyboard of the same folder also made is kept for that one.
    The manifest is rewritten under its lock; ``dry_run`` changes nothing.
    """
    from vidu_pipe.manifest.lock import RunLock, canonical_manifest_path
    from vidu_pipe.manifest.store import ManifestStore

    board = _storyboard(storyboard)
    path = manifest_path_for(board, manifest)
    found = load_manifest(path)
    _check_manifest(found, path, board, simulate=False, explicit=manifest is not None)
    ids = set(board.ids)
    orphans = [s for s in (found.entries if found is not None else {}) if s not in ids]
    cache = _cache(board, cache_dir)
    needed = {s.fingerprint for s in board.shots}
    if dry_run:
        results, files = cache.prune(board.path.name, needed, dry_run=True)
    elif orphans and found is not None:
        with ManifestStore.open(
            path,
            storyboard=board.path.name,
            base_url=found.base_url,
            order=board.ids,
            adopt=manifest is None,
        ) as store:
            store.remove(orphans)
            results, files = cache.prune(board.path.name, needed)
    else:
        # Under the manifest's lock all the same: a run adds a video to the cache a moment
        # before it records the result that names it, and a prune in between would delete
        # it. A running run makes this refuse (ConfigError, exit 3), as a second run would.
        lock = RunLock.acquire(canonical_manifest_path(path))
        try:
            results, files = cache.prune(board.path.name, needed)
        finally:
            lock.release()
    return PruneResult(tuple(orphans), tuple(r.fingerprint for r in results), tuple(files), dry_run)


def _blocking(function: Callable[_P, Awaitable[_T]]) -> Callable[_P, _T]:
    """The blocking form of a coroutine function, with the same (typed) signature."""

    @functools.wraps(function)
    def blocking(*args: _P.args, **kwargs: _P.kwargs) -> _T:
        return anyio.run(functools.partial(function, *args, **kwargs))

    return blocking


#: Run the shots that need it and write the manifest: :func:`arun`, blocking.
run = _blocking(arun)
