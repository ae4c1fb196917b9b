"""``vidu-pipe validate`` and ``vidu-pipe plan`` end to end: in-process through
``vidu_pipe.cli.main`` and as real ``python -m vidu_pipe`` processes."""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from vidu_pipe.cli import main
from vidu_pipe.storyboard.build import load

pytestmark = pytest.mark.usefixtures("quick_simulate")  # simulated runs at 1/500 (conftest)

ROOT = Path(__file__).resolve().parent.parent
PIPELINES = sorted((ROOT / "pipelines").glob("*.yaml"))

BOARD = """\
version: 1
defaults:
  model: viduq3p-720p
  duration: 5
  seed: 1
shots:
  - id: done
    tags: [act1]
    prompt: Already made.
  - id: running
    model: viduq3t-540p
    duration: 4
    prompt: Still rendering.
  - id: broken
    tags: [act1]
    prompt: Failed last time.
  - id: edited
    duration: 8
    prompt: Changed since it was made.
  - id: fresh
    prompt: Never run.
  - id: wave
    model: viduq3p-1080p
    duration: 3
    takes: 2
    prompt: Two takes.
"""
IDS = ["done", "running", "broken", "edited", "fresh", "wave.take1", "wave.take2"]
ACTIONS = {
    "done": "skip",
    "running": "resume",
    "broken": "create",
    "edited": "create",
    "fresh": "create",
    "wave.take1": "create",
    "wave.take2": "create",
}


def canonical_fingerprint(request: Any) -> str:
    data = json.dumps(request, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return "sha256:" + hashlib.sha256(data.encode()).hexdigest()


def entry(status: str, request: dict[str, Any], **more: Any) -> dict[str, Any]:
    return {
        "status": status,
        "fingerprint": canonical_fingerprint(request),
        "request": request,
        "task_id": more.get("task_id"),
        "video_url": more.get("video_url"),
        "attempts": more.get("attempts", 1),
        "error": more.get("error"),
        "submitted_at": "2026-11-24T12:00:00Z",
        "finished_at": more.get("finished_at"),
    }


def request_of(shot_id: str) -> dict[str, Any]:
    """The request the shot renders to, written out by hand (not taken from the code)."""
    model, duration, prompt = {
        "done": ("viduq3p-720p", 5, "Already made."),
        "running": ("viduq3t-540p", 4, "Still rendering."),
        "broken": ("viduq3p-720p", 5, "Failed last time."),
        "edited": ("viduq3p-720p", 8, "Changed since it was made."),
        "fresh": ("viduq3p-720p", 5, "Never run."),
        "wave.take1": ("viduq3p-1080p", 3, "Two takes."),
        "wave.take2": ("viduq3p-1080p", 3, "Two takes."),
    }[shot_id]
    seed = 2 if shot_id == "wave.take2" else 1
    return {
        "model": model,
        "prompt": prompt,
        "duration": duration,
        "extra_body": {"audio": False, "bgm": False, "seed": seed},
    }


def manifest_for(storyboard: str) -> dict[str, Any]:
    """SPEC §4, by hand: completed + same fingerprint, submitted, failed, completed +
    another fingerprint; 'fresh' and the takes have no entry."""
    old_edited = {**request_of("edited"), "duration": 6}
    return {
        "manifest_version": 1,
        "storyboard": storyboard,
        "base_url": "https://api.aijisu.cn",
        "updated_at": "2026-11-24T12:00:00Z",
        "shots": {
            "done": entry(
                "completed",
                request_of("done"),
                task_id="task_1",
                video_url="https://cdn.example.com/done.mp4",
                finished_at="2026-11-24T12:03:00Z",
            ),
            "running": entry("submitted", request_of("running"), task_id="task_2"),
            "broken": entry(
                "failed",
                request_of("broken"),
                task_id="task_3",
                error="content policy",
                finished_at="2026-11-24T12:02:00Z",
            ),
            "edited": entry(
                "completed",
                old_edited,
                task_id="task_4",
                video_url="https://cdn.example.com/edited.mp4",
                finished_at="2026-11-24T12:04:00Z",
            ),
        },
    }


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """board.yaml with its manifest beside it (the default path)."""
    path = tmp_path / "board.yaml"
    path.write_text(BOARD)
    manifest = json.dumps(manifest_for("board.yaml"), indent=2)
    (tmp_path / "board.manifest.json").write_text(manifest)
    return path


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def plan_json(capsys: pytest.CaptureFixture[str], *argv: str) -> dict[str, Any]:
    code, out, err = run(capsys, "plan", "--json", *argv)
    assert code == 0, err
    result: dict[str, Any] = json.loads(out)
    return result


def test_requests_written_by_hand_match_the_storyboard(project: Path) -> None:
    assert {s.id: dict(s.request) for s in load(project).shots} == {i: request_of(i) for i in IDS}


# --- validate -------------------------------------------------------------------------


def test_validate_ok_files(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "validate", *map(str, PIPELINES))
    assert code == 0, out + err
    for path in PIPELINES:
        assert re.search(rf"^{re.escape(str(path))}: ok \(\d+ shots?\)$", out, re.M)
    assert err == ""


def test_validate_mixed_files_reports_the_bad_one(
    project: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(BOARD.replace("duration: 8", "duration: 80"))
    code, out, err = run(capsys, "validate", str(project), str(bad))
    assert code == 2
    assert f"{project}: ok (7 shots)" in out
    line = BOARD.splitlines().index("    duration: 8") + 1
    assert f"{bad}:{line}:5: shot 'edited': duration: " in out
    assert "1 problem in 1 file" in err


@pytest.mark.parametrize(
    "argv",
    [["validate"], ["plan"], ["frobnicate"], [], ["plan", "a.yaml", "--bogus"]],
    ids=["validate-no-file", "plan-no-file", "unknown-command", "nothing", "unknown-flag"],
)
def test_usage_errors_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    assert "usage" in capsys.readouterr().err


# --- plan -----------------------------------------------------------------------------


def _bodies(out: str) -> dict[str, dict[str, Any]]:
    """The indented JSON request bodies that follow each action line of the text plan."""
    bodies: dict[str, dict[str, Any]] = {}
    current: str | None = None
    block: list[str] = []
    for line in [*out.splitlines(), ""]:
        if line.startswith("    "):
            block.append(line)
            continue
        if current is not None and block:
            bodies[current] = json.loads(textwrap.dedent("\n".join(block)))
        block = []
        m = re.match(r"^(skip|resume|create|restore|hold)\s+(\S+)\s", line)
        current = m.group(2) if m else None
    return bodies


def test_plan_text_shows_actions_bodies_counts_and_billing(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(capsys, "plan", str(project), "--bodies")
    assert code == 0, err
    actions = dict(
        (m.group(2), m.group(1)) for m in re.finditer(r"^(skip|resume|create)\s+(\S+)\s", out, re.M)
    )
    assert actions == ACTIONS
    assert re.search(r"^create\s+edited\s.*changed", out, re.M)
    assert re.search(r"^create\s+broken\s.*failed", out, re.M)
    bodies = _bodies(out)
    assert bodies == {i: request_of(i) for i in IDS}  # every selected shot, skipped too
    assert "5 to create, 1 to resume, 1 up to date" in out
    assert re.search(r"would bill 5 tasks, 24 s\b", out)
    assert re.search(r"viduq3p-720p: 3 tasks, 18 s\b", out)
    assert re.search(r"viduq3p-1080p: 2 tasks, 6 s\b", out)
    assert "viduq3t-540p:" not in out.split("would bill")[1]  # resumed: not billed again


def test_plan_bodies_is_the_full_output_of_before(
    project: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """``--bodies`` prints exactly what ``plan`` printed before the table (golden file)."""
    monkeypatch.chdir(project.parent)
    code, out, err = run(capsys, "plan", "board.yaml", "--bodies")
    assert code == 0, err
    assert out == (ROOT / "tests" / "golden" / "plan_bodies.txt").read_text("utf-8")


def test_plan_bodies_of_held_and_up_to_date_shots(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """SPEC §3: ``--bodies`` shows the exact request body of every selected shot, not
    only of those a run would send (a held or up-to-date shot has one too)."""
    manifest = project.with_name("board.manifest.json")
    doc = json.loads(manifest.read_text())
    doc["shots"]["broken"]["status"] = "unknown"
    manifest.write_text(json.dumps(doc))
    code, out, err = run(
        capsys, "plan", str(project), "--bodies", "--only", "done", "--only", "broken"
    )
    assert code == 0, err
    assert re.search(r"^hold\s+broken\s", out, re.M) and re.search(r"^skip\s+done\s", out, re.M)
    assert _bodies(out) == {"done": request_of("done"), "broken": request_of("broken")}


def _reverted(folder: Path) -> Path:
    """A simulated project whose first shot was edited, run, reverted: plan says restore."""
    prompts = {
        "sunrise": "Dawn over the lighthouse, long slow pan across the rocks and the sea",
        "storm-builds": "Dark clouds gather over the lighthouse, rain starts, waves rise",
    }
    path = folder / "lighthouse.yaml"

    def write(first: str) -> None:
        shots = "".join(
            f"  - id: {sid}\n    prompt: {first if sid == 'sunrise' else text}\n"
            for sid, text in prompts.items()
        )
        path.write_text(
            "version: 1\ndefaults: {model: viduq3t-540p, duration: 2}\nshots:\n" + shots
        )

    write(prompts["sunrise"])
    assert main(["run", str(path), "--simulate", "-q"]) == 0
    write("A wholly different dawn")
    assert main(["run", str(path), "--simulate", "-q"]) == 0
    write(prompts["sunrise"])
    return path


def test_plan_bodies_of_a_restore_and_a_skip(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _reverted(tmp_path)
    capsys.readouterr()
    code, out, err = run(capsys, "plan", str(path), "--simulate", "--bodies")
    assert code == 0, err
    assert re.search(r"^restore\s+sunrise\s", out, re.M), out
    assert re.search(r"^skip\s+storm-builds\s", out, re.M), out
    bodies = _bodies(out)
    assert set(bodies) == {"sunrise", "storm-builds"}
    assert bodies["sunrise"]["prompt"].startswith("Dawn over the lighthouse")
    # The same bodies as --json gives.
    doc = plan_json(capsys, str(path), "--simulate")
    assert bodies == {s["id"]: s["request"] for s in doc["shots"]}


@pytest.mark.parametrize("columns", [80, 100])
def test_plan_prompt_column_stays_beside_a_long_reason(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    columns: int,
) -> None:
    """A restore's reason is long; the PROMPT column stays and the reason is cut."""
    path = _reverted(tmp_path)
    capsys.readouterr()
    monkeypatch.setenv("COLUMNS", str(columns))
    code, out, err = run(capsys, "plan", str(path), "--simulate")
    assert code == 0, err
    assert re.search(r"^ACTION\s+SHOT\s+MODE\s+MODEL\s+DUR\s+WHY\s+PROMPT$", out, re.M), out
    restore = re.search(r"^restore\s+sunrise\s.*$", out, re.M)
    skip = re.search(r"^skip\s+storm-builds\s.*$", out, re.M)
    assert restore and skip, out
    assert re.search(r"\schanged; comp.*\sDawn over\b", restore.group(0)), out
    assert re.search(r"\sup to date\s+Dark clouds\b", skip.group(0)), out
    table = [line for line in out.splitlines() if not line.startswith(str(tmp_path))]
    assert max(len(line) for line in table) <= columns, out


def test_plan_table_by_default(
    project: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "100")
    code, out, err = run(capsys, "plan", str(project))
    assert code == 0, err
    assert "{" not in out  # no request bodies
    rows = dict(
        (m.group(2), m.group(1)) for m in re.finditer(r"^(skip|resume|create)\s+(\S+)\s", out, re.M)
    )
    assert rows == ACTIONS
    assert re.search(r"^ACTION\s+SHOT\s+MODE\s+MODEL\s+DUR\s+WHY\s+PROMPT$", out, re.M)
    assert re.search(
        r"^create\s+edited\s+text\s+viduq3p-720p\s+8s\s+changed\s+Changed since", out, re.M
    )
    assert "5 to create, 1 to resume, 1 up to date" in out
    assert re.search(r"would bill 5 tasks, 24 s\b", out)


TEN_SHOTS = "version: 1\ndefaults: {model: viduq3p-720p, duration: 5}\nshots:\n" + "".join(
    f"  - id: shot-{i:02d}\n    prompt: {'A very long and winding prompt about the sea. ' * 12}\n"
    for i in range(10)
)


@pytest.mark.parametrize("columns", [80, 120])
def test_plan_of_ten_shots_fits_a_screen(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    columns: int,
) -> None:
    path = tmp_path / "ten.yaml"
    path.write_text(TEN_SHOTS)
    monkeypatch.setenv("COLUMNS", str(columns))
    code, out, err = run(capsys, "plan", str(path))
    assert code == 0, err
    lines = out.splitlines()
    assert len(lines) <= 25, out
    assert max(len(line) for line in lines if not line.startswith(str(tmp_path))) <= columns
    assert sum(1 for line in lines if line.startswith("create ")) == 10
    assert all(line.endswith("…") for line in lines if line.startswith("create "))
    assert "would bill 10 tasks, 50 s" in out
    # --bodies: the whole of every prompt.
    code, out, _ = run(capsys, "plan", str(path), "--bodies")
    assert out.count("A very long and winding prompt about the sea. " * 11) == 10


def test_plan_json(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    doc = plan_json(capsys, str(project))
    assert [s["id"] for s in doc["shots"]] == IDS
    for shot in doc["shots"]:
        sid = shot["id"]
        assert shot["action"] == ACTIONS[sid]
        assert shot["request"] == request_of(sid)
        assert shot["fingerprint"] == canonical_fingerprint(request_of(sid))
        assert shot["model"] == request_of(sid)["model"]
        assert shot["duration"] == request_of(sid)["duration"]
        assert shot["mode"] == "text"
    reasons = {s["id"]: s["reason"] for s in doc["shots"]}
    assert "changed" in reasons["edited"] and "failed" in reasons["broken"]
    assert doc["summary"] == {
        "create": 5,
        "resume": 1,
        "skip": 1,
        "restore": 0,
        "billing": {
            "viduq3p-1080p": {"tasks": 2, "seconds": 6},
            "viduq3p-720p": {"tasks": 3, "seconds": 18},
        },
    }


def test_plan_without_manifest_creates_everything(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "b.yaml"
    path.write_text(BOARD)
    doc = plan_json(capsys, str(path))
    assert {s["id"]: s["action"] for s in doc["shots"]} == dict.fromkeys(IDS, "create")
    assert doc["summary"]["billing"] == {
        "viduq3p-1080p": {"tasks": 2, "seconds": 6},
        "viduq3p-720p": {"tasks": 4, "seconds": 23},
        "viduq3t-540p": {"tasks": 1, "seconds": 4},
    }
    code, out, _ = run(capsys, "plan", str(path))
    assert code == 0
    assert "7 to create, 0 to resume, 0 up to date" in out
    assert "would bill 7 tasks, 33 s" in out


def test_plan_changes_nothing_on_disk(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = project.parent
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    run(capsys, "plan", str(project))
    plan_json(capsys, str(project), "--force")
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before


def test_plan_beach_teaser_billing(capsys: pytest.CaptureFixture[str]) -> None:
    """SPEC §2's storyboard: 3 Pro shots (5 + 5 + 6 s) and 3 Turbo takes of 5 s."""
    doc = plan_json(
        capsys, str(ROOT / "pipelines" / "beach-teaser.yaml"), "--manifest", "/nonexistent/m.json"
    )
    assert doc["summary"]["billing"] == {
        "viduq3p-720p": {"tasks": 3, "seconds": 16},
        "viduq3t-540p": {"tasks": 3, "seconds": 15},
    }
    modes = {s["id"]: s["mode"] for s in doc["shots"]}
    assert modes == {
        "opening": "text",
        "hero-walk": "reference",
        "transition": "first-last",
        "closeup.take1": "image",
        "closeup.take2": "image",
        "closeup.take3": "image",
    }


@pytest.mark.parametrize(
    ("flags", "selected"),
    [
        (["--only", "wave*"], ["wave.take1", "wave.take2"]),
        (["--only", "wave"], ["wave.take1", "wave.take2"]),
        (["--only", "wave.take2"], ["wave.take2"]),
        (["--only", "done", "--only", "f?esh"], ["done", "fresh"]),
        (["--only", "*e*"], ["done", "broken", "edited", "fresh", "wave.take1", "wave.take2"]),
        (["--tag", "act1"], ["done", "broken"]),
        (["--tag", "act1", "--only", "b*"], ["broken"]),
    ],
    ids=["glob", "source-id", "one-take", "two-patterns", "star", "tag", "tag-and-only"],
)
def test_plan_selection(
    flags: list[str], selected: list[str], project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    doc = plan_json(capsys, str(project), *flags)
    assert [s["id"] for s in doc["shots"]] == selected
    assert all(s["action"] == ACTIONS[s["id"]] for s in doc["shots"])


def test_plan_force_recreates_up_to_date_but_never_a_running_task(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    doc = plan_json(capsys, str(project), "--force")
    actions = {s["id"]: s["action"] for s in doc["shots"]}
    assert actions == {**ACTIONS, "done": "create"}
    assert doc["summary"]["billing"]["viduq3p-720p"] == {"tasks": 4, "seconds": 23}


@pytest.mark.parametrize(
    "flags",
    [["--only", "nope*"], ["--only", "done", "--only", "typo"], ["--tag", "act9"]],
    ids=["only", "one-of-two-only", "tag"],
)
def test_plan_selection_matching_nothing_exits_2(
    flags: list[str], project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(capsys, "plan", str(project), *flags)
    assert code == 2
    assert flags[-1] in err
    assert out == ""


def test_plan_with_manifest_elsewhere(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "b.yaml"
    path.write_text(BOARD)
    other = tmp_path / "state" / "m.json"
    other.parent.mkdir()
    other.write_text(json.dumps(manifest_for("b.yaml")))
    assert plan_json(capsys, str(path))["summary"]["create"] == 7  # default path: none
    doc = plan_json(capsys, str(path), "--manifest", str(other))
    assert doc["manifest"] == str(other)
    assert {s["id"]: s["action"] for s in doc["shots"]} == ACTIONS


def test_plan_pending_entry_is_created(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    manifest = manifest_for("board.yaml")
    manifest["shots"]["fresh"] = {
        "status": "pending",
        "fingerprint": canonical_fingerprint(request_of("fresh")),
    }
    (project.parent / "board.manifest.json").write_text(json.dumps(manifest))
    doc = plan_json(capsys, str(project))
    assert {s["id"]: s["action"] for s in doc["shots"]}["fresh"] == "create"


def test_plan_with_corrupt_manifest_exits_3(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (project.parent / "board.manifest.json").write_text("{not json")
    code, _, err = run(capsys, "plan", str(project))
    assert code == 3
    assert "board.manifest.json" in err
    assert "Traceback" not in err


def test_plan_of_an_invalid_storyboard_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "b.yaml"
    path.write_text(BOARD.replace("model: viduq3t-540p", "model: viduq3t-540"))
    code, out, err = run(capsys, "plan", str(path))
    assert code == 2
    line = BOARD.splitlines().index("    model: viduq3t-540p") + 1
    assert f"{path}:{line}:5: shot 'running': model: " in err
    assert out == ""


# --- real processes -------------------------------------------------------------------


def _cli(*argv: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "vidu_pipe", *argv],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=cwd,
    )


def test_subprocess_validate_examples() -> None:
    proc = _cli("validate", *(str(p.relative_to(ROOT)) for p in PIPELINES))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.count(": ok (") == len(PIPELINES)


def test_subprocess_validate_invalid(project: Path) -> None:
    project.write_text(BOARD.replace("seed: 1", "seed: -1"))
    proc = _cli("validate", "board.yaml", cwd=project.parent)
    assert proc.returncode == 2
    line = BOARD.splitlines().index("  seed: 1") + 1
    assert proc.stdout.startswith(f"board.yaml:{line}:3: ")
    assert "seed" in proc.stdout
    assert "Traceback" not in proc.stderr


def test_subprocess_plan_json(project: Path) -> None:
    proc = _cli("plan", "--json", "board.yaml", cwd=project.parent)
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert {s["id"]: s["action"] for s in doc["shots"]} == ACTIONS


def test_subprocess_only_matching_nothing(project: Path) -> None:
    proc = _cli("plan", "board.yaml", "--only", "zzz", cwd=project.parent)
    assert proc.returncode == 2
    assert "zzz" in proc.stderr and "Traceback" not in proc.stderr


# The console script of this Python's environment, found beside the interpreter: PATH
# need not lead there (a venv used without being activated).
SCRIPT = Path(sys.executable).parent / ("vidu-pipe.exe" if sys.platform == "win32" else "vidu-pipe")


@pytest.mark.skipif(not SCRIPT.is_file(), reason="console script not installed")
def test_console_script_runs() -> None:
    proc = subprocess.run(
        [str(SCRIPT), "validate", str(PIPELINES[0])], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr


def test_a_prompt_with_escape_codes_is_shown_escaped_by_plan(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    board = tmp_path / "board.yaml"
    board.write_text(
        "version: 1\ndefaults: {model: viduq3t-540p, duration: 2}\n"
        'shots:\n  - id: a\n    prompt: "x \\e]0;PWNED\\a\\e[2J y"\n',
        encoding="utf-8",
    )
    code, out, err = run(capsys, "plan", str(board))
    assert code == 0, err
    assert "x \\x1b]0;PWNED\\x07\\x1b[2J y" in out
    assert "\x1b" not in out and "\x07" not in out


def test_plan_bodies_show_bidi_and_c1_characters_as_json_escapes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    board = tmp_path / "board.yaml"
    board.write_text(
        "version: 1\ndefaults: {model: viduq3t-540p, duration: 2}\n"
        'shots:\n  - id: a\n    prompt: "gnp\\u202e.exe \\x9b2J"\n',
        encoding="utf-8",
    )
    code, out, err = run(capsys, "plan", str(board), "--bodies")
    assert code == 0, err
    assert '"prompt": "gnp\\u202e.exe \\u009b2J"' in out
    assert "\u202e" not in out and "\x9b" not in out
