"""The runner end to end, in-process: the real scheduler, client and manifest store against
the simulator (``Simulator.transport()``), with time compressed (``RunOptions(time_scale)``
and ``SimulatorConfig(time_scale)`` alike, so a 20-second task takes 20 ms).

Every claim is checked on what the simulator saw (``Simulator.stats()``): the bodies it
accepted, its creates and queries, its peak of running tasks and its busiest 60-second
window; not on what the runner says about itself.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import sys
import threading
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
import yaml
from jsonschema import Draft202012Validator

from vidu_pipe.api import arun, cut, load
from vidu_pipe.errors import AuthError
from vidu_pipe.events import Event
from vidu_pipe.execution.runner import RunOptions, RunResult
from vidu_pipe.film.cut import CutError
from vidu_pipe.manifest.store import ManifestStore, load_manifest
from vidu_pipe.simulator import Simulator, SimulatorConfig
from vidu_pipe.storyboard.model import mode_of
from vidu_pipe.storyboard.schemas import MODELS, load_schema

REPO = Path(__file__).resolve().parent.parent
PIPELINES = sorted((REPO / "pipelines").glob("*.yaml"))
BASE = "http://relay.test"
KEY = "sk-runner-test-4b1d"
SCALE = 0.001  # a run second lasts 1 ms


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


# --- helpers -------------------------------------------------------------------------


def durations(seconds: float) -> dict[str, tuple[float, float]]:
    """Every model generates a 5-second clip in exactly ``seconds``."""
    return {m: (seconds, seconds) for m in MODELS}


def make_sim(**overrides: Any) -> Simulator:
    """A healthy relay whose tasks take 20 run seconds, start at once, and whose own
    account cap is out of the way (so a cap measured is the runner's)."""
    settings: dict[str, Any] = {
        "time_scale": SCALE,
        "durations": durations(20.0),
        "queue_seconds": (0.0, 0.0),
        "max_running": 1000,
        "seed": 11,
    }
    settings.update(overrides)
    return Simulator(SimulatorConfig(**settings))


def shots(n: int, prefix: str = "s", **fields: Any) -> list[dict[str, Any]]:
    return [{"id": f"{prefix}{i:02d}", "prompt": f"{prefix} shot {i}", **fields} for i in range(n)]


def write_board(
    folder: Path,
    shot_list: Sequence[dict[str, Any]],
    *,
    name: str = "board",
    defaults: dict[str, Any] | None = None,
) -> Path:
    doc = {
        "version": 1,
        "defaults": defaults or {"model": "viduq3t-540p", "duration": 5},
        "shots": list(shot_list),
    }
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    return path


@dataclass
class Outcome:
    result: RunResult
    events: list[Event]

    def kinds(self, kind: str) -> list[Event]:
        return [e for e in self.events if e.kind == kind]


async def go(
    path: Path,
    sim: Simulator,
    *,
    key: str = KEY,
    transport: httpx.AsyncBaseTransport | None = None,
    manifest: Path | None = None,
    only: Sequence[str] = (),
    tags: Sequence[str] = (),
    force: bool = False,
    cache_dir: Path | None = None,
    **options: Any,
) -> Outcome:
    """One run of the storyboard at ``path`` against ``sim`` (no rate limit and 8 at once
    unless told), time compressed as the simulator's."""
    settings: dict[str, Any] = {
        "time_scale": sim.config.time_scale,
        "concurrency": 8,
        "rate_per_minute": 0,
    }
    settings.update(options)
    events: list[Event] = []
    result = await arun(
        path,
        base_url=BASE,
        manifest=manifest,
        only=only,
        tags=tags,
        force=force,
        options=RunOptions(**settings),
        on_event=events.append,
        transport=transport if transport is not None else sim.transport(),
        env={"VIDU_API_KEY": key},
        cache_dir=cache_dir,
    )
    return Outcome(result, events)


@dataclass(frozen=True)
class Seen:
    """What the simulator has seen so far; subtract two to get what one run did."""

    creates: int
    queries: int
    downloads: int

    @classmethod
    def of(cls, sim: Simulator) -> Seen:
        st = sim.stats()
        return cls(st.creates, sum(st.queries.values()), sum(st.downloads.values()))

    def __sub__(self, other: Seen) -> Seen:
        return Seen(
            self.creates - other.creates,
            self.queries - other.queries,
            self.downloads - other.downloads,
        )


def prompts_created(sim: Simulator, since: int = 0) -> Counter[str]:
    return Counter(str(b["prompt"]) for b in sim.stats().bodies[since:])


def assert_none_created_twice(sim: Simulator) -> None:
    twice = {p: n for p, n in prompts_created(sim).items() if n > 1}
    assert not twice, f"created more than once: {twice}"


def canonical(body: Any) -> str:
    return json.dumps(body, sort_keys=True, separators=(",", ":"))


def entries(path: Path) -> dict[str, Any]:
    manifest = load_manifest(path.with_suffix(".manifest.json"))
    assert manifest is not None
    return dict(manifest.entries)


class Tamper(httpx.AsyncBaseTransport):
    """Wraps a transport; ``rewrite(request, n)`` may return a (status, body) to answer
    instead, ``forward`` saying whether the request reaches the relay first."""

    def __init__(
        self,
        inner: httpx.AsyncBaseTransport,
        rewrite: Callable[[httpx.Request, int], tuple[int, bytes] | None],
        *,
        forward: bool = True,
    ) -> None:
        self.inner = inner
        self.rewrite = rewrite
        self.forward = forward
        self.seen = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.seen += 1
        change = self.rewrite(request, self.seen)
        if change is None:
            return await self.inner.handle_async_request(request)
        if self.forward:
            answer = await self.inner.handle_async_request(request)
            await answer.aread()
        status, body = change
        return httpx.Response(status, content=body, request=request)

    async def aclose(self) -> None:
        await self.inner.aclose()


def is_create(request: httpx.Request) -> bool:
    return request.method == "POST"


def is_query(request: httpx.Request) -> bool:
    return request.method == "GET" and "/files/" not in request.url.path


# --- SPEC §1: exactly the rendered bodies ------------------------------------------------

REQUEST_SCHEMA = Draft202012Validator(load_schema("request"))
ALLOWED = {
    "model",
    "prompt",
    "duration",
    "aspect_ratio",
    "image",
    "last_image",
    "reference_image_urls",
    "extra_body",
}


def check_body(body: dict[str, Any]) -> None:
    assert not list(REQUEST_SCHEMA.iter_errors(body)), body
    assert set(body) <= ALLOWED, set(body) - ALLOWED
    assert {"model", "prompt", "duration", "extra_body"} <= set(body)
    assert body["model"] in MODELS
    assert type(body["duration"]) is int
    extra = body["extra_body"]
    assert extra["audio"] is False and extra["bgm"] is False
    assert set(extra) <= {"audio", "bgm", "seed"}
    if "seed" in extra:
        assert type(extra["seed"]) is int
    assert not {"images", "image_urls"} & set(body)
    if "last_image" in body:
        assert "image" in body
    if "reference_image_urls" in body:
        assert not {"image", "last_image"} & set(body)
        assert body["model"].startswith("viduq3p-")


@pytest.mark.anyio
@pytest.mark.parametrize("pipeline", PIPELINES, ids=lambda p: p.stem)
async def test_every_pipeline_sends_exactly_its_rendered_requests(
    pipeline: Path, tmp_path: Path
) -> None:
    board = load(pipeline)
    sim = make_sim()
    # Run a copy (templates and all): the manifest, the cache and the learned pace
    # (.vidu-pipe/pace.json, kept beside the storyboard) go to tmp_path, never beside the
    # repository's storyboard, where parallel tests would read one another's pace.
    copy = shutil.copytree(
        pipeline.parent, tmp_path / "pipelines", ignore=shutil.ignore_patterns(".vidu-pipe")
    )
    path = copy / pipeline.name
    out = await go(path, sim, manifest=tmp_path / "m.json", cache_dir=tmp_path / "cache")
    assert out.result.exit_code == 0
    assert sorted(out.result.completed) == sorted(board.ids)
    bodies = [dict(b) for b in sim.stats().bodies]
    assert sorted(map(canonical, bodies)) == sorted(canonical(s.request) for s in board.shots)
    for body in bodies:
        check_body(body)


def test_the_pipelines_cover_all_four_modes() -> None:
    modes = {shot.mode for p in PIPELINES for shot in load(p).shots}
    assert modes == {"text", "image", "first-last", "reference"}
    assert {mode_of(s.request) for s in load(REPO / "pipelines/beach-teaser.yaml").shots} == modes


# --- make-style ------------------------------------------------------------------------


@pytest.mark.anyio
async def test_a_rerun_sends_nothing(tmp_path: Path) -> None:
    path = write_board(tmp_path, shots(6))
    sim = make_sim()
    first = await go(path, sim)
    assert first.result.exit_code == 0 and len(first.result.completed) == 6
    before = Seen.of(sim)
    again = await go(path, sim)
    assert Seen.of(sim) - before == Seen(0, 0, 0)
    assert again.result.exit_code == 0
    assert sorted(again.result.skipped) == [f"s{i:02d}" for i in range(6)]
    assert not again.kinds("created") and not again.kinds("resumed")


@pytest.mark.anyio
async def test_editing_one_prompt_creates_exactly_that_shot(tmp_path: Path) -> None:
    shot_list = shots(5)
    path = write_board(tmp_path, shot_list)
    sim = make_sim()
    await go(path, sim)
    shot_list[3]["prompt"] = "s shot 3, now at dusk"
    write_board(tmp_path, shot_list)
    before = Seen.of(sim)
    out = await go(path, sim)
    assert (Seen.of(sim) - before).creates == 1
    assert prompts_created(sim, since=before.creates) == Counter({"s shot 3, now at dusk": 1})
    assert out.result.completed == ("s03",)
    assert len(out.result.skipped) == 4
    assert entries(path)["s03"].request["prompt"] == "s shot 3, now at dusk"


def _fail_by_marker(sim_kwargs: dict[str, Any], shot_list: list[dict[str, Any]]) -> None:
    shot_list[2]["prompt"] += " [[fail]]"
    shot_list[5]["prompt"] += " [[fail]]"


def _fail_by_rate(sim_kwargs: dict[str, Any], shot_list: list[dict[str, Any]]) -> None:
    sim_kwargs["fail_rate"] = 0.3


def _fail_by_400(sim_kwargs: dict[str, Any], shot_list: list[dict[str, Any]]) -> None:
    pass  # injected once the simulator exists


@pytest.mark.anyio
@pytest.mark.parametrize(
    "cause", [_fail_by_marker, _fail_by_rate, _fail_by_400], ids=["marker", "fail_rate", "400"]
)
async def test_after_failures_only_the_failed_shots_are_created_again(
    cause: Callable[[dict[str, Any], list[dict[str, Any]]], None], tmp_path: Path
) -> None:
    shot_list = shots(8)
    sim_kwargs: dict[str, Any] = {"seed": 4}
    cause(sim_kwargs, shot_list)
    path = write_board(tmp_path, shot_list)
    sim = make_sim(**sim_kwargs)
    if cause is _fail_by_400:
        sim.inject("create", status=400, count=2)
    first = await go(path, sim, concurrency=3)
    failed = set(first.result.failed)
    assert failed, "the fault must fail some shots"
    assert first.result.exit_code == 1
    assert set(first.result.completed) == {s["id"] for s in shot_list} - failed
    if cause is _fail_by_marker:
        assert failed == {"s02", "s05"}
    for shot_id in failed:
        entry = entries(path)[shot_id]
        assert entry.status == "failed" and entry.error
    before = Seen.of(sim)
    second = await go(path, sim, concurrency=3)
    prompts = {s["prompt"]: s["id"] for s in shot_list}
    again = prompts_created(sim, since=before.creates)
    assert {prompts[p] for p in again} == failed
    assert all(n == 1 for n in again.values())
    assert sorted(second.result.skipped) == sorted(set(prompts.values()) - failed)


@pytest.mark.anyio
async def test_only_globs_pick_shots_and_every_take_of_a_shot(tmp_path: Path) -> None:
    shot_list = [
        *shots(3, "intro-"),
        *shots(2, "outro-"),
        {"id": "hero", "prompt": "hero shot", "takes": 3},
    ]
    path = write_board(tmp_path, shot_list)
    sim = make_sim()
    out = await go(path, sim, only=["intro-*", "hero"])
    picked = {"intro-00", "intro-01", "intro-02", "hero.take1", "hero.take2", "hero.take3"}
    assert set(out.result.completed) == picked
    assert sim.stats().creates == 6
    # The takes differ by seed, so each is its own task.
    seeds = {b["extra_body"].get("seed") for b in sim.stats().bodies if b["prompt"] == "hero shot"}
    assert len(seeds) == 3
    later = await go(path, sim)
    assert set(later.result.completed) == {"outro-00", "outro-01"}
    assert sim.stats().creates == 8


@pytest.mark.anyio
async def test_tag_picks_the_tagged_shots(tmp_path: Path) -> None:
    shot_list = shots(4)
    shot_list[1]["tags"] = ["act2"]
    shot_list[3]["tags"] = ["act2", "night"]
    path = write_board(tmp_path, shot_list)
    sim = make_sim()
    out = await go(path, sim, tags=["act2"])
    assert sorted(out.result.completed) == ["s01", "s03"]
    assert sorted(prompts_created(sim)) == ["s shot 1", "s shot 3"]


@pytest.mark.anyio
async def test_force_creates_again_only_what_is_selected(tmp_path: Path) -> None:
    path = write_board(tmp_path, shots(4))
    sim = make_sim()
    await go(path, sim)
    old = entries(path)["s02"].task_id
    out = await go(path, sim, force=True, only=["s02"])
    assert out.result.completed == ("s02",) and sim.stats().creates == 5
    assert entries(path)["s02"].task_id != old
    out = await go(path, sim, force=True)
    assert len(out.result.completed) == 4 and sim.stats().creates == 9


@pytest.mark.anyio
@pytest.mark.parametrize("cap", [0, 1, 3])
async def test_max_creates_is_never_exceeded_and_the_rest_are_not_started(
    cap: int, tmp_path: Path
) -> None:
    path = write_board(tmp_path, shots(7))
    sim = make_sim()
    out = await go(path, sim, concurrency=4, max_creates=cap)
    assert sim.stats().creates == cap
    assert len(out.result.completed) == cap
    assert len(out.result.not_started) == 7 - cap
    assert out.result.exit_code == 1
    reasons = {e.data["reason"] for e in out.kinds("not-started")}
    assert reasons and all("max-creates" in r for r in reasons)
    # The next run goes on where this one stopped.
    await go(path, sim, concurrency=4, max_creates=7)
    assert sim.stats().creates == 7
    assert_none_created_twice(sim)


@pytest.mark.anyio
async def test_max_creates_counts_a_create_whose_answer_was_lost(tmp_path: Path) -> None:
    """A dropped answer may be a paid task: it uses up one of the N."""
    path = write_board(tmp_path, shots(5))
    sim = make_sim()
    sim.inject("create", drop="after", count=1)
    out = await go(path, sim, concurrency=1, max_creates=2)
    assert sim.stats().creates == 2
    assert len(out.result.completed) == 1 and out.result.unknown == ("s00",)  # held


# --- concurrency and rate, measured by the simulator -------------------------------------


def most_overlapping(intervals: Sequence[tuple[float, float]]) -> int:
    points = sorted([(a, 1) for a, _ in intervals] + [(b, -1) for _, b in intervals])
    best = now = 0
    for _, step in points:
        now += step
        best = max(best, now)
    return best


@pytest.mark.anyio
@pytest.mark.parametrize("cap", [1, 3, 6])
async def test_concurrency_caps_the_tasks_the_relay_runs(cap: int, tmp_path: Path) -> None:
    n = 2 * cap + 2
    path = write_board(tmp_path, shots(n))
    sim = make_sim(durations=durations(100.0))
    out = await go(path, sim, concurrency=cap)
    assert out.result.exit_code == 0
    st = sim.stats()
    assert st.peak_running == cap, "at most the cap, and the cap is used"
    spans = [(t.created, t.finished) for t in st.tasks.values() if t.finished is not None]
    assert len(spans) == n
    assert most_overlapping(spans) <= cap


@pytest.mark.anyio
async def test_the_rate_caps_creates_in_any_60_seconds_without_a_burst(tmp_path: Path) -> None:
    # A run minute is 1.8 s, one create every 2 run seconds (60 ms): at 0.01 (20 ms apart) a
    # loaded machine delayed creates enough to miss "the rate is used" now and then.
    scale, rate = 0.03, 30
    path = write_board(tmp_path, shots(40))
    sim = make_sim(time_scale=scale, durations=durations(5.0))
    out = await go(path, sim, concurrency=40, rate_per_minute=rate)
    assert out.result.exit_code == 0
    st = sim.stats()
    assert st.creates == 40
    assert st.max_creates_in_window(60) <= rate
    assert st.max_creates_in_window(60) >= rate - 3, "the rate is used, not only respected"
    times = sorted(st.create_times)
    gaps = [b - a for a, b in pairwise(times)]
    assert min(gaps) >= 0.75 * 60 / rate, "no burst: creates are spaced"
    assert sum(1 for t in times if t < times[0] + 10) <= 6


# --- faults ----------------------------------------------------------------------------


@pytest.mark.anyio
async def test_a_429_storm_from_a_relay_slower_than_our_rate(tmp_path: Path) -> None:
    """The relay admits 4 creates a minute, we ask for 30: 429s with Retry-After."""
    path = write_board(tmp_path, shots(12))
    sim = make_sim(time_scale=0.005, rate_limit_per_minute=4)
    out = await go(path, sim, rate_per_minute=30, concurrency=12)
    st = sim.stats()
    assert out.result.exit_code == 0 and len(out.result.completed) == 12
    assert st.creates == 12
    assert_none_created_twice(sim)
    assert st.refusals.get("rate_limit_exceeded", 0) >= 1
    assert out.kinds("rate-limited")
    # Everyone pauses on a 429: a handful per window, not one per waiting shot per try.
    assert st.refusals["rate_limit_exceeded"] <= 2 * 12 // 4
    assert st.max_creates_in_window(60) <= 4


@pytest.mark.anyio
async def test_injected_429s_pause_all_creates_for_retry_after(tmp_path: Path) -> None:
    path = write_board(tmp_path, shots(4))
    sim = make_sim(time_scale=0.01)
    sim.inject("create", status=429, retry_after=15.0, count=3)
    out = await go(path, sim, concurrency=4)
    st = sim.stats()
    assert out.result.exit_code == 0 and st.creates == 4
    assert st.statuses.get(429) == 3
    assert len(out.kinds("rate-limited")) == 3
    # The first create went out at once and got 429: nobody may create for 15 s after.
    assert min(st.create_times) >= 15.0 * 0.95


@pytest.mark.anyio
async def test_5xx_on_creates_and_queries_are_retried(tmp_path: Path) -> None:
    path = write_board(tmp_path, shots(10))
    sim = make_sim(create_error_rate=0.3, query_error_rate=0.3, seed=21)
    out = await go(path, sim, concurrency=5)
    st = sim.stats()
    assert out.result.exit_code == 0 and len(out.result.completed) == 10
    assert st.creates == 10
    assert_none_created_twice(sim)
    assert st.statuses.get(500, 0) >= 3
    whats = Counter(e.data["what"] for e in out.kinds("retried"))
    assert whats["create"] >= 1 and whats["query"] >= 1


GARBAGE: list[tuple[int, bytes]] = [
    (200, b"<html><head><title>502 Bad Gateway</title></head></html>"),
    (200, b"[]"),
    (200, b'{"hello": "world"}'),
    (200, b"not json at all"),
    (200, b'{"status": "completed"}'),  # completed, but no URL
    (502, b"<html><head><title>Bad Gateway</title></head></html>"),
    (200, b'{"code": "success", "message": "", "data": null}'),
    (200, b""),
]


@pytest.mark.anyio
async def test_garbage_query_answers_are_retried(tmp_path: Path) -> None:
    path = write_board(tmp_path, shots(6))
    sim = make_sim()
    queries = 0

    def rewrite(request: httpx.Request, _n: int) -> tuple[int, bytes] | None:
        nonlocal queries
        if not is_query(request):
            return None
        queries += 1
        return GARBAGE[queries // 2 % len(GARBAGE)] if queries % 2 else None

    out = await go(path, sim, transport=Tamper(sim.transport(), rewrite))
    assert out.result.exit_code == 0 and len(out.result.completed) == 6
    assert sim.stats().creates == 6
    assert len(out.kinds("retried")) >= len(GARBAGE) // 2
    for entry in entries(path).values():
        assert entry.status == "completed" and entry.video_url.startswith(BASE)


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("answer", "forward"),
    [
        ((200, b'{"ok": true}'), True),  # the task exists, the answer is nonsense
        ((200, b"<html>oops</html>"), True),
        ((502, b"<html><title>Bad Gateway</title></html>"), False),  # a gateway, not the relay
    ],
    ids=["json-without-id", "html-200", "gateway-502"],
)
async def test_a_create_with_an_unreadable_answer_is_not_repeated_in_the_run(
    answer: tuple[int, bytes], forward: bool, tmp_path: Path
) -> None:
    path = write_board(tmp_path, shots(4))
    sim = make_sim()
    first_create = True

    def rewrite(request: httpx.Request, _n: int) -> tuple[int, bytes] | None:
        nonlocal first_create
        if is_create(request) and first_create:
            first_create = False
            return answer
        return None

    out = await go(
        path, sim, concurrency=1, transport=Tamper(sim.transport(), rewrite, forward=forward)
    )
    assert out.result.exit_code == 1
    assert out.result.failed == ()  # held (R1 item 2), not failed
    assert sim.stats().creates == (4 if forward else 3)
    assert_none_created_twice(sim)
    assert out.result.unknown == ("s00",)
    entry = entries(path)["s00"]
    # SPEC §4: a create with no answer leaves "unknown" (it may be billed), not "failed".
    assert entry.status == "unknown" and entry.task_id is None
    assert entry.submitted_at is not None
    assert f"a create was sent at {entry.submitted_at} and no answer came" in (entry.error or "")
    assert "may be billed" in (entry.error or "")


@pytest.mark.anyio
async def test_a_connection_dropped_before_the_relay_is_retried(tmp_path: Path) -> None:
    path = write_board(tmp_path, shots(5))
    sim = make_sim()
    sim.inject("create", drop="before", count=3)
    sim.inject("query", drop="before", count=3)
    out = await go(path, sim, concurrency=2)
    st = sim.stats()
    assert out.result.exit_code == 0 and len(out.result.completed) == 5
    assert st.drops.get("before") == 6
    assert st.creates == 5
    assert_none_created_twice(sim)


@pytest.mark.anyio
async def test_a_create_whose_answer_was_dropped_is_not_created_again(tmp_path: Path) -> None:
    path = write_board(tmp_path, shots(5))
    sim = make_sim()
    sim.inject("create", drop="after", count=1)
    sim.inject("query", drop="after", count=2)  # a query is only a read: retried
    out = await go(path, sim, concurrency=1)
    st = sim.stats()
    assert st.drops.get("after") == 3
    assert st.creates == 5, "the dropped create made a task; no second one was made"
    assert_none_created_twice(sim)
    assert out.result.unknown == ("s00",) and out.result.failed == ()  # held, not failed
    assert len(out.result.completed) == 4
    entry = entries(path)["s00"]
    assert entry.status == "unknown"
    assert "may be billed" in (entry.error or "") and "--retry-unknown" in (entry.error or "")
    # The next run holds it (SPEC §5: not repeated *blindly*) and exits 1 ...
    held = await go(path, sim)
    assert held.result.exit_code == 1 and held.result.unknown == ("s00",)
    assert sim.stats().creates == 5
    # ... and pays for it again only when asked to.
    again = await go(path, sim, retry_unknown=True)
    assert again.result.completed == ("s00",) and again.result.exit_code == 0
    assert sim.stats().creates == 6


@pytest.mark.anyio
async def test_chaos_every_shot_finishes_where_possible_and_none_twice(tmp_path: Path) -> None:
    path = write_board(tmp_path, shots(24))
    sim = make_sim(
        seed=8,
        time_scale=0.002,
        create_error_rate=0.15,
        query_error_rate=0.15,
        drop_rate=0.08,
        drop_after_rate=0.04,
        rate_limit_per_minute=40,
    )
    out = await go(path, sim, concurrency=6, rate_per_minute=60)
    assert_none_created_twice(sim)
    result = out.result
    # A lost answer to a create holds its shot (``unknown``: held, not failed).
    held = (*result.failed, *result.unknown)
    assert len(result.completed) + len(held) == 24
    book = entries(path)
    for shot_id in held:
        # Only a lost answer to a create may fail a shot here.
        assert "may exist" in (book[shot_id].error or ""), book[shot_id].error
    assert len(held) <= sim.stats().drops.get("after", 0)
    created = prompts_created(sim)
    for shot_id in result.completed:
        assert created[f"s shot {int(shot_id[1:])}"] == 1
    # A lost answer may hide a task or an error answer: at most one create either way.
    assert sim.stats().creates == len(created) <= 24


# --- key, quota, bad request --------------------------------------------------------------


@pytest.mark.anyio
async def test_a_refused_key_stops_the_run_before_anything_is_created(tmp_path: Path) -> None:
    path = write_board(tmp_path, shots(6))
    sim = make_sim(key="the-right-key")
    with pytest.raises(AuthError):
        await go(path, sim, key="a-wrong-key", concurrency=3)
    st = sim.stats()
    assert st.creates == 0 and not st.queries
    assert st.statuses.get(401, 0) <= 3


@pytest.mark.anyio
async def test_a_401_mid_run_stops_everything_at_once_and_keeps_the_task_ids(
    tmp_path: Path,
) -> None:
    path = write_board(tmp_path, shots(10))
    sim = make_sim(key=KEY)
    sim.inject("query", status=401)
    with anyio.fail_after(5), pytest.raises(AuthError):
        await go(path, sim, concurrency=2)
    st = sim.stats()
    assert st.creates == 2, "no create after the key was refused"
    assert st.statuses.get(401) == 1
    requests_then = sum(st.statuses.values())
    await anyio.sleep(0.05)
    assert sum(sim.stats().statuses.values()) == requests_then, "nothing runs on"
    book = entries(path)
    submitted = {k: v for k, v in book.items() if v.status == "submitted"}
    assert len(submitted) == 2 and all(v.task_id for v in submitted.values())
    # With the key accepted again, the next run resumes both and creates the rest.
    out = await go(path, sim, concurrency=2)
    assert out.result.exit_code == 0 and len(out.result.completed) == 10
    assert len(out.kinds("resumed")) == 2
    assert sim.stats().creates == 10
    assert_none_created_twice(sim)


@pytest.mark.anyio
async def test_a_spent_quota_stops_creating_and_lets_running_tasks_finish(tmp_path: Path) -> None:
    path = write_board(tmp_path, shots(8))
    sim = make_sim(quota=3)
    out = await go(path, sim, concurrency=2)
    st = sim.stats()
    result = out.result
    assert st.creates == 3
    assert 1 <= st.statuses.get(403, 0) <= 2
    assert len(result.completed) == 3, "tasks already running were waited for"
    assert len(result.not_started) == 5 and not result.failed
    assert result.quota_error and result.exit_code == 3
    assert any("quota" in m or "refused to create" in m for m in result.messages)
    assert {e.data["reason"] for e in out.kinds("not-started")} == {"quota spent"}


@pytest.mark.anyio
async def test_a_400_fails_only_its_shot_and_is_not_retried(tmp_path: Path) -> None:
    path = write_board(tmp_path, shots(5))
    sim = make_sim()
    sim.inject("create", status=400, code="invalid_request")
    out = await go(path, sim, concurrency=1)
    st = sim.stats()
    assert out.result.failed == ("s00",)
    assert len(out.result.completed) == 4
    assert st.statuses.get(400) == 1 and st.creates == 4
    assert "400" in (entries(path)["s00"].error or "")
    assert out.result.exit_code == 1


# --- timeouts, downloads, dialects -------------------------------------------------------


@pytest.mark.anyio
async def test_a_task_that_outlives_the_timeout_is_resumed_by_the_next_run(
    tmp_path: Path,
) -> None:
    path = write_board(tmp_path, shots(3))
    sim = make_sim(durations=durations(200.0))
    out = await go(path, sim, timeout=30.0)
    assert len(out.result.failed) == 3 and out.result.exit_code == 1
    book = entries(path)
    assert all(e.status == "submitted" and e.task_id for e in book.values())
    assert all("gave up" in (e.error or "") for e in book.values())
    again = await go(path, sim, timeout=1800.0)
    assert again.result.exit_code == 0 and len(again.kinds("resumed")) == 3
    assert sim.stats().creates == 3


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.anyio
async def test_download_saves_mp4s_and_a_rerun_fetches_only_missing_or_corrupt(
    tmp_path: Path,
) -> None:
    path = write_board(tmp_path, shots(5))
    folder = tmp_path / "videos"
    sim = make_sim()
    out = await go(path, sim, download_dir=folder)
    assert out.result.exit_code == 0
    book = entries(path)
    for shot_id, entry in book.items():
        video = folder / f"{shot_id}.mp4"
        data = video.read_bytes()
        assert data[4:8] == b"ftyp", "an MP4 file"
        assert entry.download is not None
        assert (tmp_path / entry.download.path).resolve() == video.resolve()
        assert entry.download.size == len(data)
        assert entry.download.sha256 == sha256(video)
    assert len(out.kinds("downloaded")) == 5
    assert sorted(p.name for p in folder.iterdir()) == [f"s{i:02d}.mp4" for i in range(5)]

    before = Seen.of(sim)
    await go(path, sim, download_dir=folder)
    assert Seen.of(sim) - before == Seen(0, 0, 0)

    # A missing file comes back from the results cache, without the network (R1 item 1).
    (folder / "s01.mp4").unlink()
    downloads = Counter(sim.stats().downloads)
    assert (await go(path, sim, download_dir=folder)).result.exit_code == 0
    assert Counter(sim.stats().downloads) == downloads
    assert sha256(folder / "s01.mp4") == book["s01"].download.sha256
    shutil.rmtree(tmp_path / ".vidu-pipe")  # without the cache: from the URLs

    (folder / "s01.mp4").unlink()
    damaged = bytearray((folder / "s02.mp4").read_bytes())
    damaged[100] ^= 0xFF  # same size, other bytes
    (folder / "s02.mp4").write_bytes(bytes(damaged))
    (folder / "s03.mp4").write_bytes(b"")
    downloads = Counter(sim.stats().downloads)
    again = await go(path, sim, download_dir=folder)
    fetched = Counter(sim.stats().downloads) - downloads
    ids = {book[s].task_id: s for s in book}
    assert sorted(ids[t] for t in fetched) == ["s01", "s02", "s03"]
    assert all(n == 1 for n in fetched.values())
    assert sim.stats().creates == 5
    assert again.result.exit_code == 0
    for shot_id in ("s01", "s02", "s03"):
        assert sha256(folder / f"{shot_id}.mp4") == book[shot_id].download.sha256


@pytest.mark.anyio
@pytest.mark.parametrize(
    "settings",
    [{"profile": "new-api"}, {"primary_query_404": True}, {"queue_seconds": (1.0, 30.0)}],
    ids=["new-api", "alias-route", "queued"],
)
async def test_other_relay_shapes_run_to_completion(
    settings: dict[str, Any], tmp_path: Path
) -> None:
    path = write_board(tmp_path, shots(4))
    sim = make_sim(**settings)
    out = await go(path, sim)
    assert out.result.exit_code == 0 and sim.stats().creates == 4


# --- the key stays secret -----------------------------------------------------------------

CANARY = "sk-CANARY-7f3e9a"


@pytest.mark.anyio
async def test_the_key_never_reaches_the_manifest_events_or_logs(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    path = write_board(tmp_path, shots(8))
    texts: list[str] = []

    class TimingOut(httpx.AsyncBaseTransport):
        """Every fifth request times out (a create then has an unknown outcome), the
        timeout's message carrying the request's headers, key included."""

        def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
            self.inner, self.requests = inner, 0

        async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
            self.requests += 1
            if self.requests % 5 == 0:
                raise httpx.ReadTimeout(f"timed out: {request.headers.raw}", request=request)
            return await self.inner.handle_async_request(request)

    runs: list[tuple[dict[str, Any], Callable[[Simulator], None]]] = [
        ({"key": CANARY, "quota": 2}, lambda s: None),
        ({"key": CANARY, "rate_limit_per_minute": 3}, lambda s: None),
        ({"key": CANARY, "create_error_rate": 0.3, "query_error_rate": 0.3}, lambda s: None),
        ({"key": CANARY}, lambda s: s.inject("create", drop="after", count=2)),
        ({"key": CANARY}, lambda s: s.inject("query", drop="before", count=2)),
        ({"key": CANARY}, lambda s: s.inject("create", status=400)),
    ]
    for i, (settings, prepare) in enumerate(runs):
        sim = make_sim(time_scale=0.002, **settings)
        prepare(sim)
        # Each run its own results cache: a shared one would restore the earlier runs'
        # videos instead of creating (and failing) again.
        out = await go(
            path,
            sim,
            key=CANARY,
            manifest=tmp_path / f"m{i}.json",
            cache_dir=tmp_path / f"cache{i}",
            rate_per_minute=60,
            timeout=60,
        )
        texts += [e.to_json() for e in out.events] + list(out.result.messages)
        texts.append((tmp_path / f"m{i}.json").read_text())
    sim = make_sim(key=CANARY)
    out = await go(
        path,
        sim,
        key=CANARY,
        manifest=tmp_path / "t.json",
        cache_dir=tmp_path / "cache-t",
        transport=TimingOut(sim.transport()),
    )
    assert out.kinds("retried") and (out.result.failed or out.result.unknown)
    texts += [e.to_json() for e in out.events]
    # Refused: the canary is the wrong key here.
    with pytest.raises(AuthError) as refused:
        await go(path, make_sim(key="another"), key=CANARY, manifest=tmp_path / "r.json")
    texts.append(str(refused.value))
    texts.append(caplog.text)
    texts += [p.read_text(errors="replace") for p in tmp_path.iterdir() if p.is_file()]
    leaks = [t for t in texts if CANARY in t]
    assert not leaks, leaks[0][:500]


@pytest.mark.anyio
async def test_through_the_runner_polling_stays_within_10_queries_and_5_percent(
    tmp_path: Path,
) -> None:
    """Tasks of 1, 3 and 7 minutes (one model each), polled by the real runner with the
    default --poll-interval 5; the lag is read off the simulator's clock. At 0.02 (a run
    second is 20 ms; the 7-minute task takes 8.4 s) the slack below is 40 ms: at 0.005 it
    was 10 ms, which a loaded machine (parallel workers) overran now and then."""
    scale = 0.02
    spans = {"viduq3t-540p": 60.0, "viduq3t-720p": 180.0, "viduq3t-1080p": 420.0}
    board = [{"id": m, "model": m, "prompt": f"a {s:g} s task"} for m, s in spans.items()]
    path = write_board(tmp_path, board)
    sim = make_sim(time_scale=scale, durations={m: (spans.get(m, 20.0),) * 2 for m in MODELS})
    lags: dict[str, float] = {}

    def on_event(event: Event) -> None:
        if event.kind == "completed":
            finished = sim.stats().tasks[event.data["task_id"]].finished
            assert finished is not None
            lags[str(event.shot)] = sim.now() - finished

    result = await arun(
        path,
        base_url=BASE,
        options=RunOptions(time_scale=scale, rate_per_minute=0),
        on_event=on_event,
        transport=sim.transport(),
        env={"VIDU_API_KEY": KEY},
    )
    assert result.exit_code == 0
    book = entries(path)
    queries = sim.stats().queries
    for model, seconds in spans.items():
        assert queries[book[model].task_id] <= 10, (model, queries[book[model].task_id])
        # 5% of the task, plus 2 run seconds (40 ms) for the event loop and an fsync.
        assert 0 <= lags[model] <= 0.05 * seconds + 2.0, (model, lags[model])


@pytest.mark.anyio
async def test_a_task_done_before_the_timeout_is_seen_completed(tmp_path: Path) -> None:
    # Queued 20 s, then 5 s of work: done at 25 s. Polled at 20 s (still waiting), the
    # schedule's next query falls at 40 s, the deadline.
    path = write_board(tmp_path, shots(1))
    sim = make_sim(time_scale=0.01, queue_seconds=(20.0, 20.0), durations=durations(5.0))
    out = await go(path, sim, poll_interval=20.0, timeout=40.0)
    task = next(iter(sim.stats().tasks.values()))
    assert task.finished is not None and task.finished < task.created + 40.0 - 10.0
    assert out.result.completed == ("s00",), out.result.failed


# --- relays of every kind (issue 9) ----------------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize("profile", ["seed", "new-api", "new-api-legacy", "vidu"])
async def test_every_profile_completes_with_the_right_url_and_keeps_failure_reasons(
    tmp_path: Path, profile: str
) -> None:
    sim = make_sim(
        profile=profile,
        durations=durations(120.0),
        queue_seconds=(1.0, 5.0),
        max_running=5,
        time_scale=0.002,
    )
    board = [*shots(7), {"id": "bad", "prompt": "doomed [[fail]]"}]
    path = write_board(tmp_path, board)
    out = await go(path, sim, concurrency=4, poll_interval=5.0)
    assert out.result.completed == tuple(f"s{i:02d}" for i in range(7))
    assert out.result.failed == ("bad",)
    book = entries(path)
    stats = sim.stats()
    for shot_id in out.result.completed:
        task_id = book[shot_id].task_id
        assert book[shot_id].video_url == f"{BASE}/files/{task_id}.mp4"
        assert stats.queries[task_id] <= 12, (shot_id, stats.queries[task_id])
    assert "fail marker" in (book["bad"].error or "")
    assert stats.creates == 8  # the marker's failure is not transient: not created again


@pytest.mark.anyio
async def test_the_pace_is_learned_and_kept_beside_the_storyboard(tmp_path: Path) -> None:
    """A second run of the same kinds finds the pace in .vidu-pipe/pace.json and spends
    fewer queries per task on a relay without progress."""
    path = write_board(tmp_path, shots(8))
    queries = []
    for _ in range(2):
        # At 0.005 (a 300 s task takes 1.5 s), not SCALE's 0.001: there a 30 ms stall of a
        # loaded machine was 30 run seconds, past the learned pace's bound.
        sim = make_sim(profile="vidu", durations=durations(300.0), max_running=5, time_scale=0.005)
        await go(path, sim, concurrency=4, poll_interval=5.0, force=True)
        stats = sim.stats()
        queries.append(sum(stats.queries.values()) / stats.creates)
    pace = json.loads((tmp_path / ".vidu-pipe" / "pace.json").read_text())
    ((kind, learned),) = pace["relays"][BASE].items()
    assert kind == "viduq3t-540p/5/default/text" or kind.startswith("viduq3t-540p/5")
    assert 290 <= learned["seconds"] <= 330 and learned["n"] >= 8
    assert queries[1] < queries[0] and queries[1] <= 6, queries


@pytest.mark.anyio
async def test_a_relay_that_never_says_generating_is_paced_by_create_to_done(
    tmp_path: Path,
) -> None:
    """A relay that answers "queued" until a task is done: the run learns the kind's
    create-to-done time, keeps it as such, and the next run aims by it."""
    path = write_board(tmp_path, shots(8))
    queries = []
    for _ in range(2):
        sim = make_sim(
            profile="vidu",
            says_generating=False,
            durations=durations(300.0),
            max_running=5,
            time_scale=0.005,
        )
        out = await go(path, sim, concurrency=4, poll_interval=5.0, force=True)
        assert len(out.result.completed) == 8, out.result
        stats = sim.stats()
        queries.append(sum(stats.queries.values()) / stats.creates)
    pace = json.loads((tmp_path / ".vidu-pipe" / "pace.json").read_text())
    ((_, learned),) = pace["relays"][BASE].items()
    assert learned["from"] == "create" and 290 <= learned["seconds"] <= 340, learned
    assert queries[1] <= 6, queries


@pytest.mark.anyio
async def test_the_pace_goes_to_the_cache_folder_when_one_is_given(tmp_path: Path) -> None:
    """``cache_dir`` moves the local cache, pace included: nothing lands beside the
    storyboard's own ``.vidu-pipe/``."""
    board = tmp_path / "board"
    board.mkdir()
    path = write_board(board, shots(2))
    elsewhere = tmp_path / "cache"
    await go(path, make_sim(profile="vidu"), cache_dir=elsewhere, poll_interval=5.0)
    assert json.loads((elsewhere / "pace.json").read_text())["relays"][BASE]
    assert not (board / ".vidu-pipe" / "pace.json").exists()


@pytest.mark.anyio
async def test_a_simulated_run_learns_no_pace(tmp_path: Path) -> None:
    """--simulate plays a relay that does not exist, at a compressed time scale: its pace
    would mislead the next run against any relay at the simulator's URL."""
    path = write_board(tmp_path, shots(3))
    result = await arun(path, simulate=True)
    assert result.completed == ("s00", "s01", "s02")
    assert (tmp_path / ".vidu-pipe" / "videos").is_dir()  # its placeholder clips are kept
    assert not (tmp_path / ".vidu-pipe" / "pace.json").exists()


@pytest.mark.anyio
async def test_a_corrupt_pace_file_is_ignored_and_replaced(tmp_path: Path) -> None:
    path = write_board(tmp_path, shots(2))
    (tmp_path / ".vidu-pipe").mkdir()
    (tmp_path / ".vidu-pipe" / "pace.json").write_text("{not json")
    out = await go(path, make_sim(profile="new-api"), poll_interval=5.0)
    assert out.result.exit_code == 0
    assert json.loads((tmp_path / ".vidu-pipe" / "pace.json").read_text())["version"] == 2


@pytest.mark.anyio
async def test_an_inline_video_is_saved_when_downloading_never_written_to_the_manifest(
    tmp_path: Path,
) -> None:
    path = write_board(tmp_path, shots(2))
    sim = make_sim(profile="new-api-legacy", inline_rate=1.0)
    out = await go(path, sim, poll_interval=5.0)
    # Without --download: nowhere to keep it; the task keeps its id for the next run.
    assert out.result.failed == ("s00", "s01")
    manifest_text = path.with_suffix(".manifest.json").read_text()
    assert "data:video" not in manifest_text and "base64" not in manifest_text
    book = entries(path)
    assert all(e.status == "submitted" and "--download" in (e.error or "") for e in book.values())
    again = await go(path, sim, poll_interval=5.0, download_dir=tmp_path / "videos")
    assert again.result.completed == ("s00", "s01") and sim.stats().creates == 2
    for shot_id in ("s00", "s01"):
        saved = tmp_path / "videos" / f"{shot_id}.mp4"
        assert saved.stat().st_size > 0
        assert (
            entries(path)[shot_id].download.sha256 == hashlib.sha256(saved.read_bytes()).hexdigest()
        )
    assert "data:video" not in path.with_suffix(".manifest.json").read_text()
    # The saved file is the video: the next run has nothing to pay for again.
    third = await go(path, sim, poll_interval=5.0, download_dir=tmp_path / "videos")
    assert third.result.skipped == ("s00", "s01") and sim.stats().creates == 2


@pytest.mark.anyio
async def test_an_inline_video_whose_file_was_deleted_is_cut_and_saved_again_from_the_cache(
    tmp_path: Path,
) -> None:
    path = write_board(tmp_path, shots(2))
    sim = make_sim(profile="new-api-legacy", inline_rate=1.0)
    videos = tmp_path / "videos"
    first = await go(path, sim, poll_interval=5.0, download_dir=videos)
    assert first.result.completed == ("s00", "s01")
    saved = {p.name: p.read_bytes() for p in videos.iterdir()}
    for file in videos.iterdir():
        file.unlink()
    # No URL ever held these videos: cut finds them in the results cache.
    film = tmp_path / "film.mp4"
    made = await anyio.to_thread.run_sync(lambda: cut(path, output=film))
    assert made.shots == ("s00", "s01") and film.stat().st_size > 0
    # --download puts them back from the cache, without a create or a download.
    before = Seen.of(sim)
    again = await go(path, sim, poll_interval=5.0, download_dir=videos)
    assert again.result.skipped == ("s00", "s01") and again.result.failed == ()
    assert Seen.of(sim) - before == Seen(0, 0, 0)
    assert {p.name: p.read_bytes() for p in videos.iterdir()} == saved
    # Gone from both: cut says why, not that a URL expired.
    shutil.rmtree(videos)
    shutil.rmtree(tmp_path / ".vidu-pipe")
    with pytest.raises(CutError, match=r"s00': its video came inline \(no URL\)"):
        await anyio.to_thread.run_sync(lambda: cut(path, output=film))


def scripted_relay(
    queries: Callable[[int, int], dict[str, Any]],
) -> tuple[httpx.MockTransport, Counter[str]]:
    """A relay whose n-th create makes ``task_n``, and whose k-th answer about a task is
    ``queries(n, k)``."""
    seen: Counter[str] = Counter()

    def handler(request: httpx.Request) -> httpx.Response:
        if request.method == "POST":
            seen["create"] += 1
            task_id = f"task_{seen['create']}"
            return httpx.Response(200, json={"id": task_id, "status": "queued", "progress": 0})
        task_id = request.url.path.rsplit("/", 1)[-1]
        seen[task_id] += 1
        return httpx.Response(200, json=queries(int(task_id[5:]), seen[task_id]))

    return httpx.MockTransport(handler), seen


@pytest.mark.anyio
async def test_a_completed_task_without_a_url_is_asked_a_few_times_then_left_for_next_run(
    tmp_path: Path,
) -> None:
    path = write_board(tmp_path, shots(1))
    flat = {"status": "SUCCESS", "progress": "100%", "fail_reason": ""}  # new-api rc.30
    transport, seen = scripted_relay(lambda n, k: {"task_id": f"task_{n}", **flat})
    out = await go(path, make_sim(), transport=transport, poll_interval=1.0)
    assert out.result.failed == ("s00",) and seen["task_1"] == 3 and seen["create"] == 1
    entry = entries(path)["s00"]
    assert entry.status == "submitted" and entry.task_id == "task_1"
    assert "no video URL" in (entry.error or "") and "next run asks again" in (entry.error or "")
    # The next run asks again; the URL is there now.
    transport, seen = scripted_relay(
        lambda n, k: {"task_id": f"task_{n}", **flat, "result_url": "https://cdn.test/v.mp4"}
    )
    again = await go(path, make_sim(), transport=transport, poll_interval=1.0)
    assert again.result.completed == ("s00",) and seen["create"] == 0
    assert entries(path)["s00"].video_url == "https://cdn.test/v.mp4"


@pytest.mark.anyio
async def test_a_transient_failure_is_created_again_once(tmp_path: Path) -> None:
    path = write_board(tmp_path, shots(1))

    def answers(n: int, k: int) -> dict[str, Any]:
        if n == 1:
            return {
                "id": "task_1",
                "status": "failed",
                "fail_reason": "generation failed upstream, please retry",
            }
        return {"id": f"task_{n}", "status": "completed", "video_url": "https://cdn.test/v.mp4"}

    transport, seen = scripted_relay(answers)
    out = await go(path, make_sim(), transport=transport, poll_interval=1.0)
    assert out.result.completed == ("s00",) and seen["create"] == 2
    assert [e.data["what"] for e in out.kinds("retried")] == ["create"]
    assert entries(path)["s00"].task_id == "task_2"


@pytest.mark.anyio
async def test_a_transient_failure_is_created_again_only_once(tmp_path: Path) -> None:
    path = write_board(tmp_path, shots(1))
    always = {"status": "failed", "fail_reason": "generation failed upstream, please retry"}
    transport, seen = scripted_relay(lambda n, k: {"id": f"task_{n}", **always})
    out = await go(path, make_sim(), transport=transport, poll_interval=1.0)
    assert out.result.failed == ("s00",) and seen["create"] == 2


@pytest.mark.anyio
async def test_a_content_review_failure_is_not_retried_and_run_and_plan_say_what_to_change(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_board(tmp_path, shots(1))
    refused = {"status": "FAILURE", "fail_reason": "CreationPolicyViolation", "progress": "100%"}
    transport, seen = scripted_relay(
        lambda n, k: {"code": "success", "data": {"task_id": f"task_{n}", **refused}}
    )
    out = await go(path, make_sim(), transport=transport, poll_interval=1.0)
    assert out.result.failed == ("s00",) and seen["create"] == 1
    assert any(
        "likely to fail again" in m and "change the prompt" in m for m in out.result.messages
    )
    from vidu_pipe.cli import main

    assert main(["plan", str(path)]) == 0
    assert "likely to fail again" in capsys.readouterr().out
    again = await go(path, make_sim(), transport=transport, poll_interval=1.0)
    assert any("likely to fail again" in m for m in again.result.messages)


@pytest.mark.anyio
async def test_an_unreachable_relay_is_its_own_error_and_says_why_shots_did_not_start(
    tmp_path: Path,
) -> None:
    """The run tells an unreachable relay by its error class, not by words in a message."""
    from vidu_pipe.errors import RelayUnreachableError

    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    path = write_board(tmp_path, shots(6))
    events: list[Event] = []
    with pytest.raises(RelayUnreachableError) as stopped:
        await arun(
            path,
            base_url=BASE,
            options=RunOptions(time_scale=SCALE, concurrency=1, rate_per_minute=0),
            on_event=events.append,
            transport=httpx.MockTransport(refuse),
            env={"VIDU_API_KEY": KEY},
        )
    assert stopped.value.exit_code == 3
    reasons = {getattr(e, "reason", None) for e in events if e.kind == "not-started"}
    assert reasons == {"relay unreachable"}


@pytest.mark.anyio
async def test_manifest_writes_leave_the_event_loop_except_the_write_ahead_mark(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A manifest write fsyncs and may compact the whole file: on the event loop it would
    stall every poll of every shot. Only the write-ahead mark (announce) stays there, so
    that the create follows the gate at once."""
    loop_thread = threading.get_ident()
    on_loop: Counter[str] = Counter()
    original = ManifestStore.set

    def watched(self: ManifestStore, *args: Any, **kwargs: Any) -> None:
        if threading.get_ident() == loop_thread:
            on_loop[sys._getframe(1).f_code.co_name] += 1
        original(self, *args, **kwargs)

    monkeypatch.setattr(ManifestStore, "set", watched)
    videos = tmp_path / "videos"
    board = shots(3)
    board[2]["prompt"] += " [[fail]]"  # a failed task is written too
    path = write_board(tmp_path, board)
    sim = make_sim()
    first = await go(path, sim, poll_interval=2.0, download_dir=videos)
    assert first.result.completed == ("s00", "s01") and first.result.failed == ("s02",)
    # A renamed shot adopts its video; a reverted prompt restores one from the cache.
    board[0]["id"] = "renamed"
    board[1]["prompt"] = "another prompt"
    path = write_board(tmp_path, board)
    await go(path, sim, poll_interval=2.0, download_dir=videos)
    board[1]["prompt"] = "s shot 1"
    path = write_board(tmp_path, board)
    third = await go(path, sim, poll_interval=2.0, download_dir=videos)
    assert third.result.restored == ("s01",)
    assert set(on_loop) == {"announce"}, on_loop


# --- R1 review, items 2 and 11 -------------------------------------------------------------


def test_a_held_unknown_shot_is_its_own_line_and_count_not_a_failure(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from vidu_pipe.cli import main
    from vidu_pipe.simulator import running_server

    monkeypatch.setenv("VIDU_API_KEY", KEY)
    path = write_board(tmp_path, shots(2))
    # No queue: the default's 1-5 s (real seconds at time scale 1) are no part of this test.
    relay = SimulatorConfig(key=KEY, durations=durations(0.1), queue_seconds=(0.0, 0.0), seed=3)
    with running_server(relay) as url:
        flags = ["--base-url", url, "--poll-interval", "0.05", "--rate", "0"]
        assert main(["run", str(path), *flags, "--quiet"]) == 0
        manifest = path.with_suffix(".manifest.json")
        data = json.loads(manifest.read_text())
        sent = "2026-11-29T10:00:00Z"
        data["shots"]["s00"].update(
            status="unknown", task_id=None, video_url=None, finished_at=None, submitted_at=sent
        )
        manifest.write_text(json.dumps(data))
        shutil.rmtree(tmp_path / ".vidu-pipe")  # no earlier result to restore it from
        capsys.readouterr()
        assert main(["run", str(path), *flags]) == 1  # held shots keep the run at exit 1
        out = capsys.readouterr().out
        assert "FAILED" not in out
        assert (
            f"s00: held: a create was sent at {sent} and no answer came: it may be billed; "
            "--retry-unknown creates it again"
        ) in out.splitlines()
        summary = next(line for line in out.splitlines() if "manifest:" in line)
        assert "0 failed" in summary and "1 held" in summary, summary
        assert main(["run", str(path), *flags, "--json"]) == 1
        lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [e["shot"] for e in lines if e["event"] == "held"] == ["s00"]
    assert not [e for e in lines if e["event"] == "failed"]
    finished = lines[-1]
    assert finished["event"] == "run-finished"
    assert (finished["failed"], finished["unknown"], finished["exit_code"]) == (0, 1, 1)


@pytest.mark.anyio
async def test_a_transient_task_failure_is_told_as_such_and_a_failed_entry_has_finished_at(
    tmp_path: Path,
) -> None:
    from vidu_pipe.views.progress import plain_line

    path = write_board(tmp_path, shots(1))
    always = {"status": "failed", "fail_reason": "SystemThrottling"}
    transport, seen = scripted_relay(lambda n, k: {"id": f"task_{n}", **always})
    out = await go(path, make_sim(), transport=transport, poll_interval=1.0)
    assert out.result.failed == ("s00",) and seen["create"] == 2
    (again,) = out.kinds("retried")
    assert plain_line(again) == (
        "s00: the task failed (SystemThrottling); creating it again once: "
        "the relay calls it transient"
    )
    entry = entries(path)["s00"]
    assert entry.status == "failed" and entry.finished_at is not None
