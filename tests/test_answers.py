"""Reading relays' answers (execution/answers.py): every shape new-api, its legacy releases and
Vidu really send (see the README's "Relays known to work"), odd answers, and relay text."""

from __future__ import annotations

import json
from typing import Any

import pytest

from vidu_pipe.errors import ApiError
from vidu_pipe.execution.answers import (
    NO_VIDEO_URL,
    TaskState,
    clean_text,
    decode_json,
    json_error,
    parse_task,
)
from vidu_pipe.failures import failure_advice, failure_kind

T = "task_Lt3x9qfP0aZb7mK2cVw8yN4rT6uJ1sQe"
U = "https://video.cf.vidu.com/infer/tasks/1/video.mp4?Expires=1&Signature=x"


def wrapper(**data: Any) -> dict[str, Any]:
    return {"code": "success", "message": "", "data": data}


def vidu_raw(state: str, url: str | None = None, err: str = "") -> dict[str, Any]:
    creations = [{"id": "880999", "url": url, "cover_url": url}] if url else []
    return {"id": "880123456789", "state": state, "err_code": err, "creations": creations}


# fmt: off
SHAPES = [
    # new-api, current: wrapper + TaskDto; inner data is Vidu's own answer (with its own id).
    pytest.param(wrapper(task_id=T, status="NOT_START", progress="0%", fail_reason="",
                         data={"task_id": "880123456789", "state": "created"}),
                 TaskState(T, "queued", 0, None, None), id="new-api NOT_START"),
    pytest.param(wrapper(task_id=T, status="SUBMITTED", progress="10%", fail_reason="",
                         data=vidu_raw("queueing")),
                 TaskState(T, "queued", 10, None, None), id="new-api SUBMITTED"),
    pytest.param(wrapper(task_id=T, status="IN_PROGRESS", progress="30%", fail_reason="",
                         data=vidu_raw("processing")),
                 TaskState(T, "in_progress", 30, None, None), id="new-api IN_PROGRESS"),
    pytest.param(wrapper(task_id=T, status="SUCCESS", progress="100%", fail_reason="",
                         result_url=U, data=vidu_raw("success", U)),
                 TaskState(T, "completed", 100, U, None), id="new-api SUCCESS"),
    pytest.param(wrapper(task_id=T, status="FAILURE", progress="100%",
                         fail_reason="CreationPolicyViolation",
                         data=vidu_raw("failed", err="CreationPolicyViolation")),
                 TaskState(T, "failed", 100, None, "CreationPolicyViolation"),
                 id="new-api FAILURE"),
    # new-api legacy: the success URL is in fail_reason, no result_url; Vidu's numeric ids.
    pytest.param(wrapper(task_id="880123456789", status="SUCCESS", progress="100%",
                         fail_reason=U, data=vidu_raw("success", U)),
                 TaskState("880123456789", "completed", 100, U, None),
                 id="legacy URL in fail_reason"),
    pytest.param(wrapper(task_id="880123456789", status="SUCCESS", progress="100%",
                         fail_reason=U),
                 TaskState("880123456789", "completed", 100, U, None),
                 id="legacy URL in fail_reason only"),
    pytest.param(wrapper(task_id="880123456789", status="SUCCESS", progress="100%",
                         fail_reason="", data=vidu_raw("success", U)),
                 TaskState("880123456789", "completed", 100, U, None),
                 id="URL only in data.creations"),
    pytest.param(wrapper(task_id="880123456789", status="FAILURE", progress="100%",
                         fail_reason="CreationPolicyViolation"),
                 TaskState("880123456789", "failed", 100, None, "CreationPolicyViolation"),
                 id="legacy failure: fail_reason is the reason"),
    pytest.param(wrapper(task_id="880123456789", status="FAILURE", progress="100%",
                         fail_reason="https://looks.like/a/url.mp4"),
                 TaskState("880123456789", "failed", 100, None, "https://looks.like/a/url.mp4"),
                 id="a failure's fail_reason is never taken as a video"),
    pytest.param(wrapper(task_id="880123456789", status="SUCCESS", progress="100%",
                         fail_reason="data:video/mp4;base64,AAAA"),
                 TaskState("880123456789", "completed", 100, "data:video/mp4;base64,AAAA", None),
                 id="legacy data: URI"),
    # new-api's OpenAI video object on /v1/videos/{id}: completed_at set even while running.
    pytest.param({"id": T, "object": "video", "model": "", "status": "unknown", "progress": 0,
                  "created_at": 1, "completed_at": 1},
                 TaskState(T, "queued", 0, None, None), id="openai unknown (NOT_START)"),
    pytest.param({"id": T, "object": "video", "model": "", "status": "in_progress",
                  "progress": 30, "created_at": 1, "completed_at": 60},
                 TaskState(T, "in_progress", 30, None, None), id="openai in_progress"),
    pytest.param({"id": T, "object": "video", "status": "completed", "progress": 100,
                  "metadata": {"url": U}},
                 TaskState(T, "completed", 100, U, None), id="openai metadata.url"),
    pytest.param({"id": T, "object": "video", "status": "failed", "progress": 100,
                  "error": {"message": "CreationPolicyViolation", "code": "Creation"}},
                 TaskState(T, "failed", 100, None, "CreationPolicyViolation"), id="openai failed"),
    # Vidu's own words: no progress at all.
    pytest.param({"id": "880123456789", "state": "queueing", "err_code": "", "creations": []},
                 TaskState("880123456789", "queued", None, None, None), id="vidu queueing"),
    pytest.param({"id": "880123456789", "state": "processing", "creations": []},
                 TaskState("880123456789", "in_progress", None, None, None), id="vidu processing"),
    pytest.param(vidu_raw("success", U),
                 TaskState("880123456789", "completed", None, U, None), id="vidu success"),
    pytest.param(vidu_raw("failed", err="TaskPromptPolicyViolation"),
                 TaskState("880123456789", "failed", None, None, "TaskPromptPolicyViolation"),
                 id="vidu failed"),
    # Progress as a share.
    pytest.param({"id": T, "status": "running", "progress": 0.3},
                 TaskState(T, "in_progress", 30, None, None), id="progress 0.3"),
]
# fmt: on


@pytest.mark.parametrize(("data", "expected"), SHAPES)
def test_every_relay_shape_is_read(data: object, expected: TaskState) -> None:
    assert parse_task(data) == expected


def test_the_id_is_never_taken_from_the_upstreams_own_answer() -> None:
    # The inner data is Vidu's answer: its id is Vidu's, not the relay's public task id.
    with pytest.raises(ApiError, match="no task id"):
        parse_task(wrapper(status="IN_PROGRESS", data=vidu_raw("processing")))
    asked = parse_task(wrapper(status="IN_PROGRESS", data=vidu_raw("processing")), task_id=T)
    assert asked.task_id == T


def test_a_flat_success_without_a_url_is_a_bounded_question_not_a_crash() -> None:
    """new-api rc.30's /v1/videos/{id} (issue #7194): SUCCESS with no URL anywhere."""
    flat = {"task_id": T, "status": "SUCCESS", "progress": "100%", "fail_reason": ""}
    with pytest.raises(ApiError) as caught:
        parse_task(flat)
    assert caught.value.code == NO_VIDEO_URL and caught.value.retryable


@pytest.mark.parametrize("depth", [65, 1_000, 100_000])
def test_deeply_nested_json_is_refused_without_recursion_error(depth: int) -> None:
    body = ("[" * depth + "]" * depth).encode()
    with pytest.raises(ValueError, match="nested"):
        decode_json(body)


def test_nesting_inside_strings_does_not_count() -> None:
    text = json.dumps({"id": "x", "status": "queued", "note": "[" * 500 + "{" * 500})
    assert decode_json(text.encode())["status"] == "queued"  # type: ignore[index]


def test_shallow_json_decodes() -> None:
    assert decode_json(b'{"a": [[[[1]]]]}') == {"a": [[[[1]]]]}


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        ("\x1b]0;pwned\x07\x1b[2J\r\nFAKE: all 99 shots completed", "\\x1b]0;pwned\\x07"),
        ("bidi \u202egnp.exe", "\\u202e"),
        ("tab\tand newline\n", "\\x09"),
        ("plain text, 中文", "plain text, 中文"),
    ],
)
def test_control_characters_are_escaped(raw: str, shown: str) -> None:
    cleaned = clean_text(raw)
    assert shown in cleaned
    assert not any(ord(c) < 32 or 0x7F <= ord(c) <= 0x9F for c in cleaned)


def test_vidu_error_bodies_give_their_reason_as_code() -> None:
    assert json_error({"code": 400, "reason": "CreditInsufficient", "message": "no credit"}) == (
        "no credit",
        "CreditInsufficient",
    )


@pytest.mark.parametrize(
    ("reason", "kind"),
    [
        ("generation failed upstream, please retry", "transient"),
        ("SystemThrottling", "transient"),
        ("upstream returned error", "transient"),
        ("任务超时（1440分钟）", "transient"),
        ("the input did not pass content review", "content"),
        ("CreationPolicyViolation", "content"),
        ("TaskPromptPolicyViolation", "content"),
        ("an input image could not be fetched", "other"),
        ("generation failed: the prompt carries the simulator's fail marker", "other"),
        (None, "other"),
    ],
)
def test_failures_are_told_apart(reason: str | None, kind: str) -> None:
    assert failure_kind(reason) == kind
    advice = failure_advice(reason)
    assert (advice is not None) == (kind == "content")
    if advice is not None:
        assert "likely to fail again" in advice and "change the prompt" in advice
