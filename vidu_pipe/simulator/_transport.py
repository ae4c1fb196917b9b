"""The in-process way in: an httpx transport that runs the simulator's ASGI app.

It wraps ``httpx.ASGITransport`` and adds what an in-memory call lacks: the
connection faults (raised as the httpx exceptions a real socket would give) and
the request's read timeout, so that a slow answer can time a client out.
"""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass
from typing import Literal

import anyio
import httpx
from starlette.types import ASGIApp

__all__ = ["DropFlavour", "SimulatorTransport"]

DropFlavour = Literal["before", "after"]


@dataclass
class _DropSignal:
    flavour: DropFlavour | None = None


# Set around each in-process request: the app reports a dropped connection here,
# since there is no socket to cut.
DROP_SIGNAL: ContextVar[_DropSignal | None] = ContextVar("vidu_pipe_simulator_drop", default=None)


class SimulatorTransport(httpx.AsyncBaseTransport):
    """Serves requests from the simulator's ASGI app, without a socket.

    A connection dropped before the relay saw the request raises
    ``httpx.ConnectError``; one dropped after the relay acted (a task may exist)
    raises ``httpx.RemoteProtocolError``, as a socket closed mid-answer does. An
    answer slower than the request's read timeout raises ``httpx.ReadTimeout``.
    """

    def __init__(self, app: ASGIApp) -> None:
        self._inner = httpx.ASGITransport(app=app)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        signal = _DropSignal()
        token = DROP_SIGNAL.set(signal)
        timeouts = request.extensions.get("timeout", {})
        try:
            with anyio.fail_after(timeouts.get("read")):
                response = await self._inner.handle_async_request(request)
        except TimeoutError as exc:
            raise httpx.ReadTimeout(
                "simulated: the relay did not answer in time", request=request
            ) from exc
        finally:
            DROP_SIGNAL.reset(token)
        if signal.flavour == "before":
            raise httpx.ConnectError(
                "simulated: the connection dropped before the request reached the relay",
                request=request,
            )
        if signal.flavour == "after":
            raise httpx.RemoteProtocolError(
                "simulated: peer closed connection without sending complete message body",
                request=request,
            )
        return response

    async def aclose(self) -> None:
        await self._inner.aclose()
