"""``fast-style serve``: a local web page (and HTTP API) to stylize photos with the available models.

Needs the ``web`` extra: ``pip install -e ".[web]"``. Imports nothing from training, nor VGG unless
``--loss-weights`` lets the page refine (feed-forward + N optimization steps).
"""

from __future__ import annotations

import argparse
import contextlib
import math
import sys
from collections.abc import Callable

from fast_style.cli.arguments import add_device_option, argparse_main
from fast_style.errors import EXIT_FAILED, EXIT_OK, EXIT_USAGE, FastStyleError

__all__ = ["main"]

PROG = "fast-style serve"
# --OPTION -> the Deadlines field it sets, and what it bounds
_DEADLINE_OPTIONS = {
    "--headers-timeout": ("headers", "seconds a client has to send a request's headers, then 408"),
    "--body-timeout": ("body", "seconds a client has to send an upload, then 408"),
    "--idle-timeout": ("idle", "seconds a connection may stay open with no request on it"),
}


def _web_defaults() -> dict[str, float]:
    """The deadlines' and the whole-image limit's defaults, for the help; empty without the web extra."""
    try:
        from fast_style.web.limits import Deadlines, Limits
    except ImportError:  # the web extra is missing; _serve says so
        return {}
    defaults = {name: float(getattr(Deadlines(), name)) for name, _ in _DEADLINE_OPTIONS.values()}
    return {**defaults, "whole_megapixels": Limits().max_whole_pixels / 1e6}


def _positive(unit: str) -> Callable[[str], float]:
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        if not (math.isfinite(value) and value > 0):
            raise argparse.ArgumentTypeError(f"expected a positive number of {unit}, got {text!r}")
        return value

    return parse


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
        "--allow-host",
        action="append",
        default=[],
        metavar="NAME",
        help="a name the Host header may carry besides this machine's own names and addresses "
        "(repeatable); requests addressed to any other name are refused",
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
    parser.add_argument(
        "--loss-weights",
        metavar="PATH",
        help="the loss network's weights (a file, or 'imagenet'): the page then offers Refine, N "
        "optimization steps after the network on the loss each model was trained with",
    )
    add_device_option(parser)
    parser.add_argument("--access-log", action="store_true", help="print one line per request")
    defaults = _web_defaults()
    for option, (name, what) in _DEADLINE_OPTIONS.items():
        default = f" (default: {defaults[name]:g})" if name in defaults else ""
        parser.add_argument(
            option,
            dest=f"{name}_timeout",
            type=_positive("seconds"),
            default=None,
            metavar="S",
            help=f"{what}{default}",
        )
    default = f" (default: {defaults['whole_megapixels']:.2f})" if defaults else ""
    parser.add_argument(
        "--whole-megapixels",
        type=_positive("megapixels"),
        metavar="MP",
        help="on the CPU, results up to this size run in one piece and larger ones in tiles, which "
        "are 2-4x slower but keep the server within about 1.5 GB; raise it where memory allows "
        f"(4.2 runs 2048 x 2048 whole, at about 3 GB){default}",
    )
    return parser


def _serve(args: argparse.Namespace) -> int:
    """``fast-style serve`` on parsed arguments; returns the exit code."""
    if not 0 <= args.port <= 65535:
        print(f"{PROG}: error: --port must be within 0-65535, got {args.port}", file=sys.stderr)
        return EXIT_USAGE
    try:
        from fast_style.web.app import create_app
        from fast_style.web.guard import host_name, machine_host_names
        from fast_style.web.limits import Deadlines, Limits
        from fast_style.web.server import bind, is_loopback, serve
    except ImportError as exc:
        print(
            f'{PROG}: error: the web extra is not installed ({exc.name}): pip install -e ".[web]"',
            file=sys.stderr,
        )
        return EXIT_USAGE

    local = is_loopback(args.host)
    # On any address only this machine's names (and --allow-host ones) are accepted in the Host
    # header, so a web page elsewhere cannot reach the server through a DNS name that points here.
    own = machine_host_names()
    listening = (
        [] if args.host in ("0.0.0.0", "::", "") else [args.host]
    )  # a name or address chosen to listen on
    extra = [host_name(name)[0] for name in [*listening, *args.allow_host]]
    bad = [name for name in args.allow_host if not host_name(name)[0] or set("/@ ?#") & set(name)]
    if bad:
        print(
            f"{PROG}: error: --allow-host takes a host name such as my-box.local, got {bad[0]!r}",
            file=sys.stderr,
        )
        return EXIT_USAGE
    chosen = {}
    for name, _ in _DEADLINE_OPTIONS.values():
        value = getattr(args, f"{name}_timeout")
        if value is not None:
            chosen[name] = value
    deadlines = Deadlines(**chosen)
    try:
        app = create_app(
            args.models,
            shipped=not args.no_shipped,
            device=args.device,
            allowed_hosts=[*own, *extra],
            deadlines=deadlines,
            limits=None
            if args.whole_megapixels is None
            else Limits(max_whole_pixels=round(args.whole_megapixels * 1e6)),
            loss_weights=args.loss_weights,
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
    if state.refine_unavailable is None:
        print(f"{PROG}: Refine is on (loss-network weights {args.loss_weights})")
    names = ", ".join(dict.fromkeys([*own, *extra]))
    print(
        f"{PROG}: answers requests addressed to {names} or the address it is reached at; "
        "--allow-host NAME adds a name"
    )
    print(f"{PROG}: open http://{shown}:{port}/ in a browser (Ctrl+C stops)", flush=True)
    with contextlib.suppress(KeyboardInterrupt):  # uvicorn shuts down cleanly, then passes Ctrl+C on
        serve(app, sock, access_log=args.access_log, deadlines=deadlines)
    print(f"{PROG}: stopped")
    return EXIT_OK


main = argparse_main(_parser, _serve)

if __name__ == "__main__":
    sys.exit(main())
