"""Progress of a run for people: a live display on a terminal, plain lines elsewhere.

What ``vidu-pipe run`` prints, by mode::

    mode              stdout                                        summary
    ----------------  --------------------------------------------  -------
    terminal          live display: one line per active shot and    stdout
                      an overall bar with counts; finished shots
                      scroll above it
    not a terminal    plain log lines (one per event that matters,  stdout
                      and a heartbeat of the counts now and then)
    --quiet           nothing                                       stdout
    --json            one JSON object per event (see                stderr
                      :mod:`vidu_pipe.events`), nothing else

``NO_COLOR`` (any non-empty value) turns colour off; the live display still
moves the cursor, since that is what a live display is.

The display reads only :class:`~vidu_pipe.events.Event` values, through a
:class:`Tracker` that turns them into each shot's phase, elapsed time and
estimated time left. Times are *run* seconds: a simulated run compresses time
(``time_scale``), and its display counts simulated time, as its events do.
rich is imported only when a live display starts, so that ``vidu-pipe validate``
stays fast.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING, Any, Final, Literal

from vidu_pipe.events import (
    Completed,
    Created,
    Downloaded,
    DownloadFailed,
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
    ShotEvent,
    Skipped,
    Waiting,
)
from vidu_pipe.text import clean_text

if TYPE_CHECKING:
    from rich.console import Console, RenderableType
    from rich.live import Live

__all__ = [
    "Mode",
    "PlainPrinter",
    "ShotProgress",
    "Tracker",
    "choose_mode",
    "format_seconds",
    "open_progress",
    "plain_line",
]

Mode = Literal["live", "plain", "quiet", "json"]

Phase = Literal[
    "queued",  # not created yet, waiting for its turn
    "waiting-slot",  # waiting for a concurrency slot
    "waiting-rate",  # waiting for the create-rate limit
    "rate-limited",  # the relay answered 429: backing off
    "retrying",  # a create failed in a way that created nothing: backing off
    "submitted",  # created (or resumed), no news from the relay yet
    "relay-queued",  # the relay has the task in its queue
    "generating",
    "downloading",
    "completed",
    "failed",
    "skipped",
    "not-started",
    "held",  # a create got no answer: maybe billed, not created again (not failed)
]

_DONE: Final = frozenset({"completed", "failed", "skipped", "not-started", "held"})
_RUNNING: Final = frozenset({"submitted", "relay-queued", "generating", "downloading"})
# Display order of active shots: those furthest along first.
_RANK: Final[dict[str, int]] = {
    "downloading": 0,
    "generating": 1,
    "relay-queued": 2,
    "submitted": 3,
    "rate-limited": 4,
    "retrying": 5,
    "waiting-rate": 6,
    "waiting-slot": 7,
    "queued": 8,
}


def format_seconds(seconds: float) -> str:
    """``7s``, ``3m27s``, ``1h02m``: short and stable in width."""
    s = max(0, round(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{(s % 3600) // 60:02d}m"


@dataclass
class ShotProgress:
    """Where one shot is in a run, as far as its events tell."""

    id: str
    order: int
    phase: Phase = "queued"
    since: float = 0.0
    """Run time the current phase began."""
    started: float | None = None
    """Run time the task was created or resumed (elapsed counts from here)."""
    finished: float | None = None
    task_id: str | None = None
    percent: int | None = None
    wait: float | None = None
    """Expected seconds of the current wait, as of ``since``."""
    note: str | None = None
    first_seen: tuple[float, int] | None = None
    """(run time, percent) of the first progress observation, for the rate estimate."""
    last_seen: tuple[float, int] | None = None

    @property
    def done(self) -> bool:
        return self.phase in _DONE

    def elapsed(self, now: float) -> float:
        """Seconds since the task was created or resumed, else since this phase began."""
        start = self.started if self.started is not None else self.since
        end = self.finished if self.finished is not None else now
        return max(0.0, end - start)

    def wait_left(self, now: float) -> float | None:
        if self.wait is None:
            return None
        return max(0.0, self.wait - (now - self.since))


class Tracker:
    """Folds a run's events into per-shot progress and overall counts.

    Thread-safe: the live display reads it from rich's refresh thread while the
    run feeds it from the event loop. ``clock`` returns run seconds.
    """

    def __init__(self, clock: Callable[[], float], *, downloads: bool = False) -> None:
        self.clock = clock
        self.downloads = downloads
        self.lock = threading.RLock()
        self.shots: dict[str, ShotProgress] = {}
        self.total = 0
        self.concurrency = 1
        self.started = clock()
        self.paused_until: float | None = None
        self.interrupted = False
        self.finished: float | None = None
        self._durations: list[float] = []

    # --- feeding ------------------------------------------------------------

    def _shot(self, shot_id: str, now: float) -> ShotProgress:
        entry = self.shots.get(shot_id)
        if entry is None:
            entry = ShotProgress(shot_id, order=len(self.shots), since=now)
            self.shots[shot_id] = entry
        return entry

    @staticmethod
    def _enter(shot: ShotProgress, phase: Phase, now: float, **changes: Any) -> None:
        shot.phase = phase
        shot.since = now
        shot.wait = None
        shot.note = None
        for key, value in changes.items():
            setattr(shot, key, value)

    def feed(self, event: Event) -> None:
        """Apply one event."""
        with self.lock:
            self._feed(event, self.clock())

    def _feed(self, event: Event, now: float) -> None:
        if isinstance(event, RunStarted):
            self.total = event.create + event.resume + event.skip + event.restore
            self.concurrency = max(1, event.concurrency)
            self.started = now
            return
        if isinstance(event, RunFinished):
            self.finished = now
            return
        if isinstance(event, Interrupted):
            self.interrupted = True
            return
        if not isinstance(event, ShotEvent):
            return  # a kind this display does not know
        shot = self._shot(event.shot, now)
        if isinstance(event, Skipped):
            self._enter(shot, "skipped", now, finished=now)
        elif isinstance(event, Queued):
            self._enter(shot, "waiting-slot", now)
        elif isinstance(event, Waiting):
            self._enter(shot, "waiting-rate", now, wait=event.seconds)
        elif isinstance(event, RateLimited):
            pause = event.retry_after
            self._enter(shot, "rate-limited", now, wait=pause)
            self.paused_until = max(self.paused_until or now, now + pause)
        elif isinstance(event, Retried):
            text = (
                _retried_text(event)
                if event.task_id is not None
                else f"{event.what} failed ({event.error}); retry #{event.attempt}"
            )
            if event.what == "create":
                self._enter(shot, "retrying", now, wait=event.delay)
            # A query or download retry: the shot stays where it is.
            shot.note = text
        elif isinstance(event, (Created, Resumed)):
            self._enter(shot, "submitted", now, started=now, task_id=event.task_id)
            shot.first_seen = shot.last_seen = None
            shot.percent = None
            if isinstance(event, Resumed):
                shot.note = "resumed"
        elif isinstance(event, Progress):
            pct = event.progress
            if event.status == "in_progress":
                if shot.phase != "generating":
                    self._enter(shot, "generating", now)
                if pct is not None:
                    if shot.first_seen is None:
                        shot.first_seen = (now, pct)
                    shot.last_seen = (now, pct)
            elif shot.phase != "relay-queued":
                self._enter(shot, "relay-queued", now)
            shot.percent = pct
            if shot.task_id is None:
                shot.task_id = event.task_id
        elif isinstance(event, Completed):
            self._durations.append(event.seconds)
            if self.downloads:
                self._enter(shot, "downloading", now, percent=100)
            else:
                self._enter(shot, "completed", now, percent=100, finished=now)
        elif isinstance(event, Downloaded):
            if shot.phase != "skipped":
                self._enter(shot, "completed", now, finished=now)
        elif isinstance(event, Failed):
            self._enter(shot, "failed", now, finished=now, note=event.error)
        elif isinstance(event, DownloadFailed):
            # The task is done: the shot keeps its outcome, with the error as its note.
            if shot.phase == "downloading":
                self._enter(shot, "completed", now, finished=now)
            shot.note = f"download failed: {event.error}"
        elif isinstance(event, Held):
            self._enter(shot, "held", now, finished=now, note=event.error)
        elif isinstance(event, NotStarted):
            self._enter(shot, "not-started", now, finished=now, note=event.reason)
        elif event.settles is not None:
            # A kind added since this display was written: it still counts.
            self._enter(shot, event.settles, now, finished=now)

    # --- reading ------------------------------------------------------------

    def counts(self) -> dict[str, int]:
        """completed, failed, skipped, not_started, held, running, queued, done, total."""
        with self.lock:
            phases = [s.phase for s in self.shots.values()]
            total = max(self.total, len(phases))
            out = {
                "completed": phases.count("completed"),
                "failed": phases.count("failed"),
                "skipped": phases.count("skipped"),
                "not_started": phases.count("not-started"),
                "held": phases.count("held"),
                "running": sum(1 for p in phases if p in _RUNNING),
            }
            done = sum(out[k] for k in ("completed", "failed", "skipped", "not_started", "held"))
            out["queued"] = max(0, total - done - out["running"])
            out["done"] = done
            out["total"] = total
            return out

    def active(self) -> list[ShotProgress]:
        """Shots not finished yet, furthest along first."""
        with self.lock:
            return sorted(
                (s for s in self.shots.values() if not s.done),
                key=lambda s: (_RANK.get(s.phase, 9), s.order),
            )

    def typical_duration(self) -> float | None:
        """The mean time a task of this run took from create to done, once one has."""
        with self.lock:
            if not self._durations:
                return None
            return sum(self._durations) / len(self._durations)

    def eta(self, shot: ShotProgress, now: float) -> float | None:
        """Estimated run seconds until ``shot``'s task is done (None: no idea yet)."""
        if shot.phase == "generating" and shot.last_seen is not None:
            t_last, p_last = shot.last_seen
            if 0 < p_last < 100:
                assert shot.first_seen is not None
                t_first, p_first = shot.first_seen
                if p_last > p_first and t_last > t_first:
                    rate = (p_last - p_first) / (t_last - t_first)
                else:
                    rate = p_last / max(1e-9, shot.elapsed(t_last))
                left = (100 - p_last) / rate - (now - t_last)
                # Past the estimate with no news (relays' progress is not a measurement:
                # new-api reports 30% for the whole generation): no number beats a
                # "~0s left" that stays on screen for minutes.
                return left if left > 0.5 else None
        typical = self.typical_duration()
        if typical is not None and shot.phase in ("submitted", "relay-queued", "generating"):
            left = typical - shot.elapsed(now)
            return left if left > 0.5 else None
        return None

    def overall_eta(self, now: float) -> float | None:
        """A rough estimate of the run's time left: the work left spread over the slots."""
        with self.lock:
            typical = self.typical_duration()
            if typical is None:
                return None
            counts = self.counts()
            if counts["done"] >= counts["total"]:
                return 0.0
            running = [s for s in self.shots.values() if s.phase in _RUNNING]
            lefts = [self.eta(s, now) or 0.0 for s in running]
            work = sum(lefts) + counts["queued"] * typical
            return max(max(lefts, default=0.0), work / self.concurrency)

    def describe(self, shot: ShotProgress, now: float) -> str:
        """The shot's phase in words: ``generating 45%``, ``waiting for the rate limit 8s``."""
        phase = shot.phase
        if phase == "generating":
            return "generating" if shot.percent is None else f"generating {shot.percent}%"
        if phase == "relay-queued":
            return "queued at the relay"
        if phase == "submitted":
            return "resumed" if shot.note == "resumed" else "submitted"
        if phase == "waiting-slot":
            return "queued (waiting for a slot)"
        if phase in ("waiting-rate", "rate-limited", "retrying"):
            words = {
                "waiting-rate": "waiting for the rate limit",
                "rate-limited": "backing off after a 429",
                "retrying": "backing off after an error",
            }[phase]
            left = shot.wait_left(now)
            return words if left is None else f"{words} ({format_seconds(left)})"
        if phase == "not-started":
            return "not started"
        if phase == "held":
            return "held (no answer to its create)"
        if phase == "skipped":
            return "up to date"
        return phase


# --- plain lines ---------------------------------------------------------------


def plain_line(event: Event) -> str | None:
    """The log line of one event when stdout is not a terminal, or None for no line.

    Control characters in it (from a relay's error, a path) are shown escaped."""
    line = _plain_line(event)
    return None if line is None else clean_text(line)


def _plain_line(event: Event) -> str | None:
    if isinstance(event, RunStarted):
        return _run_started(event)
    if isinstance(event, Interrupted):
        return "interrupted: creating no new tasks; running tasks keep their ids"
    if not isinstance(event, ShotEvent):
        return None
    shot = event.shot
    if isinstance(event, Created):
        return f"{shot}: created {event.task_id}"
    if isinstance(event, Resumed):
        return f"{shot}: resuming {event.task_id}"
    if isinstance(event, Completed):
        return f"{shot}: completed in {event.seconds:g} s: {event.video_url}"
    if isinstance(event, Failed):
        return f"{shot}: FAILED: {event.error}"
    if isinstance(event, Held):
        return f"{shot}: {_held_text(event)}"
    if isinstance(event, DownloadFailed):
        return f"{shot}: download FAILED: {event.error}"
    if isinstance(event, Skipped):
        return f"{shot}: up to date"
    if isinstance(event, Restored):
        return f"{shot}: restored the video of {event.finished_at} ({event.source}; no create)"
    if isinstance(event, NotStarted):
        return f"{shot}: not started ({event.reason})"
    if isinstance(event, RateLimited):
        return f"{shot}: rate-limited by the relay; all creates pause {event.retry_after:g} s"
    if isinstance(event, Retried):
        return f"{shot}: {_retried_text(event)}"
    if isinstance(event, Downloaded):
        return f"{shot}: saved {event.path} ({event.size} bytes)"
    if isinstance(event, Waiting):
        return f"{shot}: waiting {event.seconds:g} s for the rate limit"
    if event.settles is not None:
        # A kind added since this function was written: a plain default, fields and all.
        fields = ", ".join(f"{name} {value}" for name, value in event.data.items())
        return f"{shot}: {event.kind}" + (f" ({fields})" if fields else "")
    return None


def _run_started(event: RunStarted) -> str:
    # The same words as plan's summary line (restores only when there are some).
    restore = f"{event.restore} to restore, " if event.restore else ""
    return (
        f"{event.storyboard}: {event.create} to create, {event.resume} to resume, "
        f"{restore}{event.skip} up to date"
    )


def _held_text(event: Held) -> str:
    when = event.submitted_at or "an unrecorded time"
    return (
        f"held: a create was sent at {when} and no answer came: it may be billed; "
        "--retry-unknown creates it again"
    )


def _retried_text(event: Retried) -> str:
    if event.task_id is not None:
        # Not a failed create: the task was made, then failed (the relay refunds it).
        return (
            f"the task failed ({event.error}); creating it again once: the relay calls it transient"
        )
    return f"{event.what} failed ({event.error}); retrying in {event.delay:g} s"


class PlainPrinter:
    """Writes :func:`plain_line` lines, plus a heartbeat of the counts every
    ``heartbeat`` wall seconds while tasks run (so that a CI log shows life during
    a long wait; it rides on events, so it needs no thread)."""

    def __init__(
        self,
        stream: IO[str],
        tracker: Tracker,
        *,
        heartbeat: float = 30.0,
        wall: Callable[[], float] = time.monotonic,
    ) -> None:
        self.stream = stream
        self.tracker = tracker
        self.heartbeat = heartbeat
        self.wall = wall
        self._last_beat = wall()

    def __call__(self, event: Event) -> None:
        self.tracker.feed(event)
        line = plain_line(event)
        if line is not None:
            self._write(line)
        if isinstance(event, Progress) and self.wall() - self._last_beat >= self.heartbeat:
            self._write(self.beat())

    def beat(self) -> str:
        """``[2m30s] 3/10 done, 4 running (establishing 45%, ...), 3 queued``."""
        self._last_beat = self.wall()
        t = self.tracker
        now = t.clock()
        c = t.counts()
        running = [s for s in t.active() if s.phase in _RUNNING]
        shown = ", ".join(
            f"{s.id} {s.percent}%" if s.percent is not None else f"{s.id} {t.describe(s, now)}"
            for s in running[:5]
        )
        more = f", +{len(running) - 5} more" if len(running) > 5 else ""
        detail = f" ({shown}{more})" if running else ""
        return (
            f"[{format_seconds(now - t.started)}] {c['done']}/{c['total']} done, "
            f"{c['running']} running{detail}, {c['queued']} queued"
        )

    def _write(self, line: str) -> None:
        print(line, file=self.stream, flush=True)


# --- the live display ------------------------------------------------------------

_SPINNER: Final = "⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏"
_STYLE: Final[dict[str, str]] = {
    "generating": "cyan",
    "downloading": "magenta",
    "relay-queued": "blue",
    "submitted": "blue",
    "rate-limited": "yellow",
    "retrying": "yellow",
    "waiting-rate": "yellow",
    "waiting-slot": "dim",
    "queued": "dim",
}


class LiveView:
    """The live display's renderable, rebuilt from the tracker at each refresh."""

    def __init__(
        self,
        tracker: Tracker,
        console: Console,
        *,
        label: str | None = None,
        wall: Callable[[], float] = time.monotonic,
    ) -> None:
        self.tracker = tracker
        self.console = console
        self.label = label
        self.wall = wall

    def __call__(self) -> RenderableType:
        from rich.console import Group
        from rich.progress_bar import ProgressBar
        from rich.table import Table
        from rich.text import Text

        t = self.tracker
        with t.lock:
            now = t.clock()
            active = t.active()
            counts = t.counts()
            lines = Table.grid(padding=(0, 1))
            # On a narrow terminal the task id goes first: the shot id, its state and
            # its percent are what a person reads.
            wide = self.console.size.width >= 110
            id_width = min(28, max((len(shot.id) for shot in active), default=4))
            lines.add_column(width=1)
            lines.add_column(no_wrap=True, overflow="ellipsis", min_width=id_width, max_width=28)
            lines.add_column(no_wrap=True, overflow="ellipsis", min_width=14)
            lines.add_column(width=12)
            lines.add_column(justify="right", no_wrap=True)
            if wide:
                lines.add_column(no_wrap=True, overflow="ellipsis")
            room = max(3, self.console.size.height - 4)
            frame = _SPINNER[int(self.wall() * 10) % len(_SPINNER)]
            shown = active[:room] if len(active) <= room else active[: room - 1]
            for shot in shown:
                style = _STYLE.get(shot.phase, "")
                running = shot.phase in _RUNNING
                bar: RenderableType = Text("")
                if shot.phase == "generating" and shot.percent is not None:
                    bar = ProgressBar(
                        total=100, completed=shot.percent, width=12, complete_style="cyan"
                    )
                eta = t.eta(shot, now)
                times = format_seconds(shot.elapsed(now)) if running else ""
                if eta is not None:
                    times += f"  ~{format_seconds(eta)} left"
                tail = shot.note if shot.note and shot.note != "resumed" else (shot.task_id or "")
                cells: list[RenderableType] = [
                    Text(frame if running else "·", style=style),
                    Text(shot.id, style="bold" if running else ""),
                    Text(t.describe(shot, now), style=style),
                    bar,
                    Text(times),
                ]
                if wide:
                    cells.append(Text(tail, style="dim"))
                lines.add_row(*cells)
            if len(shown) < len(active):
                lines.add_row("", Text(f"… and {len(active) - len(shown)} more", style="dim"))
            end = t.finished if t.finished is not None else now
            head = Text()
            head.append(f"{counts['done']}/{counts['total']} done", style="bold")
            head.append(f"  {format_seconds(end - t.started)} elapsed")
            left = t.overall_eta(now)
            if left is not None and t.finished is None:
                head.append(f", ~{format_seconds(left)} left")
            if self.label:
                head.append(f"  ({self.label})", style="dim")
            tally = Text("  ")
            tally.append(f"✓ {counts['completed']} completed", style="green")
            tally.append(f"  ✗ {counts['failed']} failed", style="red" if counts["failed"] else "")
            tally.append(f"  ▶ {counts['running']} running  … {counts['queued']} queued")
            if counts["skipped"]:
                tally.append(f"  = {counts['skipped']} up to date", style="dim")
            if counts["not_started"]:
                tally.append(f"  ○ {counts['not_started']} not started", style="yellow")
            if counts["held"]:
                tally.append(f"  ? {counts['held']} held (maybe billed)", style="yellow")
            if t.paused_until is not None and t.paused_until > now:
                tally.append(
                    f"  relay busy: creates paused {format_seconds(t.paused_until - now)}",
                    style="yellow",
                )
            if t.interrupted:
                tally.append("  interrupted: finishing what runs", style="yellow")
            bar_line = Table.grid(padding=(0, 1))
            bar_line.add_column(width=30, no_wrap=True)
            bar_line.add_column(no_wrap=True, overflow="ellipsis")
            bar_line.add_row(
                ProgressBar(
                    total=max(1, counts["total"]),
                    completed=counts["done"],
                    width=30,
                    complete_style="cyan",
                    finished_style="green",
                ),
                head,
            )
            tally.no_wrap = True
            tally.overflow = "ellipsis"
            overall = Group(bar_line, tally)
            return Group(lines, overall) if active else overall


class LiveSink:
    """The event sink of the live display: feeds the tracker, and prints a lasting
    line above the display for each shot that finishes."""

    def __init__(self, tracker: Tracker, live: Live) -> None:
        self.tracker = tracker
        self.live = live

    def __call__(self, event: Event) -> None:
        self.tracker.feed(event)
        line = self._lasting(event)
        if line is not None:
            self.live.console.print(line, highlight=False, soft_wrap=True)
            # Printing redraws the display as last rendered; show the shot gone from it.
            self.live.refresh()

    def _lasting(self, event: Event) -> Any:
        from rich.text import Text

        if isinstance(event, RunStarted):
            return Text(_run_started(event), style="bold")
        if not isinstance(event, ShotEvent):
            return None
        if isinstance(event, Completed):
            text = _marked(
                "✓", "green", event.shot, f" completed in {format_seconds(event.seconds)}  "
            )
            text.append(event.video_url, style="dim")
            return text
        if isinstance(event, Failed):
            return _marked("✗", "red", event.shot, f" failed: {event.error}", "red")
        if isinstance(event, Downloaded):
            return _marked(
                "↓", "magenta", event.shot, f" saved {event.path} ({event.size} bytes)", "dim"
            )
        if isinstance(event, Held):
            return _marked("?", "yellow", event.shot, f" {_held_text(event)}", "yellow")
        if isinstance(event, DownloadFailed):
            return _marked("✗", "red", event.shot, f" download failed: {event.error}", "red")
        if isinstance(event, NotStarted):
            return _marked("○", "yellow", event.shot, f" not started ({event.reason})", "yellow")
        return None


def _marked(mark: str, style: str, shot: str, rest: str, rest_style: str | None = None) -> Any:
    """A lasting line: ``mark`` in ``style``, the shot in bold, then ``rest``."""
    from rich.text import Text

    text = Text(f"{mark} ", style=style)
    text.append(shot, style="bold")
    text.append(rest, style=rest_style)
    return text


# --- choosing and opening --------------------------------------------------------


def choose_mode(stream: IO[str], *, json: bool = False, quiet: bool = False) -> Mode:
    """``json`` over ``quiet``; else a live display when ``stream`` is a terminal that
    can move its cursor (not ``TERM=dumb``), plain lines otherwise."""
    if json:
        return "json"
    if quiet:
        return "quiet"
    try:
        tty = stream.isatty()
    except (AttributeError, ValueError):
        tty = False
    dumb = os.environ.get("TERM", "").lower() in ("dumb", "unknown")
    return "live" if tty and not dumb else "plain"


@contextlib.contextmanager
def open_progress(
    stream: IO[str],
    mode: Mode,
    *,
    downloads: bool = False,
    time_scale: float = 1.0,
    label: str | None = None,
    console: Console | None = None,
    heartbeat: float = 30.0,
) -> Iterator[EventSink]:
    """The event sink for ``mode``, writing to ``stream``; a live display runs while
    the block does. ``time_scale`` is the run's (run seconds per real second)."""

    def clock() -> float:
        return time.monotonic() / time_scale

    tracker = Tracker(clock, downloads=downloads)
    if mode == "json":

        def as_json(event: Event) -> None:
            print(event.to_json(), file=stream, flush=True)

        yield as_json
    elif mode == "quiet":
        yield tracker.feed
    elif mode == "plain":
        yield PlainPrinter(stream, tracker, heartbeat=heartbeat)
    else:
        from rich.console import Console
        from rich.live import Live

        con = console if console is not None else Console(file=stream, highlight=False)
        view = LiveView(tracker, con, label=label)
        with Live(
            console=con,
            get_renderable=view,
            refresh_per_second=8,
            redirect_stdout=False,
            redirect_stderr=False,
        ) as live:
            yield LiveSink(tracker, live)
