"""What every request to the web app passes first: the Host and Origin checks, and the security headers.

The Host check keeps DNS rebinding out on any listening address: a page on another site cannot reach
this server through a DNS name of its own that points here. The Origin check keeps other sites'
pages from making this machine stylize: a browser sends a cross-site form POST without asking, it
only hides the answer.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import socket
from collections.abc import Sequence
from urllib.parse import urlsplit

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["SECURITY_HEADERS", "Guard", "error_response", "host_name", "machine_host_names", "raw_error"]

# The page may load only what this server serves: no CDN, no fonts, no beacons.
SECURITY_HEADERS = [
    (
        b"content-security-policy",
        b"default-src 'self'; img-src 'self' blob: data:; script-src 'self'; style-src 'self'; "
        b"connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'",
    ),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
]
_UNSAFE_METHODS = {"POST", "PUT", "PATCH", "DELETE"}
_DEFAULT_PORTS = {"http": 80, "https": 443}


def error_response(message: str, status: int, *, close: bool = False) -> JSONResponse:
    """The app's error answer: JSON ``{"error": message}``, never cached; ``close`` ends the connection."""
    headers = {"cache-control": "no-store"}
    if close:
        headers["connection"] = "close"
    return JSONResponse({"error": message}, status_code=status, headers=headers)


def raw_error(status: int, reason: str, message: str) -> bytes:
    """A whole HTTP/1.1 error answer that closes the connection, for the server to write itself."""
    body = json.dumps({"error": message}).encode()
    head = [
        f"HTTP/1.1 {status} {reason}".encode(),
        b"content-type: application/json",
        f"content-length: {len(body)}".encode(),
        b"cache-control: no-store",
        b"connection: close",
        *(name + b": " + value for name, value in SECURITY_HEADERS),
    ]
    return b"\r\n".join(head) + b"\r\n\r\n" + body


def _printable(raw: bytes, limit: int = 80) -> str:
    text = "".join(ch if ch.isprintable() else "?" for ch in raw.decode("latin-1"))
    return text if len(text) <= limit else text[: limit - 3] + "..."


def host_name(host: str) -> tuple[str, int | None]:
    """A ``Host`` header value -> lower-case name (IPv6 without brackets, no trailing dot) and port."""
    host = host.strip().lower()
    if host.startswith("["):
        name, _, rest = host[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else ""
    elif host.count(":") == 1:
        name, _, port = host.partition(":")
    else:
        name, port = host, ""
    return name.rstrip("."), int(port) if port.isdigit() else None


def machine_host_names() -> list[str]:
    """The names and addresses this machine calls itself: localhost, its host name, and their addresses."""
    names = {"localhost", "127.0.0.1", "::1"}
    for name in {socket.gethostname(), socket.getfqdn()} - {""}:
        names.add(name.lower().rstrip("."))
        with contextlib.suppress(OSError):  # a host name that does not resolve is still this machine's name
            names.update(str(info[4][0]).lower() for info in socket.getaddrinfo(name, None))
    return sorted(names)


def _is_address(name: str, address: str) -> bool:
    try:
        return ipaddress.ip_address(name) == ipaddress.ip_address(address)
    except ValueError:
        return False


class Guard:
    """ASGI middleware: unlisted ``Host`` -> JSON 400, cross-site ``POST`` -> JSON 403; adds ``SECURITY_HEADERS``.

    ``allowed_hosts`` are the names the ``Host`` header may carry; the address a connection arrived
    at is accepted too, as a DNS name of another site never is that address.
    """

    def __init__(self, app: ASGIApp, allowed_hosts: Sequence[str]) -> None:
        self.app = app
        self.allowed = {host_name(h)[0] for h in allowed_hosts}

    def _host_allowed(self, scope: Scope, host: str) -> bool:
        name = host_name(host)[0]
        server = scope.get("server")
        return name in self.allowed or (server is not None and _is_address(name, str(server[0])))

    @staticmethod
    def _foreign_origin(scope: Scope, headers: dict[bytes, bytes], host: str) -> str | None:
        """Why an unsafe request comes from another site's page, or ``None`` when it does not."""
        origin = headers.get(b"origin")
        if origin is None:
            # Browsers send Origin with every POST; Sec-Fetch-Site covers those that might not.
            site = headers.get(b"sec-fetch-site", b"")
            return f"Sec-Fetch-Site: {_printable(site)}" if site in (b"cross-site", b"same-site") else None
        try:
            parts = urlsplit(origin.decode("latin-1").strip().lower())
            port = parts.port or _DEFAULT_PORTS.get(parts.scheme)
        except ValueError:
            return f"Origin: {_printable(origin)}"
        scheme = str(scope.get("scheme", "http"))
        name, own_port = host_name(host)
        own = (scheme, name, own_port or _DEFAULT_PORTS.get(scheme))
        return None if (parts.scheme, parts.hostname, port) == own else f"Origin: {_printable(origin)}"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), *SECURITY_HEADERS]}
            await send(message)

        headers = dict(scope["headers"])
        host = headers.get(b"host", b"").decode("latin-1")
        refusal = None
        if not self._host_allowed(scope, host):
            refusal = error_response(
                "this server answers only requests addressed to this machine (Host header); "
                "fast-style serve --allow-host NAME adds a name",
                400,
            )
        elif scope["method"] in _UNSAFE_METHODS:
            foreign = self._foreign_origin(scope, headers, host)
            if foreign is not None:
                refusal = error_response(
                    f"this server takes requests from its own page only, not from another site ({foreign})",
                    403,
                )
        if refusal is not None:
            await refusal(scope, receive, send_with_headers)
            return
        await self.app(scope, receive, send_with_headers)
