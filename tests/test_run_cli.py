"""``vidu-pipe run`` as a user runs it: ``python -m vidu_pipe run`` in a subprocess, the key
in ``VIDU_API_KEY``, against the simulator on a loopback socket (``--base-url``).

Over a socket the run's clock is not compressed, so the simulated tasks are made short
(0.3 s) and the polling quick (``--poll-interval 0.05``); ``--rate 0`` unless the rate is
what is tested.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from jsonschema import Draft202012Validator

from vidu_pipe import events as events_module
from vidu_pipe.api import load
from vidu_pipe.manifest.store import journal_path, load_manifest, lock_path
from vidu_pipe.simulator import Simulator, SimulatorConfig, running_server
from vidu_pipe.storyboard.schemas import MODELS, load_schema

REPO = Path(__file__).resolve().parent.parent
KEY = "sk-cli-test-key"
CANARY = "sk-CANARY-7f3e9a"

pytestmark = pytest.mark.timeout(120)


def relay_config(**overrides: Any) -> SimulatorConfig:
    settings: dict[str, Any] = {
        "key": KEY,
        "durations": {m: (0.3, 0.3) for m in MODELS},
        "queue_seconds": (0.0, 0.0),
        "max_running": 100,
        "seed": 5,
    }
    settings.update(overrides)
    return SimulatorConfig(**settings)


@pytest.fixture
def relay() -> Iterator[tuple[Simulator, str]]:
    sim = Simulator(relay_config())
    with running_server(sim) as url:
        yield sim, url


def cli(
    *args: str | Path, key: str | None = KEY, cwd: Path | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VIDU_")}
    if key is not None:
        env["VIDU_API_KEY"] = key
    return subprocess.run(
        [sys.executable, "-m", "vidu_pipe", *map(str, args)],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        timeout=timeout,
    )


def run(path: Path, url: str, *extra: str | Path, key: str | None = KEY) -> Any:
    return cli(
        "run", path, "--base-url", url, "--rate", "0", "--poll-interval", "0.05", *extra, key=key
    )


def write_board(folder: Path, shot_list: list[dict[str, Any]], name: str = "board") -> Path:
    doc = {"version": 1, "defaults": {"model": "viduq3t-540p", "duration": 5}, "shots": shot_list}
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    return path


def shots(n: int, prefix: str = "s") -> list[dict[str, Any]]:
    return [{"id": f"{prefix}{i}", "prompt": f"{prefix} shot {i}"} for i in range(n)]


def canonical(body: Any) -> str:
    return json.dumps(body, sort_keys=True, separators=(",", ":"))


def totals(sim: Simulator) -> tuple[int, int]:
    st = sim.stats()
    return st.creates, sum(st.queries.values())


# --- all four modes, exactly the rendered bodies; then a rerun sends nothing --------------


def test_all_four_modes_end_to_end_and_a_rerun_sends_nothing(
    relay: tuple[Simulator, str], tmp_path: Path
) -> None:
    sim, url = relay
    shutil.copytree(REPO / "pipelines", tmp_path / "pipelines")
    path = tmp_path / "pipelines" / "beach-teaser.yaml"
    board = load(path)
    assert {s.mode for s in board.shots} == {"text", "image", "first-last", "reference"}

    done = run(path, url)
    assert done.returncode == 0, done.stderr
    assert "6 completed, 0 failed" in done.stdout
    bodies = [dict(b) for b in sim.stats().bodies]
    assert sorted(map(canonical, bodies)) == sorted(canonical(s.request) for s in board.shots)
    schema = Draft202012Validator(load_schema("request"))
    for body in bodies:
        assert not list(schema.iter_errors(body))
        assert body["extra_body"]["audio"] is False and body["extra_body"]["bgm"] is False
        assert type(body["duration"]) is int
    manifest = load_manifest(path.with_suffix(".manifest.json"))
    assert manifest is not None and manifest.base_url == url
    assert {e.status for e in manifest.entries.values()} == {"completed"}

    before = totals(sim)
    again = run(path, url)
    assert again.returncode == 0, again.stderr
    assert totals(sim) == before, "a rerun sends no create and no query"
    assert "6 up to date (0 tasks created)" in again.stdout


# --- --json ------------------------------------------------------------------------------


def documented_events() -> dict[str, list[str]]:
    """Event name -> its fields besides event, shot and time (the README's table is
    generated from the same classes)."""
    return {
        kind: [f.name for f in dataclasses.fields(cls) if f.name not in ("shot", "time")]
        for kind, cls in events_module.KINDS.items()
    }


def test_json_prints_one_documented_event_per_line(
    relay: tuple[Simulator, str], tmp_path: Path
) -> None:
    sim, url = relay
    shot_list = shots(5)
    shot_list[1]["prompt"] += " [[fail]]"
    path = write_board(tmp_path, shot_list)
    sim.inject("create", status=429, retry_after=0.2)
    sim.inject("query", status=503)
    done = run(
        path,
        url,
        "--json",
        "--concurrency",
        "2",
        "--max-creates",
        "4",
        "--download",
        tmp_path / "videos",
    )
    assert done.returncode == 1, done.stderr
    table = documented_events()
    assert len(table) >= 13
    lines = done.stdout.splitlines()
    events = [json.loads(line) for line in lines]
    assert all(isinstance(e, dict) for e in events)
    for event in events:
        assert event["event"] in table, event
        assert {"event", "shot", "time"} <= set(event)
        missing = set(table[event["event"]]) - set(event)
        assert not missing, (event, missing)
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", event["time"])
    kinds = Counter(e["event"] for e in events)
    assert events[0]["event"] == "run-started" and events[-1]["event"] == "run-finished"
    assert kinds["run-started"] == kinds["run-finished"] == 1
    for kind in ("created", "progress", "completed", "failed", "not-started", "downloaded"):
        assert kinds[kind] >= 1, kind
    assert kinds["rate-limited"] == 1 and kinds["retried"] >= 1
    finished = events[-1]
    assert finished["exit_code"] == 1
    assert (finished["completed"], finished["failed"], finished["not_started"]) == (3, 1, 1)
    assert "3 completed, 1 failed, 1 not started" in done.stderr


# --- make-style flags ----------------------------------------------------------------------


def created_prompts(sim: Simulator, since: int) -> list[str]:
    return sorted(str(b["prompt"]) for b in sim.stats().bodies[since:])


def test_only_tag_force_and_max_creates_through_the_cli(
    relay: tuple[Simulator, str], tmp_path: Path
) -> None:
    sim, url = relay
    shot_list = [*shots(3, "intro"), *shots(3, "outro")]
    shot_list[4]["tags"] = ["night"]
    path = write_board(tmp_path, shot_list)

    done = run(path, url, "--only", "intro*", "--only", "outro0")
    assert done.returncode == 0, done.stderr
    assert created_prompts(sim, 0) == [
        "intro shot 0",
        "intro shot 1",
        "intro shot 2",
        "outro shot 0",
    ]

    done = run(path, url, "--tag", "night")
    assert done.returncode == 0, done.stderr
    assert created_prompts(sim, 4) == ["outro shot 1"]

    done = run(path, url, "--only", "intro1", "--force")
    assert done.returncode == 0, done.stderr
    assert created_prompts(sim, 5) == ["intro shot 1"]

    done = run(path, url, "--force", "--max-creates", "2", "--concurrency", "1")
    assert done.returncode == 1, "shots left not started"
    assert sim.stats().creates == 8
    assert "4 not started" in done.stdout

    shot_list[5]["prompt"] = "outro shot 2, edited"
    write_board(tmp_path, shot_list)
    done = run(path, url)
    assert done.returncode == 0, done.stderr
    # Only outro2, never made and now edited: the shots --max-creates left alone were
    # up to date (--force applied to that run only).
    assert created_prompts(sim, 8) == ["outro shot 2, edited"]

    done = run(path, url, "--only", "nothing-like-this")
    assert done.returncode == 2
    assert "matches no shot" in done.stderr


# --- exit codes and what they say ----------------------------------------------------------


@pytest.mark.parametrize(
    ("config", "key", "code", "says", "creates"),
    [
        ({}, "not-the-key", 3, "refused the API key", 0),
        ({}, None, 3, "VIDU_API_KEY is not set", 0),
        ({"quota": 2}, KEY, 3, "refused to create more tasks", 2),
        # Every prompt carries the marker: a failure that is not transient (one the relay
        # calls transient would be created again once, issue 12).
        ({"fail_marker": "shot"}, KEY, 1, "FAILED", 3),
        ({}, KEY, 0, "3 completed", 3),
    ],
    ids=["401", "no-key", "403-quota", "task-failed", "ok"],
)
def test_exit_codes(
    config: dict[str, Any],
    key: str | None,
    code: int,
    says: str,
    creates: int,
    tmp_path: Path,
) -> None:
    sim = Simulator(relay_config(**config))
    path = write_board(tmp_path, shots(3))
    with running_server(sim) as url:
        done = run(path, url, "--concurrency", "1", key=key)
    assert done.returncode == code, (done.stdout, done.stderr)
    assert says in done.stdout + done.stderr
    assert sim.stats().creates == creates
    assert "Traceback" not in done.stderr


def test_a_400_fails_only_its_shot(relay: tuple[Simulator, str], tmp_path: Path) -> None:
    sim, url = relay
    sim.inject("create", status=400, code="invalid_request")
    path = write_board(tmp_path, shots(3))
    done = run(path, url, "--concurrency", "1")
    assert done.returncode == 1
    assert "2 completed, 1 failed" in done.stdout
    assert sim.stats().creates == 2


def test_an_invalid_storyboard_exits_2_and_sends_nothing(
    relay: tuple[Simulator, str], tmp_path: Path
) -> None:
    sim, url = relay
    path = write_board(tmp_path, [{"id": "x", "prompt": "a", "duration": 99}])
    done = run(path, url)
    assert done.returncode == 2
    assert "board.yaml:" in done.stderr
    assert totals(sim) == (0, 0)
    assert not path.with_suffix(".manifest.json").exists()


@pytest.mark.parametrize(
    "content",
    [
        b"{ this is not json",
        b'{"manifest_version": 99, "storyboard": "board.yaml", "base_url": "x", "shots": {}}',
        b'{"manifest_version": 1, "storyboard": "board.yaml", "base_url": "x", "shots": []}',
        b'{"manifest_version": 1, "storyboard": "board.yaml", "base_url": "x",'
        b' "shots": {"s0": {"status": "running", "fingerprint": "x"}}}',
        b"\xff\xfe\x00garbage",
    ],
    ids=["not-json", "version", "shots-list", "bad-status", "not-utf8"],
)
def test_a_corrupt_manifest_exits_3_and_is_left_unchanged(content: bytes, tmp_path: Path) -> None:
    path = write_board(tmp_path, shots(2))
    manifest = path.with_suffix(".manifest.json")
    manifest.write_bytes(content)
    before = sorted(p.name for p in tmp_path.iterdir())
    done = cli("run", path, "--simulate", key=None)
    assert done.returncode == 3, (done.stdout, done.stderr)
    assert str(manifest.name) in done.stderr
    assert "Traceback" not in done.stderr
    assert manifest.read_bytes() == content
    assert sorted(p.name for p in tmp_path.iterdir()) == before


# --- downloads --------------------------------------------------------------------------


def test_download_saves_mp4s_recorded_in_the_manifest_and_refetches_only_what_is_bad(
    relay: tuple[Simulator, str], tmp_path: Path
) -> None:
    sim, url = relay
    path = write_board(tmp_path, shots(3))
    videos = tmp_path / "videos"
    done = run(path, url, "--download", videos)
    assert done.returncode == 0, done.stderr
    manifest = json.loads(path.with_suffix(".manifest.json").read_text())["shots"]
    for shot_id, entry in manifest.items():
        file = videos / f"{shot_id}.mp4"
        data = file.read_bytes()
        assert data[4:8] == b"ftyp"
        record = entry["download"]
        assert (tmp_path / record["path"]).resolve() == file.resolve()
        assert record["size"] == len(data)
        assert record["sha256"] == hashlib.sha256(data).hexdigest()
    assert sum(sim.stats().downloads.values()) == 3

    done = run(path, url, "--download", videos)
    assert done.returncode == 0
    assert sum(sim.stats().downloads.values()) == 3, "nothing fetched again"

    # Every simulated video has the same bytes: one file in the cache, shared by all.
    shutil.rmtree(tmp_path / ".vidu-pipe")  # without the cache: from the URLs (R1 item 1)
    (videos / "s0.mp4").unlink()
    (videos / "s2.mp4").write_bytes(b"\x00" * manifest["s2"]["download"]["size"])
    done = run(path, url, "--download", videos)
    assert done.returncode == 0
    downloads = sim.stats().downloads
    by_task = {entry["task_id"]: shot for shot, entry in manifest.items()}
    assert {by_task[t]: n for t, n in downloads.items()} == {"s0": 2, "s1": 1, "s2": 2}
    assert totals(sim)[0] == 3
    for shot_id in ("s0", "s2"):
        data = (videos / f"{shot_id}.mp4").read_bytes()
        assert hashlib.sha256(data).hexdigest() == manifest[shot_id]["download"]["sha256"]


# --- the key -----------------------------------------------------------------------------


def test_the_key_never_appears_in_output_manifest_or_journal(tmp_path: Path) -> None:
    """A distinctive key through 401, 403, 429, 5xx, dropped connections and timeouts."""
    path = write_board(tmp_path, shots(8))
    texts: list[str] = []

    def collect(done: subprocess.CompletedProcess[str], manifest: Path) -> None:
        texts.extend([done.stdout, done.stderr])
        for file in (manifest, journal_path(manifest), lock_path(manifest)):
            if file.exists():
                texts.append(file.read_text(errors="replace"))

    # A simulated minute lasts 0.6 s here, a task 0.3 s.
    stormy = relay_config(
        key=CANARY,
        time_scale=0.01,
        durations={m: (30.0, 30.0) for m in MODELS},
        quota=6,
        rate_limit_per_minute=4,
        create_error_rate=0.2,
        query_error_rate=0.2,
        drop_rate=0.1,
        drop_after_rate=0.1,
        seed=3,
    )
    sim = Simulator(stormy)
    with running_server(sim) as url:
        sim.inject("create", status=429, retry_after=10.0)
        sim.inject("create", status=502)
        sim.inject("query", drop="after")
        for i, flags in enumerate((["--json"], [])):
            manifest = tmp_path / f"m{len(texts)}.json"
            # Each run its own folder, so its own results cache: a shared one would restore
            # the first run's videos instead of meeting the quota and the rate limit again.
            folder = tmp_path / f"run{i}"
            folder.mkdir()
            board = write_board(folder, shots(8))
            done = run(board, url, "--manifest", manifest, *flags, key=CANARY)
            assert done.returncode in (1, 3), done.stderr
            collect(done, manifest)
    refusals = sim.stats().refusals
    assert refusals.get("insufficient_user_quota") and refusals.get("rate_limit_exceeded")
    assert sim.stats().drops

    slow = Simulator(relay_config(key=CANARY, durations={m: (5.0, 5.0) for m in MODELS}))
    with running_server(slow) as url:
        manifest = tmp_path / "timeout.json"
        done = run(path, url, "--manifest", manifest, "--timeout", "0.3", key=CANARY)
        assert done.returncode == 1 and "gave up" in done.stdout
        collect(done, manifest)

    with running_server(Simulator(relay_config(key="another-key"))) as url:
        manifest = tmp_path / "refused.json"
        done = run(path, url, "--manifest", manifest, key=CANARY)
        assert done.returncode == 3
        collect(done, manifest)

    assert len(texts) >= 8
    leaks = [t for t in texts if CANARY in t or "7f3e9a" in t]
    assert not leaks, leaks[0][:400]


# --- every kind of relay, through the CLI over a socket (issue 9) -----------------------------


@pytest.mark.parametrize("profile", ["seed", "new-api", "new-api-legacy", "vidu"])
def test_run_against_each_relay_profile_finds_every_video_and_keeps_failure_reasons(
    tmp_path: Path, profile: str
) -> None:
    sim = Simulator(
        relay_config(
            profile=profile,
            durations={m: (0.4, 0.6) for m in MODELS},
            queue_seconds=(0.0, 0.1),
            max_running=5,
        )
    )
    board = [
        {"id": "text", "prompt": "a quiet beach"},
        {"id": "image", "prompt": "slow push-in", "image": "https://cdn.example.com/a.png"},
        {"id": "pro", "model": "viduq3p-1080p", "duration": 8, "prompt": "wide aerial"},
        {"id": "doomed", "prompt": "never [[fail]]"},
    ]
    path = write_board(tmp_path, board)
    with running_server(sim) as url:
        done = run(path, url, "--json")
    assert done.returncode == 1, (done.stdout, done.stderr)
    assert "Traceback" not in done.stderr
    manifest = json.loads(path.with_suffix(".manifest.json").read_text())
    shots_seen = manifest["shots"]
    for shot_id in ("text", "image", "pro"):
        entry = shots_seen[shot_id]
        assert entry["status"] == "completed", (shot_id, entry)
        assert entry["video_url"] == f"{url}/files/{entry['task_id']}.mp4"
    assert shots_seen["doomed"]["status"] == "failed"
    assert "fail marker" in shots_seen["doomed"]["error"]
    per_task = sim.stats().queries
    assert max(per_task.values()) <= 15, per_task


def test_the_simulator_command_takes_a_profile() -> None:
    shown = cli("simulator", "--help", key=None)
    text = " ".join(shown.stdout.split())  # help is wrapped to the terminal's width
    assert "--profile" in text and "new-api-legacy" in text
    assert "(default: seed)" in text
    wrong = cli("simulator", "--profile", "openai", key=None)
    assert wrong.returncode == 2 and "invalid choice" in wrong.stderr


@pytest.mark.parametrize(
    ("base_url", "says"),
    [
        ("http://xn--/", "host name is not valid"),
        ("http://127.0.0.1:99999", "port 99999"),
        (f"https://relay.test/?k={CANARY}", "must not have a query"),
    ],
)
def test_a_broken_base_url_is_a_configuration_error(
    tmp_path: Path, base_url: str, says: str
) -> None:
    path = write_board(tmp_path, shots(1))
    env_run = subprocess.run(
        [sys.executable, "-m", "vidu_pipe", "run", str(path)],
        capture_output=True,
        text=True,
        env={
            **{k: v for k, v in os.environ.items() if not k.startswith("VIDU_")},
            "VIDU_API_KEY": KEY,
            "VIDU_BASE_URL": base_url,
        },
        timeout=60,
    )
    output = env_run.stdout + env_run.stderr
    assert env_run.returncode == 3, output
    assert says in output and "Traceback" not in output and CANARY not in output
    assert not path.with_suffix(".manifest.json").exists()


def test_run_simulate_answers_as_the_profile_in_the_environment(tmp_path: Path) -> None:
    path = write_board(tmp_path, shots(2))
    env = {k: v for k, v in os.environ.items() if not k.startswith("VIDU_")}
    done = subprocess.run(
        [sys.executable, "-m", "vidu_pipe", "run", str(path), "--simulate", "--json"],
        capture_output=True,
        text=True,
        env={**env, "VIDU_PIPE_SIM_PROFILE": "new-api-legacy"},
        timeout=60,
    )
    assert done.returncode == 0, (done.stdout, done.stderr)
    manifest = json.loads(path.with_suffix(".manifest.json").read_text())
    # new-api-legacy: Vidu's numeric task ids.
    assert all(entry["task_id"].isdigit() for entry in manifest["shots"].values())
    wrong = subprocess.run(
        [sys.executable, "-m", "vidu_pipe", "run", str(path), "--simulate", "--force"],
        capture_output=True,
        text=True,
        env={**env, "VIDU_PIPE_SIM_PROFILE": "nope"},
        timeout=60,
    )
    assert wrong.returncode == 3 and "VIDU_PIPE_SIM_PROFILE" in wrong.stderr + wrong.stdout
