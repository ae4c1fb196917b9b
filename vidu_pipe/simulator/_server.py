"""The simulator on a real socket: ``serve`` for the CLI, ``running_server`` for tests."""

from __future__ import annotations

import contextlib
import errno
import logging
import socket
import threading
import time
from collections.abc import Iterator

import uvicorn
from uvicorn.config import LOGGING_CONFIG

from vidu_pipe.errors import ConfigError
from vidu_pipe.simulator._app import Simulator
from vidu_pipe.simulator._config import SimulatorConfig

__all__ = ["running_server", "serve"]

_STARTUP_TIMEOUT = 10.0


def serve(
    config: SimulatorConfig | Simulator | None = None,
    host: str = "127.0.0.1",
    port: int = 8000,
    *,
    log_level: str = "info",
) -> None:
    """Serve the simulator on ``host:port`` until interrupted (Ctrl+C).

    Raises ``ConfigError`` when the address cannot be bound (the port is taken,
    the host is not an address of this machine).
    """
    sim = config if isinstance(config, Simulator) else Simulator(config)
    sock = _bind(host, port)
    server = uvicorn.Server(_uvicorn_config(sim, host, port, log_level=log_level, access_log=True))
    cfg = sim.config
    logging.getLogger("uvicorn.error").info(
        "vidu-pipe simulator (profile %s, time scale %g, %s) on %s (press CTRL+C to quit)",
        cfg.profile,
        cfg.time_scale,
        "key required" if cfg.key is not None else "any key",
        _url(host, sock.getsockname()[1]),
    )
    with _quiet_drops():
        server.run(sockets=[sock])


@contextlib.contextmanager
def running_server(
    config: SimulatorConfig | Simulator | None = None, *, host: str = "127.0.0.1"
) -> Iterator[str]:
    """Serve the simulator on a free port of ``host`` in a background thread.

    Yields the base URL (``http://127.0.0.1:PORT``) and stops the server on exit.
    Pass a ``Simulator`` to read its ``stats()`` afterwards.
    """
    sim = config if isinstance(config, Simulator) else Simulator(config)
    sock = _bind(host, 0)
    port = sock.getsockname()[1]
    server = uvicorn.Server(
        _uvicorn_config(sim, host, port, log_level="warning", access_log=False, quiet=True)
    )
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, name="vidu-pipe-simulator", daemon=True
    )
    with _quiet_drops():
        thread.start()
        try:
            deadline = time.monotonic() + _STARTUP_TIMEOUT
            while not server.started:
                if not thread.is_alive() or time.monotonic() > deadline:
                    raise ConfigError(f"the simulator did not start on {_url(host, port)}")
                time.sleep(0.005)
            yield _url(host, port)
        finally:
            server.should_exit = True
            thread.join(timeout=_STARTUP_TIMEOUT)
            sock.close()


def _uvicorn_config(
    sim: Simulator, host: str, port: int, *, log_level: str, access_log: bool, quiet: bool = False
) -> uvicorn.Config:
    return uvicorn.Config(
        sim.app,
        host=host,
        port=port,
        # h11, whatever else is installed: the dropped connections rely on how it
        # closes a connection whose answer was left unfinished.
        http="h11",
        lifespan="off",
        log_level=log_level,
        access_log=access_log,
        timeout_graceful_shutdown=1,
        # In a test process, leave its logging configuration as it was.
        log_config=None if quiet else LOGGING_CONFIG,
    )


def _bind(host: str, port: int) -> socket.socket:
    """A socket bound to ``host:port``, handed to uvicorn so nothing can take the port between."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        sock = socket.socket(family, kind, proto)
    except OSError as exc:
        raise ConfigError(f"cannot serve the simulator on {host}:{port}: {exc}") from exc
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            reason = "the port is taken; is another server using it? Choose another with --port"
        else:
            reason = exc.strerror or str(exc)
        raise ConfigError(f"cannot serve the simulator on {host}:{port}: {reason}") from exc
    return sock


def _url(host: str, port: int) -> str:
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


class _DropNoise(logging.Filter):
    """Hides uvicorn's complaint about the answers the simulator cuts short on purpose."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.getMessage() != "ASGI callable returned without completing response."


@contextlib.contextmanager
def _quiet_drops() -> Iterator[None]:
    target = logging.getLogger("uvicorn.error")
    noise = _DropNoise()
    target.addFilter(noise)
    try:
        yield
    finally:
        target.removeFilter(noise)
