"""The control API's HTTP server: uvicorn in the bot's own event loop.

The bot owns the process: its signal handlers decide how SIGINT/SIGTERM stop trading (orders
resolved, data flushed), so this server installs none of its own (uvicorn's `Server` would
otherwise take both signals over while it serves). We bind the socket ourselves, so a port in
use is one clear `ControlServerError` instead of uvicorn's ``sys.exit``, and port 0 gives a free
port whose number `ControlServer.port` reports. The access log is off: the bot logs every
action itself, and a log line per console poll would drown the rest.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import socket
from collections.abc import Generator
from dataclasses import dataclass

import uvicorn
from starlette.types import ASGIApp

from tessera.logging import get_logger

log = get_logger(__name__)

STOP_GRACE_S = 5.0  # open connections (SSE streams) get this long to finish on stop


class ControlServerError(RuntimeError):
    """The control server could not start (e.g. its port is in use)."""


class _Server(uvicorn.Server):
    """uvicorn without signal handling: the bot's handlers stay in charge."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


@dataclass
class ControlServer:
    """A running control server: its base URL and port; `stop` to shut it down."""

    host: str
    port: int
    _server: _Server
    _task: asyncio.Task[None]
    _app: ASGIApp

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    async def stop(self) -> None:
        """Stop accepting, end the event streams, wait (up to `STOP_GRACE_S`) for the rest."""
        closing = _closing_event(self._app)
        if closing is not None:
            closing.set()
        self._server.should_exit = True
        try:
            await self._task
        except asyncio.CancelledError:
            if not self._task.cancelled():
                raise


def _closing_event(app: ASGIApp) -> asyncio.Event | None:
    state = getattr(app, "state", None)
    event = getattr(state, "closing", None) if state is not None else None
    return event if isinstance(event, asyncio.Event) else None


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY on accepted connections only when the
    # listening socket says TCP; without it every response waits ~40 ms (Nagle, delayed ACK)
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(128)
        sock.setblocking(False)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise ControlServerError(
                f"the control API cannot listen on {host}:{port}: the port is in use; "
                "stop what uses it or choose another port with control.port"
            ) from None
        raise ControlServerError(
            f"the control API cannot listen on {host}:{port} ({exc.strerror or exc}); "
            "check control.host and control.port"
        ) from None
    return sock


async def start_control_server(app: ASGIApp, host: str, port: int) -> ControlServer:
    """Serve ``app`` on ``host:port`` from the running event loop; return once it accepts
    connections. Raises `ControlServerError` when the address cannot be bound."""
    sock = _bind(host, port)
    bound_port = int(sock.getsockname()[1])
    config = uvicorn.Config(
        app,
        host=host,
        port=bound_port,
        access_log=False,
        log_config=None,  # the bot's logging (structlog over stdlib) stays as configured
        lifespan="off",
        server_header=False,
        timeout_graceful_shutdown=int(STOP_GRACE_S),
        ws="none",
    )
    server = _Server(config)
    task = asyncio.get_running_loop().create_task(
        server.serve(sockets=[sock]), name=f"control-server:{bound_port}"
    )
    while not server.started:
        if task.done():
            sock.close()
            exc = task.exception() if not task.cancelled() else None
            raise ControlServerError(
                f"the control API on {host}:{bound_port} stopped while starting: {exc!r}"
            )
        await asyncio.sleep(0.01)
    log.debug("control API listening", url=f"http://{host}:{bound_port}")
    return ControlServer(host, bound_port, server, task, app)
