"""What the argparse commands (``stylize``, ``serve``, ``export``) share: parsing without exiting, options."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from fast_style.errors import EXIT_USAGE

__all__ = ["add_device_option", "parse_args"]


def parse_args(parser: argparse.ArgumentParser, argv: Sequence[str] | None) -> argparse.Namespace | int:
    """The parsed arguments, or the exit code argparse chose (0 after ``--help``, 2 for a usage error).

    argparse exits on its own; returning the code lets a command's ``main(argv)`` be called from a test.
    """
    try:
        return parser.parse_args(argv)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE


def add_device_option(parser: argparse.ArgumentParser) -> None:
    """``--device auto|cpu|cuda``: where inference runs."""
    parser.add_argument(
        "--device", default="auto", choices=["auto", "cpu", "cuda"], help="where to run (default: auto)"
    )
