"""Issue 10: never pay twice, never write through a link, never a traceback from a manifest.

Planted symlinks at every file a run or a report writes; a report aimed at a run's own
files; the manifest reached by two names; a manifest or journal with hostile numbers or
nesting; a create announced on disk before it is sent (``unknown``); a full disk in the
middle of a run; a mistyped ``--base-url``; and the package without ``fcntl``.
"""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
import yaml

from vidu_pipe.api import SIMULATOR_BASE_URL, arun
from vidu_pipe.cli import main
from vidu_pipe.errors import ApiError, ConfigError, ManifestError
from vidu_pipe.execution.runner import RunOptions, RunResult
from vidu_pipe.manifest.store import (
    ManifestStore,
    is_run_file,
    journal_path,
    load_manifest,
    lock_path,
    run_files,
)
from vidu_pipe.simulator import Simulator, SimulatorConfig
from vidu_pipe.storyboard.schemas import MODELS

pytestmark = pytest.mark.usefixtures("quick_simulate")  # simulated runs at 1/500 (conftest)

REPO = Path(__file__).resolve().parent.parent
SCALE = 0.001
BASE = "http://relay.test"
ENV = {"VIDU_API_KEY": "sk-never-twice-test"}
PRECIOUS = "precious, not to be touched\n"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def board(folder: Path, n: int = 2, name: str = "board") -> Path:
    doc = {
        "version": 1,
        "defaults": {"model": "viduq3t-540p", "duration": 5},
        "shots": [{"id": f"s{i}", "prompt": f"shot {i}"} for i in range(n)],
    }
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    return path


def sim(**overrides: Any) -> Simulator:
    settings: dict[str, Any] = {
        "time_scale": SCALE,
        "durations": {m: (20.0, 20.0) for m in MODELS},
        "queue_seconds": (0.0, 0.0),
        "seed": 5,
    }
    settings.update(overrides)
    return Simulator(SimulatorConfig(**settings))


def real_run(
    path: Path, transport: httpx.AsyncBaseTransport, base_url: str = BASE, **options: Any
) -> RunResult:
    async def go() -> RunResult:
        return await arun(
            path,
            base_url=base_url,
            transport=transport,
            env=ENV,
            options=RunOptions(time_scale=SCALE, rate_per_minute=0, **options),
        )

    return anyio.run(go)


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def plant(link: Path, folder: Path) -> Path:
    """A symlink at ``link`` to a precious file elsewhere; returns the precious file."""
    elsewhere = folder / "elsewhere"
    elsewhere.mkdir(exist_ok=True)
    precious = elsewhere / f"precious-{link.name}.txt"
    precious.write_text(PRECIOUS, encoding="utf-8")
    link.symlink_to(precious)
    return precious


def files(folder: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(folder)): p.read_bytes() if p.is_file() and not p.is_symlink() else b""
        for p in sorted(folder.rglob("*"))
    }


# --- planted symlinks (issue 10 item 4) ---------------------------------------------------


@pytest.mark.parametrize("which", ["lock", "journal", "manifest"])
def test_a_link_planted_at_a_run_file_is_refused_not_written_through(
    which: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = board(tmp_path)
    manifest = path.with_suffix(".manifest.json")
    if which == "journal":
        # A journal needs its manifest: a first run writes one.
        assert cli(capsys, "run", str(path), "--simulate")[0] == 0
    target = {"lock": lock_path(manifest), "journal": journal_path(manifest), "manifest": manifest}
    link = target[which]
    if which == "manifest":
        link.unlink(missing_ok=True)
    precious = plant(link, tmp_path)
    code, out = cli(capsys, "run", str(path), "--simulate", "--force")
    assert code == 3, out
    assert "symbolic link" in out and "Traceback" not in out
    assert precious.read_text(encoding="utf-8") == PRECIOUS
    assert link.is_symlink()


def test_a_report_never_writes_through_a_planted_temporary_or_final_link(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = board(tmp_path)
    assert cli(capsys, "run", str(path), "--simulate")[0] == 0
    output = tmp_path / "report.html"
    # The old fixed temporary name: now unused, so the link is left alone.
    tmp_link = tmp_path / ".report.html.tmp"
    precious_tmp = plant(tmp_link, tmp_path)
    code, out = cli(capsys, "report", str(path), "-o", str(output))
    assert code == 0, out
    assert precious_tmp.read_text(encoding="utf-8") == PRECIOUS
    assert "<html" in output.read_text(encoding="utf-8")
    # A link at the report's own path is refused.
    output.unlink()
    precious = plant(output, tmp_path)
    code, out = cli(capsys, "report", str(path), "-o", str(output))
    assert code == 3 and "symbolic link" in out, out
    assert precious.read_text(encoding="utf-8") == PRECIOUS
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp") and p != tmp_link]


def test_a_download_never_writes_through_a_planted_link(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = board(tmp_path, n=2)
    videos = tmp_path / "videos"
    videos.mkdir()
    precious = plant(videos / "s0.mp4", tmp_path)
    code, out = cli(capsys, "run", str(path), "--simulate", "--download", str(videos))
    assert code == 1, out  # the video of s0 could not be saved: that shot fails
    assert "s0.mp4" in out and "symbolic link" in out
    assert precious.read_text(encoding="utf-8") == PRECIOUS
    assert (videos / "s1.mp4").stat().st_size > 0
    assert sorted(p.name for p in videos.iterdir()) == ["s0.mp4", "s1.mp4"]  # no temp left


# --- one manifest, two names (issue 10 item 3) --------------------------------------------


@pytest.mark.parametrize("how", ["symlink", "hardlink"])
def test_a_manifest_reached_by_a_second_name_is_refused(how: str, tmp_path: Path) -> None:
    path = board(tmp_path)
    manifest = path.with_suffix(".manifest.json")
    relay = sim()
    assert real_run(path, relay.transport()).exit_code == 0
    other = tmp_path / "other.manifest.json"
    if how == "symlink":
        other.symlink_to(manifest)
    else:
        os.link(manifest, other)
    before = files(tmp_path)
    for name in (other, manifest) if how == "hardlink" else (other,):
        with pytest.raises(ManifestError, match=r"symbolic link|hard link"):
            ManifestStore.open(name, storyboard="board.yaml", base_url=BASE, order=["s0"])
    assert files(tmp_path) == before


def test_a_manifest_in_a_linked_folder_has_one_lock(tmp_path: Path) -> None:
    real = tmp_path / "real"
    real.mkdir()
    alias = tmp_path / "alias"
    alias.symlink_to(real, target_is_directory=True)
    one = ManifestStore.open(real / "m.manifest.json", storyboard="b.yaml", base_url=BASE, order=[])
    with one, pytest.raises(ConfigError, match=f"pid {os.getpid()}"):
        ManifestStore.open(alias / "m.manifest.json", storyboard="b.yaml", base_url=BASE, order=[])


# --- a report aimed at a run's own files (issue 10 item 5) --------------------------------


@pytest.mark.parametrize("suffix", ["", ".journal", ".lock"])
def test_a_report_is_never_written_over_a_file_the_run_owns(
    suffix: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = board(tmp_path)
    assert cli(capsys, "run", str(path), "--simulate")[0] == 0
    manifest = path.with_suffix(".manifest.json")
    target = Path(str(manifest) + suffix)
    if suffix == ".lock":
        target.write_text("live state\n", encoding="utf-8")
    elif suffix == ".journal":
        target.write_text("", encoding="utf-8")
    before = files(tmp_path)
    code, out = cli(capsys, "report", str(path), "-o", str(target))
    assert code == 2, out
    assert files(tmp_path) == before


def test_every_run_file_is_named_by_one_function(tmp_path: Path) -> None:
    manifest = tmp_path / "b.manifest.json"
    assert run_files(manifest) == (manifest, journal_path(manifest), lock_path(manifest))
    for path in run_files(manifest):
        assert is_run_file(manifest, path)
    assert is_run_file(manifest, tmp_path / ".b.manifest.json.x1y2z3.tmp")
    assert not is_run_file(manifest, tmp_path / "report.html")


# --- hostile numbers and nesting (issue 10 item 9) ----------------------------------------

GOOD: dict[str, Any] = {
    "manifest_version": 1,
    "storyboard": "board.yaml",
    "base_url": BASE,
    "shots": {"s0": {"status": "pending", "fingerprint": "sha256:x"}},
}


@pytest.mark.parametrize(
    ("text", "what"),
    [
        (
            json.dumps(GOOD).replace('"sha256:x"}', '"sha256:x", "attempts": ' + "9" * 5000 + "}"),
            "5000 digits",
        ),
        ("[" * 200_000 + "]" * 200_000, "nested"),
        (
            json.dumps(GOOD).replace(
                '"sha256:x"}', '"sha256:x", "request": ' + "[" * 100 + "]" * 100 + "}"
            ),
            "nested",
        ),
        (json.dumps(GOOD).replace('"sha256:x"}', '"sha256:x", "attempts": NaN}'), "NaN"),
    ],
    ids=["5000-digit-int", "200000-brackets", "deep-request", "nan"],
)
def test_a_hostile_manifest_is_a_located_error(
    text: str, what: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = board(tmp_path, n=1)
    manifest = path.with_suffix(".manifest.json")
    manifest.write_text(text, encoding="utf-8")
    with pytest.raises(ManifestError, match=what) as info:
        load_manifest(manifest)
    assert str(manifest) in str(info.value) and "hint:" in str(info.value)
    before = files(tmp_path)
    for command in ("plan", "status", "run", "report"):
        extra = {"run": ["--simulate"], "report": ["-o", str(tmp_path / "r.html")]}.get(command, [])
        code, out = cli(capsys, command, str(path), *extra)
        assert code == 3, (command, out)
        assert str(manifest) in out and "Traceback" not in out
    assert files(tmp_path) == before


@pytest.mark.parametrize(
    "line",
    [
        '{"shot": "s0", "set": {"attempts": ' + "9" * 5000 + "}}",
        '{"shot": "s0", "set": ' + "[" * 200_000 + "]" * 200_000 + "}",
    ],
    ids=["5000-digit-int", "200000-brackets"],
)
def test_a_hostile_journal_line_is_a_located_error(line: str, tmp_path: Path) -> None:
    manifest = tmp_path / "board.manifest.json"
    manifest.write_text(json.dumps(GOOD), encoding="utf-8")
    journal_path(manifest).write_text(line + "\n", encoding="utf-8")
    with pytest.raises(ManifestError, match=r"journal:1: corrupt journal line"):
        load_manifest(manifest)


# --- a completed entry without its video is not up to date (issue 10 item 17) -------------


def test_a_completed_entry_without_a_video_url_is_made_again(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # A terminal wide enough for plan's table to show the whole reason (narrower, it is
    # cut; a test worker may inherit COLUMNS=80 from readline).
    monkeypatch.setenv("COLUMNS", "200")
    path = board(tmp_path, n=1)
    relay = sim()
    assert real_run(path, relay.transport()).exit_code == 0
    manifest = path.with_suffix(".manifest.json")
    doc = json.loads(manifest.read_text(encoding="utf-8"))
    doc["shots"]["s0"]["video_url"] = None  # a hand edit
    manifest.write_text(json.dumps(doc), encoding="utf-8")
    code, out = cli(capsys, "plan", str(path))
    assert code == 0 and "without a video URL" in out
    again = real_run(path, relay.transport())
    # Not "up to date": made again, or (its URL still fresh) restored from the results cache.
    assert again.skipped == () and again.created + len(again.restored) == 1
    found = load_manifest(path.with_suffix(".manifest.json"))
    assert found is not None and found.entries["s0"].video_url


# --- the write-ahead record and `unknown` (issue 10 item 1) -------------------------------


class NoAnswer(httpx.AsyncBaseTransport):
    """Creates reach the relay (it makes the task) but their answers are lost."""

    def __init__(self, inner: httpx.AsyncBaseTransport, lost: int) -> None:
        self.inner = inner
        self.lost = lost
        self.creates = 0
        self.seen_on_disk: list[str | None] = []
        self.manifest: Path | None = None

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        create = request.method == "POST"
        if create and self.manifest is not None:
            # What a kill -9 now would leave: the shot announced as unknown.
            found = load_manifest(self.manifest)
            shot = json.loads(request.content)["prompt"].split()[-1]
            entry = found.get(f"s{shot}") if found is not None else None
            self.seen_on_disk.append(entry.status if entry is not None else None)
        response = await self.inner.handle_async_request(request)
        if create:
            self.creates += 1
            if self.lost:
                self.lost -= 1
                await response.aread()
                raise httpx.ReadTimeout("the answer never came", request=request)
        return response


def test_a_create_is_on_disk_as_unknown_before_it_is_sent_and_held_until_asked(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # A terminal wide enough for plan's table to show the whole reason (narrower, it
    # is cut to leave the prompt room).
    monkeypatch.setenv("COLUMNS", "200")
    path = board(tmp_path, n=3)
    manifest = path.with_suffix(".manifest.json")
    relay = sim()
    transport = NoAnswer(relay.transport(), lost=1)
    transport.manifest = manifest
    first = real_run(path, transport, concurrency=1)
    assert transport.seen_on_disk == ["unknown"] * 3, "announced before sent"
    assert first.exit_code == 1 and first.unknown == ("s0",)
    entry = load_manifest(manifest).entries["s0"]  # type: ignore[union-attr]
    assert entry.status == "unknown" and entry.task_id is None
    said = f"a create was sent at {entry.submitted_at} and no answer came: it may be billed"
    assert said in (entry.error or "")
    # plan, status and report say so; run holds it and exits 1
    code, out = cli(capsys, "plan", str(path))
    assert code == 0 and "hold" in out and said in out
    code, out = cli(capsys, "status", str(path))
    assert "unknown" in out and said in out
    report = tmp_path / "r.html"
    assert cli(capsys, "report", str(path), "-o", str(report))[0] == 0
    assert "no answer came: it may be billed" in report.read_text(encoding="utf-8")
    held = real_run(path, transport)
    assert held.exit_code == 1 and held.unknown == ("s0",) and held.created == 0
    assert relay.stats().creates == 3
    # --retry-unknown pays again, knowingly
    code, out = cli(capsys, "plan", str(path), "--retry-unknown")
    assert code == 0 and "--retry-unknown" in out and "would bill 1 task" in out
    done = real_run(path, transport, retry_unknown=True)
    assert done.exit_code == 0 and done.completed == ("s0",)
    assert relay.stats().creates == 4


def test_a_refused_create_takes_its_write_ahead_record_back(tmp_path: Path) -> None:
    path = board(tmp_path, n=2)
    relay = sim()
    relay.inject("create", status=500, count=2)  # the relay's own error body: nothing made
    result = real_run(path, relay.transport(), concurrency=1)
    assert result.exit_code == 0 and result.unknown == ()
    found = load_manifest(path.with_suffix(".manifest.json"))
    assert found is not None
    assert {e.status for e in found.entries.values()} == {"completed"}
    assert {e.attempts for e in found.entries.values()} == {1}


# --- a full disk (issue 10 item 2) --------------------------------------------------------


def test_a_full_disk_stops_creating_lists_unrecorded_ids_and_exits_3(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    path = board(tmp_path, n=6)
    manifest = path.with_suffix(".manifest.json")
    relay = sim(durations={m: (200.0, 200.0) for m in MODELS})
    journal = journal_path(manifest)
    real_write = os.write
    real_fstat = os.fstat
    full = {"on": False, "creates": 0}

    class Filling(httpx.AsyncBaseTransport):
        async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
            response = await relay.transport().handle_async_request(request)
            if request.method == "POST":
                full["creates"] += 1
                if full["creates"] == 2:
                    full["on"] = True  # the disk fills while the second create is answered
            return response

    def write(fd: int, data: Any) -> int:
        if full["on"]:
            try:
                same = os.path.samestat(real_fstat(fd), os.stat(journal))
            except OSError:
                same = False
            if same:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", write)
    with pytest.raises(ManifestError, match="No space left") as info:
        real_run(path, Filling(), concurrency=1)
    assert "disk full" in str(info.value)
    err = capfd.readouterr().err
    # The second create's task was paid for and could not be recorded: it is printed.
    assert full["creates"] == 2, "no create after the disk filled"
    first, second = relay.stats().tasks  # in creation order
    assert "could not be recorded" in err and f"shot s1: task {second}" in err, err
    found = load_manifest(manifest)
    assert found is not None
    assert found.entries["s0"].task_id == first and found.entries["s0"].status == "completed"
    assert found.entries["s1"].status == "unknown"  # the write-ahead mark: not lost either
    assert relay.stats().queries.get(second, 0) > 0, "the unrecorded task was still polled"


# --- a mistyped base URL changes nothing (issue 12 item 7) --------------------------------


def test_an_unreachable_base_url_changes_nothing_on_disk(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = board(tmp_path)
    assert cli(capsys, "run", str(path), "--simulate")[0] == 0
    manifest = path.with_suffix(".manifest.json")
    assert json.loads(manifest.read_text(encoding="utf-8"))["base_url"] == SIMULATOR_BASE_URL
    before = files(tmp_path)

    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    with pytest.raises(ConfigError, match="cannot reach"):
        real_run(path, httpx.MockTransport(refuse), base_url="http://typo.invalid")
    assert files(tmp_path) == before


def test_the_probe_of_a_new_relay_retries_by_the_probe_policy(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The probe is execution/retry.py's PROBE policy (no loop of its own): that many tries
    of an unreachable relay, then the error; a relay that answers on a later try is there."""
    from vidu_pipe.execution.retry import PROBE, probe_may_retry

    assert PROBE.attempts == 3
    assert probe_may_retry(ApiError("refused", retryable=True))
    assert not probe_may_retry(ApiError("404", status_code=404, retryable=True))
    path = board(tmp_path)
    assert cli(capsys, "run", str(path), "--simulate")[0] == 0
    before = files(tmp_path)
    probes: list[str] = []

    def refuse(request: httpx.Request) -> httpx.Response:
        probes.append(request.url.path)
        raise httpx.ConnectError("connection refused", request=request)

    with pytest.raises(ConfigError, match="cannot reach"):
        real_run(path, httpx.MockTransport(refuse), base_url="http://typo.invalid")
    assert len(probes) == PROBE.attempts and all("vidu-pipe-probe" in p for p in probes)
    assert files(tmp_path) == before

    relay = sim()
    answering = relay.transport()
    refused = 0

    async def flaky(request: httpx.Request) -> httpx.Response:
        nonlocal refused
        if refused < PROBE.attempts - 1:  # the last try gets through
            refused += 1
            raise httpx.ConnectError("connection refused", request=request)
        return await answering.handle_async_request(request)

    assert real_run(path, httpx.MockTransport(flaky), base_url="http://relay.test").exit_code == 0
    assert refused == PROBE.attempts - 1


def test_an_unreachable_relay_at_the_same_url_leaves_the_manifest_byte_for_byte(
    tmp_path: Path,
) -> None:
    path = board(tmp_path, n=3)
    relay = sim()
    assert real_run(path, relay.transport(), max_creates=1).exit_code == 1  # 2 not started
    before = files(tmp_path)

    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    # Each create is announced, refused (nothing created), taken back: no net change.
    with pytest.raises(ConfigError, match="cannot reach"):
        real_run(path, httpx.MockTransport(refuse))
    assert files(tmp_path) == before


# --- no fcntl (issue 8 item 4) ------------------------------------------------------------


def test_validate_and_a_simulated_run_work_where_fcntl_does_not_exist(tmp_path: Path) -> None:
    path = board(tmp_path, n=2)
    shim = tmp_path / "shim"
    shim.mkdir()
    # sys.modules[name] = None makes `import fcntl` raise ImportError, as on Windows.
    (shim / "sitecustomize.py").write_text(
        "import sys\nsys.modules['fcntl'] = None\n", encoding="utf-8"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("VIDU_")}
    env["PYTHONPATH"] = os.pathsep.join([str(shim), str(REPO)])
    check = textwrap.dedent(
        """
        import sys
        try:
            import fcntl
        except ImportError:
            pass
        else:
            raise SystemExit("fcntl is importable: the shim did not work")
        import vidu_pipe
        from vidu_pipe.cli import main
        code = main(["validate", sys.argv[1]])
        assert code == 0, code
        code = main(["run", sys.argv[1], "--simulate", "--quiet"])
        assert code == 0, code
        print("ok")
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", check, str(path)],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().endswith("ok")
    found = load_manifest(path.with_suffix(".manifest.json"))
    assert found is not None and {e.status for e in found.entries.values()} == {"completed"}


@pytest.mark.parametrize(
    ("statement", "absent"),
    [
        # The manifest's store takes its lock lazily: readers (plan, status) need no fcntl.
        ("import vidu_pipe.manifest.store", {"fcntl", "filelock", "jsonschema", "yaml", "jinja2"}),
        ("import vidu_pipe.fileio", {"fcntl", "anyio", "httpx", "yaml"}),
    ],
)
def test_the_manifest_and_fileio_load_nothing_they_do_not_need(
    statement: str, absent: set[str]
) -> None:
    code = f"{statement}\nimport sys, json\nprint(json.dumps(sorted(sys.modules)))"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO
    )
    loaded = set(json.loads(out.stdout.splitlines()[-1]))
    loaded |= {name.split(".")[0] for name in loaded}
    assert not (loaded & absent), f"{statement!r} loaded {sorted(loaded & absent)}"
