"""Reading relays' answers: lenient JSON in, one :class:`TaskState` out.

Relays built on new-api, its older releases and Vidu's own API describe a task in different
words and put the video in different places (see ``/work/notes/relays.md`` and the README's
"Relays known to work"). Everything that reads an answer lives here, so that the client only
sends and classifies, and so that the rules can be tested on plain values:

- :func:`decode_json` decodes a body with a bound on nesting (a relay answer 100,000 levels
  deep must not raise ``RecursionError`` in the run);
- :func:`parse_task` maps every status word onto the spec's four and finds the video URL:
  ``video_url``, ``result_url``, ``metadata.url``, ``url`` …, then — only when the task
  succeeded — an URL in ``fail_reason`` (older new-api stores it there) and the upstream's own
  ``data.creations[0].url``. A ``data:`` URI counts as a video (the runner saves it to a file,
  never into the manifest). When the status is a failure, ``fail_reason`` is the reason;
- :func:`clean_text` (from :mod:`vidu_pipe.text`) escapes control characters in relay
  text where it enters, so that an
  answer cannot move the cursor, retitle the window or fake a line of output;
- :func:`failure_kind` tells a failure the relay calls transient from a content-review one.
"""

from __future__ import annotations

import json
import logging
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal

from vidu_pipe.errors import ApiError
from vidu_pipe.failures import FailureKind, failure_advice, failure_kind
from vidu_pipe.text import clean_text
from vidu_pipe.urls import http_url

__all__ = [
    "MAX_DEPTH",
    "NO_VIDEO_URL",
    "FailureKind",
    "TaskState",
    "TaskStatus",
    "clean_text",
    "decode_json",
    "failure_advice",
    "failure_kind",
    "http_url",
    "is_data_uri",
    "is_relay_error_body",
    "json_error",
    "parse_task",
    "read_task",
]

logger = logging.getLogger("vidu_pipe.execution.client")

TaskStatus = Literal["queued", "in_progress", "completed", "failed"]

#: Deepest nesting of a relay answer that is decoded; a task object needs about four.
MAX_DEPTH: Final = 64

#: The error code of a task the relay calls completed while no answer names its video.
NO_VIDEO_URL: Final = "no_video_url"


@dataclass(frozen=True, slots=True)
class TaskState:
    """One task as the relay last described it, in the four statuses of the spec.

    ``video_url`` is set exactly when ``status`` is ``completed`` (an http(s) URL, or a
    ``data:`` URI carrying the video itself), ``error`` exactly when it is ``failed``;
    ``progress`` is 0–100 when the relay said, else None.
    """

    task_id: str
    status: TaskStatus
    progress: int | None
    video_url: str | None
    error: str | None


# ---------------------------------------------------------------------------------------------
# Decoding and cleaning

_STRING: Final = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)
_BRACKET: Final = re.compile(rb"[\[\]{}]")


def decode_json(content: bytes, *, max_depth: int = MAX_DEPTH) -> object:
    """``json.loads`` that refuses nesting deeper than ``max_depth`` with ``ValueError``.

    The depth is counted on the raw bytes (strings removed) before decoding: Python's decoder
    recurses once per level, and an answer nested 100,000 deep would end the run with
    ``RecursionError``. Non-JSON, bad UTF-8 and integers past Python's digit limit are
    ``ValueError`` too.
    """
    if content.count(b"[") + content.count(b"{") > max_depth:
        depth = deepest = 0
        for match in _BRACKET.finditer(_STRING.sub(b'""', content)):
            depth += 1 if match.group() in (b"[", b"{") else -1
            if depth > deepest:
                deepest = depth
                if deepest > max_depth:
                    raise ValueError(f"the JSON is nested deeper than {max_depth} levels")
    try:
        return json.loads(content)
    except RecursionError as exc:  # a bound above the interpreter's own: still not a crash
        raise ValueError("the JSON is nested too deeply") from exc


def is_data_uri(value: str) -> bool:
    """Whether ``value`` is a ``data:`` URI (a video sent inline instead of by URL)."""
    return value[:5].lower() == "data:"


# ---------------------------------------------------------------------------------------------
# Reading a task


def _words(status: TaskStatus, words: str) -> dict[str, TaskStatus]:
    return dict.fromkeys(words.split(), status)


def _paths(dotted: str) -> tuple[tuple[str | int, ...], ...]:
    return tuple(
        tuple(int(step) if step.isdigit() else step for step in path.split("."))
        for path in dotted.split()
    )


# The spec's own words, new-api's (SUBMITTED, NOT_START, ...) and Vidu's (created, queueing,
# ...). new-api's OpenAI object says "unknown" before its first look upstream (NOT_START).
_STATUS_WORDS: Final[Mapping[str, TaskStatus]] = {
    **_words(
        "queued",
        "queued queue queueing queuing in_queue submitted not_start not_started pending created"
        " waiting accepted scheduled unknown",
    ),
    **_words("in_progress", "in_progress processing running started generating progress"),
    **_words("completed", "completed complete success succeeded successful succeed done finished"),
    **_words(
        "failed",
        "failed failure fail error errored cancelled canceled expired rejected aborted timeout"
        " timed_out",
    ),
}

# Where relays put the video, most specific first. The inner ``data`` of new-api's wrapper is
# the upstream's own answer (for Vidu ``{"state","creations":[{"url"}]}``).
_URL_PATHS: Final = _paths(
    "video_url result_url url metadata.url metadata.video_url output.url output.video_url output"
    " result.url result.video_url result data.video_url data.url data.result_url video.url video"
    " videos.0.url videos.0.video_url videos.0 video_urls.0 creations.0.url outputs.0.url outputs.0"
    " results.0.url results.0 data.creations.0.url"
)
# Older new-api releases store a success's URL in fail_reason (the column is reused); read it
# there only when the status says success, never for a failure.
_SUCCESS_ONLY_URL_PATHS: Final = _paths("fail_reason")

# Keys that say a task went wrong even without a status; "message" is not one of them, as
# relays put "ok" there too.
_ERROR_PATHS: Final = _paths("error fail_reason failure_reason error_message err_msg")
_REASON_PATHS: Final = (*_ERROR_PATHS, *_paths("reason err_code data.err_code message"))
_ID_PATHS: Final = _paths("task_id id")
_SUCCESS_CODES: Final = frozenset({"success", "ok", "0", "200"})
_NO_REASON: Final = "the relay reported the task failed without a reason"


def parse_task(data: object, *, task_id: str | None = None) -> TaskState:
    """Read one decoded JSON answer about a task into a :class:`TaskState`.

    Accepts the spec's plain object, the new-api wrapper ``{"code","message","data":{...}}``
    (current and legacy), the OpenAI video object (URL in ``metadata.url``) and Vidu's own
    ``state`` words; the URL is searched in the usual places (see the module). ``task_id``,
    when given, wins over the id in the answer (it is the id the caller asked about); an id is
    never taken from the upstream's raw answer inside ``data``. A status word not known here
    counts as ``in_progress``, or as ``failed`` when the answer carries an error.

    Raises :class:`ApiError` with ``retryable=True`` for garbage (not an object, neither status
    nor id, no id at all), and with code :data:`NO_VIDEO_URL` for a completed task without a
    video; an error envelope (``{"code":"task_not_exist","message":..,"data":null}`` or
    ``{"error":{...}}``) raises :class:`ApiError` with its code, not retryable.
    """
    return _parse_task(data, task_id=task_id, require_url=True)


def read_task(
    data: object, *, task_id: str | None, require_url: bool, scrub: Callable[[str], str]
) -> TaskState:
    """:func:`parse_task` with ``scrub`` applied to every text it returns or logs.

    With ``require_url`` False (a create's answer) a completed task without a video reads as
    ``in_progress``: the task exists, and a query brings the URL.
    """
    return _parse_task(data, task_id=task_id, require_url=require_url, scrub=scrub)


def _unchanged(text: str) -> str:
    return text


def _parse_task(
    data: object,
    *,
    task_id: str | None,
    require_url: bool,
    scrub: Callable[[str], str] = _unchanged,
) -> TaskState:
    if not isinstance(data, Mapping):
        raise ApiError(f"the answer is {_kind(data)}, not a task object", retryable=True)
    task: Mapping[str, Any] = data
    if not _has_any(data, ("status", "state", "id", "task_id")):
        inner = data.get("data")
        if isinstance(inner, Mapping):
            task = inner
        else:
            message, code = json_error(data)
            failed_code = code is not None and code.lower() not in _SUCCESS_CODES
            if data.get("error") or failed_code:
                raise ApiError(
                    f"the relay answered with an error: {message or 'no message'}", code=code
                )
    places = (task, data) if task is not data else (task,)
    found_id = _first(places, _ID_PATHS, _text)
    raw_status = task.get("status") if task.get("status") is not None else task.get("state")
    if raw_status is None and found_id is None:
        raise ApiError("the answer has neither a status nor a task id", retryable=True)
    tid = task_id or found_id
    if not tid:
        raise ApiError("the answer has no task id", retryable=True)

    url = _first(places, _URL_PATHS, _video_ref)
    has_error = _first(places, _ERROR_PATHS, _reason_text) is not None
    status: TaskStatus
    if raw_status is None:
        status = "completed" if url else "failed" if has_error else "queued"
    else:
        word = re.sub(r"[\s-]+", "_", str(raw_status).strip().lower())
        known = _STATUS_WORDS.get(word)
        if known is None:
            status = "failed" if has_error else "in_progress"
            logger.debug(
                "task %s: unknown status %r read as %s",
                scrub(tid),
                scrub(str(raw_status)),
                status,
            )
        else:
            status = known
    if status == "completed" and url is None:
        url = _first(places, _SUCCESS_ONLY_URL_PATHS, _video_ref)
    if status == "completed" and url is None:
        if require_url:
            raise ApiError(
                f"task {scrub(tid)} is completed but the answer has no video URL "
                "(none in video_url, result_url, metadata.url, fail_reason or "
                "data.creations[0].url)",
                code=NO_VIDEO_URL,
                retryable=True,
            )
        status = "in_progress"

    error = None
    if status == "failed":
        error = _first(places, _REASON_PATHS, _reason_text) or _NO_REASON
    return TaskState(
        # The id is never rewritten: it is what the next query asks for.
        task_id=tid,
        status=status,
        progress=_progress(task.get("progress")),
        video_url=scrub(url) if url is not None and status == "completed" else None,
        error=None if error is None else scrub(error),
    )


def _kind(data: object) -> str:
    if isinstance(data, list):
        return "a JSON list"
    if data is None:
        return "null"
    return f"a JSON {type(data).__name__}"


def _has_any(data: Mapping[str, Any], keys: tuple[str, ...]) -> bool:
    return any(data.get(key) is not None for key in keys)


def _dig(obj: object, path: tuple[str | int, ...]) -> object:
    for step in path:
        if isinstance(step, str) and isinstance(obj, Mapping):
            obj = obj.get(step)
        elif isinstance(step, int) and isinstance(obj, list) and len(obj) > step:
            obj = obj[step]
        else:
            return None
    return obj


def _first(
    places: tuple[Mapping[str, Any], ...],
    paths: tuple[tuple[str | int, ...], ...],
    read: Callable[[object], str | None],
) -> str | None:
    """The first value ``read`` accepts at one of ``paths``, in the first place having one."""
    for place in places:
        for path in paths:
            value = read(_dig(place, path))
            if value is not None:
                return value
    return None


def _text(value: object) -> str | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str) and value.strip():
        return value.strip()
    return None


def _video_ref(value: object) -> str | None:
    """An http(s) URL, or a ``data:`` URI with a payload (a video sent inline)."""
    found = http_url(value)
    if found is not None:
        return found
    if isinstance(value, str):
        text = value.strip()
        if is_data_uri(text) and "," in text and len(text) > text.index(",") + 1:
            return text
    return None


def _reason_text(value: object) -> str | None:
    if isinstance(value, Mapping):
        for key in ("message", "msg", "detail", "reason", "code", "type"):
            text = _reason_text(value.get(key))
            if text is not None:
                return text
        return None
    if isinstance(value, float) and math.isfinite(value):
        return str(value)
    return _text(value)


def _progress(value: object) -> int | None:
    number: float
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        number = float(value)
    elif isinstance(value, str):
        try:
            number = float(value.strip().removesuffix("%").strip())
        except ValueError:
            return None
    else:
        return None
    if not math.isfinite(number):
        return None
    # A share (0.3) rather than a percent: some relays report progress from 0 to 1.
    if 0 < number < 1:
        number *= 100
    # Truncated, not rounded: 99.6 is not done.
    return max(0, min(100, int(number)))


def json_error(data: Mapping[str, Any]) -> tuple[str | None, str | None]:
    """(message, code) from ``{"error":{"message","type","code"}}``, ``{"error":"text"}``,
    ``{"code","message","data":null}`` or Vidu's ``{"code":400,"reason","message"}``."""
    error = data.get("error")
    if isinstance(error, Mapping):
        message = _text(error.get("message")) or _text(error.get("msg"))
        return message, _text(error.get("code")) or _text(error.get("type"))
    message = (
        _text(error)
        or _text(data.get("message"))
        or _text(data.get("msg"))
        or _text(data.get("detail"))
    )
    code = _text(data.get("code"))
    reason = _text(data.get("reason"))
    if reason is not None and (code is None or code.isdigit()):
        code = reason  # Vidu: the numeric code repeats the HTTP status; the reason says why
    return message, code


def is_relay_error_body(data: Mapping[str, Any]) -> bool:
    """Whether ``data`` is one of the relay's two error shapes (SPEC §1), not a gateway's JSON.

    ``{"error": {"message": "...", ...}}`` (an object with a text message), or new-api's
    ``{"code": ..., "message": ..., "data": null}`` (all three keys present, ``data`` null).
    A bare ``{"message": ...}`` (AWS API Gateway) or ``{"Message": ...}`` is not one.
    """
    error = data.get("error")
    if isinstance(error, Mapping):
        return isinstance(error.get("message"), str)
    return all(key in data for key in ("code", "message", "data")) and data["data"] is None
