"""Run the web app under uvicorn: in the foreground (``fast-style serve``) or in a background thread.

The listening socket is bound here, before uvicorn starts, so a busy port is a one-line error and
port 0 (any free port) works for tests and scripts.
"""

from __future__ import annotations

import ipaddress
import socket
import threading
import time
from types import TracebackType

import uvicorn
from starlette.types import ASGIApp

from fast_style.errors import FastStyleError

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


def _config(app: ASGIApp, access_log: bool) -> uvicorn.Config:
    return uvicorn.Config(app, log_level="warning", access_log=access_log, server_header=False, lifespan="on")


def serve(app: ASGIApp, sock: socket.socket, access_log: bool = False) -> None:
    """Serve ``app`` on ``sock`` until Ctrl+C (uvicorn handles the signal and shuts down cleanly)."""
    uvicorn.Server(_config(app, access_log)).run(sockets=[sock])


class BackgroundServer:
    """``with BackgroundServer(app) as server:`` serves ``app`` on ``server.url`` from a thread."""

    def __init__(self, app: ASGIApp, host: str = "127.0.0.1", port: int = 0) -> None:
        self._sock = bind(host, port)
        bound_host, bound_port = self._sock.getsockname()[:2]
        self.url = f"http://{bound_host}:{bound_port}"
        # Run off the main thread, where uvicorn installs no signal handlers.
        self._server = uvicorn.Server(_config(app, access_log=False))
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [self._sock]}, name="fast-style-web", daemon=True
        )

    def __enter__(self) -> BackgroundServer:
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
