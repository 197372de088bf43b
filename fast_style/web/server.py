"""Run the web app under uvicorn: in the foreground (``fast-style serve``) or in a background thread.

The listening socket is bound here, before uvicorn starts, so a busy port is a one-line error and
port 0 (any free port) works for tests and scripts. The connections run uvicorn's h11 protocol with
deadlines on the client (``Deadlines``): a request head that does not arrive, a connection left
idle, or a body sent on after the answer is cut off, so slow or stalled clients hold no more than
a socket each.
"""

from __future__ import annotations

import asyncio
import ipaddress
import math
import socket
import threading
import time
from types import TracebackType
from typing import Any

import anyio
import h11
import uvicorn
from starlette.types import ASGIApp
from uvicorn.protocols.http.h11_impl import H11Protocol

from fast_style.errors import FastStyleError
from fast_style.web.guard import raw_error
from fast_style.web.limits import Deadlines

__all__ = ["BackgroundServer", "bind", "is_loopback", "serve"]


def is_loopback(host: str) -> bool:
    """True for addresses only this machine can reach (127.0.0.0/8, ::1, localhost)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port``; ``FastStyleError`` with the reason when it cannot be had."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise FastStyleError(f"cannot resolve host {host!r}: {exc.strerror}") from None
    family, _, _, _, address = infos[0]
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(128)
    except OSError as exc:
        sock.close()
        raise FastStyleError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    return sock


class _ClientDeadlines(H11Protocol):
    """uvicorn's h11 protocol, closing connections on which the client keeps the server waiting.

    While the server waits for a request head (``headers``; an empty connection: ``idle``), or for
    the rest of a body after it has answered (``body``), a timer runs; when it fires, a partial
    request head gets a JSON 408 and the connection closes. While a request is with the app, the
    app keeps its own deadline on the body it reads.
    """

    deadlines = Deadlines()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._timer: asyncio.TimerHandle | None = None
        self._waiting_for: str | None = None

    def _waiting_now(self) -> str | None:
        if self.transport is None or self.transport.is_closing():
            return None
        theirs, ours = self.conn.their_state, self.conn.our_state
        if theirs is h11.IDLE:
            return "headers" if self.conn.trailing_data[0] else "idle"
        if theirs is h11.SEND_BODY and ours in (h11.DONE, h11.MUST_CLOSE):
            return "body"  # answered already; the rest of the body is read and dropped
        return None

    def _watch(self) -> None:
        """Start, keep or stop the timer for what the connection now waits for; a running one keeps its start."""
        waiting_for = self._waiting_now()
        if waiting_for == self._waiting_for:
            return
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._waiting_for = waiting_for
        if waiting_for is not None:
            seconds = getattr(self.deadlines, waiting_for)
            self._timer = self.loop.call_later(seconds, self._expired, waiting_for, seconds)

    def _expired(self, waiting_for: str, seconds: float) -> None:
        self._timer = None
        if self.transport.is_closing():
            return
        if waiting_for == "headers":
            message = f"the request's headers did not arrive within {seconds:g} s"
            self.transport.write(raw_error(408, "Request Timeout", message))
        self.transport.close()

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._watch()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        self._watch()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._watch()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        super().connection_lost(exc)

    def send_400_response(self, msg: str) -> None:
        """h11 refused the request: answer in the app's JSON, with its headers, instead of plain text."""
        message = "malformed HTTP request (its request line or headers; HTTP/1.1 needs a Host header)"
        self.transport.write(raw_error(400, "Bad Request", message))
        self.transport.close()


def _config(app: ASGIApp, access_log: bool, deadlines: Deadlines) -> uvicorn.Config:
    protocol = type("ClientDeadlines", (_ClientDeadlines,), {"deadlines": deadlines})
    return uvicorn.Config(
        app,
        http=protocol,
        timeout_keep_alive=math.ceil(deadlines.idle),  # uvicorn's own idle timer; ours is exact
        log_level="warning",
        access_log=access_log,
        server_header=False,
        lifespan="on",
    )


def serve(
    app: ASGIApp, sock: socket.socket, access_log: bool = False, deadlines: Deadlines | None = None
) -> None:
    """Serve ``app`` on ``sock`` until Ctrl+C (uvicorn handles the signal and shuts down cleanly)."""
    uvicorn.Server(_config(app, access_log, deadlines or Deadlines())).run(sockets=[sock])


# The anyio helpers starlette and uvicorn reach for while serving. Recent anyio imports them on first
# use, and CPython 3.11 can fail ("AST constructor recursion depth mismatch") when the server thread
# compiles such an import while another thread compiles too, so they are resolved before it starts.
_ANYIO_HELPERS = (
    "open_file",
    "AsyncFile",
    "to_thread",
    "from_thread",
    "lowlevel",
    "abc",
    "streams",
    "create_task_group",
    "create_memory_object_stream",
    "CancelScope",
    "CapacityLimiter",
    "Event",
    "EndOfStream",
    "BrokenResourceError",
    "sleep_forever",
)


def _import_anyio_helpers() -> None:
    for name in _ANYIO_HELPERS:
        getattr(anyio, name, None)


class BackgroundServer:
    """``with BackgroundServer(app) as server:`` serves ``app`` on ``server.url`` from a thread."""

    def __init__(
        self, app: ASGIApp, host: str = "127.0.0.1", port: int = 0, deadlines: Deadlines | None = None
    ) -> None:
        self._sock = bind(host, port)
        bound_host, bound_port = self._sock.getsockname()[:2]
        self.url = f"http://{bound_host}:{bound_port}"
        # Run off the main thread, where uvicorn installs no signal handlers.
        self._server = uvicorn.Server(_config(app, False, deadlines or Deadlines()))
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [self._sock]}, name="fast-style-web", daemon=True
        )

    def __enter__(self) -> BackgroundServer:
        _import_anyio_helpers()
        self._thread.start()
        deadline = time.monotonic() + 30
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the web server did not start")
            time.sleep(0.02)
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=30)
        self._sock.close()
