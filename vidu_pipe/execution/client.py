"""The client of the relay's task endpoint: one attempt per call, every outcome classified.

Retries and scheduling live in the scheduler. This module sends each request once and turns
whatever comes back into a :class:`TaskState` or into one error of :mod:`vidu_pipe.errors`; no
httpx exception ever leaves it. ``retryable`` says whether the *same* request may be sent again
after a backoff; ``retry_after`` carries the relay's ``Retry-After`` in seconds::

    what happened                                create                   query
    ------------------------------------------   ----------------------   ---------------------
    2xx with a task object                       TaskState                TaskState
    2xx, completed but no video URL              TaskState(in_progress)   ApiError(no_video_url)
    2xx with garbage or no task id               AmbiguousCreateError     ApiError(retryable)
    2xx with an error envelope (code, data:null) AmbiguousCreateError     ApiError
    3xx (not followed: check the base URL)       ApiError                 ApiError
    400 (task_not_exist, a bad field, ...)       ApiError                 ApiError
    401 key invalid, expired or used up          AuthError                AuthError
    403 insufficient_user_quota, banned key      QuotaError               QuotaError
    404                                          ApiError                 /v1/videos/{id} (*)
    408, 429                                     ApiError(retryable, retry_after)
    5xx with the relay's error body (**)         ApiError(retryable)      ApiError(retryable)
    5xx, that body with code model_not_found     ApiError                 ApiError(retryable)
    5xx with any other body (HTML, text, none,   AmbiguousCreateError     ApiError(retryable)
      a gateway's {"message": ...})
    any other status                             ApiError                 ApiError
    connect error, connect or pool timeout       ApiError(retryable)      ApiError(retryable)
    bad URL, unsupported scheme, bad header      ApiError                 ApiError
    read/write timeout or error, dropped answer  AmbiguousCreateError     ApiError(retryable)
      or no whole answer within the deadline
    answer nested deeper than 64 levels          AmbiguousCreateError     ApiError(retryable)

(*) then the alias's answer, classified by this table, or ApiError when it is a 404 too.
(**) exactly one of the two shapes this relay uses (SPEC §1): ``{"error": {"message": ...}}``
(an object with a message) or new-api's ``{"code": ..., "message": ..., "data": null}`` (all
three keys present).

Why create differs: at this relay a create answered with an error status created nothing
(SPEC §5), but a create that got no answer may have created a billed task, so it is never sent
again blindly. A 5xx without the relay's own error body comes from something in front of the
relay (a gateway that timed out waiting for it), so the relay may have accepted the task; a
gateway's own JSON, such as AWS API Gateway's ``{"message": "Endpoint request timed out"}``, is
not the relay's body, which is why only the two exact shapes count.
``model_not_found`` means no channel serves the model: retrying a create will not help soon. A
query only reads, so every transient failure of a query is retryable.

Downloads go to the video host, never with the key: 408, 429 and 5xx are retryable, other
statuses not; every transport failure is retryable (a GET may be repeated).

The key never appears in a message, a repr or a log line: the debug log of
``vidu_pipe.client`` shows method, URL (without its query) and status, with ``Authorization``
redacted, and text from the relay is scrubbed of the key before it goes into a message, an
error code, a debug line or a :class:`TaskState` (its id, URL and failure reason): a relay may
echo the key anywhere, and the runner writes a task's reason and URL into the manifest.
"""

from __future__ import annotations

import email.utils
import hashlib
import ipaddress
import json
import logging
import math
import os
import re
from collections.abc import Mapping
from datetime import datetime, timezone
from pathlib import Path
from types import TracebackType
from typing import Any, Final, Literal
from urllib.parse import quote, urlsplit

import anyio
import httpx
import idna

from vidu_pipe._version import __version__
from vidu_pipe.constants import DEFAULT_BASE_URL
from vidu_pipe.errors import AmbiguousCreateError, ApiError, AuthError, ConfigError, QuotaError
from vidu_pipe.execution.answers import (
    TaskState,
    TaskStatus,
    clean_text,
    decode_json,
    http_url,
    is_relay_error_body,
    json_error,
    parse_task,
    read_task,
)
from vidu_pipe.fileio import AtomicFile

__all__ = [
    "DEFAULT_BASE_URL",
    "TaskState",
    "TaskStatus",
    "ViduClient",
    "parse_retry_after",
    "parse_task",
    "resolve_api_key",
    "resolve_base_url",
]

logger = logging.getLogger("vidu_pipe.execution.client")


_CREATE_ROUTE: Final = "v1/video/generations"
_QUERY_ROUTE: Final = "v1/video/generations"
_QUERY_ALIAS: Final = "v1/videos"

_Op = Literal["create", "query", "download"]

# Visible ASCII only: anything else cannot travel in a header, and httpx would fail with an
# exception that carries the whole value.
_HEADER_SAFE: Final = re.compile(r"[\x21-\x7e]+")


_MIN_SCRUB = 8


def resolve_api_key(env: Mapping[str, str] = os.environ) -> str:
    """The relay key from ``VIDU_API_KEY`` (and nowhere else), stripped of surrounding blanks.

    Raises :class:`ConfigError` when it is missing, blank or cannot be sent in a header.
    """
    key = env.get("VIDU_API_KEY", "").strip()
    if not key:
        raise ConfigError(
            "VIDU_API_KEY is not set: export the relay's key (export VIDU_API_KEY=...); "
            "vidu-pipe reads it only from the environment (--simulate needs no key)"
        )
    if not _HEADER_SAFE.fullmatch(key):
        raise ConfigError(
            "VIDU_API_KEY contains spaces, line breaks or non-ASCII characters, "
            "so it cannot be sent in a header"
        )
    return key


def resolve_base_url(flag: str | None, env: Mapping[str, str] = os.environ) -> str:
    """The endpoint base: the flag, else ``VIDU_BASE_URL``, else :data:`DEFAULT_BASE_URL`.

    The result is normalised as :class:`ViduClient` does it (no trailing slash, no ``/v1``);
    a URL that is not http(s) raises :class:`ConfigError` naming where it came from.
    """
    if flag is not None and flag.strip():
        return _normalise_base_url(flag, source="--base-url")
    from_env = env.get("VIDU_BASE_URL", "").strip()
    if from_env:
        return _normalise_base_url(from_env, source="VIDU_BASE_URL")
    return DEFAULT_BASE_URL


def _normalise_base_url(value: str, *, source: str = "the base URL") -> str:
    text = value.strip()
    hint = "give an http(s) URL such as https://api.aijisu.cn"
    # Never echo the text itself: a key pasted into it (``?k=sk-…``, ``user:sk-…@``) would be
    # printed with the error.
    shown = _shown_url(text)
    try:
        url = httpx.URL(text)
    except httpx.InvalidURL as exc:
        raise ConfigError(f"{source} {shown} is not a URL ({exc}); {hint}") from None
    host = url.raw_host.decode("ascii", "replace")
    if url.scheme not in ("http", "https") or not host:
        raise ConfigError(f"{source} {shown} is not an http(s) URL; {hint}")
    if url.userinfo:
        raise ConfigError(f"{source} must not carry a user name or password; {hint}")
    if url.query or url.fragment:
        raise ConfigError(
            f"{source} {shown} must not have a query or fragment (a key belongs in "
            f"VIDU_API_KEY only); {hint}"
        )
    if url.port is not None and not 0 < url.port < 65536:
        raise ConfigError(f"{source} {shown}: port {url.port} is not 1-65535; {hint}")
    try:
        # What the connection will do with the name; "xn--" and other broken IDNA labels
        # would otherwise fail deep inside the socket layer on the first request.
        idna.decode(host)
    except (idna.IDNAError, UnicodeError, ValueError) as exc:
        if not _is_ip(host):
            raise ConfigError(
                f"{source} {shown}: the host name is not valid ({exc}); {hint}"
            ) from None
    path = url.path.rstrip("/")
    # OpenAI-style tools take the base with /v1; the routes here add it themselves.
    if path.lower().endswith("/v1"):
        path = path[:-3]
    return f"{url.scheme}://{url.netloc.decode('ascii')}{path}"


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True


def _shown_url(text: str) -> str:
    """``text`` fit to print: scheme, host, port and path only, control characters escaped."""
    try:
        parts = urlsplit(text)
    except ValueError:
        return "(not a URL)"
    host = parts.hostname or ""
    try:
        port = f":{parts.port}" if parts.port is not None else ""
    except ValueError:
        port = ":" + parts.netloc.rpartition(":")[2]
    if not parts.scheme and not host:
        return "(not a URL)"
    hidden = " (query not shown)" if parts.query or parts.fragment or "@" in parts.netloc else ""
    return repr(clean_text(f"{parts.scheme}://{host}{port}{parts.path}")) + hidden


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header: delay-seconds (fractions allowed) or an
    HTTP-date (a date in the past gives 0). None when absent or unreadable."""
    if value is None or not value.strip():
        return None
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        pass
    else:
        return seconds if math.isfinite(seconds) and seconds >= 0 else None
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    current = now if now is not None else datetime.now(timezone.utc)
    return max(0.0, (when - current).total_seconds())


# ---------------------------------------------------------------------------------------------
# Logging without the key


def _safe_url(url: httpx.URL | str) -> str:
    """Scheme, host, port and path: a query may hold a signed token, userinfo a password."""
    try:
        parsed = url if isinstance(url, httpx.URL) else httpx.URL(url)
    except httpx.InvalidURL:
        return "<invalid URL>"
    return f"{parsed.scheme}://{parsed.netloc.decode('ascii')}{parsed.path}"


def _redacted_headers(headers: httpx.Headers) -> dict[str, str]:
    return {
        name: "***" if name.lower() in ("authorization", "proxy-authorization") else value
        for name, value in headers.items()
    }


async def _log_request(request: httpx.Request) -> None:
    if logger.isEnabledFor(logging.DEBUG):
        logger.debug(
            "%s %s headers=%s",
            request.method,
            _safe_url(request.url),
            _redacted_headers(request.headers),
        )


async def _log_response(response: httpx.Response) -> None:
    if logger.isEnabledFor(logging.DEBUG):
        request = response.request
        logger.debug("%s %s -> %d", request.method, _safe_url(request.url), response.status_code)


# ---------------------------------------------------------------------------------------------
# The client

_PRE_SEND_FATAL: Final = (
    httpx.UnsupportedProtocol,
    httpx.LocalProtocolError,
    httpx.InvalidURL,
    httpx.TooManyRedirects,
)
# Raised before a byte of the request left: the connection never stood.
_PRE_SEND_RETRYABLE: Final = (
    httpx.ConnectError,
    httpx.ConnectTimeout,
    httpx.PoolTimeout,
    httpx.ProxyError,
)


class ViduClient:
    """Single attempts against the relay's task endpoint, over one ``httpx.AsyncClient``.

    ``api_key`` None sends no ``Authorization`` (the simulator needs none). ``transport``
    replaces the network (``httpx.MockTransport``, an ASGI transport). ``timeout`` bounds
    connecting and each read; ``deadline`` (default twice ``timeout``) bounds a whole request
    and its answer. Use it as an async context manager, or call :meth:`aclose`. Raises
    :class:`ConfigError` for a base URL that is not http(s) or a key that cannot be sent.
    """

    def __init__(
        self,
        base_url: str,
        api_key: str | None,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        timeout: float = 30.0,
        deadline: float | None = None,
    ) -> None:
        self._base_url = _normalise_base_url(base_url)
        if api_key is not None and not _HEADER_SAFE.fullmatch(api_key):
            raise ConfigError(
                "the API key is empty or contains spaces, line breaks or non-ASCII characters"
            )
        if not (math.isfinite(timeout) and timeout > 0):
            raise ConfigError(
                f"the HTTP timeout must be a positive number of seconds, not {timeout}"
            )
        self._api_key = api_key
        #: The most one request and its whole answer may take (downloads excepted).
        self._deadline = deadline if deadline is not None else 2 * timeout
        if not (math.isfinite(self._deadline) and self._deadline > 0):
            raise ConfigError(f"the request deadline must be positive, not {deadline}")
        self._query_route = _QUERY_ROUTE
        self._client = httpx.AsyncClient(
            transport=transport,
            timeout=httpx.Timeout(timeout),
            follow_redirects=False,
            headers={"User-Agent": f"vidu-pipe/{__version__}"},
            event_hooks={"request": [_log_request], "response": [_log_response]},
        )

    @property
    def base_url(self) -> str:
        """The normalised base URL, without a trailing slash."""
        return self._base_url

    def __repr__(self) -> str:
        key = "None" if self._api_key is None else "'***'"
        return f"ViduClient(base_url={self._base_url!r}, api_key={key})"

    async def __aenter__(self) -> ViduClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the connections."""
        await self._client.aclose()

    async def create(self, body: Mapping[str, Any]) -> TaskState:
        """POST ``body`` as JSON to ``{base}/v1/video/generations``; the new task's state.

        A completed answer without a URL reads as ``in_progress``: the task exists, and a
        query will bring the URL. See the module's table for the errors; a body JSON cannot
        encode raises ``TypeError`` or ``ValueError`` before anything is sent.
        """
        content = json.dumps(
            dict(body), ensure_ascii=False, allow_nan=False, separators=(",", ":")
        ).encode("utf-8")
        headers = {**self._auth(), "Content-Type": "application/json", "Accept": "application/json"}
        response = await self._send(
            "POST",
            self._url(_CREATE_ROUTE),
            action="create",
            op="create",
            headers=headers,
            content=content,
        )
        self._raise_for_response(response, action="create", op="create")
        try:
            return self._read_task(response, action="create", task_id=None)
        except ApiError as exc:
            raise AmbiguousCreateError(
                f"{exc.message}; a task may have been created, so it is not created again blindly",
                status_code=exc.status_code,
                code=exc.code,
            ) from exc

    async def query(self, task_id: str) -> TaskState:
        """GET ``{base}/v1/video/generations/{task_id}``; the task's state.

        When that route answers 404, the compatible ``{base}/v1/videos/{task_id}`` is asked
        instead, and used from then on if it exists.
        """
        if not task_id:
            raise ValueError("task_id is empty")
        quoted = quote(task_id, safe="")
        action = f"query {task_id}"
        headers = {**self._auth(), "Accept": "application/json"}
        route = self._query_route
        response = await self._send(
            "GET", self._url(f"{route}/{quoted}"), action=action, op="query", headers=headers
        )
        if response.status_code == 404 and route == _QUERY_ROUTE:
            alias = await self._send(
                "GET",
                self._url(f"{_QUERY_ALIAS}/{quoted}"),
                action=action,
                op="query",
                headers=headers,
            )
            # Both routes missing: the documented route's answer says more.
            if alias.status_code != 404:
                logger.debug("%s answers 404; querying %s from now on", route, _QUERY_ALIAS)
                self._query_route = _QUERY_ALIAS
                response = alias
        self._raise_for_response(response, action=action, op="query")
        return self._read_task(response, action=action, task_id=task_id)

    async def download(self, url: str, dest: Path) -> tuple[int, str]:
        """Stream ``url`` into ``dest`` atomically; ``(size in bytes, sha256 hex)``.

        Redirects are followed and no ``Authorization`` is sent: the video host is not the
        relay. The bytes go to a temporary file beside ``dest``, are fsynced, then renamed over
        it; on any failure (or cancellation) the temporary file is removed and ``dest`` is
        left as it was. Errors are :class:`ApiError`; a local file error is an ``OSError``.
        """
        action = f"download {_safe_url(url)}"
        if http_url(url) is None:
            raise ApiError(f"{action}: not an http(s) URL")
        dest = Path(dest)
        dest.parent.mkdir(parents=True, exist_ok=True)
        try:
            async with self._client.stream(
                "GET", url.strip(), headers={"Accept": "*/*"}, follow_redirects=True
            ) as response:
                if not response.is_success:
                    await response.aread()
                    self._raise_for_response(response, action=action, op="download")
                return await _write_atomically(response, dest, action=action)
        except (httpx.HTTPError, httpx.InvalidURL) as exc:
            raise self._map_transport_error(exc, action=action, op="download") from exc

    # -- internals ----------------------------------------------------------------------------

    def _url(self, path: str) -> str:
        return f"{self._base_url}/{path}"

    def _auth(self) -> dict[str, str]:
        return {} if self._api_key is None else {"Authorization": f"Bearer {self._api_key}"}

    def _scrub(self, text: str) -> str:
        """``text`` without the key (relays may echo the token they refuse) and with its
        control characters escaped (a relay's text must not drive the terminal).

        A key shorter than 8 characters is no real relay key (theirs are ``sk-`` and
        dozens of characters); replacing it everywhere would mangle ordinary words.
        """
        key = self._api_key
        if key and len(key) >= _MIN_SCRUB:
            text = text.replace(key, "***")
        return clean_text(text)

    def _read_task(
        self, response: httpx.Response, *, action: str, task_id: str | None
    ) -> TaskState:
        """The task in a 2xx answer, else :class:`ApiError` with the relay's text scrubbed.

        A create's answer (``task_id`` None) may be completed without a URL: the task exists.
        Every text of the state is scrubbed of the key.
        """
        problem: ApiError
        try:
            data = decode_json(response.content)
            state = read_task(
                data, task_id=task_id, require_url=task_id is not None, scrub=self._scrub
            )
            # An id is never rewritten (the next query asks for it); one that carries the
            # key, or control characters, would put them into the manifest and onto the
            # terminal, so it is refused instead.
            if self._scrub(state.task_id) != state.task_id:
                raise ApiError(
                    "the answer's task id contains the API key or control characters; not recorded"
                )
            return state
        except ValueError:  # not JSON (UnicodeDecodeError is one)
            problem = ApiError(
                f"the answer is not JSON ({_text_summary(response)})", retryable=True
            )
        except ApiError as exc:
            problem = exc
        # Not chained: the inner error only repeats this message, unscrubbed.
        raise ApiError(
            f"{action}: HTTP {response.status_code}, but {self._scrub(problem.message)}",
            status_code=response.status_code,
            code=problem.code and self._scrub(problem.code),
            retryable=problem.retryable,
        ) from None

    async def _send(
        self,
        method: str,
        url: str,
        *,
        action: str,
        op: _Op,
        headers: dict[str, str],
        content: bytes | None = None,
    ) -> httpx.Response:
        try:
            # A whole answer within the deadline: the read timeout alone never ends an answer
            # trickled one byte at a time.
            with anyio.fail_after(self._deadline):
                return await self._client.request(method, url, headers=headers, content=content)
        except TimeoutError:
            late = httpx.ReadTimeout(f"no whole answer within {self._deadline:g} s")
            raise self._map_transport_error(late, action=action, op=op) from None
        except (httpx.HTTPError, httpx.InvalidURL) as exc:
            raise self._map_transport_error(exc, action=action, op=op) from exc
        except ValueError as exc:  # a host name the socket layer cannot encode (IDNA)
            raise ApiError(
                f"{action}: the request could not be sent ({type(exc).__name__}: "
                f"{self._scrub(str(exc))})"
            ) from None

    def _map_transport_error(self, exc: Exception, *, action: str, op: _Op) -> ApiError:
        """The project's error for an httpx exception raised while sending or reading."""
        detail = self._scrub(str(exc)) or "no detail"
        what = f"{type(exc).__name__}: {detail}"
        if isinstance(exc, _PRE_SEND_FATAL):
            return ApiError(f"{action}: the request could not be sent ({what})")
        if isinstance(exc, _PRE_SEND_RETRYABLE):
            return ApiError(f"{action}: could not connect ({what})", retryable=True)
        if op == "create":
            return AmbiguousCreateError(
                f"create: the request may have reached the relay, but no answer came back "
                f"({what}); the task may exist, so it is not created again blindly"
            )
        return ApiError(f"{action}: no complete answer ({what})", retryable=True)

    def _raise_for_response(self, response: httpx.Response, *, action: str, op: _Op) -> None:
        """Raise the project's error for a non-2xx answer (see the module's table)."""
        status = response.status_code
        if response.is_success:
            return
        message, code, relay_body = self._error_details(response)
        detail = f"HTTP {status}" + (f" [{code}]" if code else "") + f": {message}"
        retry_after = parse_retry_after(response.headers.get("Retry-After"))
        transient = status in (408, 429) or status >= 500
        if response.is_redirect:
            where = self._scrub(_safe_url(response.headers.get("Location", "")))
            raise ApiError(
                f"{action}: HTTP {status} redirect to {where}; check the base URL",
                status_code=status,
            )
        plain = ApiError(
            f"{action}: {detail}",
            status_code=status,
            code=code,
            retryable=transient,
            retry_after=retry_after if transient else None,
        )
        if op == "download":  # a video host: none of the relay's key or quota answers apply
            raise plain
        if status == 401:
            raise AuthError(f"the relay refused the API key ({detail}); check VIDU_API_KEY")
        if status == 403:
            raise QuotaError(
                f"{action}: quota spent or key banned ({detail})", status_code=status, code=code
            )
        if status >= 500 and op == "create":
            if not relay_body:
                raise AmbiguousCreateError(
                    f"create: {detail}, not the relay's own error body; the task may exist, "
                    "so it is not created again blindly",
                    status_code=status,
                )
            if code is not None and code.lower() == "model_not_found":
                raise ApiError(
                    f"create: no channel of the relay serves this model ({detail})",
                    status_code=status,
                    code=code,
                )
        raise plain

    def _error_details(self, response: httpx.Response) -> tuple[str, str | None, bool]:
        """(message, code, whether the body is the relay's own error body), scrubbed.

        Message and code are read leniently from any JSON; only the two shapes of
        :func:`_is_relay_error_body` count as the relay's body.
        """
        try:
            data = decode_json(response.content)
        except ValueError:
            data = None
        if isinstance(data, Mapping):
            message, code = json_error(data)
            if message is not None or code is not None:
                text = message or response.reason_phrase or "no message"
                relay_body = is_relay_error_body(data)
                return self._scrub(text), code and self._scrub(code), relay_body
        return self._scrub(_text_summary(response)), None, False


def _text_summary(response: httpx.Response) -> str:
    try:
        text = response.text.strip()
    except (UnicodeDecodeError, LookupError):
        text = ""
    if not text:
        return response.reason_phrase or "no body"
    if text.startswith("<"):
        title = re.search(r"(?is)<title[^>]*>(.*?)</title>", text)
        return (
            f"an HTML page ({' '.join(title.group(1).split())[:120]})" if title else "an HTML page"
        )
    text = " ".join(text.split())
    return text if len(text) <= 300 else text[:300] + "…"


async def _write_atomically(
    response: httpx.Response, dest: Path, *, action: str
) -> tuple[int, str]:
    digest = hashlib.sha256()
    size = 0
    # fileio: a temporary name from tempfile beside dest, never written through a link.
    with AtomicFile(dest) as out:
        async for chunk in response.aiter_bytes():
            out.file.write(chunk)
            digest.update(chunk)
            size += len(chunk)
        # Decoded bytes differ from the length on the wire when the body is encoded.
        expected = response.headers.get("Content-Length", "")
        unencoded = "Content-Encoding" not in response.headers
        if unencoded and expected.isdigit() and int(expected) != size:
            raise ApiError(
                f"{action}: the video host sent {size} of {expected} bytes", retryable=True
            )
        if size == 0:
            raise ApiError(f"{action}: the video host sent an empty file", retryable=True)
        await anyio.to_thread.run_sync(out.commit)
    return size, digest.hexdigest()
