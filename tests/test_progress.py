"""Run progress: the tracker's arithmetic, and what `vidu-pipe run` prints in each mode.

Modes go through the real CLI in a subprocess: plain lines into a pipe, the live
display into a pseudo-terminal, ``NO_COLOR``, ``--quiet`` and ``--json``.
"""

from __future__ import annotations

import dataclasses
import fcntl
import io
import json
import os
import pty
import re
import struct
import subprocess
import sys
import termios
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import pytest

from vidu_pipe import events as events_module
from vidu_pipe.events import (
    KINDS,
    Completed,
    Created,
    Downloaded,
    Event,
    Failed,
    NotStarted,
    Progress,
    Queued,
    RateLimited,
    Resumed,
    Retried,
    RunFinished,
    RunStarted,
    ShotEvent,
    Skipped,
    Waiting,
)
from vidu_pipe.views.progress import (
    PlainPrinter,
    Tracker,
    choose_mode,
    format_seconds,
    open_progress,
    plain_line,
)

# --- the tracker -----------------------------------------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def tracker(clock: FakeClock) -> Tracker:
    t = Tracker(clock)
    t.feed(
        RunStarted(
            storyboard="s.yaml",
            manifest="m",
            create=5,
            resume=1,
            skip=1,
            concurrency=2,
            rate=20,
        )
    )
    return t


def test_phases_follow_the_events(tracker: Tracker, clock: FakeClock) -> None:
    t = tracker
    t.feed(Skipped(shot="old", reason="up to date"))
    t.feed(Resumed(shot="a", task_id="task_a"))
    t.feed(Created(shot="b", task_id="task_b", attempt=1))
    t.feed(Queued(shot="c", limit=2, ahead=0))
    t.feed(Waiting(shot="d", reason="rate-limit", seconds=12.0))
    t.feed(RateLimited(shot="e", retry_after=20.0))
    clock.now = 10
    t.feed(Progress(shot="a", task_id="task_a", status="in_progress", progress=40))
    t.feed(Progress(shot="b", task_id="task_b", status="queued", progress=0))
    phases = {s.id: s.phase for s in t.shots.values()}
    assert phases == {
        "old": "skipped",
        "a": "generating",
        "b": "relay-queued",
        "c": "waiting-slot",
        "d": "waiting-rate",
        "e": "rate-limited",
    }
    words = {s.id: t.describe(s, clock.now) for s in t.active()}
    assert words == {
        "a": "generating 40%",
        "b": "queued at the relay",
        "e": "backing off after a 429 (10s)",
        "d": "waiting for the rate limit (2s)",
        "c": "queued (waiting for a slot)",
    }
    # Furthest along first.
    assert [s.id for s in t.active()] == ["a", "b", "e", "d", "c"]
    assert t.counts() == {
        "completed": 0,
        "failed": 0,
        "skipped": 1,
        "not_started": 0,
        "held": 0,
        "running": 2,
        "queued": 4,
        "done": 1,
        "total": 7,
    }
    assert t.paused_until == 20.0


def test_finishing_and_downloads(clock: FakeClock) -> None:
    t = Tracker(clock, downloads=True)
    t.feed(
        RunStarted(
            storyboard="s",
            manifest="m",
            create=3,
            resume=0,
            skip=0,
            concurrency=3,
            rate=0,
        )
    )
    for shot in ("a", "b", "c"):
        t.feed(Created(shot=shot, task_id=f"task_{shot}", attempt=1))
    clock.now = 100
    t.feed(Completed(shot="a", task_id="task_a", video_url="u", seconds=100.0))
    assert t.shots["a"].phase == "downloading"
    t.feed(Downloaded(shot="a", path="v/a.mp4", size=10, sha256="x"))
    t.feed(Failed(shot="b", task_id="task_b", error="boom"))
    t.feed(NotStarted(shot="c", reason="--max-creates 2 reached"))
    t.feed(
        RunFinished(
            completed=1, failed=1, not_started=1, running=0, skipped=0, created=2, exit_code=1
        )
    )
    c = t.counts()
    assert (c["completed"], c["failed"], c["not_started"], c["done"], c["total"]) == (1, 1, 1, 3, 3)
    assert t.active() == []
    assert t.shots["b"].note == "boom"
    assert t.shots["a"].elapsed(500) == 100  # frozen once finished


def test_eta_from_the_progress_rate(tracker: Tracker, clock: FakeClock) -> None:
    t = tracker
    t.feed(Created(shot="a", task_id="task_a", attempt=1))
    clock.now = 20
    t.feed(Progress(shot="a", task_id="task_a", status="in_progress", progress=10))
    clock.now = 60
    t.feed(Progress(shot="a", task_id="task_a", status="in_progress", progress=50))
    shot = t.shots["a"]
    # 40 points in 40 s: 50 points left take 50 s.
    assert t.eta(shot, 60) == pytest.approx(50)
    assert t.eta(shot, 70) == pytest.approx(40)
    # Past the estimate with no news, there is no estimate (not "~0s left" for minutes).
    assert t.eta(shot, 111) is None
    assert t.eta(shot, 500) is None
    # Before any task finished, a shot without progress has no estimate ...
    t.feed(Created(shot="b", task_id="task_b", attempt=1))
    assert t.eta(t.shots["b"], 60) is None
    assert t.overall_eta(60) is None
    # ... and after, the typical task time gives one.
    t.feed(Completed(shot="z", task_id="task_z", video_url="u", seconds=200.0))
    assert t.eta(t.shots["b"], 100) == pytest.approx(160)
    assert t.overall_eta(100) is not None


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0, "0s"), (7.4, "7s"), (59.6, "1m00s"), (207, "3m27s"), (3720, "1h02m"), (-3, "0s")],
)
def test_format_seconds(seconds: float, text: str) -> None:
    assert format_seconds(seconds) == text


# --- plain lines ---------------------------------------------------------------------

PLAIN = [
    (Created(shot="a", task_id="t1", attempt=1), "a: created t1"),
    (Resumed(shot="a", task_id="t1"), "a: resuming t1"),
    (
        Completed(shot="a", task_id="t1", video_url="https://v/a.mp4", seconds=200.0),
        "a: completed in 200 s: https://v/a.mp4",
    ),
    (Failed(shot="a", task_id=None, error="boom"), "a: FAILED: boom"),
    (Skipped(shot="a", reason="up to date"), "a: up to date"),
    (NotStarted(shot="a", reason="quota spent"), "a: not started (quota spent)"),
    (
        RateLimited(shot="a", retry_after=30.0),
        "a: rate-limited by the relay; all creates pause 30 s",
    ),
    (
        Retried(shot="a", what="query", attempt=1, error="502", delay=1.5),
        "a: query failed (502); retrying in 1.5 s",
    ),
    (
        Downloaded(shot="a", path="v/a.mp4", size=9, sha256="x"),
        "a: saved v/a.mp4 (9 bytes)",
    ),
    (
        Waiting(shot="a", reason="rate-limit", seconds=3.0),
        "a: waiting 3 s for the rate limit",
    ),
    (Queued(shot="a", limit=2, ahead=0), None),
    (Progress(shot="a", task_id="t", status="in_progress", progress=5), None),
]


@pytest.mark.parametrize(
    ("event", "line"), PLAIN, ids=[f"{e.kind}-{i}" for i, (e, _) in enumerate(PLAIN)]
)
def test_plain_line(event: Event, line: str | None) -> None:
    assert plain_line(event) == line


def test_plain_heartbeat_rides_on_progress_events(clock: FakeClock) -> None:
    wall = FakeClock()
    out = io.StringIO()
    t = Tracker(clock)
    printer = PlainPrinter(out, t, heartbeat=30, wall=wall)
    printer(
        RunStarted(storyboard="s", manifest="m", create=2, resume=0, skip=0, concurrency=2, rate=0)
    )
    printer(Created(shot="a", task_id="t", attempt=1))
    clock.now = wall.now = 10
    printer(Progress(shot="a", task_id="t", status="in_progress", progress=20))
    clock.now = wall.now = 31
    printer(Progress(shot="a", task_id="t", status="in_progress", progress=45))
    clock.now = wall.now = 40
    printer(Progress(shot="a", task_id="t", status="in_progress", progress=60))
    lines = out.getvalue().splitlines()
    assert lines == [
        "s: 2 to create, 0 to resume, 0 up to date",
        "a: created t",
        "[31s] 0/2 done, 1 running (a 45%), 1 queued",
    ]


def test_choose_mode(monkeypatch: pytest.MonkeyPatch) -> None:
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    monkeypatch.setenv("TERM", "xterm-256color")
    assert choose_mode(Tty()) == "live"
    assert choose_mode(io.StringIO()) == "plain"
    assert choose_mode(Tty(), quiet=True) == "quiet"
    assert choose_mode(Tty(), json=True, quiet=True) == "json"
    monkeypatch.setenv("TERM", "dumb")
    assert choose_mode(Tty()) == "plain"


def test_live_display_renders_shots_and_counts() -> None:
    """The live renderable itself, through a recording console (no terminal needed)."""
    from rich.console import Console

    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=120, height=30, no_color=True)
    with open_progress(out, "live", console=console, label="simulated time") as sink:
        sink(
            RunStarted(
                storyboard="s.yaml", manifest="m", create=2, resume=0, skip=0, concurrency=1, rate=0
            )
        )
        sink(Created(shot="first", task_id="task_1", attempt=1))
        sink(Queued(shot="second", limit=1, ahead=0))
        sink(Progress(shot="first", task_id="task_1", status="in_progress", progress=30))
        sink(Completed(shot="first", task_id="task_1", video_url="https://v/1.mp4", seconds=120.0))
    text = COLOUR.sub("", out.getvalue())
    assert "second" in text and "queued (waiting for a slot)" in text
    assert "✓ first completed in 2m00s" in text
    assert "1/2 done" in text
    assert "(simulated time)" in text


# --- through the CLI -----------------------------------------------------------------

STORYBOARD = """\
version: 1
name: progress-test
defaults:
  model: viduq3t-540p
  duration: 2
run:
  concurrency: 2
  rate_per_minute: 0
shots:
  - id: alpha
    prompt: A red kite over a green hill.
  - id: bravo
    prompt: A blue boat on a grey sea.
  - id: charlie
    prompt: A yellow tram in the rain.
"""

COLOUR = re.compile(r"\x1b\[([0-9;]*)m")
CURSOR = re.compile(r"\x1b\[(\d*)[AK]")
CSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def _colour_codes(text: str) -> list[str]:
    """SGR sequences that set a colour (30-37, 38, 40-47, 48, 90-97, 100-107)."""
    found = []
    for params in COLOUR.findall(text):
        for p in params.split(";"):
            if p and (30 <= int(p) <= 48 or 90 <= int(p) <= 107):
                found.append(params)
                break
    return found


@pytest.fixture
def board(tmp_path: Path) -> Path:
    path = tmp_path / "board.yaml"
    path.write_text(STORYBOARD, encoding="utf-8")
    return path


def _env(**extra: str) -> dict[str, str]:
    drop = ("NO_COLOR", "FORCE_COLOR", "COLUMNS", "LINES", "TTY_COMPATIBLE", "TTY_INTERACTIVE")
    env = {k: v for k, v in os.environ.items() if k not in drop}
    env["TERM"] = "xterm-256color"
    env.update(extra)
    return env


@dataclass
class Ran:
    code: int
    out: str
    err: str


def _run_piped(*args: str, env: dict[str, str] | None = None) -> Ran:
    done = subprocess.run(
        [sys.executable, "-m", "vidu_pipe", "run", *args],
        capture_output=True,
        text=True,
        env=env or _env(),
        timeout=120,
        stdin=subprocess.DEVNULL,
    )
    return Ran(done.returncode, done.stdout, done.stderr)


def _run_in_pty(*args: str, env: dict[str, str] | None = None) -> Ran:
    """stdout on a 120x40 pseudo-terminal (as in an interactive shell), stderr piped."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    proc = subprocess.Popen(
        [sys.executable, "-m", "vidu_pipe", "run", *args],
        stdout=slave,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        env=env or _env(),
    )
    os.close(slave)
    chunks = []
    while True:
        try:
            data = os.read(master, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    os.close(master)
    assert proc.stderr is not None
    err = proc.stderr.read().decode()
    code = proc.wait(timeout=120)
    return Ran(code, b"".join(chunks).decode("utf-8", "replace"), err)


SUMMARY = re.compile(r"^3 completed, 0 failed, 0 not started, 0 up to date \(3 tasks created\)")


def test_plain_lines_when_stdout_is_a_pipe(board: Path) -> None:
    ran = _run_piped(str(board), "--simulate")
    assert ran.code == 0, ran.err
    lines = ran.out.splitlines()
    assert lines[0] == f"{board}: 3 to create, 0 to resume, 0 up to date"
    for shot in ("alpha", "bravo", "charlie"):
        assert any(re.fullmatch(rf"{shot}: created task_\w+", line) for line in lines)
        assert any(line.startswith(f"{shot}: completed in ") for line in lines)
    assert SUMMARY.match(lines[-1])
    assert "\x1b" not in ran.out


def test_live_display_on_a_terminal(board: Path) -> None:
    ran = _run_in_pty(str(board), "--simulate")
    assert ran.code == 0, ran.err
    out = ran.out
    assert CURSOR.search(out), "a live display moves the cursor"
    assert _colour_codes(out), "colour on a terminal by default"
    plain = CSI.sub("", out).replace("\r", "")
    # One line per active shot while it runs; the third waits for one of two slots.
    assert re.search(r"(alpha|bravo) +(submitted|queued at the relay|generating \d+%)", plain)
    assert re.search(r"charlie +queued \(waiting for a slot\)", plain)
    # The overall bar with counts, to the end; lasting lines for finished shots.
    assert "3/3 done" in plain
    assert "✓ 3 completed" in plain
    assert "(simulated time)" in plain
    for shot in ("alpha", "bravo", "charlie"):
        assert f"✓ {shot} completed in " in plain
    assert SUMMARY.match(plain.splitlines()[-1])


def test_no_color_on_a_terminal(board: Path) -> None:
    ran = _run_in_pty(str(board), "--simulate", env=_env(NO_COLOR="1"))
    assert ran.code == 0, ran.err
    assert _colour_codes(ran.out) == []
    assert "3/3 done" in ran.out


@pytest.mark.parametrize("where", ["pipe", "terminal"])
def test_quiet_prints_only_the_summary(board: Path, where: str) -> None:
    runner = _run_piped if where == "pipe" else _run_in_pty
    ran = runner(str(board), "--simulate", "--quiet")
    assert ran.code == 0, ran.err
    lines = [line for line in ran.out.replace("\r", "").splitlines() if line]
    assert len(lines) == 1 and SUMMARY.match(lines[0]), ran.out
    assert "\x1b" not in ran.out


README = Path(__file__).resolve().parent.parent / "README.md"


def _readme_table() -> dict[str, set[str]]:
    """The README's event table ("Watching a run"): kind -> its field names."""
    table: dict[str, set[str]] = {}
    for line in README.read_text("utf-8").splitlines():
        m = re.match(r"\| `([a-z-]+)` \| (.*) \|$", line)
        if m and m.group(1) in KINDS:
            # Field names are the code spans outside parentheses (inside: their values).
            outside = re.sub(r"\([^()]*\)", "", m.group(2))
            table[m.group(1)] = set(re.findall(r"`([a-z_0-9]+)`", outside))
    return table


def _fields(kind: str) -> set[str]:
    return {f.name for f in dataclasses.fields(KINDS[kind])} - {"shot", "time"}


def test_json_lines_on_stdout_and_the_summary_on_stderr(board: Path) -> None:
    ran = _run_piped(str(board), "--simulate", "--json")
    assert ran.code == 0, ran.err
    events = [json.loads(line) for line in ran.out.splitlines()]  # every line is JSON
    kinds = [e["event"] for e in events]
    assert kinds[0] == "run-started" and kinds[-1] == "run-finished"
    assert {"created", "progress", "completed", "queued"} <= set(kinds)
    for event in events:
        extra = set(event) - {"event", "shot", "time"}
        assert extra == _fields(event["event"]), event
        if event["event"] in ("waiting", "queued"):
            # A wait says how long or behind what: never a field that is null.
            assert None not in event.values(), event
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", event["time"])
    assert SUMMARY.match(ran.err.splitlines()[-1])
    # --json wins over a terminal: still pure JSON lines, no live display.
    ran = _run_in_pty(str(board), "--simulate", "--json", "--force")
    assert ran.code == 0, ran.err
    for line in ran.out.replace("\r", "").splitlines():
        json.loads(line)
    assert "completed" in ran.err


def test_the_readme_event_table_is_the_event_classes() -> None:
    """The README's table is :func:`markdown_table`, generated from the dataclasses."""
    assert events_module.markdown_table() in README.read_text("utf-8"), (
        "README event table out of date: paste the output of "
        "python -c 'from vidu_pipe.events import markdown_table; print(markdown_table())'"
    )
    assert _readme_table() == {kind: _fields(kind) for kind in KINDS}


def test_the_runner_emits_every_kind_and_only_known_kinds() -> None:
    run = Path(events_module.__file__).parent / "execution"  # the runner and its Keeper
    runner = "".join((run / name).read_text("utf-8") for name in ("runner.py", "downloads.py"))
    made = set(re.findall(r"self\.emit\(\s*([A-Z][A-Za-z]+)\(", runner))
    assert made == {cls.__name__ for cls in KINDS.values()}


@pytest.mark.parametrize("kind", list(KINDS))
def test_json_lines_keep_their_shape(kind: str) -> None:
    """``event``, ``shot``, ``time`` first, then the kind's own fields in declared order."""
    cls = KINDS[kind]
    own = [f.name for f in dataclasses.fields(cls) if f.name not in ("shot", "time")]
    shot = {"shot": "a"} if issubclass(cls, ShotEvent) else {}
    event = cls(time="2026-11-24T12:00:00Z", **shot, **dict.fromkeys(own, 7))
    doc = json.loads(event.to_json())
    assert list(doc) == ["event", "shot", "time", *own]
    assert doc["event"] == kind and doc["shot"] == shot.get("shot")


def test_a_new_kind_is_one_class() -> None:
    """What another engineer adds (say, a shot restored from the cache): one class, and
    the JSON line, the display's counts and a plain log line follow."""
    from vidu_pipe.events import Outcome, described

    @dataclasses.dataclass(frozen=True, kw_only=True)
    class Restored(ShotEvent):
        kind: ClassVar[str] = "restored-for-test"
        settles: ClassVar[Outcome | None] = "completed"
        video_url: str = described()

    try:
        assert KINDS["restored-for-test"] is Restored
        event = Restored(shot="a", video_url="https://v/a.mp4", time="2026-11-24T12:00:00Z")
        assert json.loads(event.to_json()) == {
            "event": "restored-for-test",
            "shot": "a",
            "time": "2026-11-24T12:00:00Z",
            "video_url": "https://v/a.mp4",
        }
        clock = FakeClock()
        tracker = Tracker(clock)
        tracker.feed(
            RunStarted(
                storyboard="s", manifest="m", create=0, resume=0, skip=1, concurrency=1, rate=0
            )
        )
        tracker.feed(event)
        assert tracker.counts()["completed"] == 1 and tracker.counts()["done"] == 1
        assert plain_line(event) == "a: restored-for-test (video_url https://v/a.mp4)"
        assert "`restored-for-test` | `video_url`" in events_module.markdown_table()
    finally:
        del KINDS["restored-for-test"]
