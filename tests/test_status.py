"""`vidu-pipe status`: the manifest against the storyboard, shot by shot."""

from __future__ import annotations

import io
import json
import re
import shutil
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from vidu_pipe.api import SIMULATOR_BASE_URL
from vidu_pipe.cli import main
from vidu_pipe.execution.client import DEFAULT_BASE_URL
from vidu_pipe.manifest.store import Download, Manifest, ManifestEntry, load_manifest
from vidu_pipe.storyboard.build import load
from vidu_pipe.views.status import compute, format_age, format_plain, print_status

REPO = Path(__file__).resolve().parent.parent
NOW = datetime(2026, 11, 24, 12, 0, 0, tzinfo=timezone.utc)


def _ago(**delta: float) -> str:
    return (NOW - timedelta(**delta)).strftime("%Y-%m-%dT%H:%M:%SZ")


def _write_manifest(tmp_path: Path, base_url: str = DEFAULT_BASE_URL) -> tuple[Path, Path]:
    """beach-teaser with one shot in every state, and one orphaned entry."""
    board_path = tmp_path / "beach-teaser.yaml"
    shutil.copy(REPO / "pipelines" / "beach-teaser.yaml", board_path)
    board = load(board_path)
    shots = {s.id: s for s in board.shots}

    def done(shot_id: str, **changes: object) -> ManifestEntry:
        shot = shots[shot_id]
        entry = ManifestEntry(
            status="completed",
            fingerprint=shot.fingerprint,
            request=shot.request,
            task_id=f"task_{shot_id}",
            video_url=f"https://cdn.example.com/{shot_id}.mp4",
            attempts=1,
            submitted_at=_ago(hours=2, minutes=5),
            finished_at=_ago(hours=2),
        )
        return entry.replace(**changes)

    entries = {
        "opening": done("opening"),
        "hero-walk": done("hero-walk", fingerprint="sha256:" + "0" * 64),
        "transition": done(
            "transition", status="failed", video_url=None, error="moderation: refused"
        ),
        "closeup.take1": done(
            "closeup.take1", status="submitted", video_url=None, finished_at=None, progress=30
        ),
        "closeup.take2": done(
            "closeup.take2", status="pending", task_id=None, video_url=None, finished_at=None
        ),
        # closeup.take3: no entry at all
        "old-shot": done("opening", task_id="task_old"),
    }
    manifest_path = tmp_path / "beach-teaser.manifest.json"
    manifest = Manifest("beach-teaser.yaml", base_url, _ago(minutes=1), entries)
    manifest_path.write_text(manifest.dumps(board.ids), encoding="utf-8")
    return board_path, manifest_path


EXPECTED = [
    ("opening", "completed", "task_opening"),
    ("hero-walk", "stale", "task_hero-walk"),
    ("transition", "failed", "task_transition"),
    ("closeup.take1", "running", "task_closeup.take1"),
    ("closeup.take2", "pending", None),
    ("closeup.take3", "pending", None),
    ("old-shot", "orphaned", "task_old"),
]


def test_every_state(tmp_path: Path) -> None:
    board_path, manifest_path = _write_manifest(tmp_path)
    report = compute(load(board_path), load_manifest(manifest_path), manifest_path, now=NOW)
    assert [(r.id, r.state, r.task_id) for r in report.rows] == EXPECTED
    rows = {r.id: r for r in report.rows}
    assert rows["transition"].error == "moderation: refused"
    assert rows["opening"].age == 7200
    assert rows["closeup.take1"].age == 7500  # since submitted
    assert rows["closeup.take1"].note == "30%"
    assert rows["hero-walk"].changed and not rows["opening"].changed
    assert not report.simulated
    assert report.counts() == {
        "completed": 1,
        "failed": 1,
        "unknown": 0,
        "running": 1,
        "pending": 2,
        "stale": 1,
        "orphaned": 1,
    }


def test_expired_url_noted_unless_downloaded(tmp_path: Path) -> None:
    board_path, manifest_path = _write_manifest(tmp_path)
    board = load(board_path)
    manifest = load_manifest(manifest_path)
    assert manifest is not None
    later = NOW + timedelta(hours=23)
    row = compute(board, manifest, manifest_path, now=later).rows[0]
    assert (row.url_expired, row.note) == (True, "URL expired (no download)")
    (tmp_path / "videos").mkdir()
    (tmp_path / "videos" / "opening.mp4").write_bytes(b"x")
    entries = dict(manifest.entries)
    entries["opening"] = entries["opening"].replace(
        download=Download(path="videos/opening.mp4", size=1, sha256="x")
    )
    kept = Manifest(manifest.storyboard, manifest.base_url, manifest.updated_at, entries)
    row = compute(board, kept, manifest_path, now=later).rows[0]
    assert (row.url_expired, row.note) == (True, None)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(None, ""), (2, "just now"), (45, "45s"), (750, "12m"), (3 * 3600 + 5, "3h"), (200000, "2d")],
)
def test_format_age(seconds: float | None, text: str) -> None:
    assert format_age(seconds) == text


def test_cli_plain_table(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    board_path, manifest_path = _write_manifest(tmp_path)
    assert main(["status", str(board_path)]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0].startswith(f"{board_path}: 6 shots; manifest {manifest_path}")
    assert "simulated" not in lines[0]
    header = lines[2]
    assert header.split() == ["SHOT", "STATE", "TASK", "AGE", "ERROR", "/", "NOTE"]
    state_col = header.index("STATE")
    body = lines[3:10]
    assert [line.split()[0] for line in body] == [row[0] for row in EXPECTED]
    assert [line[state_col:].split()[0] for line in body] == [row[1] for row in EXPECTED]
    assert "moderation: refused" in body[2]
    assert "not in the storyboard" in body[6]
    assert lines[-1] == "1 completed, 1 failed, 1 running, 2 pending, 1 stale, 1 orphaned"
    assert "\x1b" not in out


def test_cli_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    board_path, manifest_path = _write_manifest(tmp_path)
    assert main(["status", str(board_path), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["manifest"] == str(manifest_path)
    assert doc["manifest_found"] is True
    assert doc["simulated"] is False
    assert doc["counts"]["pending"] == 2
    assert [(s["id"], s["state"], s["task_id"]) for s in doc["shots"]] == EXPECTED
    assert set(doc["shots"][0]) == {
        "id",
        "state",
        "status",
        "task_id",
        "age_seconds",
        "error",
        "note",
        "model",
        "duration",
        "video_url",
        "url_expired",
        "changed",
        "download",
        "progress",
        "submitted_at",
        "finished_at",
    }
    orphan = doc["shots"][-1]
    assert (orphan["model"], orphan["status"]) == (None, "completed")


def test_simulated_manifest_is_labelled(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    board_path, manifest_path = _write_manifest(tmp_path, base_url=SIMULATOR_BASE_URL)
    other = tmp_path / "elsewhere.json"
    manifest_path.rename(other)
    assert main(["status", str(board_path), "--manifest", str(other)]) == 0
    first = capsys.readouterr().out.splitlines()[0]
    assert first.endswith(f"manifest {other} (simulated: written by the built-in simulator)")
    assert main(["status", str(board_path), "--manifest", str(other), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["simulated"] is True


def test_no_manifest_all_pending(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    board_path = tmp_path / "b.yaml"
    shutil.copy(REPO / "pipelines" / "beach-teaser.yaml", board_path)
    assert main(["status", str(board_path), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["manifest_found"] is False
    assert {s["state"] for s in doc["shots"]} == {"pending"}
    assert main(["status", str(board_path)]) == 0
    assert "(none yet: every shot is pending)" in capsys.readouterr().out


def test_invalid_storyboard_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("version: 1\nshots:\n  - id: a\n    prompt: hi\n    duration: 99\n", "utf-8")
    assert main(["status", str(bad)]) == 2
    assert re.search(rf"{re.escape(str(bad))}:5:\d+: shot 'a':", capsys.readouterr().err)


def test_terminal_table_and_no_color(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    board_path, manifest_path = _write_manifest(tmp_path)
    report = compute(load(board_path), load_manifest(manifest_path), manifest_path, now=NOW)
    monkeypatch.delenv("NO_COLOR", raising=False)
    out = io.StringIO()
    print_status(report, out, terminal=True)
    text = out.getvalue()
    assert re.search(r"\x1b\[[0-9;]*32m", text), "completed is green on a terminal"
    stripped = re.sub(r"\x1b\[[0-9;]*m", "", text)
    for shot_id, state, _ in EXPECTED:
        assert re.search(rf"{re.escape(shot_id)}\s+{state}", stripped)
    monkeypatch.setenv("NO_COLOR", "1")
    out = io.StringIO()
    print_status(report, out, terminal=True)
    colours = [
        p
        for params in re.findall(r"\x1b\[([0-9;]*)m", out.getvalue())
        for p in params.split(";")
        if p and (30 <= int(p) <= 48 or 90 <= int(p) <= 107)
    ]
    assert colours == []
    # The plain table holds the same rows.
    assert format_plain(report).count("\n") == len(EXPECTED) + 5


EVIL = "\x1b]0;PWNED\x07\x1b[2J"


def test_a_manifest_error_with_escape_codes_is_shown_escaped(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    board_path, manifest_path = _write_manifest(tmp_path)
    text = manifest_path.read_text(encoding="utf-8")
    evil = json.dumps(f"moderation: {EVIL}refused")[1:-1]
    manifest_path.write_text(text.replace("moderation: refused", evil), encoding="utf-8")
    assert main(["status", str(board_path)]) == 0
    out = capsys.readouterr().out
    assert "moderation: \\x1b]0;PWNED\\x07\\x1b[2Jrefused" in out
    assert "\x1b" not in out and "\x07" not in out
    # The rich table (a terminal) too: its own colour codes, none of the manifest's.
    report = compute(load(board_path), load_manifest(manifest_path), manifest_path, now=NOW)
    screen = io.StringIO()
    print_status(report, screen, terminal=True)
    assert "PWNED" in screen.getvalue() and EVIL not in screen.getvalue()
    assert "\x1b]0;" not in screen.getvalue() and "\x07" not in screen.getvalue()
