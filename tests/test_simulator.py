"""The built-in simulator of the Vidu Q3 relay, driven over HTTP.

In-process through ``Simulator.transport()`` and over a loopback socket through
``running_server``. Lifecycle tests use a fake clock, so they are exact and fast.
"""

from __future__ import annotations

import contextlib
import json
import logging
import shutil
import socket
import struct
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from vidu_pipe.errors import ConfigError
from vidu_pipe.simulator import (
    DEFAULT_DURATIONS,
    Simulator,
    SimulatorConfig,
    running_server,
    serve,
)
from vidu_pipe.simulator._video import FRAME_RATE, frame_size, sample_mp4
from vidu_pipe.storyboard.schemas import MODELS

CREATE = "/v1/video/generations"
KEY = "sk-simulator-test-key"

# The seed document's section 4, verbatim.
SEED_EXAMPLES = {
    "4.1 text-to-video": """{"model": "viduq3p-720p",
"prompt": " camera, and, slow camera push-in. ",
"aspect_ratio": "16:9",
"duration": 5,
"extra_body": {"audio": false,
"seed": 42,
"bgm": false}}""",
    "4.2 single-image-to-video": """{"model": "viduq3t-540p",
"prompt": " camera, natural motion, camera. ",
"image": "https://example.com/source.png",
"duration": 5,
"extra_body": {"seed": 42}}""",
    "4.3 first-and-last-frame": """{"model": "viduq3p-720p",
"prompt": ", keep identity stable, action. ",
"image": "https://example.com/head.png",
"last_image": "https://example.com/tail.png",
"duration": 6,
"extra_body": {"seed": 42}}""",
    "4.4 reference-image-to-video": """{"model": "viduq3p-720p",
"prompt": "A @Image1 walking through a beach in the visual style of @Image2",
"reference_image_urls": ["https://example.com/ref-1.png",
"https://example.com/ref-2.png"],
"aspect_ratio": "16:9",
"duration": 5,
"extra_body": {"audio": false,
"seed": 42,
"bgm": false}}""",
}

TEXT: dict[str, Any] = {
    "model": "viduq3p-720p",
    "prompt": "Wide aerial shot of a quiet beach",
    "duration": 5,
    "aspect_ratio": "16:9",
    "extra_body": {"audio": False, "bgm": False, "seed": 42},
}

# Every model takes exactly 100 simulated seconds for a 5-second clip.
FIXED = {m: (100.0, 100.0) for m in MODELS}


class FakeClock:
    """A clock the test moves by hand, in real seconds."""

    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += seconds


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def fixed(**overrides: Any) -> tuple[Simulator, FakeClock]:
    """A simulator on a fake clock whose tasks take 100 s and never wait to be queued."""
    clock = FakeClock()
    settings: dict[str, Any] = {"durations": FIXED, "queue_seconds": (0.0, 0.0)}
    settings.update(overrides)
    return Simulator(SimulatorConfig(**settings), clock=clock), clock


@contextlib.asynccontextmanager
async def connect(
    sim: Simulator, *, key: str | None = None, base_url: str = "http://sim.test"
) -> AsyncIterator[httpx.AsyncClient]:
    headers = {"Authorization": f"Bearer {key}"} if key is not None else {}
    async with httpx.AsyncClient(
        transport=sim.transport(), base_url=base_url, headers=headers
    ) as client:
        yield client


def with_changes(body: dict[str, Any], **changes: Any) -> dict[str, Any]:
    out: dict[str, Any] = json.loads(json.dumps(body))
    for name, value in changes.items():
        if value is _DELETE:
            out.pop(name, None)
        else:
            out[name] = value
    return out


_DELETE = object()


def boxes(data: bytes) -> list[tuple[bytes, bytes]]:
    """The top-level ISO-BMFF boxes of ``data`` as (type, payload); fails if they do not tile it."""
    out, pos = [], 0
    while pos < len(data):
        size, kind = struct.unpack(">I4s", data[pos : pos + 8])
        assert size >= 8, f"bad box size {size} at {pos}"
        out.append((kind, data[pos + 8 : pos + size]))
        pos += size
    assert pos == len(data)
    return out


def assert_mp4(
    data: bytes, *, seconds: int | None = None, size: tuple[int, int] | None = None
) -> None:
    top = boxes(data)
    assert top[0][0] == b"ftyp" and top[0][1][:4] == b"isom"
    kinds = {k: p for k, p in top}
    assert b"moov" in kinds and b"mdat" in kinds
    moov = kinds[b"moov"]
    inner = dict(boxes(moov))
    assert b"mvhd" in inner and b"trak" in inner
    timescale, duration = struct.unpack(">II", inner[b"mvhd"][12:20])
    if seconds is not None:
        assert duration / timescale == pytest.approx(seconds)
    if size is not None:
        tkhd = dict(boxes(inner[b"trak"]))[b"tkhd"]
        width, height = struct.unpack(">II", tkhd[-8:])
        assert (width >> 16, height >> 16) == size


# -- the seed document's examples and errors ---------------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize("name", list(SEED_EXAMPLES))
async def test_seed_request_examples_are_accepted(name: str) -> None:
    sim = Simulator(SimulatorConfig(key=KEY))
    raw = SEED_EXAMPLES[name]
    before = int(time.time())
    async with connect(sim, key=KEY) as client:
        answer = await client.post(
            CREATE, content=raw, headers={"Content-Type": "application/json"}
        )
    assert answer.status_code == 200, answer.text
    job = answer.json()
    assert set(job) == {"id", "task_id", "object", "model", "status", "progress", "created_at"}
    assert job["id"] == job["task_id"] and job["id"].startswith("task_")
    assert job["object"] == "video.generation.job"
    assert job["model"] == json.loads(raw)["model"]
    assert (job["status"], job["progress"]) == ("queued", 0)
    assert isinstance(job["created_at"], int) and before - 1 <= job["created_at"] <= time.time() + 1
    assert sim.stats().bodies == (json.loads(raw),)


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("body", "field"),
    [
        pytest.param(
            {
                "model": "viduq3p-720p",
                "prompt": "first-and-last-frame ",
                "images": ["https://example.com/head.png", "https://example.com/tail.png"],
                "duration": 6,
            },
            "images",
            id="6.1 images array",
        ),
        pytest.param(
            with_changes(
                TEXT,
                model="viduq3t-720p",
                reference_image_urls=["https://example.com/ref-1.png"],
                prompt="@Image1 on a beach",
            ),
            "model",
            id="6.2 references on Turbo",
        ),
        pytest.param(
            with_changes(TEXT, model="viduq2-pro"), "model", id="6.3 model not one of six"
        ),
    ],
)
async def test_seed_common_errors_are_refused_naming_the_field(
    body: dict[str, Any], field: str
) -> None:
    sim = Simulator()
    async with connect(sim) as client:
        answer = await client.post(CREATE, json=body)
    assert answer.status_code == 400
    error = answer.json()["error"]
    assert set(error) >= {"message", "type", "code"}
    assert error["code"] == "invalid_request"
    assert error["param"] == field
    assert error["message"].startswith(f"{field}: ")
    assert sim.stats().creates == 0


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"model": _DELETE}, "model"),
        ({"prompt": "   "}, "prompt"),
        ({"prompt": "x" * 5001}, "prompt"),
        ({"duration": 0}, "duration"),
        ({"duration": 17}, "duration"),
        ({"duration": "5.5"}, "duration"),
        ({"duration": "five"}, "duration"),
        ({"aspect_ratio": "4:3"}, "aspect_ratio"),
        ({"last_image": "https://example.com/tail.png"}, "last_image"),
        ({"image": "http://localhost/a.png"}, "image"),
        ({"image": "file:///tmp/a.png"}, "image"),
        (
            {"reference_image_urls": [f"https://e.com/{i}.png" for i in range(5)]},
            "reference_image_urls",
        ),
        ({"image_urls": ["https://example.com/a.png"]}, "image_urls"),
        ({"negative_prompt": "blur"}, "negative_prompt"),
        ({"extra_body": {"audio": True, "bgm": False}}, "extra_body.audio"),
        ({"extra_body": {"audio": False, "bgm": True}}, "extra_body.bgm"),
        ({"extra_body": {"audio": False, "bgm": False, "seed": -1}}, "extra_body.seed"),
    ],
)
async def test_body_rules_refuse_with_400_naming_the_field(
    changes: dict[str, Any], field: str
) -> None:
    sim = Simulator()
    async with connect(sim) as client:
        answer = await client.post(CREATE, json=with_changes(TEXT, **changes))
    assert answer.status_code == 400
    error = answer.json()["error"]
    assert error["param"] == field
    assert field in error["message"]
    assert sim.stats().creates == 0
    assert sim.stats().refusals == {"invalid_request": 1}


@pytest.mark.anyio
@pytest.mark.parametrize("duration", ["5", "16", " 7 "])
async def test_numeric_string_duration_is_accepted_as_the_relay_does(duration: str) -> None:
    sim, _ = fixed()
    async with connect(sim) as client:
        answer = await client.post(CREATE, json=with_changes(TEXT, duration=duration))
    assert answer.status_code == 200
    assert sim.stats().bodies[0]["duration"] == duration  # recorded as received


@pytest.mark.anyio
async def test_reference_mode_rejects_image_too() -> None:
    body = with_changes(
        json.loads(SEED_EXAMPLES["4.4 reference-image-to-video"]),
        image="https://example.com/a.png",
    )
    async with connect(Simulator()) as client:
        answer = await client.post(CREATE, json=body)
    assert answer.status_code == 400
    assert "reference_image_urls cannot be combined" in answer.json()["error"]["message"]


@pytest.mark.anyio
@pytest.mark.parametrize("raw", [b"{not json", b"[1, 2]", b'"text"'])
async def test_a_body_that_is_not_a_json_object_is_refused(raw: bytes) -> None:
    sim = Simulator()
    async with connect(sim) as client:
        answer = await client.post(CREATE, content=raw)
    assert answer.status_code == 400
    assert answer.json()["error"]["code"] == "invalid_request"
    assert answer.json()["error"]["message"].startswith("body: ")


# -- the key ---------------------------------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize(
    "authorization",
    [None, "Bearer wrong-key", f"Basic {KEY}", "Bearer ", KEY, f"Bearer {KEY}x"],
)
async def test_a_wrong_or_missing_key_gets_401_without_echo(
    authorization: str | None, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    sim, _ = fixed(key=KEY)
    headers = {"Authorization": authorization} if authorization is not None else {}
    async with connect(sim, key=KEY) as good, connect(sim) as client:
        task_id = (await good.post(CREATE, json=TEXT)).json()["id"]
        for answer in [
            await client.post(CREATE, json=TEXT, headers=headers),
            await client.get(f"{CREATE}/{task_id}", headers=headers),
            await client.get(f"/v1/videos/{task_id}", headers=headers),
        ]:
            assert answer.status_code == 401
            error = answer.json()["error"]
            assert set(error) == {"message", "type", "code"}
            assert error["code"] == "invalid_api_key"
            assert KEY not in answer.text and "wrong-key" not in answer.text
    assert sim.stats().creates == 1
    assert sim.stats().refusals == {"invalid_api_key": 3}
    assert KEY not in caplog.text
    assert KEY not in repr(sim.config)


@pytest.mark.anyio
@pytest.mark.parametrize("authorization", [None, "Bearer anything", "Bearer "])
async def test_without_a_configured_key_any_or_no_bearer_is_accepted(
    authorization: str | None,
) -> None:
    sim = Simulator()
    headers = {"Authorization": authorization} if authorization is not None else {}
    async with connect(sim) as client:
        answer = await client.post(CREATE, json=TEXT, headers=headers)
        assert answer.status_code == 200
        query = await client.get(f"{CREATE}/{answer.json()['id']}", headers=headers)
        assert query.status_code == 200


# -- the task lifecycle ----------------------------------------------------------------------


@pytest.mark.anyio
async def test_a_task_goes_queued_in_progress_completed_with_rising_progress() -> None:
    sim, clock = fixed(queue_seconds=(3.0, 3.0))
    async with connect(sim) as client:
        created = (await client.post(CREATE, json=TEXT)).json()
        path = f"{CREATE}/{created['id']}"
        seen = []
        for _ in range(12):
            seen.append((await client.get(path)).json())
            clock.advance(10.0)
    statuses = [doc["status"] for doc in seen]
    assert statuses[0] == "queued"
    assert "in_progress" in statuses
    assert statuses[-1] == "completed"
    assert statuses == sorted(statuses, key=["queued", "in_progress", "completed"].index)
    progress = [doc["progress"] for doc in seen]
    assert progress == sorted(progress) and progress[0] == 0 and progress[-1] == 100
    running = [doc["progress"] for doc in seen if doc["status"] == "in_progress"]
    assert len(set(running)) == len(running) and all(1 <= p <= 99 for p in running)
    assert {doc["created_at"] for doc in seen} == {created["created_at"]}
    assert seen[-1]["video_url"] == f"http://sim.test/files/{created['id']}.mp4"
    assert all("video_url" not in doc for doc in seen if doc["status"] != "completed")


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("overrides", "prompt", "fails"),
    [
        ({}, "a calm sea", False),
        ({}, "a calm sea [[fail]]", True),
        ({"fail_marker": "<<boom>>"}, "a calm sea <<boom>>", True),
        ({"fail_marker": "<<boom>>"}, "a calm sea [[fail]]", False),
        ({"fail_rate": 1.0}, "a calm sea", True),
    ],
)
async def test_failure_by_marker_or_rate_carries_a_reason(
    overrides: dict[str, Any], prompt: str, fails: bool
) -> None:
    sim, clock = fixed(**overrides)
    async with connect(sim) as client:
        task_id = (await client.post(CREATE, json=with_changes(TEXT, prompt=prompt))).json()["id"]
        clock.advance(500.0)
        doc = (await client.get(f"{CREATE}/{task_id}")).json()
    if fails:
        assert doc["status"] == "failed"
        assert isinstance(doc["error"]["message"], str) and doc["error"]["message"]
        assert "video_url" not in doc and doc["progress"] < 100
    else:
        assert doc["status"] == "completed" and "error" not in doc


@pytest.mark.anyio
async def test_the_fail_rate_fails_about_that_share() -> None:
    sim, clock = fixed(fail_rate=0.3, max_running=100)
    async with connect(sim) as client:
        for _ in range(100):
            assert (await client.post(CREATE, json=TEXT)).status_code == 200
    clock.advance(1000.0)
    statuses = [t.status for t in sim.stats().tasks.values()]
    assert 15 <= statuses.count("failed") <= 45
    assert statuses.count("failed") + statuses.count("completed") == 100


@pytest.mark.anyio
async def test_the_account_runs_at_most_max_running_and_queues_the_rest_in_order() -> None:
    sim, clock = fixed(max_running=2)
    async with connect(sim) as client:
        ids = []
        for _ in range(4):
            ids.append((await client.post(CREATE, json=TEXT)).json()["id"])
            clock.advance(1.0)
        docs = [(await client.get(f"{CREATE}/{i}")).json()["status"] for i in ids]
        assert docs == ["in_progress", "in_progress", "queued", "queued"]
    # One jump far ahead: the queue is replayed event by event, not from "now".
    clock.advance(10_000.0)
    stats = sim.stats()
    times = [stats.tasks[i] for i in ids]
    assert [t.started for t in times] == pytest.approx([0.0, 1.0, 100.0, 101.0])
    assert [t.finished for t in times] == pytest.approx([100.0, 101.0, 200.0, 201.0])
    assert stats.peak_running == 2 and stats.running == 0 and stats.waiting == 0


@pytest.mark.anyio
async def test_the_default_cap_is_five_and_the_peak_is_counted() -> None:
    sim, clock = fixed()
    assert sim.config.max_running == 5
    async with connect(sim) as client:

        async def create() -> None:
            assert (await client.post(CREATE, json=TEXT)).status_code == 200

        async with anyio.create_task_group() as group:
            for _ in range(12):
                group.start_soon(create)
    clock.advance(50.0)
    stats = sim.stats()
    assert (stats.creates, stats.running, stats.waiting, stats.peak_running) == (12, 5, 7, 5)
    clock.advance(10_000.0)
    stats = sim.stats()
    assert stats.peak_running == 5
    assert {t.status for t in stats.tasks.values()} == {"completed"}
    for task in stats.tasks.values():
        assert task.started is not None and task.finished is not None
        assert task.created <= task.started < task.finished


def test_default_durations_are_shaped_like_the_real_service() -> None:
    def middle(model: str) -> float:
        low, high = DEFAULT_DURATIONS[model]
        return (low + high) / 2

    assert set(DEFAULT_DURATIONS) == set(MODELS)
    for resolution in ("540p", "720p", "1080p"):
        assert middle(f"viduq3t-{resolution}") < middle(f"viduq3p-{resolution}")
    for tier in ("viduq3t", "viduq3p"):
        assert middle(f"{tier}-540p") < middle(f"{tier}-720p") < middle(f"{tier}-1080p")
    for low, high in DEFAULT_DURATIONS.values():
        assert 110 <= low <= high <= 360  # about 2 to 6 minutes


@pytest.mark.anyio
async def test_generation_time_follows_model_and_duration() -> None:
    sim, clock = fixed(durations=DEFAULT_DURATIONS, max_running=100)
    async with connect(sim) as client:
        for model in ("viduq3t-540p", "viduq3p-1080p"):
            for duration in (1, 16):
                body = with_changes(TEXT, model=model, duration=duration)
                for _ in range(5):
                    assert (await client.post(CREATE, json=body)).status_code == 200
    clock.advance(10_000.0)
    stats = sim.stats()
    took: dict[tuple[str, int], list[float]] = {}
    for sent, task in zip(stats.bodies, stats.tasks.values(), strict=True):
        assert task.finished is not None and task.started is not None
        took.setdefault((sent["model"], sent["duration"]), []).append(task.finished - task.started)
    mean = {k: sum(v) / len(v) for k, v in took.items()}
    assert mean[("viduq3t-540p", 1)] < mean[("viduq3t-540p", 16)]
    assert mean[("viduq3p-1080p", 1)] < mean[("viduq3p-1080p", 16)]
    assert mean[("viduq3t-540p", 16)] < mean[("viduq3p-1080p", 16)]
    assert all(90 <= t <= 450 for times in took.values() for t in times)


@pytest.mark.anyio
async def test_time_scale_runs_a_three_minute_task_in_a_fraction_of_a_second() -> None:
    durations = {m: (180.0, 180.0) for m in MODELS}
    sim, clock = fixed(durations=durations, time_scale=0.001)
    async with connect(sim) as client:
        path = f"{CREATE}/{(await client.post(CREATE, json=TEXT)).json()['id']}"
        clock.advance(0.17)
        assert (await client.get(path)).json()["status"] == "in_progress"
        clock.advance(0.011)
        assert (await client.get(path)).json()["status"] == "completed"
    assert sim.stats().tasks[path.rsplit("/", 1)[1]].finished == pytest.approx(180.0)


@pytest.mark.anyio
async def test_on_the_real_clock_a_scaled_task_completes_quickly() -> None:
    sim = Simulator(SimulatorConfig(time_scale=0.0005))
    async with connect(sim) as client:
        path = f"{CREATE}/{(await client.post(CREATE, json=TEXT)).json()['id']}"
        with anyio.fail_after(5):
            while (doc := (await client.get(path)).json())["status"] != "completed":
                await anyio.sleep(0.01)
    assert doc["progress"] == 100


@pytest.mark.anyio
async def test_one_seed_gives_the_same_tasks_and_faults() -> None:
    async def run(seed: int) -> list[tuple[int, str]]:
        sim, clock = fixed(seed=seed, fail_rate=0.5, create_error_rate=0.3, max_running=50)
        out = []
        async with connect(sim) as client:
            for _ in range(20):
                answer = await client.post(CREATE, json=TEXT)
                out.append((answer.status_code, answer.json().get("id", "")))
            clock.advance(1000.0)
            for _, task_id in list(out):
                if task_id:
                    out.append((0, (await client.get(f"{CREATE}/{task_id}")).json()["status"]))
        return out

    first = await run(7)
    assert first == await run(7)
    assert first != await run(8)
    assert {code for code, _ in first} == {0, 200, 500}


# -- faults ----------------------------------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize(("time_scale", "retry_after"), [(1.0, "30"), (0.01, "0.3")])
async def test_creates_beyond_the_rate_get_429_with_scaled_retry_after(
    time_scale: float, retry_after: str
) -> None:
    sim, clock = fixed(rate_limit_per_minute=3, time_scale=time_scale)
    async with connect(sim) as client:
        for _ in range(3):
            assert (await client.post(CREATE, json=TEXT)).status_code == 200
            clock.advance(10.0 * time_scale)
        refused = await client.post(CREATE, json=TEXT)
        assert refused.status_code == 429
        assert refused.headers["Retry-After"] == retry_after
        assert refused.json()["error"]["code"] == "rate_limit_exceeded"
        clock.advance(float(retry_after) - 0.001 * time_scale)
        assert (await client.post(CREATE, json=TEXT)).status_code == 429
        clock.advance(0.002 * time_scale)
        assert (await client.post(CREATE, json=TEXT)).status_code == 200
    stats = sim.stats()
    assert stats.creates == 4 and stats.refusals == {"rate_limit_exceeded": 2}
    assert stats.max_creates_in_window(60) == 3


def test_max_creates_in_window_counts_the_busiest_window() -> None:
    sim, clock = fixed()
    times = [0.0, 30.0, 59.9, 60.0, 61.0, 200.0]

    async def create_at() -> None:
        async with connect(sim) as c:
            last = 0.0
            for t in times:
                clock.advance(t - last)
                last = t
                assert (await c.post(CREATE, json=TEXT)).status_code == 200

    anyio.run(create_at)
    stats = sim.stats()
    assert stats.create_times == pytest.approx(times)
    assert stats.max_creates_in_window() == 4  # 30, 59.9, 60, 61
    assert stats.max_creates_in_window(10) == 3  # 59.9, 60, 61
    assert stats.max_creates_in_window(1000) == 6


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("time_scale", "retry_after", "header"),
    [
        (1.0, None, "1"),
        (1.0, 10.0, "10"),
        (1.0, 2.5, "3"),
        (0.001, 10.0, "0.01"),
        (0.01, 2.5, "0.025"),
    ],
)
async def test_injected_429_carries_retry_after(
    time_scale: float, retry_after: float | None, header: str
) -> None:
    sim, _ = fixed(time_scale=time_scale)
    sim.inject("create", status=429, retry_after=retry_after)
    async with connect(sim) as client:
        answer = await client.post(CREATE, json=TEXT)
    assert answer.status_code == 429 and answer.headers["Retry-After"] == header


@pytest.mark.anyio
async def test_inject_applies_to_exactly_the_next_count_requests() -> None:
    sim, _ = fixed()
    sim.inject("create", status=429, count=3)
    async with connect(sim) as client:
        codes = [(await client.post(CREATE, json=TEXT)).status_code for _ in range(5)]
        task_id = next(iter(sim.stats().tasks))
        sim.inject("query", status=503, code="model_not_found", count=2)
        queries = [await client.get(f"{CREATE}/{task_id}") for _ in range(3)]
    assert codes == [429, 429, 429, 200, 200]
    assert [q.status_code for q in queries] == [503, 503, 200]
    assert queries[0].json()["error"]["code"] == "model_not_found"
    stats = sim.stats()
    assert stats.creates == 2
    assert stats.refusals == {"rate_limit_exceeded": 3, "model_not_found": 2}
    assert stats.statuses == {429: 3, 503: 2, 200: 3}


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"status": 503, "drop": "after"},
        {"status": 200},
        {"drop": "sideways"},
        {"status": 429, "count": 0},
    ],
)
def test_inject_refuses_nonsense(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        Simulator().inject("create", **kwargs)
    with pytest.raises(ValueError):
        Simulator().inject("delete", status=500)  # type: ignore[arg-type]


@pytest.mark.anyio
async def test_a_5xx_create_creates_nothing_and_a_5xx_query_changes_nothing() -> None:
    sim, _ = fixed(create_error_rate=1.0)
    async with connect(sim) as client:
        answer = await client.post(CREATE, json=TEXT)
    assert answer.status_code == 500
    assert set(answer.json()["error"]) == {"message", "type", "code"}
    assert sim.stats().creates == 0 and sim.stats().tasks == {}

    sim, _ = fixed(query_error_rate=1.0, error_status=502)
    async with connect(sim) as client:
        task_id = (await client.post(CREATE, json=TEXT)).json()["id"]
        answer = await client.get(f"{CREATE}/{task_id}")
    assert answer.status_code == 502 and answer.json()["error"]["code"] == "upstream_error"
    assert sim.stats().queries == {task_id: 1}


@pytest.mark.anyio
async def test_error_rates_hit_about_their_share() -> None:
    sim, _ = fixed(create_error_rate=0.25, max_running=500)
    async with connect(sim) as client:
        codes = [(await client.post(CREATE, json=TEXT)).status_code for _ in range(200)]
    assert 25 <= codes.count(500) <= 75
    assert codes.count(200) == sim.stats().creates == 200 - codes.count(500)


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("drop", "exception", "created"),
    [("before", httpx.ConnectError, 0), ("after", httpx.RemoteProtocolError, 1)],
)
async def test_dropped_create_in_process(
    drop: str, exception: type[Exception], created: int
) -> None:
    sim, _ = fixed()
    sim.inject("create", drop=drop)  # type: ignore[arg-type]
    async with connect(sim) as client:
        with pytest.raises(exception):
            await client.post(CREATE, json=TEXT)
        stats = sim.stats()
        assert stats.creates == created and stats.drops == {drop: 1}
        for task_id in stats.tasks:  # the "after" task is real and can be queried
            assert (await client.get(f"{CREATE}/{task_id}")).status_code == 200
        assert (await client.post(CREATE, json=TEXT)).status_code == 200


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("setting", "exception", "created"),
    [("drop_rate", httpx.ConnectError, 0), ("drop_after_rate", httpx.RemoteProtocolError, 3)],
)
async def test_drop_rates_drop_creates_and_queries(
    setting: str, exception: type[Exception], created: int
) -> None:
    sim, _ = fixed(**{setting: 1.0})
    async with connect(sim) as client:
        for _ in range(3):
            with pytest.raises(exception):
                await client.post(CREATE, json=TEXT)
        with pytest.raises(exception):
            await client.get(f"{CREATE}/task_whatever")
    assert sim.stats().creates == created


@pytest.mark.anyio
async def test_dropped_query_in_process() -> None:
    sim, _ = fixed()
    async with connect(sim) as client:
        task_id = (await client.post(CREATE, json=TEXT)).json()["id"]
        sim.inject("query", drop="before")
        sim.inject("query", drop="after")
        with pytest.raises(httpx.ConnectError):
            await client.get(f"{CREATE}/{task_id}")
        with pytest.raises(httpx.RemoteProtocolError):
            await client.get(f"/v1/videos/{task_id}")
        assert (await client.get(f"{CREATE}/{task_id}")).status_code == 200
    assert sim.stats().queries == {task_id: 2}  # the "before" one never arrived


@pytest.mark.anyio
async def test_a_slow_create_times_the_client_out_after_the_task_exists() -> None:
    sim = Simulator(SimulatorConfig(time_scale=0.01))
    sim.inject("create", delay=20.0)  # 0.2 s real
    async with connect(sim) as client:
        with pytest.raises(httpx.ReadTimeout):
            await client.post(CREATE, json=TEXT, timeout=0.05)
        assert sim.stats().creates == 1  # the ambiguous case: created, answer lost
        start = time.monotonic()
        sim.inject("query", delay=10.0)
        answer = await client.get(f"{CREATE}/{next(iter(sim.stats().tasks))}", timeout=5)
        assert answer.status_code == 200 and time.monotonic() - start >= 0.09
    assert sim.stats().slowed == 2


@pytest.mark.anyio
async def test_slow_rate_delays_answers_by_scaled_seconds() -> None:
    sim = Simulator(SimulatorConfig(time_scale=0.001, slow_rate=1.0, slow_seconds=50.0))
    async with connect(sim) as client:
        start = time.monotonic()
        assert (await client.post(CREATE, json=TEXT)).status_code == 200
        assert time.monotonic() - start >= 0.045
    assert sim.stats().slowed == 1


@pytest.mark.anyio
@pytest.mark.parametrize("dialect", ["seed", "new-api"])
async def test_the_quota_runs_out_after_n_creates(dialect: str) -> None:
    sim, _ = fixed(quota=2, profile=dialect)
    async with connect(sim) as client:
        codes = [(await client.post(CREATE, json=TEXT)) for _ in range(3)]
    assert [c.status_code for c in codes] == [200, 200, 403]
    body = codes[2].json()
    code = body["error"]["code"] if dialect == "seed" else body["code"]
    assert code == "insufficient_user_quota"
    assert sim.stats().creates == 2


@pytest.mark.anyio
@pytest.mark.parametrize("path", ["/v1/video/generations/task_nope", "/v1/videos/task_nope"])
async def test_an_unknown_task_id_gets_400_task_not_exist(path: str) -> None:
    sim, _ = fixed()
    async with connect(sim) as client:
        answer = await client.get(path)
    assert answer.status_code == 400
    assert answer.json()["error"]["code"] == "task_not_exist"
    assert sim.stats().refusals == {"task_not_exist": 1}


# -- dialects --------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_the_seed_alias_answers_like_the_primary_route() -> None:
    sim, clock = fixed()
    async with connect(sim) as client:
        task_id = (await client.post(CREATE, json=TEXT)).json()["id"]
        for _ in range(3):
            primary = (await client.get(f"{CREATE}/{task_id}")).json()
            alias = (await client.get(f"/v1/videos/{task_id}")).json()
            assert primary == alias
            clock.advance(60.0)


@pytest.mark.anyio
async def test_new_api_profile_wraps_queries_and_maps_its_statuses() -> None:
    sim, clock = fixed(profile="new-api", queue_seconds=(10.0, 10.0), max_running=1)
    async with connect(sim) as client:
        created = (await client.post(CREATE, json=TEXT)).json()
        assert created["object"] == "video" and created["status"] == "queued"
        assert created["id"].startswith("task_") and len(created["id"]) == 37
        second = (await client.post(CREATE, json=TEXT)).json()["id"]
        task_id = created["id"]
        seen, others = [], []
        for step in (0.0, 5.0, 10.0, 60.0, 60.0):
            clock.advance(step)
            seen.append((await client.get(f"{CREATE}/{task_id}")).json())
            others.append((await client.get(f"{CREATE}/{second}")).json()["data"])
    assert all(doc["code"] == "success" and doc["message"] == "" for doc in seen)
    data = [doc["data"] for doc in seen]
    # At t = 0, 5, 15, 75, 135; both wait 10 s to be queued, and one runs at a time.
    # new-api's progress is a label: 0% before it looked upstream, 10% queued, 30% for the
    # whole generation, 100% done.
    assert [d["status"] for d in data] == [
        "NOT_START",
        "NOT_START",
        "IN_PROGRESS",
        "IN_PROGRESS",
        "SUCCESS",
    ]
    assert [d["status"] for d in others] == [
        "NOT_START",
        "NOT_START",
        "SUBMITTED",
        "SUBMITTED",
        "IN_PROGRESS",
    ]
    assert [d["progress"] for d in data] == ["0%", "0%", "30%", "30%", "100%"]
    assert others[-1]["progress"] == "30%"
    url = f"http://sim.test/files/{task_id}.mp4"
    assert data[-1]["result_url"] == url and data[-1]["data"]["creations"][0]["url"] == url
    assert "result_url" not in data[0] and data[-1]["fail_reason"] == ""
    # Inner data: Vidu's own last answer (the create's until new-api's first look).
    assert [d["data"]["state"] for d in data] == [
        "created",
        "created",
        "processing",
        "processing",
        "success",
    ]
    assert all(d["task_id"] == task_id for d in data)


@pytest.mark.anyio
async def test_new_api_profile_reports_failure_reason() -> None:
    sim, clock = fixed(profile="new-api")
    async with connect(sim) as client:
        task_id = (await client.post(CREATE, json=with_changes(TEXT, prompt="x [[fail]]"))).json()[
            "id"
        ]
        clock.advance(500.0)
        data = (await client.get(f"{CREATE}/{task_id}")).json()["data"]
        video = (await client.get(f"/v1/videos/{task_id}")).json()
    assert data["status"] == "FAILURE" and "fail marker" in data["fail_reason"]
    assert video["status"] == "failed" and "fail marker" in video["error"]["message"]
    assert "metadata" not in video


@pytest.mark.anyio
async def test_new_api_videos_route_answers_an_openai_video_object() -> None:
    sim, clock = fixed(profile="new-api")
    body = with_changes(TEXT, model="viduq3p-1080p", aspect_ratio="9:16", duration=8)
    async with connect(sim) as client:
        task_id = (await client.post(CREATE, json=body)).json()["id"]
        running = (await client.get(f"/v1/videos/{task_id}")).json()
        clock.advance(500.0)
        done = (await client.get(f"/v1/videos/{task_id}")).json()
    # new-api's converter: the row's update time as completed_at even while it runs, no
    # model, the URL only in metadata.url.
    assert running["object"] == "video" and running["status"] == "in_progress"
    assert running["progress"] == 30
    assert "metadata" not in running and running["completed_at"] >= running["created_at"]
    assert done["id"] == task_id and done["status"] == "completed" and done["progress"] == 100
    assert done["metadata"]["url"] == f"http://sim.test/files/{task_id}.mp4"
    assert (done["seconds"], done["size"], done["model"]) == ("8", "1080x1920", "")
    assert done["completed_at"] >= done["created_at"] and "error" not in done


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("setup", "request_path", "status", "code"),
    [
        ("none", "/v1/video/generations/x", 400, "task_not_exist"),
        ("none", "/v1/nothing", 404, "not_found"),
        ("quota", CREATE, 403, "insufficient_user_quota"),
        ("rate", CREATE, 429, "rate_limit_exceeded"),
        ("error", CREATE, 500, "upstream_error"),
        ("bad", CREATE, 400, "invalid_request"),
    ],
)
async def test_new_api_profile_errors_are_code_message_data(
    setup: str, request_path: str, status: int, code: str
) -> None:
    settings: dict[str, dict[str, Any]] = {
        "key": {"key": KEY},
        "none": {},
        "quota": {"quota": 0},
        "rate": {},
        "error": {"create_error_rate": 1.0},
        "bad": {},
    }
    overrides = settings[setup]
    sim, _ = fixed(profile="new-api", **overrides)
    if setup == "rate":
        sim.inject("create", status=429)
    body = with_changes(TEXT, duration=99) if setup == "bad" else TEXT
    async with connect(sim) as client:
        if request_path == CREATE:
            answer = await client.post(CREATE, json=body)
        else:
            answer = await client.get(request_path)
    assert answer.status_code == status
    payload = answer.json()
    assert set(payload) == {"code", "message", "data"}
    assert payload["code"] == code and payload["data"] is None and payload["message"]


@pytest.mark.anyio
@pytest.mark.parametrize("profile", ["new-api", "new-api-legacy"])
async def test_new_api_profiles_refuse_a_key_in_the_middlewares_shape(profile: str) -> None:
    sim, _ = fixed(profile=profile, key=KEY)
    async with connect(sim) as client:
        answer = await client.get("/v1/video/generations/x")
    assert answer.status_code == 401
    assert answer.json()["error"]["type"] == "new_api_error" and answer.json()["error"]["message"]


@pytest.mark.anyio
@pytest.mark.parametrize("dialect", ["seed", "new-api"])
async def test_primary_query_404_leaves_the_alias_working(dialect: str) -> None:
    sim, _ = fixed(primary_query_404=True, profile=dialect)
    async with connect(sim) as client:
        task_id = (await client.post(CREATE, json=TEXT)).json()["id"]
        primary = await client.get(f"{CREATE}/{task_id}")
        alias = await client.get(f"/v1/videos/{task_id}")
    assert primary.status_code == 404
    assert alias.status_code == 200 and alias.json()["id"] == task_id


# -- the videos ------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_the_video_is_served_once_completed_until_it_expires() -> None:
    sim, clock = fixed(video_ttl=3600.0)
    body = with_changes(TEXT, duration=3, aspect_ratio="1:1")
    async with connect(sim, base_url="http://relay.example:8080/") as client:
        task_id = (await client.post(CREATE, json=body)).json()["id"]
        video = f"/files/{task_id}.mp4"
        assert (await client.get(video)).status_code == 404
        clock.advance(200.0)
        url = (await client.get(f"{CREATE}/{task_id}")).json()["video_url"]
        assert url == f"http://relay.example:8080{video}"
        answer = await client.get(url)
        assert answer.status_code == 200 and answer.headers["content-type"] == "video/mp4"
        assert_mp4(answer.content, seconds=3, size=frame_size("1:1"))
        clock.advance(3600.0)
        expired = await client.get(url)
        assert expired.status_code == 403 and expired.json()["error"]["code"] == "url_expired"
        assert (await client.get("/files/task_nope.mp4")).status_code == 404
    assert sim.stats().downloads == {task_id: 1}


@pytest.mark.parametrize(("seconds", "aspect_ratio"), [(1, "16:9"), (5, "9:16"), (16, "1:1")])
def test_sample_mp4_has_the_asked_length_and_shape(seconds: int, aspect_ratio: str) -> None:
    data = sample_mp4(seconds, aspect_ratio)
    assert_mp4(data, seconds=seconds, size=frame_size(aspect_ratio))
    assert len(data) < 64_000
    assert sample_mp4(seconds, aspect_ratio) == data


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg is not installed")
def test_sample_mp4_decodes_with_ffmpeg(tmp_path: Path) -> None:
    path = tmp_path / "clip.mp4"
    path.write_bytes(sample_mp4(2, "16:9"))
    probe = subprocess.run(
        ["ffmpeg", "-v", "error", "-i", str(path), "-f", "null", "-"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert probe.returncode == 0 and probe.stderr == ""
    frames = subprocess.run(
        [
            "ffprobe",
            "-v",
            "error",
            "-count_frames",
            "-show_entries",
            "stream=nb_read_frames",
            "-of",
            "csv=p=0",
            str(path),
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    assert int(frames.stdout.strip()) == 2 * FRAME_RATE


# -- configuration ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "overrides",
    [
        {"time_scale": 0},
        {"time_scale": -1.0},
        {"profile": "openai"},
        {"fail_rate": 1.5},
        {"drop_rate": -0.1},
        {"max_running": 0},
        {"rate_limit_per_minute": 0},
        {"error_status": 404},
        {"quota": -1},
        {"durations": {"viduq3p-720p": (10.0, 20.0)}},
        {"durations": {m: (20.0, 10.0) for m in MODELS}},
        {"fail_marker": ""},
    ],
)
def test_bad_settings_raise_config_error(overrides: dict[str, Any]) -> None:
    with pytest.raises(ConfigError, match="invalid simulator settings"):
        SimulatorConfig(**overrides)


# -- over a real socket ----------------------------------------------------------------------


def test_every_route_over_a_socket() -> None:
    sim = Simulator(SimulatorConfig(key=KEY, time_scale=0.0005))
    with running_server(sim) as base, httpx.Client(base_url=base) as client:
        assert base.startswith("http://127.0.0.1:")
        auth = {"Authorization": f"Bearer {KEY}"}
        assert client.post(CREATE, json=TEXT).status_code == 401
        task_id = client.post(CREATE, json=TEXT, headers=auth).json()["id"]
        assert client.get(f"{CREATE}/task_nope", headers=auth).json()["error"]["code"] == (
            "task_not_exist"
        )
        deadline = time.monotonic() + 5
        while (doc := client.get(f"{CREATE}/{task_id}", headers=auth).json())["status"] != (
            "completed"
        ):
            assert time.monotonic() < deadline
            time.sleep(0.01)
        assert client.get(f"/v1/videos/{task_id}", headers=auth).json() == doc
        assert doc["video_url"].startswith(f"{base}/files/")
        video = client.get(doc["video_url"])  # public, like a CDN URL: no key
        assert video.status_code == 200
        assert_mp4(video.content, seconds=5, size=frame_size("16:9"))
    stats = sim.stats()
    assert stats.creates == 1 and stats.downloads == {task_id: 1}


@pytest.mark.parametrize(("drop", "created"), [("before", 0), ("after", 1)])
def test_dropped_connections_over_a_socket_end_mid_answer(
    drop: str, created: int, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    sim = Simulator()
    sim.inject("create", drop=drop)  # type: ignore[arg-type]
    sim.inject("query", drop=drop)  # type: ignore[arg-type]
    with running_server(sim) as base, httpx.Client(base_url=base) as client:
        # A socket closed mid-answer looks the same to the client either way.
        with pytest.raises(httpx.RemoteProtocolError):
            client.post(CREATE, json=TEXT)
        with pytest.raises(httpx.RemoteProtocolError):
            client.get(f"{CREATE}/task_nope")
        assert client.post(CREATE, json=TEXT).status_code == 200
    assert sim.stats().creates == created + 1
    assert sim.stats().drops == {drop: 2}
    # On purpose, so the server must not report it as an application error.
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []
    assert f"dropped {drop}" in caplog.text


def test_a_slow_answer_over_a_socket_times_the_client_out() -> None:
    sim = Simulator(SimulatorConfig(time_scale=0.01))
    sim.inject("create", delay=30.0)
    with running_server(sim) as base, httpx.Client(base_url=base) as client:
        with pytest.raises(httpx.ReadTimeout):
            client.post(CREATE, json=TEXT, timeout=0.05)
        assert sim.stats().creates == 1


def test_serve_refuses_a_taken_port_with_config_error() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(ConfigError, match=f"127.0.0.1:{port}.*--port"):
            serve(SimulatorConfig(), port=port)


def test_running_servers_take_distinct_free_ports() -> None:
    with running_server() as first, running_server() as second:
        assert first != second
        assert httpx.get(f"{first}/v1/videos/x").status_code == 400
        assert httpx.get(f"{second}/v1/videos/x").status_code == 400
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{first}/v1/videos/x")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_serve_runs_on_loopback_until_stopped() -> None:
    port = _free_port()
    code = (
        "from vidu_pipe.simulator import serve, SimulatorConfig;"
        f"serve(SimulatorConfig(key={KEY!r}, time_scale=0.001), port={port})"
    )
    server = subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                answer = httpx.post(f"http://127.0.0.1:{port}{CREATE}", json=TEXT)
                break
            except httpx.ConnectError:
                assert server.poll() is None and time.monotonic() < deadline
                time.sleep(0.05)
        assert answer.status_code == 401
    finally:
        server.terminate()
        _, err = server.communicate(timeout=10)
    assert f"http://127.0.0.1:{port}" in err and "key required" in err
    assert KEY not in err


def test_the_readme_flow_with_curl() -> None:
    """Create with the seed's curl body, query until completed, fetch the MP4."""
    body = SEED_EXAMPLES["4.1 text-to-video"]
    key = "sk-readme"
    sim = Simulator(SimulatorConfig(key=key, time_scale=0.0005))
    with running_server(sim) as base:

        def curl(*args: str) -> bytes:
            if shutil.which("curl") is None:
                pytest.skip("curl is not installed")
            done = subprocess.run(
                ["curl", "-sS", "--fail-with-body", *args],
                capture_output=True,
                timeout=30,
                check=True,
            )
            return done.stdout

        auth = f"Authorization: Bearer {key}"
        created = json.loads(
            curl(
                "-X",
                "POST",
                f"{base}/v1/video/generations",
                "-H",
                auth,
                "-H",
                "Content-Type: application/json",
                "-d",
                body,
            )
        )
        assert created["status"] == "queued"
        deadline = time.monotonic() + 10
        while True:
            doc = json.loads(curl(f"{base}/v1/video/generations/{created['task_id']}", "-H", auth))
            if doc["status"] == "completed":
                break
            assert doc["status"] in ("queued", "in_progress") and time.monotonic() < deadline
            time.sleep(0.02)
        video = curl(doc["video_url"])
    assert video[4:8] == b"ftyp"
    assert_mp4(video, seconds=5)
    assert sim.stats().bodies == (json.loads(body),)


@pytest.mark.anyio
@pytest.mark.parametrize("profile", ["seed", "new-api"])
async def test_a_text_only_shot_never_fails_for_an_input_image(profile: str) -> None:
    """A failure reason fits the request: a text-only shot has no image to fetch."""
    sim, clock = fixed(profile=profile, fail_rate=1.0, max_running=100)
    async with connect(sim) as client:
        ids = [(await client.post(CREATE, json=TEXT)).json()["id"] for _ in range(30)]
        clock.advance(5000.0)
        reasons = [(await client.get(f"/v1/videos/{task_id}")).json() for task_id in ids]
    texts = [json.dumps(r) for r in reasons]
    assert all("failed" in t for t in texts)
    assert not any("image" in t.lower() for t in texts), texts
