"""When to query a task next: few queries, completion seen soon, whatever the relay says.

Relays report progress three ways (see the README's "Relays known to work"): rising with
the work (the spec's simulator), fixed or stepped (new-api: ``10%`` submitted, ``30%`` for the
whole generation, ``100%`` done) or not at all (Vidu's own API). :class:`PollSchedule` trusts
progress only once it has seen it *move* with time, and stops trusting it for good when it
goes backwards, stands still where it should have moved, or misses the finish it predicted.
Then it aims by what it knows instead:

1. **Progress that moves** (two increasing readings while generating): estimate the finish
   from the rate and query just before it, early by the uncertainty; once the estimate is
   sharp, just after it, then every 2% of the task's length (completion seen within ~5%).
2. **A learned pace** (:class:`PaceBook`): how long tasks of the same *kind* (model, duration,
   aspect ratio, mode) take to *generate*, from the start of generation to done, bracketed by
   the answers (the start lies between the last "queued" answer and the first "generating"
   one), in this run or in earlier ones. While queued, a look every tenth of the pace (or a
   third of the time queued, so a long queue costs a logarithmic number of looks); then from
   the task's earliest possible finish to its latest, every 4% of the pace or closer, at most
   about eight looks; for tasks of two minutes or more, one look at half of it first (status
   for the display, early failures). A relay that answers "queued" until done teaches its
   create-to-done time instead, and is aimed by that.
3. **Nothing known**: the wait grows geometrically with the task's age since it started
   generating (each query at 1.3x the age of the one before), so completion is seen within
   30% of the age and a task costs a logarithmic number of queries. Tasks of one kind started
   together interleave their queries (task *j* of a kind is shifted by a van der Corput
   fraction of one step), so four of them together look at every 7% of their age; when one
   of them finishes, the pace is learned and the others aim at it (:meth:`PollSchedule.wake`).

While queued with nothing known, the wait stops growing at six intervals (a task behind a
long queue may be short once it starts). Whatever a relay reports, three hard bounds hold: no
two queries of a task closer than :data:`MIN_GAP` seconds apart, at most :data:`PER_MINUTE`
queries of a task in any 60 seconds, and past :data:`BUDGET` queries the wait is at least the
task's age (so a task of 30 minutes costs at most about 35 queries, whatever it answers); a
query that failed counts as one (:meth:`PollSchedule.missed`). Nothing here raises to a
power: steps are computed with logarithms, so no query count can overflow.

It is a pure object (times in, delays out) so the policy can be tested and benchmarked
without a clock; :class:`PaceBook` is the only state shared between a run's tasks, and
:func:`load_pace` / :func:`save_pace` keep it between runs in ``.vidu-pipe/pace.json``.
"""

from __future__ import annotations

import contextlib
import json
import math
import statistics
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Literal, NamedTuple

import anyio

from vidu_pipe.execution.ratelimit import Clock
from vidu_pipe.fileio import write_atomic

__all__ = [
    "BUDGET",
    "MIN_GAP",
    "PACE_FILE",
    "PER_MINUTE",
    "Known",
    "Learned",
    "PaceBook",
    "Pacer",
    "PollSchedule",
    "ProgressKind",
    "kind_of",
    "load_pace",
    "pace_path",
    "save_pace",
]

#: Closest two queries of one task may be, in seconds.
MIN_GAP: Final = 0.2
#: Most queries of one task in any 60 seconds.
PER_MINUTE: Final = 20
#: Queries after which each wait is at least the task's age (then three times it).
BUDGET: Final = 30
_LATE_BUDGET: Final = 34

_QUEUED_CAP = 6
#: With the pace known, a queued wait may grow to this share of the time queued so far.
_QUEUED_SHARE: Final = 1 / 3
#: With the pace known, the start of generation is bracketed to this share of the length.
_START_SHARE: Final = 0.1
#: Tasks of a known pace at least this long get one look at half of it (for the display).
_HALF_LOOK: Final = 120.0
#: Growth of the waits when nothing is known: each query at this multiple of the last one's age.
_RATIO: Final = 1.3
_LOG_RATIO: Final = math.log(_RATIO)
#: The grid point from which steps grow 1.3x: where 30% of the age first reaches an interval.
_KNEE: Final = math.ceil(1.0 / (_RATIO - 1.0)) - 1

ProgressKind = Literal["none", "moving", "fixed", "backwards", "misleading"]


def kind_of(request: Mapping[str, Any]) -> str:
    """The kind of a request, for learning the relay's pace: model, duration, aspect ratio
    and mode (text, image, first-last frame, reference)."""
    if request.get("reference_image_urls"):
        mode = "reference"
    elif request.get("last_image"):
        mode = "first-last"
    elif request.get("image"):
        mode = "image"
    else:
        mode = "text"
    return (
        f"{request.get('model')}/{request.get('duration')}s/"
        f"{request.get('aspect_ratio') or 'default'}/{mode}"
    )


def _van_der_corput(n: int) -> float:
    """0, 1/2, 1/4, 3/4, 1/8 …: any number of tasks spread evenly over one step."""
    result, denominator = 0.0, 1.0
    while n:
        denominator *= 2
        n, bit = divmod(n, 2)
        result += bit / denominator
    return result


Range = tuple[float, float, float]  # (fastest, typical, slowest) seconds
CountedFrom = Literal["start", "create"]


class Learned(NamedTuple):
    """A kind's pace as kept between runs: ``seconds`` (typical), ``spread`` (either way),
    ``tasks`` (how many were seen), counted from the start of generation, or from the create for
    a relay that never says a task is generating."""

    seconds: float
    spread: float
    tasks: int
    counted_from: CountedFrom = "start"

    def range(self) -> Range:
        return self.seconds - self.spread, self.seconds, self.seconds + self.spread

    def valid(self) -> bool:
        """Worth keeping: finite, positive, a spread below the time itself."""
        return (
            math.isfinite(self.seconds)
            and math.isfinite(self.spread)
            and 0 < self.seconds < 86400
            and 0 <= self.spread < self.seconds
            and self.tasks > 0
        )


@dataclass(frozen=True)
class Known:
    """What is known of a kind of task when one of them is polled.

    - ``generating``: seconds from the start of generation to done (fastest, typical,
      slowest); learned in this run or kept from earlier ones (it does not depend on how
      busy the account is, so it travels between runs).
    - ``total``: seconds from create to done, learned in this run only (it includes the
      queue, which depends on the moment).
    - ``queue``: the shortest time from create to generating seen in this run (0 when
      tasks are generating at their first look).
    - ``says_generating``: whether the relay was seen to say a task of the kind is
      generating (some answer "queued" until done).
    """

    generating: Range | None = None
    total: Range | None = None
    queue: float | None = None
    says_generating: bool = True

    @property
    def length(self) -> float:
        """The typical generating time (else the typical create-to-done time)."""
        if self.generating is not None:
            return self.generating[1]
        assert self.total is not None
        return self.total[1]


def _range(brackets: list[tuple[float, float]]) -> Range:
    """What brackets (each: the finish lies between ``low`` and ``high``) say together. Tasks
    of one kind take about as long: when every bracket overlaps, their common part; when
    they do not (the lengths differ), from the fastest middle to the slowest."""
    low = max(b[0] for b in brackets)
    high = min(b[1] for b in brackets)
    if low <= high:
        return low, (low + high) / 2, high
    middles = [(lo + hi) / 2 for lo, hi in brackets]
    return min(middles), statistics.median(middles), max(middles)


@dataclass
class _Pace:
    total: list[tuple[float, float]] = field(default_factory=list)  # create -> done brackets
    generating: list[tuple[float, float]] = field(default_factory=list)  # start -> done
    history: Learned | None = None  # from earlier runs
    members: int = 0
    total_negative: float = 0.0  # the oldest age at which a task of the kind was not done
    generating_negative: float = 0.0  # the same, counted from the task's first "generating"
    queue: float | None = None  # the shortest queue seen (its lower bound)
    ever_running: bool = False  # a task of the kind was seen generating in this run


class PaceBook:
    """What a run knows of how long each kind of task takes.

    A task seen done brackets its own times: it finished after its last "not done" answer
    and before the "done" one; it started generating after its last "queued" answer and
    before its first "generating" one. Those brackets, and the "not done" answers of the
    other tasks of its kind (tasks of one kind take about as long), are what is learned.
    ``history`` (from :func:`load_pace`) maps a kind to what earlier runs learned of it;
    what this run sees wins over it. Times are run seconds.
    """

    def __init__(self, history: Mapping[str, Learned] | None = None) -> None:
        self._kinds: dict[str, _Pace] = {}
        for kind, known in (history or {}).items():
            self._kinds[kind] = _Pace(history=known)

    def _get(self, kind: str) -> _Pace:
        return self._kinds.setdefault(kind, _Pace())

    def join(self, kind: str) -> float:
        """A new task of ``kind``: its offset (a fraction of one geometric step)."""
        pace = self._get(kind)
        offset = _van_der_corput(pace.members)
        pace.members += 1
        return offset

    def schedule(self, kind: str, interval: float, started: float) -> PollSchedule:
        """The schedule of a new task of ``kind`` created (or resumed) at ``started``."""
        offset = self.join(kind)
        return PollSchedule(interval, started=started, offset=offset, pace=self.expected(kind))

    def not_done(self, kind: str, schedule: PollSchedule, now: float) -> None:
        """A task of ``kind`` answered at ``now`` and was not done."""
        pace = self._get(kind)
        pace.total_negative = max(pace.total_negative, now - schedule.started)
        running = schedule.running_from
        if running is not None:
            pace.ever_running = True
            pace.generating_negative = max(pace.generating_negative, now - running)

    def done(self, kind: str, schedule: PollSchedule, now: float) -> None:
        """A task of ``kind`` was seen done at ``now``: learn its brackets."""
        pace = self._get(kind)
        created, last = schedule.started, schedule.last_query
        age = now - created
        low = last - created if last is not None else 0.0
        if pace.total_negative < age:
            low = max(low, pace.total_negative)
        pace.total.append((low, age))
        running = schedule.running_from
        if running is None:
            return
        pace.ever_running = True
        start = schedule.queued_until
        pace.queue = start - created if pace.queue is None else min(pace.queue, start - created)
        high = now - start
        low = last - running if last is not None and last >= running else 0.0
        if pace.generating_negative < high:
            low = max(low, pace.generating_negative)
        pace.generating.append((low, high))

    def expected(self, kind: str) -> Known | None:
        """What is known of ``kind``, or None."""
        pace = self._kinds.get(kind)
        if pace is None:
            return None
        old = pace.history
        generating: Range | None = None
        if pace.generating:
            generating = _range(pace.generating)
        elif old is not None and old.counted_from == "start":
            generating = old.range()
        total: Range | None = None
        if pace.total:
            # Create-to-done times include queues of any length: their whole range.
            middles = [(lo + hi) / 2 for lo, hi in pace.total]
            total = (
                min(lo for lo, _ in pace.total),
                statistics.median(middles),
                max(hi for _, hi in pace.total),
            )
        elif old is not None and old.counted_from == "create":
            total = old.range()
        if generating is None and total is None:
            return None
        says = pace.ever_running or (old is not None and old.counted_from == "start")
        return Known(generating, total, pace.queue, says_generating=says)

    def summary(self) -> dict[str, Learned]:
        """What to keep of every kind: its generating time, or, for a relay that never
        said a task of it was generating, its create-to-done time; history merged."""
        out: dict[str, Learned] = {}
        for kind, pace in self._kinds.items():
            learned: Learned | None
            if pace.generating:
                learned = _learned(pace.generating, "start", pace.history)
            elif pace.total and not pace.ever_running:
                learned = _learned(pace.total, "create", pace.history)
            else:
                learned = pace.history
            if learned is not None and learned.valid():
                out[kind] = learned
        return out


def _learned(
    brackets: list[tuple[float, float]], counted: CountedFrom, old: Learned | None
) -> Learned:
    """What ``brackets`` say together (each one alone is lopsided: the "done" is seen
    promptly, the last "not done" may be long before), merged with ``old``."""
    fastest, median, slowest = _range(brackets)
    # Bracket widths are uncertainty as much as spread: at most a quarter of the time.
    spread = min((slowest - fastest) / 2, 0.25 * median)
    count = len(brackets)
    if old is not None and old.counted_from == counted:
        # The past counts, but what was just seen weighs as much as up to ten runs.
        w = min(old.tasks, 10)
        median = (old.seconds * w + median * count) / (w + count)
        spread = max(spread, old.spread if abs(old.seconds - median) < median else 0.0)
        count = min(old.tasks + count, 1000)
    return Learned(median, min(spread, 0.5 * median), count, counted)


@dataclass
class PollSchedule:
    """The polling policy for one task; feed it every answer, ask it for the next delay.

    ``started`` is when the task was created (or resumed); ``offset`` its place among the
    tasks of its kind (see :meth:`PaceBook.join`); ``pace`` what is known of its kind
    (:class:`Known`).
    """

    interval: float
    started: float
    offset: float = 0.0
    pace: Known | None = None
    queries: int = 0
    _last_queued: float | None = None
    _queued_until: float | None = None  # the last "queued" answer before generating
    _first_running: float | None = None
    _samples: list[tuple[float, int]] | None = None
    _readings: int = 0  # progress readings while generating
    _last_progress: int | None = None
    _untrusted: ProgressKind | None = None
    _aimed: bool = False
    _phase_queries: int = 0
    _phase_start: float | None = None
    _last_query: float | None = None  # the last query sent, answered or not
    _last_answer: float | None = None  # the last answer (each said "not done")
    _recent: deque[float] = field(default_factory=deque)
    _woken: bool = False
    _told_finish: tuple[float, float] | None = None
    _half_looked: bool = False

    @property
    def running_from(self) -> float | None:
        """When the task was first seen generating (it started at or before then)."""
        return self._first_running

    @property
    def queued_until(self) -> float:
        """When the task was last seen queued before generating (it started after then);
        its create when it never was."""
        return self._queued_until if self._queued_until is not None else self.started

    # --- what the relay said ----------------------------------------------------------

    def observe(self, now: float, status: str, progress: int | None) -> None:
        """Record one answer: ``status`` is queued or in_progress."""
        self._sent(now)
        self._phase_queries += 1
        self._last_answer = now
        if status == "queued":
            self._last_queued = now
            if self._first_running is None:
                self._queued_until = now
            return
        if self._first_running is None:
            # Generating now: the waits grow again from the interval, from here.
            self._first_running = now
            self._phase_start = self._last_queued if self._last_queued is not None else self.started
            self._phase_queries = 1
        if progress is None:
            return
        self._check_progress(now, progress)
        self._last_progress = progress
        self._readings += 1
        if self._untrusted is not None or not progress:
            return
        samples = self._samples if self._samples is not None else []
        if not samples or progress > samples[-1][1]:
            samples.append((now, progress))
        self._samples = samples[-2:]
        found = self._estimate() if len(self._samples) >= 2 else None
        if found is not None:
            finish, uncertainty = found
            told = self._told_finish
            slack = max(0.2 * (finish - self.started), 2 * self.interval)
            if told is not None and finish > told[0] + told[1] + slack:
                # Each reading puts the end further away than the last one allowed: progress
                # that slows down as it is watched says nothing about the end.
                self._untrusted = "misleading"
            self._told_finish = (finish, uncertainty)

    def _check_progress(self, now: float, progress: int) -> None:
        """Stop trusting progress that goes backwards, or stands where it should have moved."""
        if self._untrusted is not None:
            return
        last = self._last_progress
        if last is not None and progress < last:
            self._untrusted = "backwards"
            return
        if last is not None and progress == last and self._samples:
            found = self._rate()
            t_last = self._samples[-1][0]
            if found is not None and found * (now - t_last) >= 3.0:
                # By its own rate it should have moved three points: it is a label, not a
                # measurement (new-api's fixed 30%).
                self._untrusted = "fixed"
        found_estimate = self._estimate()
        if found_estimate is not None:
            finish, _ = found_estimate
            length = self._length()
            if now > finish + max(0.15 * length, 2 * self.interval):
                self._untrusted = "misleading"  # it said done long ago; it is not

    def missed(self, now: float) -> None:
        """A query that got no answer (a transient error): it counts for the hard bounds,
        so that answers alternating with errors cannot double a task's queries; it says
        nothing of the task (:attr:`last_query` stays the last answer)."""
        self._sent(now)

    def _sent(self, now: float) -> None:
        """One query sent at ``now``, for the hard bounds."""
        self.queries += 1
        self._last_query = now
        self._recent.append(now)
        while self._recent and self._recent[0] <= now - 60.0:
            self._recent.popleft()

    def wake(self, pace: Known | None) -> None:
        """A task of the same kind finished: take the pace learned, and look again soon."""
        if pace is not None:
            self.pace = pace
        self._woken = True

    @property
    def last_query(self) -> float | None:
        """When the last answer saying "not done" came, if any."""
        return self._last_answer

    @property
    def progress_kind(self) -> ProgressKind:
        """What the progress readings have been so far."""
        if self._untrusted is not None:
            return self._untrusted
        if self._samples and len(self._samples) >= 2:
            return "moving"
        if self._readings >= 2:
            return "fixed"
        return "none"

    # --- estimates --------------------------------------------------------------------

    def _last_move(self) -> tuple[float, float, float, float] | None:
        """(time of the last reading, its progress, percent moved since the reading before,
        seconds between the two), when progress moved forward; None otherwise."""
        samples = self._samples
        if not samples:
            return None
        t2, p2 = samples[-1]
        if len(samples) >= 2:
            t1, p1 = samples[-2]
        else:
            # One reading: the task started after it was last seen queued.
            t1 = self._last_queued if self._last_queued is not None else self.started
            p1 = 0
        if t2 <= t1 or p2 <= p1:
            return None
        return t2, p2, p2 - p1, t2 - t1

    def _rate(self) -> float | None:
        move = self._last_move()
        return None if move is None else move[2] / move[3]

    def _estimate(self) -> tuple[float, float] | None:
        move = self._last_move()
        if move is None:
            return None
        t2, p2, moved, took = move
        rate = moved / took  # percent per second
        remaining = (100 - p2) / rate
        # Progress is a whole percent: each reading may be up to 1 below the truth.
        uncertainty = remaining / moved + 1.0 / rate
        return t2 + remaining, uncertainty

    def estimate(self) -> tuple[float, float] | None:
        """(expected finish, its uncertainty) from progress that can be trusted, if any."""
        if self._untrusted is not None:
            return None
        if self.pace is not None and len(self._samples or ()) < 2:
            # One reading says little (new-api's fixed 30% looks like one); the pace learned
            # says more until progress has been seen to move.
            return None
        return self._estimate()

    def _length(self) -> float:
        """The task's whole generating time, from the rate of its progress."""
        samples = self._samples or []
        if len(samples) >= 2:
            (t1, p1), (t2, p2) = samples[-2], samples[-1]
            return 100 * (t2 - t1) / max(p2 - p1, 1)
        if not samples:
            return self.interval
        t2, p2 = samples[-1]
        t1 = self._last_queued if self._last_queued is not None else self.started
        return 100 * max(t2 - t1, 1e-9) / max(p2, 1)

    # --- the next wait ----------------------------------------------------------------

    def next_delay(self, now: float) -> float:
        """Seconds to wait before the next query (after the hard bounds)."""
        return self._bounded(now, self._wanted(now))

    def _wanted(self, now: float) -> float:
        if self.queries == 0:
            return self._first_wait()
        if self._woken:
            # A task of the kind finished: with the pace now known, the rules below aim at
            # the window it gives (at once when the task is already in it).
            self._woken = False
            if self.pace is None:
                return 0.0
        if self.estimate() is not None:
            return self._by_progress(now)
        if self._first_running is None:
            known = self.pace
            if known is not None and known.generating is None and known.total is not None:
                # No task of the kind seen generating and done yet: aim by the create-to-done
                # times; when none was ever seen generating, the relay does not say so (it
                # answers "queued" until done), and looking at the queue tells nothing.
                aimed = self._by_pace(now)
                if aimed is not None:
                    return aimed if not known.says_generating else min(aimed, self._queued(now))
            return self._queued(now)
        if self.pace is not None:
            aimed = self._by_pace(now)
            if aimed is not None:
                return aimed
        return self._geometric(now)

    def _precision(self) -> float:
        """How closely the start of generation is worth bracketing, given what is known:
        a tenth of the task's length (so the learned length places the finish within a
        few percent)."""
        assert self.pace is not None
        return max(MIN_GAP, _START_SHARE * self.pace.length)

    def _first_wait(self) -> float:
        """One interval, unless the pace says tasks of the kind are short: then about when
        the fastest queue seen ends (or a tenth of the length), to bracket the start."""
        if self.pace is None:
            return self.interval
        precision = self._precision()
        queue = self.pace.queue
        return min(self.interval, precision if queue is None else max(queue, precision))

    def _queued(self, now: float) -> float:
        """Still queued: the waits double (never beyond the task's age) and stop growing at
        six intervals (30 s by default) since the task may be short once it starts; when
        the pace is known, at a tenth of its length (:meth:`_precision`) or a third of the
        time queued so far, whichever is longer."""
        age = max(now - self.started, self.interval)
        doubled = self.interval * math.exp(min(self._phase_queries - 1, 40) * math.log(2))
        if self.pace is None:
            return min(doubled, age, _QUEUED_CAP * self.interval)
        # The pace known: a long queue (an account's tasks beyond its cap wait for the
        # others) costs a logarithmic number of looks, the waits growing with the time
        # queued so far.
        return min(doubled, age, max(self._precision(), _QUEUED_SHARE * age))

    def _window(self) -> tuple[float, float, float] | None:
        """(earliest, latest) time the task can finish by what is known, and the length
        that sets the steps; None when nothing places it yet.

        Its start + the generating times, when it has been seen generating (the start lies
        between the last "queued" answer and the first "generating" one); else its create
        + the create-to-done times of this run (those include queues of any length)."""
        known = self.pace
        assert known is not None
        if known.generating is not None and self._first_running is not None:
            # Not done when first seen generating, either: a task resumed long after its
            # create may have started at any time since, but finishes after that answer.
            low = max(self.queued_until + known.generating[0], self._first_running)
            high = self._first_running + known.generating[2]
        elif known.total is not None:
            low, high = self.started + known.total[0], self.started + known.total[2]
        else:
            return None
        length = known.length
        return low - 0.01 * length, high, length

    def _grid(self, x: float) -> float:
        """The age of point ``x`` of the grid every task of a kind shares: one interval apart
        while that is more than 30% of the age, then 1.3x apart. Task *j* of a kind queries
        at ``x = k + offset``, so the tasks' queries interleave at every age."""
        if x <= _KNEE:
            return self.interval * (1.0 + x)
        return self.interval * (1.0 + _KNEE) * math.exp(min(x - _KNEE, 2000.0) * _LOG_RATIO)

    def _grid_index(self, age: float) -> float:
        knee = self.interval * (1.0 + _KNEE)
        if age <= knee:
            return age / self.interval - 1.0
        return _KNEE + math.log(age / knee) / _LOG_RATIO

    def _geometric(self, now: float) -> float:
        """To this task's next point on the kind's grid (see :meth:`_grid`), counted from
        the start of generation (the middle of its bracket): each query at about 1.3x the
        age of the one before, at least one interval later, never more than doubling the
        age. Tasks of a kind started together then look at every 7% of their age."""
        running = self._first_running
        if running is None:
            anchor = self.started
        else:
            # The middle of the start's bracket, unless it is wide (a task resumed long after
            # its create): then near its first "generating" answer.
            anchor = max((self.queued_until + running) / 2, running - 2 * self.interval)
        age = max(now - anchor, 0.0)
        k = math.ceil(self._grid_index(age + 0.5 * self.interval) - self.offset)
        target = self._grid(k + self.offset)
        return max(min(target - age, max(age, self.interval)), self.interval)

    def _by_pace(self, now: float) -> float | None:
        """Aim at the window the pace places the finish in; None once the task is far past
        it (something else is going on: back to the geometric rule)."""
        found = self._window()
        if found is None:
            return None
        low, high, length = found
        width = high - low
        # Through the window every 4% of the length or closer (a third of it), but
        # at most about eight looks: a wide window is covered more coarsely.
        step = min(max(width / 3, MIN_GAP, 0.01 * length), 0.04 * length)
        step = max(step, width / 8)
        if now >= high + length + self.interval:
            return None
        if now >= high:
            # Slower than any seen so far: keep looking, less often the further past.
            return max(step, 0.2 * (now - low))
        if now < low:
            reference = self._first_running if self._first_running is not None else self.started
            half = reference + 0.5 * length
            if (
                not self._half_looked
                and now < half - self.interval
                and length > max(24 * self.interval, _HALF_LOOK)
            ):
                # One look at half the length: status for the display, early failures.
                self._half_looked = True
                return half - now
            return low - now
        # In the window: at once on entering it (or on being woken into it), then a step
        # after the last look.
        last = self._last_query
        if last is None or last < low:
            return 0.0
        return max(last + step - now, 0.0)

    def _by_progress(self, now: float) -> float:
        found = self.estimate()
        assert found is not None
        finish, uncertainty = found
        samples = self._samples or []
        total = max(self._length(), 1e-9)
        remaining = finish - now
        phase_start = self._phase_start if self._phase_start is not None else self.started
        cap = max(now - phase_start, self.interval)  # a wait at most doubles the phase's age
        floor = min(self.interval / 5, 0.02 * total)
        if len(samples) < 2:
            # One reading: the start is only known to lie after the last "queued", so
            # the rate is uncertain. A second reading within one interval fixes it.
            return max(floor, min(self.interval, remaining / 2))
        if uncertainty <= 0.03 * total or remaining <= 2 * floor:
            if self._aimed and remaining <= 0.01 * total:
                # We aimed at the finish and it is not there yet: look again soon.
                return max(floor, 0.02 * total)
            self._aimed = True
            return max(floor, min(remaining + 0.01 * total, cap))
        self._aimed = False
        # Aim early by the uncertainty; when the readings are too close together to
        # say much, go halfway to the estimate. Never more than doubling the age.
        early = remaining - uncertainty
        return max(floor, min(early if early > floor else remaining / 2, cap))

    def _bounded(self, now: float, wanted: float) -> float:
        """The hard bounds, whatever the policy wanted."""
        delay = wanted if math.isfinite(wanted) else self.interval
        if self._last_query is not None:
            delay = max(delay, self._last_query + MIN_GAP - now)
        if len(self._recent) >= PER_MINUTE:
            delay = max(delay, self._recent[-PER_MINUTE] + 60.0 - now)
        age = max(now - self.started, 0.0)
        if self.queries >= _LATE_BUDGET:
            delay = max(delay, 3.0 * age)
        elif self.queries >= BUDGET:
            delay = max(delay, age)
        return max(delay, MIN_GAP if self.queries else 0.0, 1e-3)


# --- the pace, kept between runs ------------------------------------------------------------

#: 2: ``seconds`` is the generating time (start to done). Version 1 kept create-to-done
#: times, queue included; such a file is ignored (the pace is only a hint).
_PACE_VERSION: Final = 2


#: The pace's file in the local cache folder.
PACE_FILE: Final = "pace.json"


def pace_path(storyboard: Path) -> Path:
    """Where the pace learned for ``storyboard``'s runs is kept: ``.vidu-pipe/pace.json``
    beside it (the local cache folder; one small file of its own), unless the run is given
    another cache folder."""
    return storyboard.parent / ".vidu-pipe" / PACE_FILE


def load_pace(path: Path, base_url: str) -> dict[str, Learned]:
    """The pace learned at ``base_url`` in earlier runs; empty when the file is missing,
    unreadable or corrupt (it is only a hint: a run without it polls as on a first run)."""
    try:
        if path.is_symlink():
            return {}
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        return {}
    if not isinstance(data, dict) or data.get("version") != _PACE_VERSION:
        return {}
    relays = data.get("relays")
    kinds = relays.get(base_url) if isinstance(relays, dict) else None
    if not isinstance(kinds, dict):
        return {}
    out: dict[str, Learned] = {}
    for kind, entry in kinds.items():
        if not isinstance(entry, dict):
            continue
        seconds, spread, count = entry.get("seconds"), entry.get("spread", 0.0), entry.get("n", 1)
        counted = entry.get("from", "start")
        if (
            isinstance(seconds, (int, float))
            and isinstance(spread, (int, float))
            and isinstance(count, int)
            and not isinstance(count, bool)
            and counted in ("start", "create")
        ):
            learned = Learned(float(seconds), float(spread), count, counted)
            if learned.valid():
                out[str(kind)] = learned
    return out


def save_pace(path: Path, base_url: str, learned: Mapping[str, Learned]) -> None:
    """Merge ``learned`` into ``path`` for ``base_url``, atomically (:func:`write_atomic`);
    only what :func:`load_pace` would read back. A failure to write is ignored: it is a
    hint."""
    learned = {kind: record for kind, record in learned.items() if record.valid()}
    if not learned:
        return
    try:
        data = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    except (OSError, ValueError, RecursionError):
        data = {}
    if not isinstance(data, dict) or data.get("version") != _PACE_VERSION:
        data = {}
    relays = data.get("relays")
    if not isinstance(relays, dict):
        relays = {}
    kinds = relays.get(base_url)
    if not isinstance(kinds, dict):
        kinds = {}
    for kind, record in learned.items():
        entry: dict[str, Any] = {
            "seconds": round(record.seconds, 3),
            "spread": round(record.spread, 3),
            "n": record.tasks,
        }
        if record.counted_from != "start":
            entry["from"] = record.counted_from
        kinds[kind] = entry
    relays[base_url] = kinds
    document = {"version": _PACE_VERSION, "relays": relays}
    text = json.dumps(document, indent=2, sort_keys=True) + "\n"
    with contextlib.suppress(OSError):
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.parent.is_symlink():
            return
        # fileio: unpredictable temporary name, fsync, and a link planted at pace.json is
        # refused (LinkError is an OSError: the hint is then simply not saved).
        write_atomic(path, text.encode("utf-8"))


# --- a run's tasks, polled together ----------------------------------------------------------


class Pacer:
    """The polling of one run: a :class:`PaceBook`, a schedule per task, and the wake-ups.

    When a task of a kind is seen done, the pace is learned and every task of that kind that
    is waiting is woken (:meth:`sleep` returns early), so that tasks started together are
    asked promptly once one of them finished.
    """

    def __init__(self, book: PaceBook, clock: Clock) -> None:
        self.book = book
        self.clock = clock
        self._events: dict[str, anyio.Event] = {}
        self.learned = False

    def schedule(self, kind: str, interval: float, started: float) -> PollSchedule:
        """A new task of ``kind`` created (or resumed) at ``started``."""
        return self.book.schedule(kind, interval, started)

    async def sleep(self, kind: str, schedule: PollSchedule, until: float) -> None:
        """Sleep until run time ``until``, or less when a task of ``kind`` finishes meanwhile
        and ``schedule``, given the pace learned, wants to look sooner."""
        while True:
            remaining = until - self.clock.now()
            if remaining <= 0:
                return
            event = self._events.setdefault(kind, anyio.Event())
            with anyio.move_on_after(remaining * self.clock.scale):
                await event.wait()
                schedule.wake(self.book.expected(kind))
                now = self.clock.now()
                until = min(until, now + schedule.next_delay(now))

    def not_done(self, kind: str, schedule: PollSchedule, now: float) -> None:
        """A task of ``kind`` answered and is not done."""
        self.book.not_done(kind, schedule, now)

    def done(self, kind: str, schedule: PollSchedule, now: float) -> None:
        """A task of ``kind`` was seen completed at ``now``: learn, and wake its kind."""
        self.book.done(kind, schedule, now)
        self.learned = True
        event = self._events.pop(kind, None)
        if event is not None:
            event.set()
