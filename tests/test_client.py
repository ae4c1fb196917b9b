"""The relay client: lenient reading, strict writing, and one precise class for every outcome.

Every test drives ``ViduClient`` through ``httpx.MockTransport`` with plain handler functions.
"""

from __future__ import annotations

import email.utils
import hashlib
import json
import logging
import os
import time
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from vidu_pipe.errors import (
    AmbiguousCreateError,
    ApiError,
    AuthError,
    ConfigError,
    QuotaError,
    ViduPipeError,
)
from vidu_pipe.execution.client import (
    DEFAULT_BASE_URL,
    TaskState,
    ViduClient,
    parse_retry_after,
    parse_task,
    resolve_api_key,
    resolve_base_url,
)

KEY = "sk-SECRET-canary-123"
BASE = "https://relay.test"
CREATE_URL = f"{BASE}/v1/video/generations"
PRIMARY = "/v1/video/generations/"
ALIAS = "/v1/videos/"
VIDEO = "https://cdn.video.test/out/task_1.mp4?sig=abc"
BODY: dict[str, Any] = {
    "model": "viduq3p-720p",
    "prompt": "一只猫 walks past @Image1",
    "reference_image_urls": ["https://example.com/ref-1.png"],
    "aspect_ratio": "16:9",
    "duration": 5,
    "extra_body": {"audio": False, "bgm": False, "seed": 42},
}
QUEUED = {"id": "task_1", "task_id": "task_1", "status": "queued", "progress": 0}

Handler = Callable[[httpx.Request], httpx.Response]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def client_for(handler: Handler, key: str | None = KEY, base: str = BASE) -> ViduClient:
    return ViduClient(base, key, transport=httpx.MockTransport(handler))


def answer(status: int, body: object = None, *, headers: dict[str, str] | None = None) -> Handler:
    """A handler giving one answer: JSON for dicts and lists, text for str, empty for None."""

    def handler(request: httpx.Request) -> httpx.Response:
        if isinstance(body, str):
            return httpx.Response(status, text=body, headers=headers)
        if body is None:
            return httpx.Response(status, headers=headers)
        return httpx.Response(status, json=body, headers=headers)

    return handler


def raising(exc: Exception) -> Handler:
    def handler(request: httpx.Request) -> httpx.Response:
        raise exc

    return handler


class BrokenStream(httpx.AsyncByteStream):
    """Sends some chunks, then fails (or hangs) the way a dropped connection does."""

    def __init__(self, chunks: list[bytes], exc: Exception | None) -> None:
        self.chunks = chunks
        self.exc = exc

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for chunk in self.chunks:
            yield chunk
        if self.exc is not None:
            raise self.exc
        await anyio.sleep_forever()


def chain(exc: BaseException) -> Iterator[BaseException]:
    seen: BaseException | None = exc
    while seen is not None:
        yield seen
        seen = seen.__cause__ or seen.__context__


# ------------------------------------------------------------------------------------------
# Key and base URL


def test_resolve_api_key_reads_only_vidu_api_key() -> None:
    assert resolve_api_key({"VIDU_API_KEY": f"  {KEY}\n"}) == KEY
    with pytest.raises(ConfigError, match="VIDU_API_KEY is not set"):
        resolve_api_key({"OPENAI_API_KEY": KEY, "VIDU_KEY": KEY})


@pytest.mark.parametrize("value", ["", "   ", "\n"])
def test_resolve_api_key_blank_is_a_config_error(value: str) -> None:
    with pytest.raises(ConfigError, match="VIDU_API_KEY"):
        resolve_api_key({"VIDU_API_KEY": value})


@pytest.mark.parametrize("value", [f"{KEY} extra", f"{KEY}\nX-Evil: 1", f"{KEY}é"])
def test_resolve_api_key_unsendable_never_echoes_it(value: str) -> None:
    with pytest.raises(ConfigError) as caught:
        resolve_api_key({"VIDU_API_KEY": value})
    assert KEY not in str(caught.value)
    assert KEY not in repr(caught.value)


@pytest.mark.parametrize(
    ("flag", "env", "expected"),
    [
        (None, {}, DEFAULT_BASE_URL),
        ("", {"VIDU_BASE_URL": "  "}, DEFAULT_BASE_URL),
        (None, {"VIDU_BASE_URL": "http://127.0.0.1:8000/"}, "http://127.0.0.1:8000"),
        ("https://flag.test", {"VIDU_BASE_URL": "https://env.test"}, "https://flag.test"),
        ("https://relay.test/v1/", {}, "https://relay.test"),
        ("https://relay.test/proxy/V1", {}, "https://relay.test/proxy"),
        ("https://relay.test/proxy/", {}, "https://relay.test/proxy"),
        ("HTTPS://Relay.Test:8443", {}, "https://relay.test:8443"),
        ("http://[::1]:8000", {}, "http://[::1]:8000"),
    ],
)
def test_resolve_base_url(flag: str | None, env: dict[str, str], expected: str) -> None:
    assert resolve_base_url(flag, env) == expected


@pytest.mark.parametrize(
    ("flag", "env", "named"),
    [
        ("ftp://relay.test", {}, "--base-url"),
        ("api.aijisu.cn", {}, "--base-url"),
        (None, {"VIDU_BASE_URL": "https://"}, "VIDU_BASE_URL"),
        ("https://relay.test/?x=1", {}, "--base-url"),
        ("https://user:pw@relay.test", {}, "--base-url"),
    ],
)
def test_resolve_base_url_rejects_non_http(
    flag: str | None, env: dict[str, str], named: str
) -> None:
    with pytest.raises(ConfigError, match=named) as caught:
        resolve_base_url(flag, env)
    assert "pw" not in str(caught.value)


@pytest.mark.parametrize(
    ("base", "key"), [("file:///tmp", KEY), (BASE, ""), (BASE, f"{KEY} "), (BASE, f"{KEY}\r\n")]
)
def test_client_refuses_bad_config(base: str, key: str) -> None:
    with pytest.raises(ConfigError) as caught:
        ViduClient(base, key)
    assert KEY not in str(caught.value)


def test_client_repr_hides_the_key() -> None:
    client = ViduClient(BASE + "/", KEY)
    assert KEY not in repr(client)
    assert client.base_url == BASE


# ------------------------------------------------------------------------------------------
# Lenient reading: every answer shape -> TaskState

URL = "https://cdn.test/v.mp4"


def ts(
    status: str, progress: int | None = None, url: str | None = None, error: str | None = None
) -> TaskState:
    return TaskState("task_1", status, progress, url, error)  # type: ignore[arg-type]


def wrapper(**data: object) -> dict[str, object]:
    return {"code": "success", "message": "", "data": {"task_id": "task_1", **data}}


def oai(message: str, **fields: str) -> dict[str, object]:
    return {"error": {"message": message, **fields}}


def napi(code: str, message: str) -> dict[str, object]:
    return {"code": code, "message": message, "data": None}


def task(**fields: object) -> dict[str, object]:
    return {"id": "task_1", **fields}


NO_REASON = "the relay reported the task failed without a reason"

# fmt: off
PARSE_CASES = [
    pytest.param({"id": "task_1", "task_id": "task_1", "object": "video.generation.job",
                  "model": "viduq3p-720p", "status": "queued", "progress": 0,
                  "created_at": 1774507626}, None, ts("queued", 0), id="spec create answer"),
    pytest.param(task(status="completed", progress=100, video_url=URL), None,
                 ts("completed", 100, URL), id="spec completed"),
    pytest.param({"task_id": "task_1", "status": "in_progress", "progress": 42}, None,
                 ts("in_progress", 42), id="spec in progress, task_id only"),
    pytest.param(task(status="failed", error={"message": "content flagged", "code": "m"}), None,
                 ts("failed", error="content flagged"), id="failed, error object"),
    pytest.param(task(status="failed", error="boom"), None, ts("failed", error="boom"),
                 id="failed, error string"),
    pytest.param(task(status="failed", fail_reason="no credit"), None,
                 ts("failed", error="no credit"), id="failed, fail_reason"),
    pytest.param(task(status="failed", message="upstream said no"), None,
                 ts("failed", error="upstream said no"), id="failed, message"),
    pytest.param(task(status="failed", error={"code": "CreditInsufficient"}), None,
                 ts("failed", error="CreditInsufficient"), id="failed, error code only"),
    pytest.param(task(status="failed", error=None), None, ts("failed", error=NO_REASON),
                 id="failed without a reason"),
    pytest.param(wrapper(status="SUBMITTED", progress="0%"), None, ts("queued", 0),
                 id="new-api SUBMITTED"),
    pytest.param(wrapper(status="NOT_START"), None, ts("queued"), id="new-api NOT_START"),
    pytest.param(wrapper(status="QUEUED", progress="10%"), None, ts("queued", 10),
                 id="new-api QUEUED"),
    pytest.param(wrapper(status="IN_PROGRESS", progress="30%"), None, ts("in_progress", 30),
                 id="new-api IN_PROGRESS"),
    pytest.param(wrapper(status="SUCCESS", progress="100%", result_url=URL, fail_reason=""),
                 None, ts("completed", 100, URL), id="new-api SUCCESS"),
    pytest.param(wrapper(status="FAILURE", progress="100%", fail_reason="task timeout"), None,
                 ts("failed", 100, error="task timeout"), id="new-api FAILURE"),
    pytest.param(task(object="video", status="completed", progress=100, metadata={"url": URL},
                      error=None), None, ts("completed", 100, URL), id="openai video completed"),
    pytest.param(task(object="video", status="failed", error={"code": "x", "message": "policy"}),
                 None, ts("failed", error="policy"), id="openai video failed"),
    pytest.param(task(state="created"), None, ts("queued"), id="vidu created"),
    pytest.param(task(state="queueing"), None, ts("queued"), id="vidu queueing"),
    pytest.param(task(state="processing", progress=55), None, ts("in_progress", 55),
                 id="vidu processing"),
    pytest.param(task(state="success", creations=[{"url": URL}]), None,
                 ts("completed", url=URL), id="vidu success"),
    pytest.param(task(state="failed", err_code="AuditSubmitIllegal"), None,
                 ts("failed", error="AuditSubmitIllegal"), id="vidu failed"),
    pytest.param(task(status="pending"), None, ts("queued"), id="pending"),
    pytest.param(task(status="running"), None, ts("in_progress"), id="running"),
    pytest.param(task(status="succeeded", url=URL), None, ts("completed", url=URL),
                 id="succeeded, url"),
    pytest.param(task(status="done", output={"url": URL}), None, ts("completed", url=URL),
                 id="done, output.url"),
    pytest.param(task(status="error", error="oom"), None, ts("failed", error="oom"),
                 id="error"),
    pytest.param(task(status="cancelled"), None, ts("failed", error=NO_REASON), id="cancelled"),
    pytest.param(task(status="Canceled", reason="by user"), None, ts("failed", error="by user"),
                 id="canceled, reason"),
    pytest.param(task(status=" In-Progress "), None, ts("in_progress"), id="case and dashes"),
    pytest.param(task(status="completed", output=URL), None, ts("completed", url=URL),
                 id="url: output string"),
    pytest.param(task(status="completed", data={"video_url": URL}), None,
                 ts("completed", url=URL), id="url: data.video_url"),
    pytest.param(task(status="completed", videos=[{"url": URL}]), None,
                 ts("completed", url=URL), id="url: videos[0].url"),
    pytest.param(task(status="completed", videos=[URL]), None, ts("completed", url=URL),
                 id="url: videos[0]"),
    pytest.param(task(status="completed", video_url="ftp://x/y", metadata={"url": URL}), None,
                 ts("completed", url=URL), id="url: non-http skipped"),
    pytest.param(task(status="in_progress", video_url=URL), None, ts("in_progress"),
                 id="url only when completed"),
    pytest.param(task(status="transcoding"), None, ts("in_progress"),
                 id="unknown word -> in_progress"),
    pytest.param(task(status="weird", fail_reason="x"), None, ts("failed", error="x"),
                 id="unknown word with an error -> failed"),
    pytest.param(task(video_url=URL), None, ts("completed", url=URL),
                 id="no status, url -> completed"),
    pytest.param({"task_id": "task_1"}, None, ts("queued"), id="no status, id -> queued"),
    pytest.param(task(status=None, state="success", creations=[{"url": URL}]), None,
                 ts("completed", url=URL), id="status null, vidu state"),
    pytest.param({"status": "queued"}, "task_1", ts("queued"), id="task_id argument fills in"),
    pytest.param({"id": "other", "status": "queued"}, "task_1", ts("queued"),
                 id="task_id argument wins"),
    pytest.param({"id": 7, "status": "queued"}, None, TaskState("7", "queued", None, None, None),
                 id="numeric id"),
    pytest.param(task(status="running", progress=99.7), None, ts("in_progress", 99),
                 id="progress float truncated"),
    pytest.param(task(status="running", progress="30.5 %"), None, ts("in_progress", 30),
                 id="progress '30.5 %'"),
    pytest.param(task(status="running", progress=150), None, ts("in_progress", 100),
                 id="progress clamped high"),
    pytest.param(task(status="running", progress=-3), None, ts("in_progress", 0),
                 id="progress clamped low"),
    pytest.param(task(status="running", progress="soon"), None, ts("in_progress"),
                 id="progress junk"),
    pytest.param(task(status="running", progress=True), None, ts("in_progress"),
                 id="progress bool"),
]
# fmt: on


@pytest.mark.parametrize(("data", "task_id", "expected"), PARSE_CASES)
def test_parse_task_reads_every_shape(
    data: object, task_id: str | None, expected: TaskState
) -> None:
    assert parse_task(data, task_id=task_id) == expected


@pytest.mark.parametrize(
    ("data", "text"),
    [
        ([], "a JSON list"),
        ([QUEUED], "a JSON list"),
        ("<html>", "a JSON str"),
        (None, "null"),
        (42, "a JSON int"),
        ({}, "neither a status nor a task id"),
        ({"foo": 1}, "neither a status nor a task id"),
        ({"message": "hello"}, "neither a status nor a task id"),
        ({"status": "queued"}, "no task id"),
        ({"id": "task_1", "status": "completed"}, "no video URL"),
        ({"id": "task_1", "status": "success", "video_url": "not a url"}, "no video URL"),
        (wrapper(status="SUCCESS", result_url=""), "no video URL"),
    ],
)
def test_parse_task_garbage_is_retryable(data: object, text: str) -> None:
    with pytest.raises(ApiError, match=text) as caught:
        parse_task(data)
    assert type(caught.value) is ApiError
    assert caught.value.retryable is True


@pytest.mark.parametrize(
    ("data", "code", "text"),
    [
        (napi("task_not_exist", "task not found"), "task_not_exist", "task not found"),
        (oai("boom", type="new_api_error", code="bad"), "bad", "boom"),
        ({"error": "nope"}, None, "nope"),
    ],
)
def test_parse_task_error_envelope_is_not_retryable(
    data: object, code: str | None, text: str
) -> None:
    with pytest.raises(ApiError, match=text) as caught:
        parse_task(data, task_id="task_1")
    assert caught.value.retryable is False
    assert caught.value.code == code


TASK_KEYS = ["id", "task_id", "status", "state", "progress", "video_url", "url", "metadata"]
TASK_KEYS += ["data", "error", "fail_reason", "message", "code", "videos", "output"]
JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text(max_size=20)
    | st.sampled_from(["completed", "FAILURE", "30%", URL, "queued", "weird"]),
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(
            st.sampled_from(TASK_KEYS) | st.text(max_size=5),
            inner,
            max_size=6,
        )
    ),
    max_leaves=20,
)


@given(JSON)
def test_parse_task_never_breaks_its_invariants(data: object) -> None:
    try:
        state = parse_task(data)
    except ApiError:
        return
    assert state.task_id
    assert state.status in ("queued", "in_progress", "completed", "failed")
    assert (state.status == "completed") == (state.video_url is not None)
    assert (state.status == "failed") == (state.error is not None)
    assert state.progress is None or 0 <= state.progress <= 100


# ------------------------------------------------------------------------------------------
# Retry-After

NOW = datetime(2026, 6, 3, 12, 0, 0, tzinfo=timezone.utc)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, None),
        ("", None),
        ("7", 7.0),
        (" 1.5 ", 1.5),
        ("0", 0.0),
        ("-1", None),
        ("nan", None),
        ("inf", None),
        ("soon", None),
        ("Wed, 03 Jun 2026 12:02:00 GMT", 120.0),
        ("Wed, 03 Jun 2026 11:00:00 GMT", 0.0),
        ("Wed, 99 Foo 2026 12:02:00 GMT", None),
    ],
)
def test_parse_retry_after(value: str | None, expected: float | None) -> None:
    assert parse_retry_after(value, now=NOW) == expected


@given(st.text(max_size=40))
def test_parse_retry_after_is_never_negative(value: str) -> None:
    seconds = parse_retry_after(value, now=NOW)
    assert seconds is None or seconds >= 0


# ------------------------------------------------------------------------------------------
# create: strict writing


@pytest.mark.anyio
async def test_create_sends_exactly_the_body_with_the_headers() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json=QUEUED)

    async with client_for(handler) as client:
        state = await client.create(BODY)
    assert state == TaskState("task_1", "queued", 0, None, None)
    (request,) = seen
    assert request.method == "POST"
    assert str(request.url) == CREATE_URL
    assert request.headers["authorization"] == f"Bearer {KEY}"
    assert request.headers["content-type"] == "application/json"
    sent = json.loads(request.content)
    assert sent == BODY
    assert list(sent) == list(BODY)
    assert "一只猫" in request.content.decode("utf-8")


@pytest.mark.anyio
async def test_create_without_key_sends_no_authorization() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json=QUEUED)

    async with client_for(handler, key=None, base="http://127.0.0.1:8000/proxy/") as client:
        await client.create(BODY)
    assert "authorization" not in seen[0].headers
    assert str(seen[0].url) == "http://127.0.0.1:8000/proxy/v1/video/generations"


@pytest.mark.anyio
async def test_create_completed_without_url_reads_as_in_progress() -> None:
    async with client_for(answer(200, {"id": "task_1", "status": "completed"})) as client:
        state = await client.create(BODY)
    assert state == TaskState("task_1", "in_progress", None, None, None)


@pytest.mark.anyio
@pytest.mark.parametrize(
    "body",
    [
        pytest.param("upstream says hi", id="plain text"),
        pytest.param("<html><title>Gateway</title></html>", id="html"),
        pytest.param(None, id="empty"),
        pytest.param([QUEUED], id="list"),
        pytest.param({"status": "queued"}, id="no task id"),
        pytest.param({"code": "error", "message": "nope", "data": None}, id="error envelope"),
    ],
)
async def test_create_2xx_without_a_task_is_ambiguous(body: object) -> None:
    async with client_for(answer(200, body)) as client:
        with pytest.raises(AmbiguousCreateError, match="not created again blindly") as caught:
            await client.create(BODY)
    assert caught.value.retryable is False
    assert caught.value.status_code == 200


# ------------------------------------------------------------------------------------------
# Error statuses -> error classes (create and query alike)


# fmt: off
ERROR_CASES = [
    # status, body, headers, class, retryable, retry_after, code, text in the message
    pytest.param(401, oai("invalid token", type="new_api_error"), {}, AuthError, None, None,
                 None, "refused the API key", id="401 openai body"),
    pytest.param(401, "Unauthorized", {}, AuthError, None, None, None, "Unauthorized",
                 id="401 plain"),
    pytest.param(403, oai("user quota is not enough", type="x", code="insufficient_user_quota"),
                 {}, QuotaError, False, None, "insufficient_user_quota",
                 "user quota is not enough", id="403 quota"),
    pytest.param(403, napi("token_banned", "key banned"), {}, QuotaError, False, None,
                 "token_banned", "key banned", id="403 banned"),
    pytest.param(429, oai("saturated", code="rate_limit"), {"Retry-After": "7"}, ApiError, True,
                 7.0, "rate_limit", "saturated", id="429 seconds"),
    pytest.param(429, "slow down", {"Retry-After": "1.5"}, ApiError, True, 1.5, None,
                 "slow down", id="429 fractional"),
    pytest.param(429, None, {}, ApiError, True, None, None, "HTTP 429", id="429 no header"),
    pytest.param(429, None, {"Retry-After": "later"}, ApiError, True, None, None, "HTTP 429",
                 id="429 bad header"),
    pytest.param(500, oai("db down", type="server_error"), {}, ApiError, True, None,
                 "server_error", "db down", id="500 openai body"),
    pytest.param(503, napi("busy", "overloaded"), {"Retry-After": "3"}, ApiError, True, 3.0,
                 "busy", "overloaded", id="503 with retry-after"),
    pytest.param(400, napi("task_not_exist", "task_not_exist"), {}, ApiError, False, None,
                 "task_not_exist", "task_not_exist", id="400 task_not_exist"),
    pytest.param(400, oai("duration must be 1-16", code="invalid_parameter"), {}, ApiError,
                 False, None, "invalid_parameter", "duration must be 1-16",
                 id="400 invalid field"),
    pytest.param(400, "bad", {"Retry-After": "5"}, ApiError, False, None, None, "bad",
                 id="400 ignores retry-after"),
    pytest.param(408, None, {}, ApiError, True, None, None, "HTTP 408", id="408"),
    pytest.param(422, "unprocessable   entity\n", {}, ApiError, False, None, None,
                 "unprocessable entity", id="422 plain text"),
    pytest.param(409, "<html><head><title>Conflict  here</title></head></html>", {}, ApiError,
                 False, None, None, "an HTML page (Conflict here)", id="409 html"),
    pytest.param(302, None, {"Location": "https://elsewhere.test/x?token=t"}, ApiError, False,
                 None, None, "check the base URL", id="302 redirect"),
]
# fmt: on


async def call(client: ViduClient, op: str) -> TaskState:
    if op == "create":
        return await client.create(BODY)
    return await client.query("task_1")


@pytest.mark.anyio
@pytest.mark.parametrize("op", ["create", "query"])
@pytest.mark.parametrize(
    ("status", "body", "headers", "cls", "retryable", "retry_after", "code", "text"),
    ERROR_CASES,
)
async def test_error_statuses_are_classified(
    op: str,
    status: int,
    body: object,
    headers: dict[str, str],
    cls: type[Exception],
    retryable: bool | None,
    retry_after: float | None,
    code: str | None,
    text: str,
) -> None:
    async with client_for(answer(status, body, headers=headers)) as client:
        with pytest.raises(ViduPipeError) as caught:
            await call(client, op)
    err = caught.value
    assert type(err) is cls
    assert text in str(err)
    if isinstance(err, ApiError):
        assert err.retryable is retryable
        assert err.retry_after == retry_after
        assert err.code == code
        assert err.status_code == status


@pytest.mark.anyio
async def test_retry_after_http_date() -> None:
    when = datetime.now(timezone.utc) + timedelta(seconds=120)
    header = email.utils.format_datetime(when, usegmt=True)
    async with client_for(answer(429, None, headers={"Retry-After": header})) as client:
        with pytest.raises(ApiError) as caught:
            await client.query("task_1")
    assert caught.value.retry_after is not None
    assert 110 <= caught.value.retry_after <= 120


AMBIGUOUS = AmbiguousCreateError

# fmt: off
FIVE_XX_CASES = [
    # status, body, create class, create retryable, query retryable
    # The relay's two shapes: it refused the create, which created nothing.
    pytest.param(500, oai("x"), ApiError, True, True, id="500 relay body"),
    pytest.param(500, oai("", type="server_error"), ApiError, True, True,
                 id="500 relay body, empty message"),
    pytest.param(503, napi("busy", "overloaded"), ApiError, True, True, id="503 new-api body"),
    pytest.param(502, {"code": 502, "message": "bad upstream", "data": None}, ApiError, True,
                 True, id="502 new-api body, numeric code"),
    pytest.param(503, oai("no channel", type="new_api_error", code="model_not_found"),
                 ApiError, False, True, id="503 model_not_found"),
    pytest.param(503, napi("model_not_found", "no channel"), ApiError, False, True,
                 id="503 model_not_found, new-api body"),
    # Anything else came from in front of the relay: the task may exist.
    pytest.param(502, "<html><title>502</title></html>", AMBIGUOUS, False, True,
                 id="502 gateway html"),
    pytest.param(504, None, AMBIGUOUS, False, True, id="504 empty"),
    pytest.param(500, "oops", AMBIGUOUS, False, True, id="500 plain text"),
    pytest.param(504, {"message": "Endpoint request timed out"}, AMBIGUOUS, False, True,
                 id="504 AWS API Gateway"),
    pytest.param(502, {"message": "Internal server error"}, AMBIGUOUS, False, True,
                 id="502 AWS API Gateway internal"),
    pytest.param(503, {"Message": "Service Unavailable"}, AMBIGUOUS, False, True,
                 id="503 capitalised Message"),
    pytest.param(500, {"message": "boom", "code": "x"}, AMBIGUOUS, False, True,
                 id="500 code and message without data"),
    pytest.param(500, {"message": "boom", "data": None}, AMBIGUOUS, False, True,
                 id="500 message and data without code"),
    pytest.param(500, {"code": "x", "message": "boom", "data": {"id": "t"}}, AMBIGUOUS, False,
                 True, id="500 new-api keys, data not null"),
    pytest.param(503, {"code": "model_not_found"}, AMBIGUOUS, False, True,
                 id="503 model_not_found code alone"),
    pytest.param(500, {"error": "boom"}, AMBIGUOUS, False, True, id="500 error string"),
    pytest.param(500, {"error": {"code": "x", "type": "y"}}, AMBIGUOUS, False, True,
                 id="500 error object without message"),
    pytest.param(500, {"error": {"message": 7}}, AMBIGUOUS, False, True,
                 id="500 error object, message not text"),
    pytest.param(502, {"statusCode": 502, "message": "Bad gateway"}, AMBIGUOUS, False, True,
                 id="502 Azure APIM"),
    pytest.param(502, [oai("x")], AMBIGUOUS, False, True, id="502 JSON list"),
    pytest.param(504, "null", AMBIGUOUS, False, True, id="504 JSON null"),
]
# fmt: on


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("status", "body", "create_cls", "create_retryable", "query_retryable"), FIVE_XX_CASES
)
async def test_5xx_create_retries_only_what_the_relay_refused(
    status: int,
    body: object,
    create_cls: type[ApiError],
    create_retryable: bool,
    query_retryable: bool,
) -> None:
    async with client_for(answer(status, body)) as client:
        with pytest.raises(ApiError) as created:
            await client.create(BODY)
        with pytest.raises(ApiError) as queried:
            await client.query("task_1")
    assert type(created.value) is create_cls
    assert created.value.retryable is create_retryable
    assert created.value.status_code == status
    if create_cls is AmbiguousCreateError:
        assert "not created again blindly" in str(created.value)
    assert type(queried.value) is ApiError
    assert queried.value.retryable is query_retryable
    assert queried.value.status_code == status


# ------------------------------------------------------------------------------------------
# Transport failures: nothing sent -> retryable; maybe sent -> ambiguous for create

TRANSPORT_CASES: list[tuple[Exception, type[ApiError], bool, bool]] = [
    # exception, create class, create retryable, query retryable
    (httpx.ConnectError("connection refused"), ApiError, True, True),
    (httpx.ConnectError("[Errno -2] Name or service not known"), ApiError, True, True),
    (httpx.ConnectTimeout("connect timed out"), ApiError, True, True),
    (httpx.PoolTimeout("pool timed out"), ApiError, True, True),
    (httpx.ProxyError("proxy refused CONNECT"), ApiError, True, True),
    (httpx.ReadTimeout("read timed out"), AmbiguousCreateError, False, True),
    (httpx.WriteTimeout("write timed out"), AmbiguousCreateError, False, True),
    (httpx.ReadError("connection reset by peer"), AmbiguousCreateError, False, True),
    (httpx.WriteError("broken pipe"), AmbiguousCreateError, False, True),
    (httpx.RemoteProtocolError("server disconnected"), AmbiguousCreateError, False, True),
    (httpx.DecodingError("bad gzip"), AmbiguousCreateError, False, True),
    (httpx.UnsupportedProtocol("no"), ApiError, False, False),
    (httpx.LocalProtocolError("illegal header"), ApiError, False, False),
]


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("exc", "create_cls", "create_retryable", "query_retryable"),
    [pytest.param(*case, id=type(case[0]).__name__) for case in TRANSPORT_CASES],
)
async def test_transport_errors_are_classified(
    exc: Exception, create_cls: type[ApiError], create_retryable: bool, query_retryable: bool
) -> None:
    async with client_for(raising(exc)) as client:
        with pytest.raises(ApiError) as created:
            await client.create(BODY)
        with pytest.raises(ApiError) as queried:
            await client.query("task_1")
    assert type(created.value) is create_cls
    assert created.value.retryable is create_retryable
    assert type(queried.value) is ApiError
    assert queried.value.retryable is query_retryable
    for err in (created.value, queried.value):
        assert err.__cause__ is exc
        assert str(exc) in str(err)
        assert err.status_code is None


@pytest.mark.anyio
async def test_create_answer_dropped_mid_body_is_ambiguous() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        stream = BrokenStream([b'{"id": "task_'], httpx.ReadError("peer reset"))
        return httpx.Response(200, stream=stream)

    async with client_for(handler) as client:
        with pytest.raises(AmbiguousCreateError):
            await client.create(BODY)
        with pytest.raises(ApiError) as queried:
            await client.query("task_1")
    assert queried.value.retryable is True


@pytest.fixture
def no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)


@pytest.mark.anyio
@pytest.mark.usefixtures("no_proxy")
async def test_real_socket_refused_is_retryable(free_tcp_port: int) -> None:
    async with ViduClient(f"http://127.0.0.1:{free_tcp_port}", KEY, timeout=5) as client:
        with pytest.raises(ApiError) as caught:
            await client.create(BODY)
    assert type(caught.value) is ApiError
    assert caught.value.retryable is True
    assert isinstance(caught.value.__cause__, httpx.ConnectError)


@pytest.mark.anyio
@pytest.mark.usefixtures("no_proxy")
async def test_real_socket_closed_after_the_request_is_ambiguous() -> None:
    async def read_then_hang_up(stream: anyio.abc.SocketStream) -> None:
        await stream.receive()
        await stream.aclose()

    listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
    port = listener.extra(anyio.abc.SocketAttribute.local_port)
    async with anyio.create_task_group() as group:
        group.start_soon(listener.serve, read_then_hang_up)
        async with ViduClient(f"http://127.0.0.1:{port}", KEY, timeout=5) as client:
            with pytest.raises(AmbiguousCreateError) as created:
                await client.create(BODY)
            with pytest.raises(ApiError) as queried:
                await client.query("task_1")
        group.cancel_scope.cancel()
    assert isinstance(created.value.__cause__, httpx.RemoteProtocolError)
    assert type(queried.value) is ApiError
    assert queried.value.retryable is True


# ------------------------------------------------------------------------------------------
# query: the route, its alias, the garbage


@pytest.mark.anyio
async def test_query_reads_the_task_and_quotes_the_id() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json=wrapper(status="SUCCESS", result_url=URL))

    async with client_for(handler) as client:
        state = await client.query("a/b c?#")
    assert state == TaskState("a/b c?#", "completed", None, URL, None)
    assert seen[0].url.raw_path == b"/v1/video/generations/a%2Fb%20c%3F%23"
    assert seen[0].headers["authorization"] == f"Bearer {KEY}"
    assert seen[0].method == "GET"


@pytest.mark.anyio
async def test_query_falls_back_to_the_alias_and_remembers_it() -> None:
    paths: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        paths.append(request.url.path)
        if request.url.path.startswith(PRIMARY):
            return httpx.Response(404, text="404 page not found")
        video = {"id": "task_1", "object": "video", "status": "completed", "progress": 100}
        return httpx.Response(200, json={**video, "metadata": {"url": URL}})

    async with client_for(handler) as client:
        first = await client.query("task_1")
        second = await client.query("task_2")
    assert first == TaskState("task_1", "completed", 100, URL, None)
    assert second.task_id == "task_2"
    assert paths == [PRIMARY + "task_1", ALIAS + "task_1", ALIAS + "task_2"]


@pytest.mark.anyio
async def test_query_both_routes_missing_is_a_404_and_not_remembered() -> None:
    paths: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        paths.append(request.url.path)
        if request.url.path.startswith(PRIMARY):
            return httpx.Response(404, json={"error": {"message": "no such route"}})
        return httpx.Response(404, text="Not Found")

    async with client_for(handler) as client:
        for _ in range(2):
            with pytest.raises(ApiError, match="no such route") as caught:
                await client.query("task_1")
            assert caught.value.status_code == 404
            assert caught.value.retryable is False
    assert paths == [PRIMARY + "task_1", ALIAS + "task_1"] * 2


@pytest.mark.anyio
async def test_query_task_not_exist_does_not_try_the_alias() -> None:
    paths: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        paths.append(request.url.path)
        body = {"code": "task_not_exist", "message": "task_not_exist", "data": None}
        return httpx.Response(400, json=body)

    async with client_for(handler) as client:
        with pytest.raises(ApiError) as caught:
            await client.query("task_1")
    assert caught.value.code == "task_not_exist"
    assert paths == [PRIMARY + "task_1"]


@pytest.mark.anyio
async def test_create_404_is_not_retried_elsewhere() -> None:
    paths: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        paths.append(request.url.path)
        return httpx.Response(404, text="404 page not found")

    async with client_for(handler) as client:
        with pytest.raises(ApiError) as caught:
            await client.create(BODY)
    assert type(caught.value) is ApiError
    assert caught.value.retryable is False
    assert paths == ["/v1/video/generations"]


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("body", "retryable", "text"),
    [
        pytest.param("<!doctype html><title>Login</title>", True, "not JSON", id="html"),
        pytest.param("garbage", True, "not JSON", id="text"),
        pytest.param(None, True, "not JSON", id="empty"),
        pytest.param([1, 2], True, "a JSON list", id="list"),
        pytest.param(
            {"id": "task_1", "status": "completed"},
            True,
            "no video URL",
            id="completed without url",
        ),
        pytest.param(
            {"code": "task_not_exist", "message": "gone", "data": None},
            False,
            "gone",
            id="error envelope",
        ),
    ],
)
async def test_query_garbage(body: object, retryable: bool, text: str) -> None:
    async with client_for(answer(200, body)) as client:
        with pytest.raises(ApiError, match=text) as caught:
            await client.query("task_1")
    assert type(caught.value) is ApiError
    assert caught.value.retryable is retryable
    assert caught.value.status_code == 200
    assert "query task_1" in str(caught.value)


@pytest.mark.anyio
async def test_query_rejects_an_empty_id() -> None:
    async with client_for(answer(200, QUEUED)) as client:
        with pytest.raises(ValueError, match="empty"):
            await client.query("")


# ------------------------------------------------------------------------------------------
# download

PAYLOAD = os.urandom(3 * 65536 + 123)


def video_host(
    payload: bytes = PAYLOAD, seen: list[httpx.Request] | None = None, **kwargs: Any
) -> Handler:
    def handler(request: httpx.Request) -> httpx.Response:
        if seen is not None:
            seen.append(request)
        if request.url.host == "short.test":
            return httpx.Response(302, headers={"Location": VIDEO})
        return httpx.Response(200, content=payload, **kwargs)

    return handler


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


@pytest.mark.anyio
async def test_download_writes_atomically_and_returns_size_and_sha256(tmp_path: Path) -> None:
    seen: list[httpx.Request] = []
    dest = tmp_path / "videos" / "shot-1.mp4"
    async with client_for(video_host(seen=seen)) as client:
        size, digest = await client.download("https://short.test/v", dest)
    assert size == len(PAYLOAD)
    assert digest == hashlib.sha256(PAYLOAD).hexdigest()
    assert dest.read_bytes() == PAYLOAD
    assert leftovers(dest.parent) == ["shot-1.mp4"]
    assert [r.url.host for r in seen] == ["short.test", "cdn.video.test"]
    for request in seen:
        assert "authorization" not in request.headers


@pytest.mark.anyio
async def test_download_replaces_an_existing_file(tmp_path: Path) -> None:
    dest = tmp_path / "shot.mp4"
    dest.write_bytes(b"old")
    async with client_for(video_host(b"new video")) as client:
        assert await client.download(VIDEO, dest) == (9, hashlib.sha256(b"new video").hexdigest())
    assert dest.read_bytes() == b"new video"
    assert leftovers(tmp_path) == ["shot.mp4"]


@pytest.mark.anyio
async def test_download_broken_stream_leaves_no_partial_file(tmp_path: Path) -> None:
    dest = tmp_path / "shot.mp4"
    dest.write_bytes(b"old")
    broken = httpx.ReadError("connection reset")

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, stream=BrokenStream([b"x" * 65536] * 3, broken))

    async with client_for(handler) as client:
        with pytest.raises(ApiError) as caught:
            await client.download(VIDEO, dest)
    assert caught.value.retryable is True
    assert caught.value.__cause__ is broken
    assert dest.read_bytes() == b"old"
    assert leftovers(tmp_path) == ["shot.mp4"]


@pytest.mark.anyio
async def test_download_cancelled_leaves_no_partial_file(tmp_path: Path) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, stream=BrokenStream([b"x" * 1000], None))

    async with client_for(handler) as client:
        with anyio.move_on_after(0.2) as scope:
            await client.download(VIDEO, tmp_path / "shot.mp4")
    assert scope.cancelled_caught
    assert leftovers(tmp_path) == []


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("handler", "retryable", "text"),
    [
        pytest.param(answer(404, "expired"), False, "HTTP 404", id="404 expired"),
        pytest.param(
            answer(403, "<Error>AccessDenied</Error>"), False, "HTTP 403", id="403 signed url"
        ),
        pytest.param(answer(401, None), False, "HTTP 401", id="401 is not the relay's key"),
        pytest.param(answer(503, None, headers={"Retry-After": "2"}), True, "HTTP 503", id="503"),
        pytest.param(answer(429, None), True, "HTTP 429", id="429"),
        pytest.param(
            video_host(b"abc", headers={"Content-Length": "10"}), True, "3 of 10", id="short body"
        ),
        pytest.param(video_host(b""), True, "empty", id="empty body"),
        pytest.param(
            raising(httpx.ConnectError("refused")), True, "could not connect", id="connect error"
        ),
        pytest.param(
            raising(httpx.ReadTimeout("slow")), True, "no complete answer", id="read timeout"
        ),
    ],
)
async def test_download_failures_leave_nothing(
    tmp_path: Path, handler: Handler, retryable: bool, text: str
) -> None:
    async with client_for(handler) as client:
        with pytest.raises(ApiError, match=text) as caught:
            await client.download(VIDEO, tmp_path / "shot.mp4")
    assert type(caught.value) is ApiError
    assert caught.value.retryable is retryable
    assert "sig=abc" not in str(caught.value)
    assert leftovers(tmp_path) == []


@pytest.mark.anyio
@pytest.mark.parametrize("url", ["ftp://cdn.test/v.mp4", "file:///etc/passwd", "not a url", ""])
async def test_download_refuses_non_http_urls(tmp_path: Path, url: str) -> None:
    seen: list[httpx.Request] = []
    async with client_for(video_host(seen=seen)) as client:
        with pytest.raises(ApiError, match="not an http"):
            await client.download(url, tmp_path / "shot.mp4")
    assert seen == []


# ------------------------------------------------------------------------------------------
# The key never shows


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("key", "marker"), [(KEY, "SECRET"), ("relay-token-CANARY-42", "CANARY")], ids=["sk", "other"]
)
async def test_the_key_never_appears_in_errors_or_logs(
    caplog: pytest.LogCaptureFixture, tmp_path: Path, key: str, marker: str
) -> None:
    caplog.set_level(logging.DEBUG)
    echo = f"invalid token {key} (Bearer {key})"
    handlers: list[Handler] = [
        answer(401, oai(echo, type="new_api_error")),
        answer(403, napi("token_banned", echo)),
        answer(400, echo),
        answer(429, oai(echo, code=key)),
        answer(500, f"<html><title>{echo}</title></html>"),
        answer(503, oai(echo, code="model_not_found")),
        answer(200, f"<html><title>{echo}</title></html>"),
        answer(200, napi("task_not_exist", echo)),
        answer(200, {"id": "task_1", "status": "completed"}),
        *(raising(case[0]) for case in TRANSPORT_CASES),
    ]
    errors: list[BaseException] = []
    for handler in handlers:
        async with client_for(handler, key=key) as client:
            for attempt in (
                client.create(BODY),
                client.query("task_1"),
                client.download(VIDEO, tmp_path / "x.mp4"),
            ):
                try:
                    await attempt
                except ViduPipeError as exc:
                    errors.append(exc)
    for value in (f"{key} x", f"\t{key}\x00"):
        with pytest.raises(ConfigError) as refused:
            resolve_api_key({"VIDU_API_KEY": value})
        errors.append(refused.value)

    assert len(errors) == 64
    for error in errors:
        for link in chain(error):
            assert marker not in str(link)
            assert marker not in repr(link)
    assert marker not in caplog.text
    client_lines = [
        r.getMessage() for r in caplog.records if r.name == "vidu_pipe.execution.client"
    ]
    assert f"POST {CREATE_URL} -> 401" in client_lines
    assert any("'authorization': '***'" in line for line in client_lines)


CANARY = "relay-key-CANARY-7f3a"
ECHO = f"rejected: token {CANARY} (Bearer {CANARY}) has no access"
LEAKY_URL = f"https://cdn.test/v.mp4?key={CANARY}&sig=1"

SCRUBBED = ECHO.replace(CANARY, "***")
SCRUBBED_URL = LEAKY_URL.replace(CANARY, "***")

# fmt: off
LEAKY_ANSWERS = [
    # a relay answer echoing the key; the state's status, error and URL, the key as ***
    pytest.param(task(status="failed", fail_reason=ECHO), "failed", SCRUBBED, None,
                 id="fail_reason"),
    pytest.param(task(status="failed", error=ECHO), "failed", SCRUBBED, None, id="error string"),
    pytest.param(task(status="failed", error={"message": ECHO, "code": CANARY}), "failed",
                 SCRUBBED, None, id="error object"),
    pytest.param(task(status="failed", error={"code": CANARY}), "failed", "***", None,
                 id="error code only"),
    pytest.param(task(status="failed", message=ECHO), "failed", SCRUBBED, None, id="message"),
    pytest.param(task(status="failed", reason=ECHO), "failed", SCRUBBED, None, id="reason"),
    pytest.param(task(status=f"weird {CANARY}", error_message=ECHO), "failed", SCRUBBED, None,
                 id="unknown status with an error"),
    pytest.param(wrapper(status="FAILURE", progress="100%", fail_reason=ECHO), "failed",
                 SCRUBBED, None, id="new-api FAILURE"),
    pytest.param(task(object="video", status="failed", error={"code": "x", "message": ECHO}),
                 "failed", SCRUBBED, None, id="openai video failed"),
    pytest.param(task(state="failed", err_code=ECHO), "failed", SCRUBBED, None,
                 id="vidu err_code"),
    pytest.param(task(status="completed", video_url=LEAKY_URL), "completed", None, SCRUBBED_URL,
                 id="video_url"),
    pytest.param(wrapper(status="SUCCESS", result_url=LEAKY_URL, fail_reason=""), "completed",
                 None, SCRUBBED_URL, id="new-api result_url"),
    pytest.param(task(object="video", status="completed", metadata={"url": LEAKY_URL}),
                 "completed", None, SCRUBBED_URL, id="openai metadata.url"),
    pytest.param(task(state="success", creations=[{"url": LEAKY_URL}]), "completed", None,
                 SCRUBBED_URL, id="vidu creations"),
    pytest.param({"id": f"task-{CANARY}", "status": f"stage-{CANARY}"}, "in_progress", None,
                 None, id="task id and unknown status"),
]
# fmt: on


@pytest.mark.anyio
@pytest.mark.parametrize("op", ["create", "query"])
@pytest.mark.parametrize(("body", "status", "error", "url"), LEAKY_ANSWERS)
async def test_the_key_never_reaches_a_task_state(
    caplog: pytest.LogCaptureFixture,
    op: str,
    body: object,
    status: str,
    error: str | None,
    url: str | None,
) -> None:
    caplog.set_level(logging.DEBUG)
    leaky_id = op == "create" and f"task-{CANARY}" in str(body)
    async with client_for(answer(200, body), key=CANARY) as client:
        if leaky_id:
            # An id is never rewritten (the next query asks for it): one that carries the
            # key is refused, and a create so answered is ambiguous.
            with pytest.raises(AmbiguousCreateError) as caught:
                await call(client, op)
            assert CANARY not in str(caught.value)
            assert CANARY not in caplog.text
            return
        state = await call(client, op)
    assert CANARY not in repr(state)
    # Scrubbed, not dropped: the rest of the relay's text is kept.
    assert (state.status, state.error, state.video_url) == (status, error, url)
    assert state.task_id == "task_1"
    assert CANARY not in caplog.text


@pytest.mark.anyio
async def test_a_short_key_does_not_mangle_task_ids_and_codes() -> None:
    # "k" is no real relay key; scrubbing it would turn task ids into "tas***_..." and the
    # next query would ask for a task that does not exist.
    async with client_for(answer(200, task(status="queued")), key="k") as client:
        state = await client.create(BODY)
    assert state.task_id == "task_1"
    body = {"error": {"message": "task_not_exist", "code": "task_not_exist"}}
    async with client_for(answer(400, body), key="k") as client:
        with pytest.raises(ApiError) as caught:
            await client.query("task_1")
    assert caught.value.code == "task_not_exist"


@pytest.mark.anyio
async def test_the_key_never_reaches_a_2xx_error_code() -> None:
    body = {"error": {"message": ECHO, "code": CANARY}}
    async with client_for(answer(200, body), key=CANARY) as client:
        for op in ("create", "query"):
            with pytest.raises(ApiError) as caught:
                await call(client, op)
            for link in chain(caught.value):
                assert CANARY not in str(link)
                assert CANARY not in repr(link)
                assert CANARY not in str(getattr(link, "code", ""))


@pytest.mark.anyio
async def test_debug_log_shows_method_url_status_but_no_query(
    caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    caplog.set_level(logging.DEBUG, logger="vidu_pipe.execution.client")
    async with client_for(video_host()) as client:
        await client.download(VIDEO, tmp_path / "v.mp4")
    lines = [r.getMessage() for r in caplog.records if r.name == "vidu_pipe.execution.client"]
    assert "GET https://cdn.video.test/out/task_1.mp4 -> 200" in lines
    assert "sig=abc" not in caplog.text
    assert "authorization" not in caplog.text


# ------------------------------------------------------------------------------------------
# Hostile relays (issue 10, items 12, 14-17)


@pytest.mark.parametrize(
    ("value", "text"),
    [
        ("http://xn--/", "host name is not valid"),
        ("http://127.0.0.1:99999", "port 99999"),
        ("https://relay.test/?k=sk-SECRET-canary-123", "must not have a query"),
        ("https://relay.test/#sk-SECRET-canary-123", "must not have a query"),
        ("https://user:sk-SECRET-canary-123@relay.test/", "user name or password"),
    ],
)
def test_a_bad_base_url_is_a_config_error_that_never_echoes_a_key(value: str, text: str) -> None:
    with pytest.raises(ConfigError, match=text) as caught:
        resolve_base_url(None, {"VIDU_BASE_URL": value})
    assert KEY not in str(caught.value) and "SECRET" not in str(caught.value)


class Trickle(httpx.AsyncByteStream):
    """An answer sent one byte at a time, a pause between each: never a read timeout."""

    def __init__(self, body: bytes, pause: float) -> None:
        self.body = body
        self.pause = pause

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for byte in self.body:
            await anyio.sleep(self.pause)
            yield bytes([byte])


@pytest.mark.anyio
@pytest.mark.parametrize("op", ["create", "query"])
async def test_an_answer_trickled_byte_by_byte_is_cut_off_at_the_deadline(op: str) -> None:
    body = json.dumps(QUEUED).encode()

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, stream=Trickle(body, 0.05))

    client = ViduClient(BASE, KEY, transport=httpx.MockTransport(handler), deadline=0.3)
    started = time.monotonic()
    async with client:
        with pytest.raises(ApiError, match=r"no whole answer within 0\.3 s") as caught:
            await call(client, op)
    assert time.monotonic() - started < 2.0
    if op == "create":
        assert isinstance(caught.value, AmbiguousCreateError)  # it may exist: not repeated
    else:
        assert caught.value.retryable


@pytest.mark.anyio
@pytest.mark.parametrize("op", ["create", "query"])
async def test_an_answer_nested_100000_deep_is_an_odd_answer_not_a_crash(op: str) -> None:
    deep = b"[" * 100_000 + b"]" * 100_000

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=deep, headers={"Content-Type": "application/json"})

    async with client_for(handler) as client:
        with pytest.raises(ApiError, match="not JSON") as caught:
            await call(client, op)
    if op == "create":
        assert isinstance(caught.value, AmbiguousCreateError)  # a task may exist: kept apart
    else:
        assert caught.value.retryable


@pytest.mark.anyio
async def test_a_redirect_to_a_url_with_the_key_in_its_path_is_scrubbed() -> None:
    location = f"http://h/{KEY}/x?token={KEY}"
    async with client_for(answer(302, None, headers={"Location": location})) as client:
        with pytest.raises(ApiError, match="redirect") as caught:
            await client.create(BODY)
    assert KEY not in str(caught.value) and "***" in str(caught.value)


@pytest.mark.anyio
async def test_terminal_escapes_in_relay_text_are_escaped() -> None:
    hostile = "\x1b]0;pwned\x07\x1b[2J\r\nFAKE: all 99 shots completed"
    failed = {"id": "task_1", "status": "failed", "fail_reason": hostile}
    async with client_for(answer(200, failed)) as client:
        state = await client.query("task_1")
    assert state.error is not None and "\x1b" not in state.error and "\n" not in state.error
    assert "\\x1b]0;pwned" in state.error
    async with client_for(answer(400, {"error": {"message": hostile}})) as client:
        with pytest.raises(ApiError) as caught:
            await client.query("task_1")
    assert "\x1b" not in str(caught.value) and "\r" not in str(caught.value)


@pytest.mark.anyio
async def test_a_task_id_with_control_characters_is_refused() -> None:
    async with client_for(answer(200, {"id": "task_1\x1b[2J", "status": "queued"})) as client:
        with pytest.raises(AmbiguousCreateError, match="control characters"):
            await client.create(BODY)
