"""The simulated relay: its routes, checks, task lifecycle, faults and relay profiles."""

from __future__ import annotations

import base64
import copy
import hmac
import json
import logging
import math
import random
import re
import string
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import anyio
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from vidu_pipe.simulator._config import SimulatorConfig
from vidu_pipe.simulator._engine import Phase, Scheduler, SimulatorStats, Task, TaskTimes
from vidu_pipe.simulator._transport import DROP_SIGNAL, DropFlavour, SimulatorTransport
from vidu_pipe.simulator._video import sample_mp4
from vidu_pipe.storyboard.schemas import request_issues

__all__ = ["FaultRoute", "Simulator"]

logger = logging.getLogger("vidu_pipe.simulator")

FaultRoute = Literal["create", "query"]

CREATE_PATH = "/v1/video/generations"
QUERY_PATH = "/v1/video/generations/{task_id}"
ALIAS_PATH = "/v1/videos/{task_id}"
VIDEO_PATH = "/files/{task_id}.mp4"

_RATE_WINDOW = 60.0  # simulated seconds

# (type, code, message) of each error the relay answers; a 5xx not listed is an upstream error.
_ERRORS: dict[int, tuple[str, str, str]] = {
    400: ("invalid_request_error", "invalid_request", "the request is invalid"),
    401: (
        "authentication_error",
        "invalid_api_key",
        "invalid token: the key is missing, wrong, expired or used up",
    ),
    403: ("insufficient_quota", "insufficient_user_quota", "user quota is not enough"),
    404: ("invalid_request_error", "not_found", "not found"),
    405: ("invalid_request_error", "method_not_allowed", "method not allowed"),
    429: (
        "rate_limit_error",
        "rate_limit_exceeded",
        "the upstream is saturated, please retry later",
    ),
}

_FAIL_REASONS = (
    "the input did not pass content review",
    "generation failed upstream, please retry",
    "an input image could not be fetched",
)

# The same failures as Vidu's err_code words, which new-api passes on as fail_reason.
_ERR_CODES = {
    "the input did not pass content review": "CreationPolicyViolation",
    "generation failed upstream, please retry": "SystemThrottling",
    "an input image could not be fetched": "ImageFormatInvalid",
}
_IMAGE_REASON = "an input image could not be fetched"
_TRANSIENT_REASON = "generation failed upstream, please retry"

# new-api's status word and fixed progress per phase (relay/channel/task/taskcommon): the
# first answer before its poller looked upstream is NOT_START/0%, Vidu's created/queueing
# is SUBMITTED/10%, the whole generation is IN_PROGRESS/30%.
_NEW_API_STATUS: dict[Phase, tuple[str, str]] = {
    "submitted": ("NOT_START", "0%"),
    "queued": ("SUBMITTED", "10%"),
    "in_progress": ("IN_PROGRESS", "30%"),
    "completed": ("SUCCESS", "100%"),
    "failed": ("FAILURE", "100%"),
}
# new-api's OpenAI video object: NOT_START is "unknown" (ToVideoStatus), progress as a number.
_OPENAI_STATUS: dict[Phase, tuple[str, int]] = {
    "submitted": ("unknown", 0),
    "queued": ("queued", 10),
    "in_progress": ("in_progress", 30),
    "completed": ("completed", 100),
    "failed": ("failed", 100),
}
_VIDU_STATE: dict[Phase, str] = {
    "submitted": "created",
    "queued": "queueing",
    "in_progress": "processing",
    "completed": "success",
    "failed": "failed",
}

_HEIGHTS = {"540p": 540, "720p": 720, "1080p": 1080}
_DIGITS = re.compile(r"[0-9]+")
_ID_ALPHABET = string.ascii_letters + string.digits


@dataclass(frozen=True)
class _Fault:
    status: int | None
    drop: DropFlavour | None
    delay: float | None
    code: str | None
    retry_after: float | None


@dataclass
class _Answer:
    status: int
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0  # real seconds
    drop: DropFlavour | None = None


class Simulator:
    """A simulated Vidu Q3 relay (SPEC section 1), with its state and its statistics.

    ``app`` is the ASGI application; ``transport()`` serves it in-process to an
    ``httpx.AsyncClient``; ``serve()`` / ``running_server()`` put it on a socket.
    Task states are computed lazily from ``clock`` (real seconds; the simulated
    time is its advance divided by ``config.time_scale``), so nothing runs in
    the background. Safe to use from several threads.
    """

    def __init__(
        self,
        config: SimulatorConfig | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config if config is not None else SimulatorConfig()
        self._clock = clock
        self._start = clock()
        self._epoch = time.time()
        self._lock = threading.RLock()
        seed = self.config.seed
        # Separate streams, so that turning on one kind of fault leaves the others,
        # and the tasks' fates, as they were.
        self._task_rng = random.Random(f"{seed}:tasks")
        self._fault_rng = random.Random(f"{seed}:faults")
        self._id_rng = random.Random(f"{seed}:ids")
        self._scheduler = Scheduler(self.config.max_running)
        self._forced: dict[FaultRoute, deque[_Fault]] = {"create": deque(), "query": deque()}
        self._window: deque[float] = deque()
        self._bodies: list[dict[str, Any]] = []
        self._create_times: list[float] = []
        self._queries: Counter[str] = Counter()
        self._refusals: Counter[str] = Counter()
        self._statuses: Counter[int] = Counter()
        self._drops: Counter[str] = Counter()
        self._downloads: Counter[str] = Counter()
        self._slowed = 0
        self.app = Starlette(
            routes=[
                Route(CREATE_PATH, self._create, methods=["POST"]),
                Route(QUERY_PATH, self._query_primary, methods=["GET"]),
                Route(ALIAS_PATH, self._query_alias, methods=["GET"]),
                Route(VIDEO_PATH, self._video, methods=["GET"]),
            ],
            exception_handlers={HTTPException: self._http_error},
        )

    # -- public -----------------------------------------------------------------------

    def transport(self) -> SimulatorTransport:
        """An ``httpx.AsyncBaseTransport`` that serves this simulator in-process."""
        return SimulatorTransport(self.app)

    def now(self) -> float:
        """Simulated seconds since the simulator started."""
        return (self._clock() - self._start) / self.config.time_scale

    def inject(
        self,
        route: FaultRoute,
        *,
        status: int | None = None,
        drop: DropFlavour | None = None,
        delay: float | None = None,
        count: int = 1,
        code: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        """Force a fault on the next ``count`` requests of ``route`` that pass the key check.

        ``status`` answers that error status instead (a create then creates nothing;
        ``code`` overrides the error code, ``retry_after`` the 429's hint in simulated
        seconds); ``drop="before"`` drops the connection before the relay sees the
        request, ``drop="after"`` once it has acted; ``delay`` (simulated seconds)
        holds the answer back, alone or with a drop or status.
        """
        if route not in ("create", "query"):
            raise ValueError(f"route must be 'create' or 'query', not {route!r}")
        if status is None and drop is None and delay is None:
            raise ValueError("inject needs a status, a drop or a delay")
        if status is not None and drop is not None:
            raise ValueError("a request cannot be both answered and dropped")
        if status is not None and not 400 <= status <= 599:
            raise ValueError(f"status must be an error status (4xx or 5xx), not {status}")
        if drop not in (None, "before", "after"):
            raise ValueError(f"drop must be 'before' or 'after', not {drop!r}")
        if count < 1:
            raise ValueError(f"count must be at least 1, not {count}")
        fault = _Fault(status, drop, delay, code, retry_after)
        with self._lock:
            self._forced[route].extend([fault] * count)

    def stats(self) -> SimulatorStats:
        """A snapshot of everything counted so far."""
        with self._lock:
            now = self._advance()
            tasks = {
                t.id: TaskTimes(
                    t.model, _seed_status(t.phase(now)), t.created, t.started, t.finished
                )
                for t in self._scheduler.tasks.values()
            }
            return SimulatorStats(
                creates=len(self._bodies),
                bodies=tuple(copy.deepcopy(self._bodies)),
                create_times=tuple(self._create_times),
                queries=dict(self._queries),
                refusals=dict(self._refusals),
                statuses=dict(self._statuses),
                drops=dict(self._drops),
                slowed=self._slowed,
                downloads=dict(self._downloads),
                peak_running=self._scheduler.peak_running,
                running=self._scheduler.running,
                waiting=self._scheduler.waiting,
                tasks=tasks,
            )

    # -- routes -----------------------------------------------------------------------

    async def _create(self, request: Request) -> Response:
        raw = await request.body()
        with self._lock:
            answer = self._record(self._handle_create(request.headers.get("authorization"), raw))
        return await _deliver(answer)

    async def _query_primary(self, request: Request) -> Response:
        return await self._query(request, alias=False)

    async def _query_alias(self, request: Request) -> Response:
        return await self._query(request, alias=True)

    async def _query(self, request: Request, *, alias: bool) -> Response:
        task_id = request.path_params["task_id"]
        authorization = request.headers.get("authorization")
        with self._lock:
            answer = self._record(
                self._handle_query(authorization, task_id, str(request.base_url), alias=alias)
            )
        return await _deliver(answer)

    async def _video(self, request: Request) -> Response:
        task_id = request.path_params["task_id"]
        with self._lock:
            now = self._advance()
            task = self._scheduler.tasks.get(task_id)
            ttl = self.config.video_ttl
            if task is None or task.phase(now) != "completed":
                answer = self._error(404, message="no such video")
            elif ttl is not None and task.finished is not None and now > task.finished + ttl:
                answer = self._error(403, code="url_expired", message="the video URL has expired")
            else:
                answer = _Answer(200, {})
                self._downloads[task_id] += 1
            self._record(answer)
        if task is not None and answer.status == 200:
            return Response(sample_mp4(task.duration, task.aspect_ratio), media_type="video/mp4")
        return await _deliver(answer)

    async def _http_error(self, request: Request, exc: Exception) -> Response:
        status = exc.status_code if isinstance(exc, HTTPException) else 500
        with self._lock:
            answer = self._record(
                self._error(status, message=f"Invalid URL ({request.method} {request.url.path})")
            )
        return await _deliver(answer)

    # -- decisions (under the lock, no awaiting) -----------------------------------------

    def _handle_create(self, authorization: str | None, raw: bytes) -> _Answer:
        now = self._advance()
        if not self._authorized(authorization):
            return self._error(401)
        fault = self._next_fault("create")
        forced = self._forced_answer(fault)
        if forced is not None:
            return forced
        limited = self._rate_limited(now)
        if limited is not None:
            return limited
        error, before, after, delay = self._draw(fault, self.config.create_error_rate)
        if before:
            return _Answer(0, {}, delay=delay, drop="before")
        answer = self._error(self.config.error_status) if error else self._accept(raw, now)
        # Whatever the relay decided, its answer can still be slow, or lost on the way back.
        answer.delay, answer.drop = delay, after
        return answer

    def _accept(self, raw: bytes, now: float) -> _Answer:
        """Check the body and create the task, or refuse it."""
        received, refusal = _parse(raw)
        if received is None:
            return self._error(400, message=refusal)
        body = _as_relay_reads(received)
        issues = request_issues(body)
        if issues:
            message = "; ".join(f"{i.field or 'body'}: {i.message}" for i in issues)
            return self._error(400, message=message, param=issues[0].field)
        quota = self.config.quota
        if quota is not None and len(self._bodies) >= quota:
            return self._error(403)
        task = self._new_task(received, body, now)
        return _Answer(200, self._created(task, now))

    def _handle_query(
        self, authorization: str | None, task_id: str, base: str, *, alias: bool
    ) -> _Answer:
        now = self._advance()
        if self.config.primary_query_404 and not alias:
            return self._error(404, message=f"Invalid URL (GET /v1/video/generations/{task_id})")
        if not self._authorized(authorization):
            return self._error(401)
        fault = self._next_fault("query")
        forced = self._forced_answer(fault)
        if forced is not None:
            return forced
        error, before, after, delay = self._draw(fault, self.config.query_error_rate)
        if before:
            return _Answer(0, {}, delay=delay, drop="before")
        self._queries[task_id] += 1
        task = self._scheduler.tasks.get(task_id)
        if error:
            answer = self._error(self.config.error_status)
        elif task is None:
            answer = self._error(400, code="task_not_exist", message="task_not_exist")
        else:
            answer = _Answer(200, self._document(task, now, base, alias=alias))
        answer.delay, answer.drop = delay, after
        return answer

    def _advance(self) -> float:
        now = self.now()
        self._scheduler.advance(now)
        return now

    def _authorized(self, authorization: str | None) -> bool:
        key = self.config.key
        if key is None:
            return True
        scheme, _, token = (authorization or "").partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(
            token.strip().encode(), key.encode()
        )

    def _next_fault(self, route: FaultRoute) -> _Fault | None:
        queue = self._forced[route]
        return queue.popleft() if queue else None

    def _forced_answer(self, fault: _Fault | None) -> _Answer | None:
        """The answer a forced status or early drop gives, without going further."""
        if fault is None or (fault.status is None and fault.drop != "before"):
            return None
        delay = self._real_seconds(fault.delay or 0.0)
        if fault.drop == "before":
            return _Answer(0, {}, delay=delay, drop="before")
        assert fault.status is not None
        headers = {}
        if fault.status == 429:
            hint = fault.retry_after if fault.retry_after is not None else self.config.retry_after
            headers["Retry-After"] = _retry_after(self._real_seconds(1.0 if hint is None else hint))
        return self._error(fault.status, code=fault.code, headers=headers, delay=delay)

    def _rate_limited(self, now: float) -> _Answer | None:
        limit = self.config.rate_limit_per_minute
        if limit is None:
            return None
        window = self._window
        while window and window[0] <= now - _RATE_WINDOW:
            window.popleft()
        if len(window) >= limit:
            hint = self.config.retry_after
            wait = window[0] + _RATE_WINDOW - now if hint is None else hint
            return self._error(429, headers={"Retry-After": _retry_after(self._real_seconds(wait))})
        window.append(now)
        return None

    def _draw(
        self, fault: _Fault | None, error_rate: float
    ) -> tuple[bool, bool, DropFlavour | None, float]:
        """Whether this request errs, drops before, drops after, and its delay."""
        cfg = self.config
        # Always four draws, so the stream stays aligned whatever the outcome.
        r_error, r_before, r_after, r_slow = (self._fault_rng.random() for _ in range(4))
        after: DropFlavour | None = "after" if r_after < cfg.drop_after_rate else None
        if fault is not None and fault.drop == "after":
            after = "after"
        if fault is not None and fault.delay is not None:
            delay = fault.delay
        else:
            delay = cfg.slow_seconds if r_slow < cfg.slow_rate else 0.0
        return r_error < error_rate, r_before < cfg.drop_rate, after, self._real_seconds(delay)

    def _real_seconds(self, simulated: float) -> float:
        return simulated * self.config.time_scale

    def _record(self, answer: _Answer) -> _Answer:
        if answer.drop is not None:
            self._drops[answer.drop] += 1
        else:
            self._statuses[answer.status] += 1
            if answer.status >= 400:
                self._refusals[_error_code(answer.body)] += 1
        if answer.delay > 0:
            self._slowed += 1
        return answer

    def _error(
        self,
        status: int,
        *,
        code: str | None = None,
        message: str | None = None,
        param: str | None = None,
        headers: dict[str, str] | None = None,
        delay: float = 0.0,
    ) -> _Answer:
        kind, default_code, default_message = _ERRORS.get(
            status, ("upstream_error", "upstream_error", f"upstream error (status {status})")
        )
        code = code or default_code
        message = message or default_message
        body: dict[str, Any]
        profile = self.config.profile
        if profile == "vidu":
            body = {"code": status, "reason": code, "message": message}
        elif profile != "seed" and status != 401:
            body = {"code": code, "message": message, "data": None}
        elif profile != "seed":
            # new-api's middleware refuses a key before the task code runs (shape A).
            body = {"error": {"message": message, "type": "new_api_error", "code": ""}}
        else:
            error: dict[str, Any] = {"message": message, "type": kind, "code": code}
            if param is not None:
                error["param"] = param
            body = {"error": error}
        return _Answer(status, body, headers=dict(headers or {}), delay=delay)

    def _new_task(self, received: dict[str, Any], body: dict[str, Any], now: float) -> Task:
        cfg, rng = self.config, self._task_rng
        model, duration = body["model"], body["duration"]
        low, high = cfg.durations[model]
        # A fixed number of draws per task, whatever its fate.
        run_time = rng.uniform(low, high) * (0.85 + 0.03 * duration)
        wait = rng.uniform(*cfg.queue_seconds)
        fails = rng.random() < cfg.fail_rate
        fail_point = rng.uniform(0.1, 0.9)
        reason = rng.choice(_FAIL_REASONS)
        if reason == _IMAGE_REASON and not _has_images(body):
            # A text-only shot has no input image to fetch.
            reason = _TRANSIENT_REASON
        if cfg.profile != "seed":
            reason = _ERR_CODES.get(reason, reason)
        inline = cfg.inline_rate > 0 and rng.random() < cfg.inline_rate
        if cfg.fail_marker in body["prompt"]:
            fails = True
            reason = "generation failed: the prompt carries the simulator's fail marker"
        task = Task(
            id=self._task_id(),
            seq=len(self._bodies),
            model=model,
            body=body,
            duration=duration,
            aspect_ratio=body.get("aspect_ratio", "16:9"),
            created=now,
            ready=now + wait,
            run_time=run_time,
            fail_reason=reason if fails else None,
            fail_point=fail_point,
            inline=inline,
        )
        self._scheduler.add(task)
        self._bodies.append(copy.deepcopy(received))
        self._create_times.append(now)
        return task

    def _task_id(self) -> str:
        """new-api's public ids are ``task_`` and 32 characters; legacy releases and Vidu
        itself use Vidu's numeric id; the seed's are ``task_`` and 24 characters."""
        profile = self.config.profile
        if profile in ("new-api-legacy", "vidu"):
            return str(880_000_000_000 + self._id_rng.randrange(100_000_000_000))
        size = 32 if profile == "new-api" else 24
        return "task_" + "".join(self._id_rng.choices(_ID_ALPHABET, k=size))

    # -- documents ---------------------------------------------------------------------

    def _created(self, task: Task, now: float) -> dict[str, Any]:
        """The answer to a create, as each kind of relay gives it."""
        profile = self.config.profile
        if profile == "seed":
            return self._job(task, now, base="")
        if profile == "vidu":
            return self._vidu_created(task)
        return {
            "id": task.id,
            "task_id": task.id,
            "object": "video",
            "model": task.model,
            "status": "queued",
            "progress": 0,
            "created_at": self._unix(task.created),
        }

    def _document(self, task: Task, now: float, base: str, *, alias: bool) -> dict[str, Any]:
        profile = self.config.profile
        if profile == "seed":
            return self._job(task, now, base)
        if profile == "vidu":
            return self._vidu_task(task, now, base)
        if alias:
            return self._openai_video(task, now, base)
        return self._new_api_task(task, now, base, legacy=profile == "new-api-legacy")

    def _unix(self, simulated: float | None) -> int | None:
        return None if simulated is None else int(self._epoch + simulated)

    def _video_url(self, task: Task, base: str) -> str:
        return base.rstrip("/") + VIDEO_PATH.format(task_id=task.id)

    def _shown_phase(self, task: Task, now: float) -> Phase:
        """The phase a query answer tells: a relay that never says "generating" calls a
        generating task queued."""
        phase = task.phase(now)
        if phase == "in_progress" and not self.config.says_generating:
            return "queued"
        return phase

    def _job(self, task: Task, now: float, base: str) -> dict[str, Any]:
        """The seed profile's task document (SPEC section 1)."""
        phase = self._shown_phase(task, now)
        status = _seed_status(phase)
        doc: dict[str, Any] = {
            "id": task.id,
            "task_id": task.id,
            "object": "video.generation.job",
            "model": task.model,
            "status": status,
            "progress": task.progress(now) if phase != "queued" else 0,
            "created_at": self._unix(task.created),
        }
        if status == "completed":
            doc["video_url"] = self._video_url(task, base)
        elif status == "failed":
            doc["error"] = {"message": task.fail_reason}
        return doc

    def _vidu_created(self, task: Task) -> dict[str, Any]:
        """Vidu's own create answer (``responsePayload``)."""
        body = task.body
        return {
            "task_id": task.id,
            "state": "created",
            "model": "viduq3-pro" if task.model.startswith("viduq3p") else "viduq3-turbo",
            "images": [],
            "prompt": body.get("prompt", ""),
            "duration": task.duration,
            "seed": body.get("extra_body", {}).get("seed", 0),
            "resolution": task.model.rsplit("-", 1)[-1],
            "bgm": False,
            "movement_amplitude": "auto",
            "payload": "",
            "off_peak": False,
            "credits": 0,
            "created_at": "2026-01-01T00:00:00.000000Z",
        }

    def _vidu_task(self, task: Task, now: float, base: str) -> dict[str, Any]:
        """Vidu's own query answer (``taskResultResponse``): a state, no progress."""
        phase = self._shown_phase(task, now)
        creations = []
        if phase == "completed":
            url = self._video_url(task, base)
            creations.append(
                {
                    "id": f"{task.id}01",
                    "url": url,
                    "cover_url": url.replace(".mp4", ".jpeg"),
                    "watermarked_url": url,
                }
            )
        return {
            "id": task.id,
            "state": _VIDU_STATE[phase],
            "err_code": task.fail_reason if phase == "failed" else "",
            "credits": 20 if phase == "completed" else 0,
            "payload": "",
            "bgm": False,
            "off_peak": False,
            "creations": creations,
        }

    def _inline_video(self, task: Task) -> str:
        data = base64.b64encode(sample_mp4(task.duration, task.aspect_ratio)).decode("ascii")
        return f"data:video/mp4;base64,{data}"

    def _new_api_task(self, task: Task, now: float, base: str, *, legacy: bool) -> dict[str, Any]:
        """new-api's wrapper for ``GET /v1/video/generations/{id}``: TaskDto around Vidu's
        own last answer. Legacy releases have no ``result_url``: a success's URL is stored
        in ``fail_reason`` (the column is reused)."""
        phase = self._shown_phase(task, now)
        status, progress = _NEW_API_STATUS[phase]
        url = self._video_url(task, base) if phase == "completed" else ""
        fail_reason = task.fail_reason if phase == "failed" else ""
        data: dict[str, Any] = {
            "task_id": task.id,
            "action": "referenceGenerate"
            if task.body.get("reference_image_urls")
            else "generate"
            if task.body.get("image")
            else "textGenerate",
            "status": status,
            "fail_reason": fail_reason,
            "submit_time": self._unix(task.created),
            "start_time": self._unix(task.started) or 0,
            "finish_time": self._unix(task.finished) or 0,
            "progress": progress,
            "data": self._vidu_task(task, now, base)
            if phase != "submitted"
            else self._vidu_created(task),
        }
        if legacy:
            if phase == "completed" and task.inline:
                # The upstream answered with the video itself (as Vertex does): no URL at all.
                inline = self._inline_video(task)
                data["fail_reason"] = inline
                data["data"] = {"state": "success", "url": inline, "creations": []}
            elif phase == "completed":
                data["fail_reason"] = url
        else:
            data = {
                "id": task.seq + 1,
                "created_at": self._unix(task.created),
                "updated_at": self._unix(now),
                **data,
                "platform": "52",
                "user_id": 1,
                "group": "default",
                "channel_id": 1,
                "quota": 250000,
                "properties": {"input": "", "origin_model_name": task.model},
            }
            if url:
                data["result_url"] = url
        return {"code": "success", "message": "", "data": data}

    def _openai_video(self, task: Task, now: float, base: str) -> dict[str, Any]:
        """new-api's OpenAI video object for ``GET /v1/videos/{id}`` (``ConvertToOpenAIVideo``):
        the URL in ``metadata.url``; ``completed_at`` is the row's update time, present even
        while the task runs; ``model`` is empty."""
        phase = self._shown_phase(task, now)
        status, progress = _OPENAI_STATUS[phase]
        doc: dict[str, Any] = {
            "id": task.id,
            "object": "video",
            "model": "",
            "status": status,
            "progress": progress,
            "created_at": self._unix(task.created),
            "completed_at": self._unix(now),
            "seconds": str(task.duration),
            "size": _size(task.model, task.aspect_ratio),
        }
        if phase == "completed":
            doc["metadata"] = {"url": self._video_url(task, base)}
        elif phase == "failed":
            doc["error"] = {"message": task.fail_reason, "code": task.fail_reason}
        return doc


class _CutShortResponse(Response):
    """Starts an answer, sends part of it and stops: the server then closes the
    connection, and the client sees the answer end early, as when a proxy drops it."""

    def __init__(self, answer: _Answer) -> None:
        full = json.dumps(answer.body).encode() if answer.drop == "after" else b""
        self._partial = full[: len(full) // 2]
        self._length = max(len(full), 64)
        super().__init__(status_code=answer.status if answer.drop == "after" else 502)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(self._length).encode()),
        ]
        await send({"type": "http.response.start", "status": self.status_code, "headers": headers})
        await send({"type": "http.response.body", "body": self._partial, "more_body": True})


async def _deliver(answer: _Answer) -> Response:
    if answer.delay > 0:
        await anyio.sleep(answer.delay)
    if answer.drop is not None:
        signal = DROP_SIGNAL.get()
        if signal is not None:
            signal.flavour = answer.drop
            return Response(status_code=204)
        logger.info("simulated a connection dropped %s the relay acted", answer.drop)
        return _CutShortResponse(answer)
    return JSONResponse(answer.body, status_code=answer.status, headers=answer.headers)


def _parse(raw: bytes) -> tuple[dict[str, Any] | None, str]:
    try:
        received = json.loads(raw)
    except ValueError:
        return None, "body: the request body is not valid JSON"
    if not isinstance(received, dict):
        return None, "body: the request body must be a JSON object"
    return received, ""


def _as_relay_reads(received: dict[str, Any]) -> dict[str, Any]:
    """The body as the relay reads it before its rules apply.

    The endpoint doc accepts a numeric string duration, and its own examples 4.2
    and 4.3 leave out extra_body.audio / bgm, which the relay then takes as false.
    The rules themselves are the package's request schema, not repeated here.
    """
    body = copy.deepcopy(received)
    duration = body.get("duration")
    if isinstance(duration, str) and _DIGITS.fullmatch(duration.strip()):
        body["duration"] = int(duration)
    extra = body.setdefault("extra_body", {})
    if isinstance(extra, dict):
        extra.setdefault("audio", False)
        extra.setdefault("bgm", False)
    return body


def _seed_status(phase: Phase) -> str:
    return "queued" if phase == "submitted" else phase


def _size(model: str, aspect_ratio: str) -> str:
    height = _HEIGHTS.get(model.rsplit("-", 1)[-1], 720)
    width = height * 16 // 9
    if aspect_ratio == "9:16":
        return f"{height}x{width}"
    if aspect_ratio == "1:1":
        return f"{height}x{height}"
    return f"{width}x{height}"


def _error_code(body: dict[str, Any]) -> str:
    inner = body.get("error")
    code = inner.get("code") if isinstance(inner, dict) else body.get("code")
    return str(code)


def _retry_after(seconds: float) -> str:
    """A Retry-After value: whole seconds from one second up, else milliseconds."""
    if seconds >= 1:
        return str(math.ceil(seconds))
    return f"{max(math.ceil(seconds * 1000), 1) / 1000:g}"


def _has_images(body: dict[str, Any]) -> bool:
    return bool(body.get("image") or body.get("last_image") or body.get("reference_image_urls"))
