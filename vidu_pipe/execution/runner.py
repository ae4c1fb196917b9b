"""Run: the plan's shots as tasks on the endpoint, concurrently, into the manifest.

Everything runs inside one anyio task group, one task per shot:

- one ``CapacityLimiter`` caps tasks created and not yet finished (``--concurrency``),
  resumed tasks included; a shot takes its slot before it creates and gives it
  back when its task finishes (downloads happen outside the cap);
- one :class:`~vidu_pipe.ratelimit.CreateGate` spaces the creates (``--rate``) and
  pauses everyone on a 429;
- each task is polled on its own :class:`~vidu_pipe.polling.PollSchedule`.

Retries never pay twice for one shot. Before each create is sent, a write-ahead
record (fsynced) marks the shot ``unknown`` with the time it was sent; it is written as
the create gate opens. The answer turns it into ``submitted`` with its task id, on disk
before the shot's next request. A create that surely created nothing (the connection was
refused, or the relay answered 429 or 5xx with its error body: SPEC §5) takes the mark
back and may be retried. A create that got no answer may have created a task: the shot
stays ``unknown`` and is not created again, in this run or the next, unless
``--retry-unknown``. The send-and-record is shielded from cancellation, so neither
Ctrl-C nor ``kill -9`` can lose a task that was paid for, or forget that one may be.

When the manifest cannot be written (a full disk), the run stops creating at once,
prints every task id not yet on disk with its shot, keeps polling the tasks it has, and
ends with the disk error (exit 3).

A refused key (401) stops the whole run at once; a spent quota (403) stops
creating and lets the running tasks finish.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import logging
import os
import random
import signal
import sys
import urllib.parse
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Literal

import anyio

from vidu_pipe.constants import (
    EXIT_CONFIG,
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_INVALID,
    EXIT_OK,
)
from vidu_pipe.errors import (
    AmbiguousCreateError,
    ApiError,
    AuthError,
    ConfigError,
    ManifestError,
    QuotaError,
    RelayUnreachableError,
    ViduPipeError,
)
from vidu_pipe.events import (
    Completed,
    Created,
    Downloaded,
    Event,
    EventSink,
    Failed,
    Held,
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
from vidu_pipe.execution import retry
from vidu_pipe.execution.answers import NO_VIDEO_URL, is_data_uri
from vidu_pipe.execution.client import TaskState, ViduClient
from vidu_pipe.execution.downloads import Keeper
from vidu_pipe.execution.polling import (
    PACE_FILE,
    PaceBook,
    Pacer,
    kind_of,
    load_pace,
    pace_path,
    save_pace,
)
from vidu_pipe.execution.ratelimit import Clock, CreateGate
from vidu_pipe.failures import failure_advice
from vidu_pipe.fileio import write_atomic
from vidu_pipe.manifest.history import Cache
from vidu_pipe.manifest.store import (
    Download,
    ManifestEntry,
    ManifestStore,
    unknown_note,
    unknown_summary,
)
from vidu_pipe.planner import Plan, Step
from vidu_pipe.storyboard.model import Shot
from vidu_pipe.timestamps import parse_time, utc_now

__all__ = ["RunOptions", "RunResult", "execute"]


logger = logging.getLogger(__name__)

#: What a retry repeats (the ``what`` of a ``retried`` event).
_What = Literal["create", "query", "download"]

#: Tries after which a relay that has not answered once in this run counts as unreachable.
_UNREACHABLE_TRIES = 3
#: Answers "completed" without a video after which a task is left for the next run.
_NO_URL_ASKS = 3


class _Again:
    """What waiting returns when the task failed in a way worth one more create."""


_AGAIN = _Again()


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
    #: Keep the relay's pace between runs in ``.vidu-pipe/pace.json`` beside the storyboard.
    learn_pace: bool = True
    #: Create again the shots whose last create got no answer (they may be billed twice).
    retry_unknown: bool = False


@dataclass(frozen=True)
class RunResult:
    """What a run did. ``exit_code`` follows SPEC §3: it is the one source of the exit
    code, of the process (``run``) and of the ``run-finished`` event alike."""

    completed: tuple[str, ...] = ()
    failed: tuple[str, ...] = ()
    not_started: tuple[str, ...] = ()
    skipped: tuple[str, ...] = ()
    #: Shots that took an earlier result of their request from the cache (no create).
    restored: tuple[str, ...] = ()
    #: Shots whose task was still running when the run was interrupted (resumed next run).
    running: tuple[str, ...] = ()
    #: Shots whose create got no answer: a task may exist and be billed. Held, not failed:
    #: not created again unless ``--retry-unknown`` (the exit code stays 1 meanwhile).
    unknown: tuple[str, ...] = ()
    #: Shots whose task is done (they count as completed, up to date or restored) but
    #: whose video could not be saved (``--download``): the run exits 1.
    downloads_failed: tuple[str, ...] = ()
    created: int = 0
    resumed: int = 0
    interrupted: bool = False
    quota_error: str | None = None
    messages: tuple[str, ...] = ()
    #: ``--keep-going``: the selected shots that did not validate, so were not run.
    broken: tuple[str, ...] = ()
    #: The exit code of the error that stopped the whole run (a refused key, an
    #: unreachable relay, a manifest that cannot be written: 3; a bug: 1). Such a run
    #: raises that error after its ``run-finished`` event, so no caller sees this result;
    #: the event does, and carries the exit code the process ends with.
    fatal: int | None = None

    @property
    def exit_code(self) -> int:
        """0 every selected shot completed; 1 some failed; 2 invalid shots left out
        (``--keep-going``); 3 quota spent or a fatal configuration error; 130 interrupted."""
        if self.fatal is not None:
            return self.fatal
        if self.interrupted:
            return EXIT_INTERRUPTED
        if self.quota_error:
            return EXIT_CONFIG
        if self.broken:
            return EXIT_INVALID
        if self.failed or self.not_started or self.running:
            return EXIT_FAILED
        if self.unknown or self.downloads_failed:
            return EXIT_FAILED
        return EXIT_OK


#: How one shot ended in a run. ``unknown``: its create got no answer (held, not failed).
_Outcome = Literal[
    "completed", "failed", "unknown", "not_started", "skipped", "restored", "running"
]


@dataclass
class _Tally:
    #: Each shot that ended, and how; RunResult's tuples derive from it. A later outcome
    #: replaces an earlier one.
    outcome: dict[str, _Outcome] = field(default_factory=dict)
    #: Shots done whose video could not be saved (they keep their outcome).
    downloads_failed: list[str] = field(default_factory=list)
    tasks: set[str] = field(default_factory=set)  # shots with a task created or resumed
    created: int = 0
    resumed: int = 0


class _Run:
    def __init__(
        self,
        plan: Plan,
        store: ManifestStore,
        client: ViduClient,
        options: RunOptions,
        emit: EventSink,
        broken: tuple[str, ...] = (),
    ) -> None:
        self.plan = plan
        self.broken = broken
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
        # In the local cache folder: the storyboard's .vidu-pipe/, or the one given.
        cache = options.cache
        self.pace_file = (
            cache.root / PACE_FILE if cache is not None else pace_path(plan.storyboard.path)
        )
        #: The pace learned in earlier runs is read in :meth:`execute` (off the event loop).
        self.pacer = Pacer(PaceBook({}), self.clock)
        #: Creates again after a failure the relay called transient, per shot.
        self.recreated: dict[str, int] = {}
        # When each create was sent (run clock): the task cannot start before it, so the pace
        # is counted from there, not from after its answer and its write to disk.
        self.create_sent: dict[str, float] = {}
        #: Task ids the relay gave that could not be recorded (a full disk): shot -> id.
        self.unknown_ids: dict[str, str] = {}
        #: The manifest cannot be written: no more creates (polling goes on).
        self.disk_error: ManifestError | None = None
        #: Everything after a shot's task: the results cache and ``--download``.
        self.keeper = Keeper(
            store=store,
            client=client,
            clock=self.clock,
            rng=self.rng,
            download_dir=options.download_dir,
            cache=options.cache,
            placeholder=options.placeholder,
            storyboard=plan.storyboard.path.name,
            messages=self.messages,
            downloads_failed=self.tally.downloads_failed,
            emit=self.emit,
            write=self._write,
            retried=self._retried,
        )

    def emit(self, event: Event) -> None:
        self.emit_event(event)

    async def _write(self, shot: Shot, entry: ManifestEntry, *, durable: bool = True) -> None:
        """Record the shot's entry in a worker thread: an ``fsync``, or a compaction of the
        whole manifest, must not stall every other shot's polling. Shielded, so that what
        is on disk and this run's tally never disagree (a Ctrl-C during the write would
        otherwise leave a completed entry counted as still running). The write-ahead mark
        (``announce`` in :meth:`_create`) is the one write that stays on the event loop."""
        with anyio.CancelScope(shield=True):
            await self.store.record(shot.id, entry, durable=durable)

    # --- the run as a whole ---------------------------------------------------

    async def execute(self) -> RunResult:
        steps = self.plan.steps
        if self.options.learn_pace:
            history = await anyio.to_thread.run_sync(
                load_pace, self.pace_file, self.client.base_url
            )
            self.pacer = Pacer(PaceBook(history), self.clock)
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
        # A request refused in content review last time is likely to be refused again.
        self.messages += [f"{s.shot.id}: {s.advice}" for s in steps if s.advice]
        # Resumed tasks are already running at the relay: they take the first slots.
        ordered = sorted(
            steps,
            key=lambda s: {"resume": 0, "create": 1, "skip": 2, "restore": 2, "hold": 3}[s.action],
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
        if self.options.learn_pace and self.pacer.learned:
            await anyio.to_thread.run_sync(
                save_pace, self.pace_file, self.client.base_url, self.pacer.book.summary()
            )
        # In storyboard order, not in the order tasks happened to finish.
        position = {step.shot.id: i for i, step in enumerate(steps)}

        def ordered_ids(ids: list[str]) -> tuple[str, ...]:
            return tuple(sorted(ids, key=lambda shot_id: position.get(shot_id, len(position))))

        if self.fatal is None and self.disk_error is not None:
            self.fatal = self.disk_error

        def ended(*how: _Outcome) -> tuple[str, ...]:
            return ordered_ids([s for s, o in self.tally.outcome.items() if o in how])

        result = RunResult(
            completed=ended("completed"),
            failed=ended("failed"),
            not_started=ended("not_started"),
            skipped=ended("skipped"),
            restored=ended("restored"),
            running=ended("running"),
            unknown=ended("unknown"),
            downloads_failed=ordered_ids(self.tally.downloads_failed),
            created=self.tally.created,
            resumed=self.tally.resumed,
            interrupted=self.interrupted,
            quota_error=self.quota_error,
            messages=tuple(self.messages),
            broken=self.broken,
            fatal=self.fatal.exit_code if self.fatal is not None else None,
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
                unknown=len(result.unknown),
                broken=len(result.broken),
                download_failed=len(result.downloads_failed),
                exit_code=result.exit_code,
            )
        )
        if self.unknown_ids:
            self._report_unrecorded()
        if self.fatal is not None:
            raise self.fatal
        if result.unknown:
            self.messages.append(unknown_summary(list(result.unknown)))
            result = replace(result, messages=tuple(self.messages))
        return result

    def _report_unrecorded(self) -> None:
        """A full disk: every task id the relay gave that is not on disk, on stderr, so
        that nothing paid for is lost (SPEC §5)."""
        sys.stderr.write(
            "vidu-pipe: these tasks were created but could not be recorded in the manifest; "
            "keep this list (a rerun would create them again):\n"
        )
        for shot_id, task_id in self.unknown_ids.items():
            sys.stderr.write(f"  shot {shot_id}: task {task_id}\n")
        sys.stderr.flush()

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
                if isinstance(error, RelayUnreachableError)
                else "run stopped"
            )
        self.stopping = True
        if self.shots_scope is not None:
            self.shots_scope.cancel()

    # --- one shot -------------------------------------------------------------

    async def _drive(self, step: Step) -> None:
        shot = step.shot
        try:
            if step.action == "hold":
                assert step.entry is not None
                self._held(shot, step.entry.submitted_at, unknown_note(step.entry))
                return
            if step.action == "skip":
                if step.adopted_from is not None and step.entry is not None:
                    await self._write(shot, step.entry, durable=False)
                self.tally.outcome[shot.id] = "skipped"
                self.emit(Skipped(shot=shot.id, reason=step.reason))
                if self.options.download_dir is not None and step.entry is not None:
                    await self.keeper.ensure_download(shot, step.entry)
                return
            if step.action == "restore":
                await self._restore(step)
                return
            url = await self._task(step)
            made = await self.keeper.keep(shot) if url is not None else None
            if url is not None and self.options.download_dir is not None:
                if made is not None:  # a simulated run: its own clip, not the relay's sample
                    await self.keeper.copy_download(shot, made)
                else:
                    await self.keeper.download(shot, url)
        except ManifestError as exc:  # a full disk: this shot stops, the others poll on
            self._disk_full(exc)
            if shot.id not in self.tally.outcome:
                self.tally.outcome[shot.id] = "failed"
                self.emit(Failed(shot=shot.id, task_id=None, error=str(exc)))
        except ViduPipeError as exc:  # a refused key, an unreachable relay
            self._stop_all(exc)
        except Exception as exc:  # a bug: stop cleanly, say what, keep what is on disk
            logger.debug("shot %s", shot.id, exc_info=True)
            self._stop_all(
                ViduPipeError(f"internal error on shot {shot.id}: {type(exc).__name__}: {exc}")
            )
        except anyio.get_cancelled_exc_class():
            if shot.id not in self.tally.outcome:
                # A task that exists keeps running at the relay; the next run resumes it.
                if shot.id in self.tally.tasks:
                    self.tally.outcome[shot.id] = "running"
                else:
                    self._not_started(shot, self.stop_reason)
            raise

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
                    self.create_sent.pop(shot.id, None)
                    return None
                entry = created
                self.tally.tasks.add(shot.id)
            resumed = step.action == "resume"
            while True:
                outcome = await self._wait(shot, entry, resumed=resumed)
                resumed = False
                if not isinstance(outcome, _Again):
                    return outcome
                # The relay called the failure transient (and refunds failed tasks): once more.
                again = await self._create(shot, self.store.get(shot.id))
                if again is None:
                    self.create_sent.pop(shot.id, None)
                    return None
                entry = again

    def _check_reachable(self, exc: ApiError, attempt: int) -> None:
        """A relay that never answered in this run, after a few tries, is a configuration
        problem (a wrong --base-url, no network): stop at once rather than retry every
        shot for minutes and call them failed."""
        if exc.status_code is not None:
            self.reached = True
        elif not self.reached and attempt >= _UNREACHABLE_TRIES:
            raise RelayUnreachableError(
                f"cannot reach the relay at {self.client.base_url}: {exc.message} "
                "(check --base-url / VIDU_BASE_URL and the network)"
            )

    def _retried(self, shot: Shot, what: _What, attempt: int, exc: ApiError, delay: float) -> None:
        self.emit(
            Retried(
                shot=shot.id, what=what, attempt=attempt, error=exc.message, delay=round(delay, 2)
            )
        )

    async def _back_off(
        self, shot: Shot, what: _What, attempt: int, exc: ApiError, policy: retry.RetryPolicy
    ) -> None:
        delay, note = policy.wait(attempt, exc, self.rng, from_wire=self.clock.from_wire)
        if note is not None:
            self.messages.append(f"{shot.id}: {note}")
        self._retried(shot, what, attempt, exc, delay)
        await self.clock.sleep(delay)

    def _held(self, shot: Shot, submitted_at: str | None, error: str) -> None:
        """A create of the shot got no answer: held (maybe billed), not failed."""
        self.tally.outcome[shot.id] = "unknown"
        self.emit(Held(shot=shot.id, submitted_at=submitted_at, error=error))

    def _task_retried(self, shot: Shot, task_id: str, error: str) -> None:
        """The task failed in a way the relay calls transient: it is created again once."""
        self.emit(
            Retried(
                shot=shot.id,
                what="create",
                attempt=self.recreated[shot.id],
                error=error,
                delay=0.0,
                task_id=task_id,
            )
        )

    def _not_started(self, shot: Shot, reason: str) -> None:
        self.tally.outcome[shot.id] = "not_started"
        self.emit(NotStarted(shot=shot.id, reason=reason))

    async def _fail(self, shot: Shot, entry: ManifestEntry, error: str) -> None:
        await self._write(shot, _failed_entry(entry, error))
        self.tally.outcome[shot.id] = "failed"
        self.emit(Failed(shot=shot.id, task_id=entry.task_id, error=error))
        advice = failure_advice(error)
        if advice is not None:
            self.messages.append(f"{shot.id}: {advice}")

    async def _take_back(self, shot: Shot, before: ManifestEntry | None) -> None:
        """The create surely created nothing: the shot's entry as it was before the
        write-ahead record (shielded: a cancelled take-back would leave a false alarm)."""
        with anyio.CancelScope(shield=True):
            await self.store.record(shot.id, before)

    def _disk_full(self, error: ManifestError) -> None:
        """The manifest cannot be written: stop creating, keep polling what exists."""
        if self.disk_error is None:
            self.disk_error = error
            self.stopping = True
            self.stop_reason = "the manifest cannot be written"
            self.messages.append(f"stopped creating: {error}")

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
        before = self.store.get(shot.id)
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
            # Write-ahead (SPEC §5): the create is announced on disk before it is sent, so a
            # run killed while waiting for the answer leaves "unknown", never nothing. It is
            # written as the gate opens (see CreateGate.acquire), on the event loop: the send
            # must follow the gate at once (a 429's pause holds back only creates not yet
            # through it), and a thread hop would widen that window.
            announced = base

            def announce() -> bool:
                nonlocal announced
                if self.stopping or self.quota_error:
                    return False
                sent = base.replace(status="unknown", attempts=attempts + 1, submitted_at=utc_now())
                sent = sent.replace(error=unknown_note(sent))
                self.store.set(shot.id, sent)  # raises ManifestError: nothing counted
                announced = sent
                return True

            try:
                if not await self.gate.acquire(announce):
                    continue
            except ManifestError as exc:
                self.creates_reserved -= 1
                self._disk_full(exc)
                self._not_started(shot, self.stop_reason)
                return None
            sent_at = announced.submitted_at
            try:
                # Shielded: once a create is announced, neither Ctrl-C nor a refused key
                # elsewhere may drop its answer before the task id is on disk.
                with anyio.CancelScope(shield=True):
                    self.create_sent[shot.id] = self.clock.now()
                    state = await self.client.create(shot.request)
                    entry = announced.replace(status="submitted", task_id=state.task_id, error=None)
                    try:
                        await self.store.record(shot.id, entry, durable=True)
                    except ManifestError as exc:
                        # Paid for, not on disk: say it loudly, and keep polling it.
                        self.unknown_ids[shot.id] = state.task_id
                        self._disk_full(exc)
            except QuotaError as exc:
                await self._take_back(shot, before)
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
                    f"a create was sent at {sent_at} and no answer came: it may be billed "
                    f"({exc.message}); it is not created again unless --retry-unknown"
                )
                with anyio.CancelScope(shield=True):
                    await self.store.record(shot.id, announced.replace(error=error))
                self._held(shot, sent_at, error)
                return None
            except ApiError as exc:
                policy = replace(retry.CREATE, attempts=self.options.create_attempts)
                again = retry.create_may_retry(exc) and policy.more(attempt)
                if again and exc.status_code == 429:
                    # Before any await: every create not yet through the gate must wait.
                    hint = retry.capped_retry_after(exc.retry_after)
                    if hint is not None and hint != exc.retry_after:
                        self.messages.append(
                            f"{shot.id}: the relay asked to wait {exc.retry_after:g} s; "
                            f"waiting {hint:g} s at most"
                        )
                    pause = self.gate.refused(None if hint is None else self.clock.from_wire(hint))
                    self.emit(RateLimited(shot=shot.id, retry_after=round(pause, 2)))
                await self._take_back(shot, before)
                self._check_reachable(exc, attempt)
                if exc.status_code in (404, 405):
                    # No create route there: a wrong --base-url, not a problem of this shot.
                    raise ConfigError(
                        f"{self.client.base_url} has no task endpoint (HTTP {exc.status_code} on "
                        "POST /v1/video/generations): check --base-url / VIDU_BASE_URL"
                    ) from None
                if again:
                    if exc.status_code != 429:
                        await self._back_off(shot, "create", attempt, exc, policy)
                    continue
                self.creates_reserved -= 1
                await self._fail(shot, base, exc.message)
                return None
            except Exception:
                # A refused key (401), or a body that could not be encoded: nothing was sent
                # or nothing was created.
                await self._take_back(shot, before)
                raise
            self.reached = True
            self.gate.created()
            self.tally.created += 1
            self.emit(Created(shot=shot.id, task_id=state.task_id, attempt=entry.attempts))
            return entry

    async def _wait(
        self, shot: Shot, entry: ManifestEntry, *, resumed: bool = False
    ) -> str | _Again | None:
        """Poll one task until it finishes, fails or times out; returns the video URL, or
        ``_AGAIN`` when it failed in a way the relay calls transient (created once more)."""
        assert entry.task_id is not None
        task_id = entry.task_id
        start = self.clock.now()
        deadline = start + self.options.timeout
        kind = kind_of(shot.request)
        # A resumed task's age counts from its create, so that the pace learned applies
        # (the stamp has whole seconds: only worth it for a task created in an earlier run).
        sent = self.create_sent.pop(shot.id, None)
        if resumed or sent is None:
            created = start - (_age(entry.submitted_at) / self.clock.scale if resumed else 0.0)
        else:
            created = sent
        schedule = self.pacer.schedule(kind, self.options.poll_interval, created)
        failures = 0
        no_url = 0
        last: tuple[str, int | None] | None = None
        delay = schedule.next_delay(start)
        while True:
            now = self.clock.now()
            await self.pacer.sleep(kind, schedule, now + min(delay, max(0.0, deadline - now)))
            # At the deadline, one last query: the task may have finished meanwhile.
            last_chance = self.clock.now() >= deadline
            try:
                state = await self.client.query(entry.task_id)
            except QuotaError as exc:
                # Quota is checked only when a task is created: a 403 on a query is a banned
                # key, and every query will get the same. Stop (exit 3); tasks stay submitted.
                raise AuthError(
                    f"the relay refused the key on a query ({exc.message}): the key is banned "
                    "or not allowed; check VIDU_API_KEY (submitted tasks resume next run)"
                ) from None
            except ApiError as exc:
                self._check_reachable(exc, failures + 1)
                if exc.code == NO_VIDEO_URL:
                    no_url += 1
                    if no_url >= _NO_URL_ASKS or last_chance:
                        await self._left_submitted(
                            shot,
                            entry,
                            f"{exc.message}; asked {no_url} times; the task keeps its id and "
                            "the next run asks again instead of paying again",
                        )
                        return None
                transient = retry.query_may_retry(exc)
                if last_chance and transient:
                    await self._gave_up(shot, entry)
                    return None
                if transient:
                    failures += 1
                    schedule.missed(self.clock.now())
                    delay, note = retry.QUERY.wait(
                        failures, exc, self.rng, from_wire=self.clock.from_wire
                    )
                    if note is not None:
                        self.messages.append(f"{shot.id}: {note}")
                    delay = max(delay, min(schedule.next_delay(self.clock.now()), 60.0))
                    self._retried(shot, "query", failures, exc, delay)
                    continue
                error = f"querying task {entry.task_id} failed: {exc.message}"
                if exc.code == "task_not_exist":
                    await self._fail(shot, entry, error)  # gone at the relay: the next run creates
                else:
                    # The task was paid for and may well finish: keep it submitted, so the
                    # next run asks again instead of paying for another.
                    await self._left_submitted(shot, entry, error + "; the next run asks again")
                return None
            failures = 0
            self.reached = True
            now = self.clock.now()
            if state.status == "completed":
                self.pacer.done(kind, schedule, now)
                if state.video_url is not None and is_data_uri(state.video_url):
                    await self._inline_video(shot, entry, state, now - start)
                    return None
                return await self._completed(shot, entry, state, now - start)
            if state.status == "failed":
                error = state.error or "the task failed (no reason given)"
                if retry.may_recreate(error, self.recreated.get(shot.id, 0)):
                    self.recreated[shot.id] = self.recreated.get(shot.id, 0) + 1
                    await self._write(shot, _failed_entry(entry, error))
                    self._task_retried(shot, task_id, error)
                    return _AGAIN
                await self._fail(shot, entry, error)
                return None
            if last_chance:
                await self._gave_up(shot, entry)
                return None
            schedule.observe(now, state.status, state.progress)
            self.pacer.not_done(kind, schedule, now)
            if (state.status, state.progress) != last:
                last = (state.status, state.progress)
                entry = entry.replace(progress=state.progress)
                await self._write(shot, entry, durable=False)
                self.emit(
                    Progress(
                        shot=shot.id,
                        task_id=task_id,
                        status=state.status,
                        progress=state.progress,
                    )
                )
            delay = schedule.next_delay(now)

    async def _inline_video(
        self, shot: Shot, entry: ManifestEntry, state: TaskState, took: float
    ) -> None:
        """A video sent as a ``data:`` URI: saved to ``DIR/ID.mp4`` when downloading, never
        written into the manifest (it would hold the whole video)."""
        assert state.video_url is not None
        if self.options.download_dir is None:
            await self._left_submitted(
                shot,
                entry,
                "the relay sent the video inline (a data: URI), which is not kept in the "
                "manifest; run again with --download DIR to save it (the task keeps its id)",
            )
            return
        dest = self.keeper.destination(shot)
        try:
            size, sha256 = await anyio.to_thread.run_sync(_save_data_uri, state.video_url, dest)
        except (ValueError, OSError) as exc:
            await self._left_submitted(
                shot, entry, f"cannot save the inline video to {dest}: {exc}"
            )
            return
        # The video's only home is the file: say where it is (never the data: URI itself).
        done = await self._record_completed(
            shot,
            entry,
            took,
            video_url=None,
            shown=dest.resolve().as_uri(),
            download=self.keeper.download_record(dest, size, sha256),
        )
        self.emit(Downloaded(shot=shot.id, path=str(dest), size=size, sha256=sha256))
        # Kept in the cache too: no URL can ever fetch it again (a deleted file, a revert).
        await self.keeper.cache_file(shot, done, dest, sha256)

    async def _gave_up(self, shot: Shot, entry: ManifestEntry) -> None:
        await self._left_submitted(
            shot,
            entry,
            f"gave up waiting after {self.options.timeout:g} s; the task is still "
            "submitted and the next run resumes it",
        )

    async def _left_submitted(self, shot: Shot, entry: ManifestEntry, error: str) -> None:
        """This run stops waiting for the shot, but its task stays on record (submitted)."""
        await self._write(shot, entry.replace(error=error))
        self.tally.outcome[shot.id] = "failed"
        self.emit(Failed(shot=shot.id, task_id=entry.task_id, error=error))

    async def _completed(
        self, shot: Shot, entry: ManifestEntry, state: TaskState, took: float
    ) -> str:
        assert state.video_url is not None
        await self._record_completed(
            shot, entry, took, video_url=state.video_url, shown=state.video_url, download=None
        )
        return state.video_url

    async def _record_completed(
        self,
        shot: Shot,
        entry: ManifestEntry,
        took: float,
        *,
        video_url: str | None,
        shown: str,
        download: Download | None,
    ) -> ManifestEntry:
        """The shot's task done: its entry completed on disk (returned), counted, and its
        ``completed`` event naming ``shown`` as where the video is."""
        assert entry.task_id is not None
        done = entry.replace(
            status="completed",
            video_url=video_url,
            error=None,
            progress=None,
            finished_at=utc_now(),
            download=download,
        )
        await self._write(shot, done)
        self.tally.outcome[shot.id] = "completed"
        self.emit(
            Completed(shot=shot.id, task_id=entry.task_id, video_url=shown, seconds=round(took, 1))
        )
        return done

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
        await self._write(shot, entry)
        self.tally.outcome[shot.id] = "restored"
        self.emit(
            Restored(
                shot=shot.id,
                task_id=result.task_id,
                video_url=result.video_url,
                finished_at=result.finished_at,
                source=found.source,
            )
        )
        await self.keeper.remember(shot, result)
        if self.options.download_dir is None:
            return
        cache = self.options.cache
        cached = (
            await anyio.to_thread.run_sync(cache.video_of, result) if cache is not None else None
        )
        if cached is not None:
            await self.keeper.copy_download(shot, cached)
        elif result.video_url:
            await self.keeper.download(shot, result.video_url)


def _failed_entry(entry: ManifestEntry, error: str) -> ManifestEntry:
    """The entry of a shot whose task (or create) failed, stamped with when."""
    return entry.replace(status="failed", error=error, progress=None, finished_at=utc_now())


def _age(stamp: str | None) -> float:
    """Wall-clock seconds since a manifest time stamp (0 when missing, unreadable or ahead;
    at most a day)."""
    when = parse_time(stamp)
    if when is None:
        return 0.0
    return min(max((datetime.now(timezone.utc) - when).total_seconds(), 0.0), 86400.0)


def _save_data_uri(uri: str, dest: Path) -> tuple[int, str]:
    """Decode a ``data:`` URI into ``dest`` atomically; (size, sha256). ValueError if bad."""
    header, _, payload = uri.partition(",")
    if ";base64" in header.lower():
        try:
            content = base64.b64decode(payload, validate=False)
        except (binascii.Error, ValueError) as exc:
            raise ValueError(f"the data: URI is not valid base64 ({exc})") from None
    else:
        content = urllib.parse.unquote_to_bytes(payload)
    if not content:
        raise ValueError("the data: URI is empty")
    dest.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(dest, content)  # fileio: never through a link planted at dest
    return len(content), hashlib.sha256(content).hexdigest()


async def execute(
    plan: Plan,
    *,
    store: ManifestStore,
    client: ViduClient,
    options: RunOptions,
    on_event: EventSink | None = None,
    broken: Sequence[str] = (),
) -> RunResult:
    """Run ``plan`` against ``client``, recording every state change in ``store``.

    ``broken``: the selected shots that did not validate (``--keep-going``), named in the
    result (exit 2). Raises the error that stopped the whole run (a refused key: AuthError;
    a manifest that cannot be written: ManifestError) after recording what it knows.
    """
    sink = on_event or (lambda _e: None)
    return await _Run(plan, store, client, options, sink, tuple(broken)).execute()
