"""Run: the plan's shots as tasks on the endpoint, concurrently, into the manifest.

Everything runs inside one anyio task group, one task per shot:

- one ``CapacityLimiter`` caps tasks created and not yet finished (``--concurrency``),
  resumed tasks included; a shot takes its slot before it creates and gives it
  back when its task finishes (downloads happen outside the cap);
- one :class:`~vidu_pipe.ratelimit.CreateGate` spaces the creates (``--rate``) and
  pauses everyone on a 429;
- each task is polled on its own :class:`~vidu_pipe.polling.PollSchedule`.

Retries never pay twice for one shot. A create is retried only when it surely
created nothing: the connection was refused, or the relay answered 429 or 5xx
(at this relay an error answer created nothing, SPEC §5). A create that got no
answer may have created a task; it is recorded as failed with that said, and not
repeated in this run. The task id of a create is on disk (fsynced) before the
shot's next request, and the send-and-record is shielded from cancellation, so
neither Ctrl-C nor ``kill -9`` can lose a task that was paid for.

A refused key (401) stops the whole run at once; a spent quota (403) stops
creating and lets the running tasks finish.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
import random
import signal
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import anyio

from vidu_pipe.constants import EXIT_CONFIG, EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK
from vidu_pipe.errors import (
    AmbiguousCreateError,
    ApiError,
    AuthError,
    ConfigError,
    QuotaError,
    ViduPipeError,
)
from vidu_pipe.events import (
    Completed,
    Created,
    Downloaded,
    Event,
    EventSink,
    Failed,
    Interrupted,
    NotStarted,
    Progress,
    Queued,
    RateLimited,
    Restored,
    Resumed,
    Retried,
    RunFinished,
    RunStarted,
    Skipped,
    Waiting,
)
from vidu_pipe.execution.client import TaskState, ViduClient
from vidu_pipe.execution.polling import PollSchedule
from vidu_pipe.execution.ratelimit import Clock, CreateGate
from vidu_pipe.manifest.history import Cache, Result
from vidu_pipe.manifest.store import Download, ManifestEntry, ManifestStore
from vidu_pipe.planner import Plan, Step
from vidu_pipe.storyboard.model import Shot
from vidu_pipe.timestamps import utc_now

__all__ = ["RunOptions", "RunResult", "execute"]


logger = logging.getLogger(__name__)

#: What a retry repeats (the ``what`` of a ``retried`` event).
_What = Literal["create", "query", "download"]

#: Tries after which a relay that has not answered once in this run counts as unreachable.
_UNREACHABLE_TRIES = 3


@dataclass(frozen=True)
class RunOptions:
    """How to run (command-line flags, over the storyboard's ``run:``, over defaults)."""

    concurrency: int = 4
    rate_per_minute: int = 20
    poll_interval: float = 5.0
    timeout: float = 1800.0
    max_creates: int | None = None
    download_dir: Path | None = None
    #: Run seconds per real second (< 1 compresses time; used with the simulator).
    time_scale: float = 1.0
    #: Tries of one create that surely created nothing (429, 5xx, refused connection).
    create_attempts: int = 8
    #: Install SIGINT/SIGTERM handlers (only from the main thread: the CLI does).
    handle_signals: bool = False
    #: The results cache (``.vidu-pipe/``): every completed request is recorded in it,
    #: and downloaded or made videos are kept in it by SHA-256. None: no cache.
    cache: Cache | None = None
    #: Writes a placeholder clip of a shot to a path (simulated runs: their URLs hold
    #: no video, so the run makes one locally and keeps it in the cache).
    placeholder: Callable[[Shot, Path], None] | None = None


@dataclass(frozen=True)
class RunResult:
    """What a run did. ``exit_code`` follows SPEC §3."""

    completed: tuple[str, ...] = ()
    failed: tuple[str, ...] = ()
    not_started: tuple[str, ...] = ()
    skipped: tuple[str, ...] = ()
    #: Shots that took an earlier result of their request from the cache (no create).
    restored: tuple[str, ...] = ()
    #: Shots whose task was still running when the run was interrupted (resumed next run).
    running: tuple[str, ...] = ()
    created: int = 0
    resumed: int = 0
    interrupted: bool = False
    quota_error: str | None = None
    messages: tuple[str, ...] = ()

    @property
    def exit_code(self) -> int:
        if self.interrupted:
            return EXIT_INTERRUPTED
        if self.quota_error:
            return EXIT_CONFIG
        if self.failed or self.not_started or self.running:
            return EXIT_FAILED
        return EXIT_OK


@dataclass
class _Tally:
    completed: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    not_started: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    restored: list[str] = field(default_factory=list)
    running: list[str] = field(default_factory=list)
    tasks: set[str] = field(default_factory=set)  # shots with a task created or resumed
    created: int = 0
    resumed: int = 0


def _backoff(attempt: int, rng: random.Random, *, base: float = 1.0, cap: float = 60.0) -> float:
    """Capped exponential backoff with jitter (half fixed, half random)."""
    delay = min(cap, base * 2.0 ** (attempt - 1))
    return delay * (0.5 + 0.5 * rng.random())


class _Run:
    def __init__(
        self,
        plan: Plan,
        store: ManifestStore,
        client: ViduClient,
        options: RunOptions,
        emit: EventSink,
    ) -> None:
        self.plan = plan
        self.store = store
        self.client = client
        self.options = options
        self.emit_event = emit
        self.clock = Clock(options.time_scale)
        self.gate = CreateGate(options.rate_per_minute, self.clock)
        self.slots = anyio.CapacityLimiter(options.concurrency)
        self.rng = random.Random()
        self.tally = _Tally()
        self.creates_reserved = 0
        self.stopping = False
        self.interrupted = False
        self.quota_error: str | None = None
        #: What stops the whole run: a refused key, an unreachable relay, a manifest
        #: that cannot be written, or a bug.
        self.fatal: ViduPipeError | None = None
        #: Whether any request of this run got an answer from the relay.
        self.reached = False
        #: Why shots that did not start did not start, once the run stops.
        self.stop_reason = "interrupted"
        self.shots_scope: anyio.CancelScope | None = None
        self.messages: list[str] = []

    def emit(self, event: Event) -> None:
        self.emit_event(event)

    # --- the run as a whole ---------------------------------------------------

    async def execute(self) -> RunResult:
        steps = self.plan.steps
        self.emit(
            RunStarted(
                storyboard=str(self.plan.storyboard.path),
                manifest=str(self.store.path),
                create=self.plan.count("create"),
                resume=self.plan.count("resume"),
                skip=self.plan.count("skip"),
                restore=self.plan.count("restore"),
                concurrency=self.options.concurrency,
                rate=self.options.rate_per_minute,
            )
        )
        # Resumed tasks are already running at the relay: they take the first slots.
        ordered = sorted(
            steps, key=lambda s: {"resume": 0, "create": 1, "skip": 2, "restore": 2}[s.action]
        )
        async with anyio.create_task_group() as outer:
            if self.options.handle_signals:
                outer.start_soon(self._watch_signals)
            with anyio.CancelScope() as scope:
                self.shots_scope = scope
                async with anyio.create_task_group() as tg:
                    for step in ordered:
                        tg.start_soon(self._drive, step)
            outer.cancel_scope.cancel()
        result = RunResult(
            completed=tuple(self.tally.completed),
            failed=tuple(self.tally.failed),
            not_started=tuple(self.tally.not_started),
            skipped=tuple(self.tally.skipped),
            restored=tuple(self.tally.restored),
            running=tuple(self.tally.running),
            created=self.tally.created,
            resumed=self.tally.resumed,
            interrupted=self.interrupted,
            quota_error=self.quota_error,
            messages=tuple(self.messages),
        )
        self.emit(
            RunFinished(
                completed=len(result.completed),
                failed=len(result.failed),
                not_started=len(result.not_started),
                running=len(result.running),
                skipped=len(result.skipped),
                restored=len(result.restored),
                created=result.created,
                exit_code=EXIT_CONFIG if self.fatal is not None else result.exit_code,
            )
        )
        if self.fatal is not None:
            raise self.fatal
        return result

    async def _watch_signals(self) -> None:
        with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async for _ in signals:
                if self.interrupted:
                    # Second Ctrl-C: leave now. Every record on disk is whole already:
                    # journal lines are fsynced one by one and compactions are renames.
                    if sys.stdout.isatty():
                        sys.stdout.write("\x1b[?25h\n")  # the live display hid the cursor
                        sys.stdout.flush()
                    os._exit(EXIT_INTERRUPTED)
                self.interrupted = True
                self.stopping = True
                self.stop_reason = "interrupted"
                self.messages.append(
                    "interrupted: no new tasks; submitted tasks keep their ids and resume "
                    "on the next run (press Ctrl-C again to quit at once)"
                )
                self.emit(Interrupted())
                if self.shots_scope is not None:
                    self.shots_scope.cancel()

    def _stop_all(self, error: ViduPipeError) -> None:
        if self.fatal is None:
            self.fatal = error
            self.stop_reason = (
                "key refused"
                if isinstance(error, AuthError)
                else "relay unreachable"
                if "cannot reach" in str(error)
                else "run stopped"
            )
        self.stopping = True
        if self.shots_scope is not None:
            self.shots_scope.cancel()

    # --- one shot -------------------------------------------------------------

    async def _drive(self, step: Step) -> None:
        shot = step.shot
        try:
            if step.action == "skip":
                if step.adopted_from is not None and step.entry is not None:
                    self.store.set(shot.id, step.entry, durable=False)
                self.tally.skipped.append(shot.id)
                self.emit(Skipped(shot=shot.id, reason=step.reason))
                if self.options.download_dir is not None and step.entry is not None:
                    await self._ensure_download(shot, step.entry)
                return
            if step.action == "restore":
                await self._restore(step)
                return
            url = await self._task(step)
            made = await self._keep(shot) if url is not None else None
            if url is not None and self.options.download_dir is not None:
                if made is not None:  # a simulated run: its own clip, not the relay's sample
                    await self._copy_download(shot, made)
                else:
                    await self._download(shot, url)
        except ViduPipeError as exc:  # a refused key, an unreachable relay, a full disk
            self._stop_all(exc)
        except Exception as exc:  # a bug: stop cleanly, say what, keep what is on disk
            logger.debug("shot %s", shot.id, exc_info=True)
            self._stop_all(
                ViduPipeError(f"internal error on shot {shot.id}: {type(exc).__name__}: {exc}")
            )
        except anyio.get_cancelled_exc_class():
            if shot.id not in self._settled():
                # A task that exists keeps running at the relay; the next run resumes it.
                if shot.id in self.tally.tasks:
                    self.tally.running.append(shot.id)
                else:
                    self._not_started(shot, self.stop_reason)
            raise

    def _settled(self) -> set[str]:
        t = self.tally
        return {*t.completed, *t.failed, *t.not_started, *t.skipped, *t.restored, *t.running}

    async def _task(self, step: Step) -> str | None:
        """Create (or resume) the shot's task and wait for it; returns the video URL."""
        shot = step.shot
        if self.slots.available_tokens == 0:
            ahead = self.slots.statistics().tasks_waiting
            self.emit(Queued(shot=shot.id, limit=self.options.concurrency, ahead=ahead))
        async with self.slots:
            if step.action == "resume":
                assert step.entry is not None and step.entry.task_id is not None
                entry = step.entry
                self.tally.resumed += 1
                self.tally.tasks.add(shot.id)
                self.emit(Resumed(shot=shot.id, task_id=step.entry.task_id))
            else:
                created = await self._create(shot, step.entry)
                if created is None:
                    return None
                entry = created
                self.tally.tasks.add(shot.id)
            return await self._wait(shot, entry)

    def _check_reachable(self, exc: ApiError, attempt: int) -> None:
        """A relay that never answered in this run, after a few tries, is a configuration
        problem (a wrong --base-url, no network): stop at once rather than retry every
        shot for minutes and call them failed."""
        if exc.status_code is not None:
            self.reached = True
        elif not self.reached and attempt >= _UNREACHABLE_TRIES:
            raise ConfigError(
                f"cannot reach the relay at {self.client.base_url}: {exc.message} "
                "(check --base-url / VIDU_BASE_URL and the network)"
            )

    def _retried(self, shot: Shot, what: _What, attempt: int, exc: ApiError, delay: float) -> None:
        self.emit(
            Retried(
                shot=shot.id, what=what, attempt=attempt, error=exc.message, delay=round(delay, 2)
            )
        )

    async def _back_off(self, shot: Shot, what: _What, attempt: int, exc: ApiError) -> None:
        delay = _backoff(attempt, self.rng)
        self._retried(shot, what, attempt, exc, delay)
        await self.clock.sleep(delay)

    def _not_started(self, shot: Shot, reason: str) -> None:
        self.tally.not_started.append(shot.id)
        self.emit(NotStarted(shot=shot.id, reason=reason))

    def _fail(self, shot: Shot, entry: ManifestEntry, error: str) -> None:
        self.store.set(shot.id, entry.replace(status="failed", error=error, progress=None))
        self.tally.failed.append(shot.id)
        self.emit(Failed(shot=shot.id, task_id=entry.task_id, error=error))

    async def _create(self, shot: Shot, previous: ManifestEntry | None) -> ManifestEntry | None:
        cap = self.options.max_creates
        if cap is not None and self.creates_reserved >= cap:
            self._not_started(shot, f"--max-creates {cap} reached")
            return None
        self.creates_reserved += 1
        attempts = previous.attempts if previous is not None else 0
        base = ManifestEntry(
            status="pending",
            fingerprint=shot.fingerprint,
            request=shot.request,
            attempts=attempts,
        )
        attempt = 0
        while True:
            if self.stopping or self.quota_error:
                self.creates_reserved -= 1
                reason = self.stop_reason if self.stopping else "quota spent"
                self._not_started(shot, reason)
                return None
            attempt += 1
            wait = self.gate.expected_wait()
            if wait > 0.5:
                self.emit(Waiting(shot=shot.id, reason="rate-limit", seconds=round(wait, 1)))
            await self.gate.acquire()
            if self.stopping or self.quota_error:
                continue
            try:
                # Shielded: once a create is on the wire, neither Ctrl-C nor a refused key
                # elsewhere may drop its answer before the task id is on disk.
                with anyio.CancelScope(shield=True):
                    state = await self.client.create(shot.request)
                    entry = base.replace(
                        status="submitted",
                        task_id=state.task_id,
                        attempts=attempts + 1,
                        submitted_at=utc_now(),
                    )
                    self.store.set(shot.id, entry, durable=True)
            except QuotaError as exc:
                self.creates_reserved -= 1
                if self.quota_error is None:
                    self.quota_error = exc.message
                    self.messages.append(
                        f"the relay refused to create more tasks ({exc.message}); "
                        "running tasks were allowed to finish"
                    )
                self._not_started(shot, "quota spent")
                return None
            except AmbiguousCreateError as exc:
                error = (
                    f"the create got no answer ({exc.message}): a task may exist and be "
                    "billed, so it was not repeated in this run; the next run creates it again"
                )
                self._fail(shot, base.replace(attempts=attempts + 1), error)
                return None
            except ApiError as exc:
                self._check_reachable(exc, attempt)
                if exc.status_code in (404, 405):
                    # No create route there: a wrong --base-url, not a problem of this shot.
                    raise ConfigError(
                        f"{self.client.base_url} has no task endpoint (HTTP {exc.status_code} on "
                        "POST /v1/video/generations): check --base-url / VIDU_BASE_URL"
                    ) from None
                if exc.retryable and attempt < self.options.create_attempts:
                    if exc.status_code == 429:
                        hint = exc.retry_after
                        pause = self.gate.refused(
                            None if hint is None else self.clock.from_wire(hint)
                        )
                        self.emit(RateLimited(shot=shot.id, retry_after=round(pause, 2)))
                    else:
                        await self._back_off(shot, "create", attempt, exc)
                    continue
                self.creates_reserved -= 1
                self._fail(shot, base, exc.message)
                return None
            self.reached = True
            self.gate.created()
            self.tally.created += 1
            self.emit(Created(shot=shot.id, task_id=state.task_id, attempt=entry.attempts))
            return entry

    async def _wait(self, shot: Shot, entry: ManifestEntry) -> str | None:
        """Poll one task until it finishes, fails or times out; returns the video URL."""
        assert entry.task_id is not None
        task_id = entry.task_id
        start = self.clock.now()
        deadline = start + self.options.timeout
        schedule = PollSchedule(self.options.poll_interval, started=start)
        failures = 0
        last: tuple[str, int | None] | None = None
        delay = schedule.next_delay(start)
        while True:
            now = self.clock.now()
            await self.clock.sleep(min(delay, max(0.0, deadline - now)))
            # At the deadline, one last query: the task may have finished meanwhile.
            last_chance = self.clock.now() >= deadline
            try:
                state = await self.client.query(entry.task_id)
            except ApiError as exc:
                self._check_reachable(exc, failures + 1)
                transient = exc.retryable or exc.status_code is None
                if last_chance and transient:
                    self._gave_up(shot, entry)
                    return None
                if transient:
                    failures += 1
                    delay = _backoff(failures, self.rng, base=1.0, cap=60.0)
                    if exc.retry_after is not None:
                        delay = max(delay, self.clock.from_wire(exc.retry_after))
                    self._retried(shot, "query", failures, exc, delay)
                    continue
                error = f"querying task {entry.task_id} failed: {exc.message}"
                if exc.code == "task_not_exist":
                    self._fail(shot, entry, error)  # gone at the relay: the next run creates
                else:
                    # The task was paid for and may well finish: keep it submitted, so the
                    # next run asks again instead of paying for another.
                    self._left_submitted(shot, entry, error + "; the next run asks again")
                return None
            failures = 0
            self.reached = True
            now = self.clock.now()
            if state.status == "completed":
                return self._completed(shot, entry, state, now - start)
            if state.status == "failed":
                self._fail(shot, entry, state.error or "the task failed (no reason given)")
                return None
            if last_chance:
                self._gave_up(shot, entry)
                return None
            schedule.observe(now, state.status, state.progress)
            if (state.status, state.progress) != last:
                last = (state.status, state.progress)
                entry = entry.replace(progress=state.progress)
                self.store.set(shot.id, entry, durable=False)
                self.emit(
                    Progress(
                        shot=shot.id,
                        task_id=task_id,
                        status=state.status,
                        progress=state.progress,
                    )
                )
            delay = schedule.next_delay(now)

    def _gave_up(self, shot: Shot, entry: ManifestEntry) -> None:
        self._left_submitted(
            shot,
            entry,
            f"gave up waiting after {self.options.timeout:g} s; the task is still "
            "submitted and the next run resumes it",
        )

    def _left_submitted(self, shot: Shot, entry: ManifestEntry, error: str) -> None:
        """This run stops waiting for the shot, but its task stays on record (submitted)."""
        self.store.set(shot.id, entry.replace(error=error))
        self.tally.failed.append(shot.id)
        self.emit(Failed(shot=shot.id, task_id=entry.task_id, error=error))

    def _completed(self, shot: Shot, entry: ManifestEntry, state: TaskState, took: float) -> str:
        assert state.video_url is not None and entry.task_id is not None
        done = entry.replace(
            status="completed",
            video_url=state.video_url,
            error=None,
            progress=None,
            finished_at=utc_now(),
            download=None,
        )
        self.store.set(shot.id, done, durable=True)
        self.tally.completed.append(shot.id)
        self.emit(
            Completed(
                shot=shot.id,
                task_id=entry.task_id,
                video_url=state.video_url,
                seconds=round(took, 1),
            )
        )
        return state.video_url

    # --- the results cache ------------------------------------------------------

    async def _restore(self, step: Step) -> None:
        """Take an earlier result of the shot's request: no create, the old video back."""
        shot = step.shot
        found = step.restore
        assert found is not None
        result = found.result
        entry = ManifestEntry(
            status="completed",
            fingerprint=shot.fingerprint,
            request=shot.request,
            task_id=result.task_id,
            video_url=result.video_url,
            attempts=step.entry.attempts if step.entry is not None else 0,
            finished_at=result.finished_at,
        )
        self.store.set(shot.id, entry, durable=True)
        self.tally.restored.append(shot.id)
        self.emit(
            Restored(
                shot=shot.id,
                task_id=result.task_id,
                video_url=result.video_url,
                finished_at=result.finished_at,
                source=found.source,
            )
        )
        await self._remember(shot, result)
        if self.options.download_dir is None:
            return
        cache = self.options.cache
        cached = cache.video_of(result) if cache is not None else None
        if cached is not None:
            await self._copy_download(shot, cached)
        elif result.video_url:
            await self._download(shot, result.video_url)

    async def _keep(self, shot: Shot) -> Path | None:
        """Record a completed request in the cache; in a simulated run, make its clip
        (returned: the file in the cache)."""
        entry = self.store.get(shot.id)
        if self.options.cache is None or entry is None:
            return None
        result = Result(
            fingerprint=shot.fingerprint,
            base_url=self.client.base_url,
            task_id=entry.task_id,
            video_url=entry.video_url,
            finished_at=entry.finished_at,
        )
        make = self.options.placeholder
        if make is not None:
            cache, made = self.options.cache, result
            result = await self._cache_call(
                made, lambda: _make_placeholder(cache, make, shot, made)
            )
        await self._remember(shot, result)
        return self.options.cache.video_of(result) if make is not None else None

    async def _remember(self, shot: Shot, result: Result) -> None:
        cache = self.options.cache
        if cache is None:
            return
        named = dataclasses.replace(
            result, storyboards=(self.plan.storyboard.path.name,), shot=shot.id
        )
        await self._cache_call(named, lambda: cache.remember(named))

    async def _cache_call(self, fallback: Result, work: Callable[[], Result]) -> Result:
        """Run cache work off the event loop. The cache is a convenience: a failure there
        is said once and never fails the shot (the manifest holds what was paid for)."""
        try:
            return await anyio.to_thread.run_sync(work)
        except (OSError, ViduPipeError) as exc:
            text = f"the results cache was not written: {exc}"
            if text not in self.messages:
                self.messages.append(text)
            logger.debug("cache", exc_info=True)
            return fallback

    async def _copy_download(self, shot: Shot, source: Path) -> None:
        """``--download``: the restored video from the cache, without the network."""
        dest = self._destination(shot)
        try:
            size, sha256 = await anyio.to_thread.run_sync(_copy_file, source, dest)
        except OSError as exc:
            self._download_failed(shot, f"cannot save {dest}: {exc.strerror or exc}")
            return
        entry = self.store.get(shot.id)
        if entry is not None:
            record = Download(
                path=_relative(dest, self.store.path.parent), size=size, sha256=sha256
            )
            self.store.set(shot.id, entry.replace(download=record))
        self.emit(Downloaded(shot=shot.id, path=str(dest), size=size, sha256=sha256))

    # --- downloads ------------------------------------------------------------

    def _destination(self, shot: Shot) -> Path:
        folder = self.options.download_dir
        assert folder is not None
        # Shot ids match [A-Za-z0-9][A-Za-z0-9._-]*, so this never leaves the folder.
        return folder / f"{shot.id}.mp4"

    async def _ensure_download(self, shot: Shot, entry: ManifestEntry) -> None:
        """For an up-to-date shot: fetch the video again only if missing or corrupt."""
        dest = self._destination(shot)
        if entry.download is not None and await anyio.to_thread.run_sync(
            _file_matches, dest, entry.download.size, entry.download.sha256
        ):
            return
        if entry.video_url:
            await self._download(shot, entry.video_url)

    async def _download(self, shot: Shot, url: str) -> None:
        dest = self._destination(shot)
        for attempt in range(1, 4):
            try:
                dest.parent.mkdir(parents=True, exist_ok=True)
                size, sha256 = await self.client.download(url, dest)
                break
            except ApiError as exc:
                if exc.retryable and attempt < 3:
                    await self._back_off(shot, "download", attempt, exc)
                    continue
                self._download_failed(
                    shot,
                    f"download failed: {exc.message} (video URLs expire after about 24 hours; "
                    f"`--force --only {shot.id}` makes the video again)",
                )
                return
            except OSError as exc:
                self._download_failed(shot, f"cannot save {dest}: {exc.strerror or exc}")
                return
        entry = self.store.get(shot.id)
        if entry is not None:
            record = Download(
                path=_relative(dest, self.store.path.parent), size=size, sha256=sha256
            )
            self.store.set(shot.id, entry.replace(download=record))
        self.emit(Downloaded(shot=shot.id, path=str(dest), size=size, sha256=sha256))
        cache = self.options.cache
        if cache is not None and entry is not None and entry.fingerprint == shot.fingerprint:
            # The file goes into the cache too (a hard link: no second copy on disk), so
            # that a revert restores it long after its URL expired.
            kept = await self._cache_call(
                Result("", ""), lambda: cache.add_video(dest, sha256=sha256)
            )
            if kept.video:
                result = Result(
                    fingerprint=shot.fingerprint,
                    base_url=self.client.base_url,
                    task_id=entry.task_id,
                    video_url=entry.video_url,
                    finished_at=entry.finished_at,
                    video=kept.video,
                    size=kept.size,
                )
                await self._remember(shot, result)

    def _download_failed(self, shot: Shot, error: str) -> None:
        """The task is done and recorded; only its file is missing: the run fails (exit 1)."""
        self.emit(Failed(shot=shot.id, task_id=None, error=error))
        for done in (self.tally.completed, self.tally.skipped):
            if shot.id in done:
                done.remove(shot.id)
        self.tally.failed.append(shot.id)


def _file_matches(path: Path, size: int, sha256: str) -> bool:
    try:
        if path.stat().st_size != size:
            return False
        digest = hashlib.sha256()
        with path.open("rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
        return digest.hexdigest() == sha256
    except OSError:
        return False


def _copy_file(source: Path, dest: Path) -> tuple[int, str]:
    import shutil

    from vidu_pipe.manifest.history import file_sha256

    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.tmp")
    shutil.copyfile(source, tmp)
    os.replace(tmp, dest)
    sha256, size = file_sha256(dest)
    return size, sha256


def _make_placeholder(
    cache: Cache, make: Callable[[Shot, Path], None], shot: Shot, result: Result
) -> Result:
    """Write the shot's placeholder clip into the cache; ``result`` with its file."""
    tmp = cache.new_video_path(shot.id)
    try:
        make(shot, tmp)
        kept = cache.add_video(tmp, move=True)
    finally:
        tmp.unlink(missing_ok=True)
    return dataclasses.replace(result, video=kept.video, size=kept.size)


def _relative(path: Path, start: Path) -> str:
    try:
        return os.path.relpath(path, start)
    except ValueError:
        return str(path.resolve())


async def execute(
    plan: Plan,
    *,
    store: ManifestStore,
    client: ViduClient,
    options: RunOptions,
    on_event: EventSink | None = None,
) -> RunResult:
    """Run ``plan`` against ``client``, recording every state change in ``store``.

    Raises AuthError when the relay refuses the key (after recording what it knows).
    """
    return await _Run(plan, store, client, options, on_event or (lambda _e: None)).execute()
