"""Guards a demanding reviewer went looking for: input that must be refused before any
money is spent, state that must never be mistaken for real videos, tasks that must never
be paid for twice, and inputs that once gave a traceback."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import anyio
import pytest
import yaml

from vidu_pipe.api import SIMULATOR_BASE_URL, arun
from vidu_pipe.cli import main
from vidu_pipe.errors import AuthError
from vidu_pipe.execution.runner import RunOptions, RunResult
from vidu_pipe.manifest.store import ManifestEntry, load_manifest
from vidu_pipe.simulator import Simulator, SimulatorConfig
from vidu_pipe.storyboard.schemas import MODELS

pytestmark = pytest.mark.usefixtures("quick_simulate")  # simulated runs at 1/500 (conftest)

SCALE = 0.001
BASE = "http://relay.test"
ENV = {"VIDU_API_KEY": "sk-guards-test"}


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def board(folder: Path, shots: list[dict[str, Any]], name: str = "board") -> Path:
    doc = {
        "version": 1,
        "defaults": {"model": "viduq3p-540p", "duration": 5},
        "shots": shots,
    }
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    return path


def sim() -> Simulator:
    return Simulator(
        SimulatorConfig(
            time_scale=SCALE,
            durations={m: (20.0, 20.0) for m in MODELS},
            queue_seconds=(0.0, 0.0),
            seed=5,
        )
    )


def real_run(path: Path, relay: Simulator, *, concurrency: int = 4, **kwargs: Any) -> RunResult:
    """A run in real mode (key, base URL) whose network is the simulator's transport."""

    async def go() -> RunResult:
        return await arun(
            path,
            base_url=BASE,
            transport=relay.transport(),
            env=ENV,
            options=RunOptions(
                time_scale=SCALE, rate_per_minute=0, poll_interval=2.0, concurrency=concurrency
            ),
            **kwargs,
        )

    return anyio.run(go)


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    output = captured.out + captured.err
    assert "Traceback" not in output
    return code, output


# --- refused before anything is paid for ------------------------------------------------


def test_simulate_with_a_base_url_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = board(tmp_path, [{"id": "a", "prompt": "x"}])
    code, out = cli(capsys, "run", str(path), "--simulate", "--base-url", "https://api.aijisu.cn")
    assert code == 2 and "--simulate" in out
    assert not path.with_suffix(".manifest.json").exists()


@pytest.mark.parametrize("manifest", [".", "/", ""])
def test_a_manifest_that_names_a_folder_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], manifest: str
) -> None:
    path = board(tmp_path, [{"id": "a", "prompt": "x"}])
    for command in ("plan", "status", "report", "run"):
        extra = ["--simulate"] if command == "run" else []
        code, out = cli(capsys, command, str(path), "--manifest", manifest, *extra)
        assert code == 2, (command, out)
        assert "--manifest" in out


def test_a_download_folder_that_cannot_be_written_is_refused_before_any_create(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = board(tmp_path, [{"id": "a", "prompt": "x"}])
    blocker = tmp_path / "afile"
    blocker.write_text("not a folder")
    code, out = cli(capsys, "run", str(path), "--simulate", "--download", str(blocker))
    assert code == 2 and "--download" in out
    assert not path.with_suffix(".manifest.json").exists()


def test_only_and_tag_that_select_nothing_together_are_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = board(tmp_path, [{"id": "a", "prompt": "x", "tags": ["t1"]}, {"id": "b", "prompt": "y"}])
    code, out = cli(capsys, "plan", str(path), "--only", "b", "--tag", "t1")
    assert code == 2 and "both" in out


@pytest.mark.parametrize("target", ["folder", "storyboard", "empty"])
def test_report_output_must_be_a_new_or_html_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], target: str
) -> None:
    path = board(tmp_path, [{"id": "a", "prompt": "x"}])
    before = path.read_bytes()
    output = {"folder": str(tmp_path), "storyboard": str(path), "empty": ""}[target]
    code, _ = cli(capsys, "report", str(path), "-o", output)
    assert code == 2
    assert path.read_bytes() == before


def test_simulator_port_out_of_range_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["simulator", "--port", "99999"])
    assert exit_info.value.code == 2


def test_an_unreachable_relay_stops_the_run_quickly_with_exit_3(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    path = board(tmp_path, [{"id": "a", "prompt": "x"}, {"id": "b", "prompt": "y"}])
    monkeypatch.setenv("VIDU_API_KEY", "sk-unreachable")
    started = time.monotonic()
    code, out = cli(capsys, "run", str(path), "--base-url", "http://127.0.0.1:9", "--rate", "0")
    assert code == 3
    assert "cannot reach the relay" in out
    assert time.monotonic() - started < 30


# --- storyboards that once crashed or misled ---------------------------------------------


@pytest.mark.parametrize(
    ("shot", "expected"),
    [
        ({"id": 1, "prompt": "x"}, 'write it in quotes: "1"'),
        ({"id": "a", "prompt": "{{ ['a', 'b']|random }}"}, "same request on every run"),
        ({"id": "a", "prompt": "{{ lipsum() }}"}, "same request on every run"),
        ({"id": "a", "prompt": "x {{ ref }}"}, "cannot print a function"),
        ({"id": "a", "prompt": "{{ '\\ud800' }}"}, "not valid Unicode"),
        ({"id": "a", "prompt": "x", "vars": {"ref": 1}}, "reserved"),
        ({"id": "a", "prompt": "x", "image": "http://LOCALHOST/a.png"}, "localhost"),
        ({"id": "a", "prompt": "x", "image": "http://0x7f.1/a.png"}, "private"),
        ({"id": "a", "prompt": "x", "image": "http://[fd00::1]/a.png"}, "private"),
        ({"id": "a", "prompt": "x", "image": "http://100.64.0.1/a.png"}, "private"),
    ],
    ids=[
        "numeric-id",
        "random",
        "lipsum",
        "print-function",
        "lone-surrogate",
        "reserved-var",
        "localhost-upper",
        "octal-hex-ip",
        "ipv6-ula",
        "cgnat",
    ],
)
def test_refused_with_a_located_message(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], shot: dict[str, Any], expected: str
) -> None:
    path = board(tmp_path, [shot])
    code, out = cli(capsys, "validate", str(path))
    assert code == 2
    assert expected in out
    assert f"{path}:" in out


def test_a_templates_link_out_of_the_storyboard_folder_is_not_read(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.j2").write_text("SECRET")
    project = tmp_path / "project"
    project.mkdir()
    (project / "templates").symlink_to(outside)
    path = board(project, [{"id": "a", "prompt": "{% include 'secret' %}"}])
    code, out = cli(capsys, "validate", str(path))
    assert code == 2
    assert "leads outside" in out
    assert "SECRET" not in out


def test_a_prompt_that_starts_with_bearer_runs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = board(tmp_path, [{"id": "a", "prompt": "Bearer of good news runs across a field"}])
    code, out = cli(capsys, "run", str(path), "--simulate", "--quiet")
    assert code == 0, out


# --- simulated results are never real videos ---------------------------------------------


def test_a_partial_real_run_never_makes_other_simulated_shots_up_to_date(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = board(tmp_path, [{"id": "a", "prompt": "x"}, {"id": "b", "prompt": "y"}])
    code, out = cli(capsys, "run", str(path), "--simulate", "--quiet")
    assert code == 0, out
    relay = sim()
    result = real_run(path, relay, only=["a"])
    assert result.completed == ("a",)
    manifest = load_manifest(path.with_suffix(".manifest.json"))
    assert manifest is not None and manifest.base_url == BASE
    assert manifest.entries["b"].status == "pending"
    assert manifest.entries["b"].video_url is None
    # and the next real run creates b, and only b
    again = real_run(path, relay)
    assert again.completed == ("b",) and again.skipped == ("a",)
    assert relay.stats().creates == 2


def test_an_interrupted_simulated_run_is_created_again_by_the_next_simulated_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # A terminal wide enough for plan's table to show the whole reason (narrower, it is
    # cut; a test worker may inherit COLUMNS=80 from readline).
    monkeypatch.setenv("COLUMNS", "200")
    path = board(tmp_path, [{"id": "a", "prompt": "x"}])
    code, _ = cli(capsys, "run", str(path), "--simulate", "--quiet")
    assert code == 0
    manifest_path = path.with_suffix(".manifest.json")
    doc = json.loads(manifest_path.read_text())
    doc["shots"]["a"].update(status="submitted", video_url=None, finished_at=None)
    doc["shots"]["a"]["task_id"] = "task_from_a_simulator_long_gone"
    manifest_path.write_text(json.dumps(doc, indent=2))
    code, out = cli(capsys, "plan", str(path), "--simulate")
    assert code == 0 and "ended with its simulator" in out
    code, out = cli(capsys, "run", str(path), "--simulate", "--quiet")
    assert code == 0, out


# --- a paid task is never given up for one bad answer -----------------------------------


def test_a_refused_query_keeps_the_task_submitted_and_the_next_run_resumes_it(
    tmp_path: Path,
) -> None:
    path = board(tmp_path, [{"id": "a", "prompt": "x"}])
    relay = sim()
    relay.inject("query", status=403, code="insufficient_user_quota", count=1)
    # A 403 on a query is a banned key: the run stops with exit 3 (issue 10, item 17).
    with pytest.raises(AuthError) as refused:
        real_run(path, relay)
    assert refused.value.exit_code == 3 and "query" in str(refused.value)
    entry = load_manifest(path.with_suffix(".manifest.json")).entries["a"]  # type: ignore[union-attr]
    assert entry.status == "submitted" and entry.task_id
    second = real_run(path, relay)
    assert second.completed == ("a",) and second.resumed == 1
    assert relay.stats().creates == 1


def test_a_storyboard_renamed_with_its_manifest_keeps_its_videos(tmp_path: Path) -> None:
    path = board(tmp_path, [{"id": "a", "prompt": "x"}], name="teaser-v1")
    relay = sim()
    assert real_run(path, relay).completed == ("a",)
    renamed = tmp_path / "teaser.yaml"
    path.rename(renamed)
    path.with_suffix(".manifest.json").rename(renamed.with_suffix(".manifest.json"))
    again = real_run(renamed, relay)
    assert again.skipped == ("a",) and relay.stats().creates == 1
    manifest = load_manifest(renamed.with_suffix(".manifest.json"))
    assert manifest is not None and manifest.storyboard == "teaser.yaml"
    assert isinstance(manifest.entries["a"], ManifestEntry)


def test_simulated_runs_record_the_simulator_as_their_base_url(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = board(tmp_path, [{"id": "a", "prompt": "x"}])
    assert cli(capsys, "run", str(path), "--simulate", "--quiet")[0] == 0
    manifest = load_manifest(path.with_suffix(".manifest.json"))
    assert manifest is not None and manifest.base_url == SIMULATOR_BASE_URL


# --- a stopped run says so, and leaves nothing behind ------------------------------------


def test_a_refused_key_leaves_no_manifest_and_still_reports_the_end_of_the_run(
    tmp_path: Path,
) -> None:
    from vidu_pipe.errors import AuthError
    from vidu_pipe.events import Event

    path = board(tmp_path, [{"id": "a", "prompt": "x"}, {"id": "b", "prompt": "y"}])
    relay = Simulator(SimulatorConfig(time_scale=SCALE, key="sk-the-right-key"))
    events: list[Event] = []

    async def go() -> RunResult:
        return await arun(
            path,
            base_url=BASE,
            transport=relay.transport(),
            env={"VIDU_API_KEY": "sk-a-wrong-key"},
            options=RunOptions(time_scale=SCALE, rate_per_minute=0),
            on_event=events.append,
        )

    with pytest.raises(AuthError):
        anyio.run(go)
    assert not path.with_suffix(".manifest.json").exists()
    finished = [e for e in events if e.kind == "run-finished"]
    assert len(finished) == 1 and finished[0].data["exit_code"] == 3
    reasons = {e.data["reason"] for e in events if e.kind == "not-started"}
    assert reasons <= {"key refused"}


def test_a_relay_without_the_task_route_is_a_configuration_error(
    tmp_path: Path,
) -> None:
    import httpx

    from vidu_pipe.errors import ConfigError

    path = board(tmp_path, [{"id": "a", "prompt": "x"}])

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(404, text="<html>not found</html>")

    async def go() -> RunResult:
        return await arun(
            path,
            base_url=BASE,
            transport=httpx.MockTransport(handler),
            env=ENV,
            options=RunOptions(time_scale=SCALE, rate_per_minute=0),
        )

    with pytest.raises(ConfigError, match="no task endpoint"):
        anyio.run(go)


def test_plan_refuses_what_run_refuses(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = board(tmp_path, [{"id": "a", "prompt": "x"}])
    assert real_run(path, sim()).completed == ("a",)
    for command in ("plan", "run"):
        code, out = cli(capsys, command, str(path), "--simulate")
        assert code == 3, (command, out)
        assert "records real tasks" in out


# --- like make: the same request is never paid for twice --------------------------------


def test_changing_takes_or_renaming_a_shot_reuses_its_video(tmp_path: Path) -> None:
    relay = sim()
    shot = {"id": "closeup", "prompt": "slow push-in", "seed": 42, "takes": 3}
    path = board(tmp_path, [shot])
    # One at a time: three equal tasks run side by side finish in whatever order the
    # scheduler wakes their polls (under CPU load, any order); in turn, take1 finishes first.
    made = real_run(path, relay, concurrency=1)
    assert made.completed == ("closeup.take1", "closeup.take2", "closeup.take3")
    board(tmp_path, [{**shot, "takes": 1}])  # closeup now sends what closeup.take1 sent
    again = real_run(path, relay)
    assert again.skipped == ("closeup",) and again.created == 0
    board(tmp_path, [{**shot, "takes": 1, "id": "push-in"}])  # a rename
    renamed = real_run(path, relay)
    assert renamed.skipped == ("push-in",) and renamed.created == 0
    manifest = load_manifest(path.with_suffix(".manifest.json"))
    assert manifest is not None
    assert manifest.entries["push-in"].task_id == manifest.entries["closeup.take1"].task_id
    assert relay.stats().creates == 3
    # a shot with a new request is still made
    board(tmp_path, [{**shot, "takes": 1, "id": "push-in", "prompt": "fast push-in"}])
    assert real_run(path, relay).created == 1


def test_printing_an_empty_value_is_an_error_not_the_word_none(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = board(
        tmp_path,
        [
            {"id": "a", "prompt": "take {{ shot.take }}"},
            {"id": "b", "prompt": "take {{ shot.take or 1 }}"},
        ],
    )
    code, out = cli(capsys, "validate", str(path))
    assert code == 2
    assert "shot 'a': prompt: prints an empty value" in out
    assert "shot 'b'" not in out


def test_a_held_manifest_is_named_as_given_not_resolved(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The lock error names the manifest as the user gave it (or as the storyboard's path
    implies), while the lock itself stays on the file's identity."""
    from vidu_pipe.manifest.lock import RunLock, canonical_manifest_path

    (tmp_path / "lk").mkdir()
    board(tmp_path / "lk", [{"id": "a", "prompt": "x"}], name="lighthouse")
    (tmp_path / "real").mkdir()
    (tmp_path / "alias").symlink_to(tmp_path / "real")
    monkeypatch.chdir(tmp_path)
    # Another run holds each: reached by another spelling of the same file.
    held = [
        RunLock.acquire(canonical_manifest_path(tmp_path / "lk" / "lighthouse.manifest.json")),
        RunLock.acquire(canonical_manifest_path(tmp_path / "real" / "m.json")),
    ]
    try:
        for argv, shown in [
            ([], "lk/lighthouse.manifest.json"),
            (["--manifest", "alias/m.json"], "alias/m.json"),
        ]:
            assert main(["run", "lk/lighthouse.yaml", "--simulate", "-q", *argv]) == 3
            err = capsys.readouterr().err
            assert f"vidu-pipe: error: {shown}: in use by another run" in err, err
            assert str(tmp_path) not in err, err
    finally:
        for lock in held:
            lock.release()
    assert not (tmp_path / "real" / "m.json").exists()
