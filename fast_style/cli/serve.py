"""``fast-style serve``: a local web page (and HTTP API) to stylize photos with the available models.

Needs the ``web`` extra: ``pip install -e ".[web]"``. Imports nothing from training or VGG.
"""

from __future__ import annotations

import argparse
import contextlib
import sys

from fast_style.cli.arguments import add_device_option, argparse_main
from fast_style.errors import EXIT_FAILED, EXIT_OK, EXIT_USAGE, FastStyleError

__all__ = ["main"]

PROG = "fast-style serve"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="A web page on this machine: pick a photo and a style, download the result. "
        "The same server answers scripts at POST /api/stylize and GET /api/models.",
        epilog="Exit codes: 0 stopped with Ctrl+C, 1 could not listen, 2 usage or setup error.",
    )
    parser.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1, this machine only)"
    )
    parser.add_argument(
        "--port", type=int, default=7860, help="port to listen on (default: 7860; 0 picks a free one)"
    )
    parser.add_argument(
        "--models",
        nargs="+",
        default=[],
        metavar="DIR",
        help="folders of .safetensors models to offer besides the shipped ones",
    )
    parser.add_argument("--no-shipped", action="store_true", help="offer only the models in --models")
    add_device_option(parser)
    parser.add_argument("--access-log", action="store_true", help="print one line per request")
    return parser


def _serve(args: argparse.Namespace) -> int:
    """``fast-style serve`` on parsed arguments; returns the exit code."""
    if not 0 <= args.port <= 65535:
        print(f"{PROG}: error: --port must be within 0-65535, got {args.port}", file=sys.stderr)
        return EXIT_USAGE
    try:
        from fast_style.web.app import create_app
        from fast_style.web.server import bind, is_loopback, serve
    except ImportError as exc:
        print(
            f'{PROG}: error: the web extra is not installed ({exc.name}): pip install -e ".[web]"',
            file=sys.stderr,
        )
        return EXIT_USAGE

    local = is_loopback(args.host)
    # On a loopback address only this machine's names are accepted in the Host header, so a web
    # page elsewhere cannot reach the server through a DNS name that points here.
    allowed_hosts = ["127.0.0.1", "localhost", "::1", args.host] if local else None
    try:
        app = create_app(
            args.models,
            shipped=not args.no_shipped,
            device=args.device,
            allowed_hosts=allowed_hosts,
        )
    except FastStyleError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    try:
        sock = bind(args.host, args.port)
    except FastStyleError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return EXIT_FAILED

    state = app.state.web
    for line in state.skipped:
        print(f"{PROG}: warning: {line}", file=sys.stderr)
    if not local:
        warning = f"listening on {args.host}: anyone who can reach this machine can use it"
        print(f"{PROG}: warning: {warning}", file=sys.stderr)
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    print(f"{PROG}: {len(state.catalog)} models ({', '.join(state.catalog.names())})")
    print(f"{PROG}: open http://{shown}:{port}/ in a browser (Ctrl+C stops)", flush=True)
    with contextlib.suppress(KeyboardInterrupt):  # uvicorn shuts down cleanly, then passes Ctrl+C on
        serve(app, sock, access_log=args.access_log)
    print(f"{PROG}: stopped")
    return EXIT_OK


main = argparse_main(_parser, _serve)

if __name__ == "__main__":
    sys.exit(main())
