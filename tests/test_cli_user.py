"""The person at the keyboard: help that teaches, answers to typos, ``init``, a renamed
storyboard, and signals from the very first moment of a run."""

from __future__ import annotations

import argparse
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from vidu_pipe.cli import build_parser, main

pytestmark = pytest.mark.usefixtures("quick_simulate")  # simulated runs at 1/500 (conftest)

ROOT = Path(__file__).resolve().parent.parent

BOARD = """\
version: 1
defaults: {model: viduq3t-540p, duration: 2}
shots:
  - id: waves
    prompt: Waves on a pebble beach.
    tags: [act1, sea]
  - id: gulls
    prompt: Gulls over the harbour.
    tags: [act2]
"""


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _cli(*argv: str, cwd: Path = ROOT, **kwargs: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "vidu_pipe", *argv],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=cwd,
        **kwargs,  # type: ignore[call-overload]
    )


# --- help --------------------------------------------------------------------------------


def _commands() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    (sub,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(sub.choices)


def test_every_flag_of_every_command_has_help() -> None:
    commands = _commands()
    assert {"init", "validate", "plan", "run", "status", "schema", "report", "simulator"} <= set(
        commands
    )
    for name, parser in commands.items():
        assert parser.description, name
        assert parser.epilog and f"vidu-pipe {name}" in parser.epilog, name  # an example
        for action in parser._actions:
            where = f"{name} {'/'.join(action.option_strings) or action.dest}"
            assert action.help and action.help.strip(), where
            assert action.help != argparse.SUPPRESS, where
            if action.option_strings and not isinstance(action, argparse._HelpAction):
                assert "(default: " in action.help, where  # every flag says its default


def test_the_help_of_each_command_lists_its_command_line(
    capsys: pytest.CaptureFixture[str],
) -> None:
    for name in _commands():
        with pytest.raises(SystemExit) as info:
            main([name, "--help"])
        assert info.value.code == 0
        out = capsys.readouterr().out
        assert f"vidu-pipe {name}" in out and "examples:" in out, name
        assert "(default: " in out or name == "validate", name


def test_run_help_defaults_are_the_run_options_defaults() -> None:
    from vidu_pipe.execution.runner import RunOptions

    options = RunOptions()
    helps = {a.dest: a.help or "" for a in _commands()["run"]._actions}
    assert f"else {options.concurrency})" in helps["concurrency"]
    assert f"else {options.rate_per_minute})" in helps["rate"]
    assert f"else {options.poll_interval:g})" in helps["poll_interval"]
    assert f"else {options.timeout:g})" in helps["timeout"]


def test_help_is_fast_and_has_no_traceback() -> None:
    for argv in (["--help"], ["run", "--help"]):
        proc = _cli(*argv)
        assert proc.returncode == 0, proc.stderr
        assert "Usage:" in proc.stdout or "usage:" in proc.stdout


# --- typos -----------------------------------------------------------------------------


@pytest.fixture
def board(tmp_path: Path) -> Path:
    path = tmp_path / "board.yaml"
    path.write_text(BOARD)
    return path


@pytest.mark.parametrize("command", ["plan", "run"])
def test_only_typo_suggests_the_shot(
    board: Path, capsys: pytest.CaptureFixture[str], command: str
) -> None:
    extra = ["--simulate"] if command == "run" else []
    code, _out, err = run(capsys, command, str(board), "--only", "wave", *extra)
    assert code == 2
    assert "--only 'wave' matches no shot" in err and "did you mean 'waves'?" in err
    assert not (board.parent / "board.manifest.json").exists()


@pytest.mark.parametrize("command", ["plan", "run"])
def test_tag_typo_lists_the_tags(
    board: Path, capsys: pytest.CaptureFixture[str], command: str
) -> None:
    extra = ["--simulate"] if command == "run" else []
    code, _, err = run(capsys, command, str(board), "--tag", "act9", *extra)
    assert code == 2
    assert "--tag 'act9' is on no shot" in err
    assert "(tags: act1, act2, sea)" in err
    code, _out, err = run(capsys, command, str(board), "--tag", "zzz", *extra)
    assert code == 2 and "(tags: act1, act2, sea)" in err and "did you mean" not in err


# --- a storyboard renamed with its manifest ------------------------------------------------


def test_plan_and_run_agree_on_a_storyboard_renamed_with_its_manifest(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    old = tmp_path / "old.yaml"
    old.write_text(BOARD)
    code, _, err = run(capsys, "run", str(old), "--simulate", "--quiet")
    assert code == 0, err
    new = tmp_path / "new.yaml"
    old.rename(new)
    (tmp_path / "old.manifest.json").rename(tmp_path / "new.manifest.json")

    code, out, err = run(capsys, "plan", str(new), "--simulate")
    assert code == 0, err
    assert "0 to create, 0 to resume, 2 up to date" in out
    code, out, err = run(capsys, "plan", str(new))
    assert code == 0, err
    code, out, err = run(capsys, "run", str(new), "--simulate")
    assert code == 0, err
    assert "2 up to date (0 tasks created)" in out
    # A manifest named on the command line must still belong to the storyboard.
    other = tmp_path / "other.yaml"
    other.write_text(BOARD)
    code, _, err = run(
        capsys, "plan", str(other), "--manifest", str(tmp_path / "new.manifest.json")
    )
    assert code == 3 and "belongs to" in err


# --- status ------------------------------------------------------------------------------


def test_status_keeps_a_note_and_an_error_apart(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A failed shot changed since: the note and the relay's error are two things."""
    path = tmp_path / "b.yaml"
    path.write_text(BOARD)
    manifest = {
        "manifest_version": 1,
        "storyboard": "b.yaml",
        "base_url": "https://api.aijisu.cn",
        "updated_at": "2026-11-24T12:00:00Z",
        "shots": {
            "waves": {
                "status": "failed",
                "fingerprint": "sha256:" + "0" * 64,
                "request": {"model": "viduq3t-540p", "prompt": "old", "duration": 2},
                "task_id": "task_1",
                "video_url": None,
                "attempts": 1,
                "error": "the input did not pass content review",
                "submitted_at": "2026-11-24T12:00:00Z",
                "finished_at": "2026-11-24T12:01:00Z",
            }
        },
    }
    import json

    (tmp_path / "b.manifest.json").write_text(json.dumps(manifest))
    code, out, err = run(capsys, "status", str(path))
    assert code == 0, err
    (line,) = [line for line in out.splitlines() if line.startswith("waves")]
    assert "changed since:" not in line
    assert "the input did not pass content review (changed since it failed)" in line


# --- init ----------------------------------------------------------------------------------


def test_init_then_validate_and_run_simulate(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    project = tmp_path / "film"
    code, out, err = run(capsys, "init", str(project))
    assert code == 0, err
    written = sorted(str(p.relative_to(project)) for p in project.rglob("*") if p.is_file())
    assert written == [
        ".gitignore",
        ".pre-commit-config.yaml",
        "film.storyboard.yaml",
        "schemas/storyboard.schema.json",
        "templates/look.j2",
    ]
    storyboard = project / "film.storyboard.yaml"
    text = storyboard.read_text("utf-8")
    assert text.startswith("# yaml-language-server: $schema=schemas/storyboard.schema.json\n")
    assert (project / "schemas" / "storyboard.schema.json").read_text() == _cli(
        "schema", "storyboard"
    ).stdout
    assert '{% include "look" %}' in text

    code, out, err = run(capsys, "validate", str(storyboard))
    assert code == 0, out + err
    code, out, err = run(capsys, "plan", str(storyboard), "--json")
    assert code == 0, err
    modes = [s["mode"] for s in yaml.safe_load(out)["shots"]]
    assert set(modes) == {"text", "image", "first-last", "reference"}
    code, out, err = run(capsys, "run", str(storyboard), "--simulate", "--quiet")
    assert code == 0, out + err

    ignored = (project / ".gitignore").read_text().splitlines()
    for entry in ("*.manifest.json.journal", "*.manifest.json.lock", "videos/", ".vidu-pipe/"):
        assert entry in ignored
    assert "*.manifest.json" not in ignored  # the manifest is committed

    config = yaml.safe_load((project / ".pre-commit-config.yaml").read_text())
    (hook,) = config["repos"][0]["hooks"]
    project_hook = yaml.safe_load((ROOT / ".pre-commit-hooks.yaml").read_text())[0]
    assert hook["id"] == project_hook["id"] and hook["entry"] == project_hook["entry"]
    assert re.search(hook["files"], "film.storyboard.yaml")
    assert not re.search(hook["files"], ".pre-commit-config.yaml")


def test_init_in_the_current_folder(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    code, out, err = run(capsys, "init")
    assert code == 0, err
    assert (tmp_path / "film.storyboard.yaml").is_file()
    assert "vidu-pipe run film.storyboard.yaml --simulate" in out


@pytest.mark.parametrize(
    "existing", [".gitignore", "templates/look.j2", "film.storyboard.yaml", "schemas"]
)
def test_init_never_overwrites(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], existing: str
) -> None:
    target = tmp_path / existing
    target.parent.mkdir(parents=True, exist_ok=True)
    if existing == "schemas":
        (target / "storyboard.schema.json").parent.mkdir()
        (target / "storyboard.schema.json").write_text("mine")
    else:
        target.write_text("mine")
    before = sorted(p for p in tmp_path.rglob("*"))
    code, _out, err = run(capsys, "init", str(tmp_path))
    assert code == 2
    assert "never overwrites" in err and "nothing was written" in err
    assert sorted(p for p in tmp_path.rglob("*")) == before
    for path in before:
        if path.is_file():
            assert path.read_text() == "mine"


def test_init_refuses_a_dangling_symlink(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / ".gitignore").symlink_to(tmp_path / "elsewhere")
    code, _, _err = run(capsys, "init", str(tmp_path))
    assert code == 2
    assert (
        not (tmp_path / "elsewhere").exists() and not (tmp_path / "film.storyboard.yaml").exists()
    )


def test_init_files_ship_in_the_package() -> None:
    from importlib.resources import files

    from vidu_pipe.api import INIT_FILES

    folder = files("vidu_pipe").joinpath("init_files")
    for source in INIT_FILES.values():
        assert folder.joinpath(source).is_file(), source


# --- signals from the first moment ----------------------------------------------------------


def _wait_until_reading_a_pipe(proc: subprocess.Popen[str], limit: float = 60.0) -> None:
    """Until ``proc`` sleeps in the kernel reading a pipe (Linux: /proc/PID/wchan); where
    that cannot be seen, until it sleeps at all, and a moment more."""
    deadline = time.monotonic() + limit
    proc_dir = Path(f"/proc/{proc.pid}")
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            wchan = (proc_dir / "wchan").read_text()
            state = (proc_dir / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:  # no /proc (macOS): no better than a pause
            time.sleep(0.5)
            return
        if "pipe_read" in wchan or "pipe_wait" in wchan:
            return
        if wchan in ("", "0") and state == "S":  # wchan hidden: asleep, somewhere
            time.sleep(0.2)
            return
        time.sleep(0.005)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs a named pipe")
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_before_the_run_starts_exits_130_without_traceback(
    tmp_path: Path, sig: signal.Signals
) -> None:
    """The storyboard is a named pipe: the process is inside ``main`` (reading it) when
    the signal comes, before any handler of the run is installed."""
    fifo = tmp_path / "board.yaml"
    os.mkfifo(fifo)
    proc = subprocess.Popen(
        [sys.executable, "-m", "vidu_pipe", "run", str(fifo), "--simulate"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=tmp_path,
    )
    fd = None
    try:
        # Opening the pipe for writing blocks until the process opens it for reading.
        deadline = time.monotonic() + 60
        while fd is None and time.monotonic() < deadline:
            try:
                fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
            except OSError:
                time.sleep(0.01)
            if proc.poll() is not None:
                break
        assert fd is not None, f"the run never opened its storyboard: {proc.communicate()[1]}"
        # Only once it sleeps in read(): a signal that lands between the open and the read
        # (likely under CPU load) is noted by Python but cannot interrupt a read() that has
        # not begun, and the run would then wait for the pipe forever.
        _wait_until_reading_a_pipe(proc)
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
        if fd is not None:
            os.close(fd)
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    assert "interrupted" in err
    assert list(tmp_path.iterdir()) == [fifo]  # nothing written


# --- the pre-commit hook's advice ----------------------------------------------------------


def test_pre_commit_hooks_suggest_a_rev_that_exists() -> None:
    """No release tag exists, so the advice must not name one (``rev: v0.1.0``)."""
    text = (ROOT / ".pre-commit-hooks.yaml").read_text("utf-8")
    tags = subprocess.run(
        ["git", "tag", "--list"], cwd=ROOT, capture_output=True, text=True
    ).stdout.split()
    for rev in re.findall(r"rev:\s*(\S+)", text):
        assert rev.startswith("<") or rev in tags, rev


def test_ctrl_c_while_the_command_line_loads_exits_130_without_traceback() -> None:
    """Ctrl-C that lands while ``python -m vidu_pipe`` is still importing its command line
    (emulated by an import hook raising KeyboardInterrupt there, as the signal would)."""
    code = (
        "import runpy, sys\n"
        "class Hook:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'vidu_pipe.cli':\n"
        "            raise KeyboardInterrupt\n"
        "sys.meta_path.insert(0, Hook())\n"
        "sys.argv = ['vidu-pipe', '--version']\n"
        "runpy.run_module('vidu_pipe', run_name='__main__', alter_sys=True)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 130, proc.stderr
    assert "Traceback" not in proc.stderr


def test_help_without_rich_argparse_is_plain_help_not_a_traceback() -> None:
    code = (
        "import sys; sys.modules['rich_argparse'] = None\n"
        "from vidu_pipe.cli import main\n"
        "main(['run', '--help'])\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "usage: vidu-pipe run" in proc.stdout and "--concurrency N" in proc.stdout
