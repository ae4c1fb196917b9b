"""The results cache: a request completed once is not paid for again (SPEC §4, §5).

Through the CLI: edit a prompt, run, revert it, run → no create on the revert, the
first video back; the same across two git branches; plan says "restore"; URLs past
their 24-hour life and simulated results are not restored where they cannot play;
prune forgets what no shot needs.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import yaml

import vidu_pipe
from vidu_pipe.cli import main
from vidu_pipe.manifest.history import Cache
from vidu_pipe.manifest.lock import RunLock, canonical_manifest_path
from vidu_pipe.manifest.store import load_manifest
from vidu_pipe.simulator import Simulator, SimulatorConfig, running_server

pytestmark = [
    pytest.mark.timeout(120),
    pytest.mark.usefixtures("quick_simulate"),  # simulated runs at 1/500 (conftest)
]

KEY = "sk-cache-test"
RELAY_SEED = 11  # for the relay fixture (conftest.py)


def write_board(folder: Path, prompts: dict[str, str], name: str = "film") -> Path:
    doc = {
        "version": 1,
        "defaults": {"model": "viduq3t-540p", "duration": 2},
        "shots": [{"id": sid, "prompt": prompt} for sid, prompt in prompts.items()],
    }
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    return path


def run_json(capsys: pytest.CaptureFixture[str], *args: str | Path) -> tuple[int, list[Any]]:
    code = main(["run", *map(str, args), "--json", "--rate", "0", "--poll-interval", "0.05"])
    out = capsys.readouterr().out
    return code, [json.loads(line) for line in out.splitlines()]


def kinds(events: list[Any], kind: str) -> list[str]:
    return [e["shot"] for e in events if e["event"] == kind]


def test_revert_a_prompt_restores_the_first_video_without_a_create(
    relay: tuple[Simulator, str],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sim, url = relay
    board = write_board(tmp_path, {"a": "A lighthouse at dusk", "b": "Waves"})
    code, events = run_json(capsys, board, "--base-url", url)
    assert code == 0 and sorted(kinds(events, "created")) == ["a", "b"]
    first = load_manifest(tmp_path / "film.manifest.json")
    assert first is not None
    original = first.entries["a"]

    write_board(tmp_path, {"a": "A lighthouse at dawn", "b": "Waves"})
    code, events = run_json(capsys, board, "--base-url", url)
    assert code == 0 and kinds(events, "created") == ["a"]
    assert sim.stats().creates == 3

    write_board(tmp_path, {"a": "A lighthouse at dusk", "b": "Waves"})  # reverted
    # A terminal wide enough for plan's table to show the whole reason (narrower, it
    # is cut to leave the prompt room).
    monkeypatch.setenv("COLUMNS", "200")
    assert main(["plan", str(board)]) == 0
    plan = capsys.readouterr().out
    assert re.search(r"^restore\s+a\s.*completed before \(its URL, still fresh", plan, re.M)
    assert "1 to restore" in plan
    code, events = run_json(capsys, board, "--base-url", url)
    assert code == 0
    assert kinds(events, "created") == [] and sim.stats().creates == 3  # no create
    assert kinds(events, "restored") == ["a"]
    restored = next(e for e in events if e["event"] == "restored")
    assert restored["source"] == "url" and restored["task_id"] == original.task_id
    assert events[-1]["restored"] == 1 and events[-1]["exit_code"] == 0
    back = load_manifest(tmp_path / "film.manifest.json")
    assert back is not None
    entry = back.entries["a"]
    assert (entry.status, entry.task_id, entry.video_url, entry.fingerprint) == (
        "completed",
        original.task_id,
        original.video_url,
        original.fingerprint,
    )
    # The history lives beside the storyboard, not in the committed manifest.
    assert "sha256:" not in json.dumps(back.to_json()["shots"]["b"]).replace(
        back.entries["b"].fingerprint, ""
    )
    assert len(list((tmp_path / ".vidu-pipe" / "results").glob("*.json"))) == 3


def test_an_expired_url_is_not_restored_and_force_creates(
    relay: tuple[Simulator, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sim, url = relay
    board = write_board(tmp_path, {"a": "one"})
    assert run_json(capsys, board, "--base-url", url)[0] == 0
    write_board(tmp_path, {"a": "two"})
    assert run_json(capsys, board, "--base-url", url)[0] == 0
    write_board(tmp_path, {"a": "one"})
    # Age the first result past the URL's 24-hour life: its video can no longer be had.
    records = list((tmp_path / ".vidu-pipe" / "results").glob("*.json"))
    old = (datetime.now(timezone.utc) - timedelta(hours=25)).strftime("%Y-%m-%dT%H:%M:%SZ")
    for record in records:
        data = json.loads(record.read_text())
        data["finished_at"] = old
        record.write_text(json.dumps(data))
    assert main(["plan", str(board)]) == 0
    assert re.search(r"^create\s+a\s", capsys.readouterr().out, re.M)
    code, events = run_json(capsys, board, "--base-url", url)
    assert code == 0 and kinds(events, "created") == ["a"] and sim.stats().creates == 3


def test_force_creates_instead_of_restoring(
    relay: tuple[Simulator, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sim, url = relay
    board = write_board(tmp_path, {"a": "one"})
    run_json(capsys, board, "--base-url", url)
    write_board(tmp_path, {"a": "two"})
    run_json(capsys, board, "--base-url", url)
    write_board(tmp_path, {"a": "one"})
    code, events = run_json(capsys, board, "--base-url", url, "--force")
    assert code == 0 and kinds(events, "created") == ["a"] and kinds(events, "restored") == []
    assert sim.stats().creates == 3


def test_simulated_revert_restores_the_placeholder_clip(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    board = write_board(tmp_path, {"a": "one", "b": "two"})
    code, events = run_json(capsys, board, "--simulate")
    assert code == 0
    cache = Cache.beside(board)
    first = cache.video_for(load_manifest(tmp_path / "film.manifest.json").entries["a"].fingerprint)  # type: ignore[union-attr]
    assert first is not None and first.stat().st_size > 1000
    write_board(tmp_path, {"a": "uno", "b": "two"})
    assert run_json(capsys, board, "--simulate")[0] == 0
    write_board(tmp_path, {"a": "one", "b": "two"})
    code, events = run_json(capsys, board, "--simulate")
    assert code == 0 and kinds(events, "created") == [] and kinds(events, "restored") == ["a"]
    assert next(e for e in events if e["event"] == "restored")["source"] == "cache"
    # A real run never takes a simulated result: its URL never held a video.
    assert main(["plan", str(board), "--manifest", str(tmp_path / "real.json")]) == 0
    assert not re.search(r"^restore ", capsys.readouterr().out, re.M)


def _git(repo: Path, *args: str) -> None:
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@example.com",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@example.com",
    }
    subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True, env=env)


@pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")
def test_switching_git_branches_back_restores_without_a_create(
    relay: tuple[Simulator, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sim, url = relay
    repo = tmp_path / "repo"
    repo.mkdir()
    _git(repo, "init", "-q", "-b", "main")
    # As in this repository: the cache is never committed; here the manifest is not either,
    # so the same manifest sees both branches.
    (repo / ".gitignore").write_text(".vidu-pipe/\n*.manifest.json\n")
    board = write_board(repo, {"a": "a harbour at night", "b": "gulls"})
    _git(repo, "add", "-A")
    _git(repo, "commit", "-qm", "storyboard")
    _git(repo, "checkout", "-qb", "brighter")
    write_board(repo, {"a": "a harbour at noon", "b": "gulls"})
    _git(repo, "commit", "-qam", "brighter")

    _git(repo, "checkout", "-q", "main")
    assert run_json(capsys, board, "--base-url", url)[0] == 0
    main_video = load_manifest(repo / "film.manifest.json").entries["a"].video_url  # type: ignore[union-attr]
    _git(repo, "checkout", "-q", "brighter")
    code, events = run_json(capsys, board, "--base-url", url)
    assert code == 0 and kinds(events, "created") == ["a"]
    _git(repo, "checkout", "-q", "main")
    code, events = run_json(capsys, board, "--base-url", url)
    assert code == 0 and kinds(events, "created") == [] and kinds(events, "restored") == ["a"]
    assert load_manifest(repo / "film.manifest.json").entries["a"].video_url == main_video  # type: ignore[union-attr]
    _git(repo, "checkout", "-q", "brighter")
    code, events = run_json(capsys, board, "--base-url", url)
    assert kinds(events, "created") == [] and kinds(events, "restored") == ["a"]
    assert sim.stats().creates == 3


def test_prune_drops_removed_shots_and_unneeded_results(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    board = write_board(tmp_path, {"a": "one", "b": "two", "gone": "three"})
    assert run_json(capsys, board, "--simulate")[0] == 0
    write_board(tmp_path, {"a": "uno", "b": "two"})  # a changed, gone removed
    assert run_json(capsys, board, "--simulate")[0] == 0
    manifest = tmp_path / "film.manifest.json"
    before = manifest.read_text()
    videos = tmp_path / ".vidu-pipe" / "videos"
    assert len(list(videos.glob("*.mp4"))) == 4

    assert main(["prune", str(board), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "manifest entry gone" in out
    assert "would drop 1 manifest entry, 2 cached results, 2 video files" in out
    assert manifest.read_text() == before and len(list(videos.glob("*.mp4"))) == 4

    assert main(["prune", str(board)]) == 0
    assert "dropped 1 manifest entry, 2 cached results, 2 video files" in capsys.readouterr().out
    pruned = load_manifest(manifest)
    assert pruned is not None and list(pruned.entries) == ["a", "b"]
    assert len(list(videos.glob("*.mp4"))) == 2
    # Pruned: going back to "one" pays again.
    write_board(tmp_path, {"a": "one", "b": "two"})
    code, events = run_json(capsys, board, "--simulate")
    assert code == 0 and kinds(events, "created") == ["a"]


def test_prune_keeps_results_another_storyboard_of_the_folder_needs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    one = write_board(tmp_path, {"a": "shared"}, name="one")
    two = write_board(tmp_path, {"b": "shared"}, name="two")
    assert run_json(capsys, one, "--simulate")[0] == 0
    code, events = run_json(capsys, two, "--simulate")
    assert code == 0 and kinds(events, "restored") == ["b"]  # same request: no create
    write_board(tmp_path, {"a": "other"}, name="one")
    assert main(["prune", str(one)]) == 0
    assert "0 cached results, 0 video files" in capsys.readouterr().out
    assert main(["plan", str(two), "--simulate"]) == 0
    assert re.search(r"^skip\s+b\s", capsys.readouterr().out, re.M)


def test_a_cache_folder_that_is_a_symlink_is_never_written_through(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    folder = tmp_path / "board"
    folder.mkdir()
    (folder / ".vidu-pipe").symlink_to(elsewhere, target_is_directory=True)
    board = write_board(folder, {"a": "one"})
    code = main(["run", str(board), "--simulate", "--quiet"])
    out = capsys.readouterr()
    assert code == 0  # the cache is a convenience: the run itself succeeds
    assert "the results cache was not written" in out.out and "symlink" in out.out
    assert list(elsewhere.iterdir()) == []


def test_a_simulated_result_never_replaces_or_lends_its_clip_to_a_real_one(tmp_path: Path) -> None:
    from vidu_pipe.constants import SIMULATOR_BASE_URL
    from vidu_pipe.manifest.history import Result

    cache = Cache(tmp_path / ".vidu-pipe")
    fp = "sha256:" + "ab" * 32
    clip = tmp_path / "clip.mp4"
    clip.write_bytes(b"placeholder")
    kept = cache.add_video(clip)
    cache.remember(Result(fp, SIMULATOR_BASE_URL, task_id="sim", video=kept.video, size=kept.size))
    # A real run completes the same request later: its result must not point at the clip.
    real = cache.remember(Result(fp, "https://relay.example", task_id="real", video_url="u"))
    assert (real.task_id, real.video) == ("real", None)
    assert cache.video_for(fp) is None
    # ... and a later simulated run of it does not overwrite the real result.
    cache.remember(Result(fp, SIMULATOR_BASE_URL, task_id="sim2", video=kept.video))
    found = cache.get(fp)
    assert found is not None and found.task_id == "real" and not found.simulated


def test_the_cache_writes_nothing_through_links_planted_at_guessable_temporary_names(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    board = write_board(tmp_path, {"a": "one"})
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me", encoding="utf-8")
    digest = vidu_pipe.load(board).shot("a").fingerprint.partition(":")[2]
    results = tmp_path / ".vidu-pipe" / "results"
    videos = tmp_path / ".vidu-pipe" / "videos"
    results.mkdir(parents=True)
    videos.mkdir()
    # The old names: .HEX.json.PID.tmp (a record) and .ID.PID.tmp.mp4 (a placeholder clip).
    (results / f".{digest}.json.{os.getpid()}.tmp").symlink_to(victim)
    (videos / f".a.{os.getpid()}.tmp.mp4").symlink_to(victim)
    assert run_json(capsys, board, "--simulate")[0] == 0
    assert victim.read_text(encoding="utf-8") == "keep me"
    record = results / f"{digest}.json"
    assert not record.is_symlink() and json.loads(record.read_text())["shot"] == "a"
    assert Cache.beside(board).video_for(f"sha256:{digest}") is not None


def test_a_link_planted_at_a_cache_record_is_refused_not_followed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    board = write_board(tmp_path, {"a": "one"})
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me", encoding="utf-8")
    digest = vidu_pipe.load(board).shot("a").fingerprint.partition(":")[2]
    results = tmp_path / ".vidu-pipe" / "results"
    results.mkdir(parents=True)
    (results / f"{digest}.json").symlink_to(victim)
    run_json(capsys, board, "--simulate")
    assert (results / f"{digest}.json").is_symlink()
    assert victim.read_text(encoding="utf-8") == "keep me"


def test_prune_refuses_while_a_run_holds_the_manifest(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    board = write_board(tmp_path, {"a": "one", "b": "two"})
    assert run_json(capsys, board, "--simulate")[0] == 0
    write_board(tmp_path, {"a": "uno", "b": "two"})  # a's first result is now unneeded
    videos = tmp_path / ".vidu-pipe" / "videos"
    before = sorted(videos.iterdir())
    held = RunLock.acquire(canonical_manifest_path(tmp_path / "film.manifest.json"))
    try:
        assert main(["prune", str(board)]) == 3
        assert "in use by another run" in capsys.readouterr().err
        assert sorted(videos.iterdir()) == before
    finally:
        held.release()
    assert main(["prune", str(board)]) == 0
    assert "1 cached result, 1 video file" in capsys.readouterr().out


# --- R1 review, items 1 and 5 --------------------------------------------------------------


def test_download_of_up_to_date_shots_takes_the_cached_clips_not_their_dead_urls(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    board = write_board(tmp_path, {"a": "one", "b": "two"})
    assert main(["run", str(board), "--simulate", "--quiet"]) == 0
    capsys.readouterr()
    cache = Cache.beside(board)
    book = load_manifest(tmp_path / "film.manifest.json")
    assert book is not None
    clips = {s: cache.video_for(e.fingerprint) for s, e in book.entries.items()}
    videos = tmp_path / "vids"
    # The simulator of the first run is gone: its URLs hold nothing; the cache has the clips.
    code = main(["run", str(board), "--simulate", "--download", str(videos)])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "FAILED" not in out and "24 hours" not in out
    assert "0 completed, 0 failed, 0 not started, 2 up to date" in out
    for shot_id, clip in clips.items():
        assert clip is not None
        assert (videos / f"{shot_id}.mp4").read_bytes() == clip.read_bytes()


def test_a_dead_url_of_an_up_to_date_shot_fails_its_download_only_and_blames_no_expiry(
    relay: tuple[Simulator, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _, url = relay
    board = write_board(tmp_path, {"a": "one", "b": "two"})
    assert main(["run", str(board), "--base-url", url, "--quiet", "--poll-interval", "0.05"]) == 0
    capsys.readouterr()
    # Another relay at another address serves nothing of those tasks (a restarted simulator):
    # the URLs are minutes old, so expiry is not the reason.
    with running_server(SimulatorConfig(key=KEY)) as other:
        manifest = tmp_path / "film.manifest.json"
        manifest.write_text(manifest.read_text().replace(url, other))
        code = main(["run", str(board), "--base-url", other, "--download", str(tmp_path / "v")])
    out = capsys.readouterr().out
    assert code == 1, out
    assert out.splitlines()[0].endswith("0 to resume, 2 up to date")
    assert "expire" not in out and "24 hours" not in out
    assert re.search(r"^a: download FAILED: .*404", out, re.M), out
    summary = out.splitlines()[-1]
    assert "0 failed" in summary and "2 up to date" in summary
    assert "2 downloads failed" in summary, summary


def test_an_old_url_is_blamed_on_expiry(
    relay: tuple[Simulator, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _, url = relay
    board = write_board(tmp_path, {"a": "one"})
    assert main(["run", str(board), "--base-url", url, "--quiet", "--poll-interval", "0.05"]) == 0
    capsys.readouterr()
    manifest = tmp_path / "film.manifest.json"
    data = json.loads(manifest.read_text())
    old = (datetime.now(timezone.utc) - timedelta(hours=25)).strftime("%Y-%m-%dT%H:%M:%SZ")
    data["shots"]["a"]["finished_at"] = old
    data["shots"]["a"]["video_url"] = url + "/files/task_gone.mp4"
    manifest.write_text(json.dumps(data))
    code = main(["run", str(board), "--base-url", url, "--download", str(tmp_path / "v")])
    out = capsys.readouterr().out
    assert code == 1
    assert "expire after about 24 hours" in out and "--force --only a" in out


def test_the_run_header_counts_restores(
    relay: tuple[Simulator, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _, url = relay
    board = write_board(tmp_path, {"a": "one", "b": "two"})
    flags = ["--base-url", url, "--poll-interval", "0.05", "--rate", "0"]
    assert main(["run", str(board), *flags, "--quiet"]) == 0
    write_board(tmp_path, {"a": "uno", "b": "two"})
    assert main(["run", str(board), *flags, "--quiet"]) == 0
    write_board(tmp_path, {"a": "one", "b": "two"})
    capsys.readouterr()
    assert main(["run", str(board), *flags]) == 0
    header = capsys.readouterr().out.splitlines()[0]
    assert header.endswith("0 to create, 0 to resume, 1 to restore, 1 up to date"), header
