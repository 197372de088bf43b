"""What the argparse commands (``stylize``, ``serve``, ``export``) share: their ``main``, common options."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from typing import Protocol

from fast_style.errors import EXIT_USAGE

__all__ = ["Main", "add_device_option", "argparse_main"]


class Main(Protocol):
    """A command's entry point: ``main(argv=None) -> exit code``."""

    def __call__(self, argv: Sequence[str] | None = None) -> int: ...


def argparse_main(
    parser: Callable[[], argparse.ArgumentParser], run: Callable[[argparse.Namespace], int]
) -> Main:
    """``main(argv=None)``: parse ``argv`` with ``parser()``, then return ``run(args)``, the exit code.

    argparse exits by itself after ``--help`` or a usage error; ``main`` returns that exit code
    instead (0 or 2), so a test can call it.
    """

    def main(argv: Sequence[str] | None = None) -> int:
        try:
            args = parser().parse_args(argv)
        except SystemExit as exc:
            return exc.code if isinstance(exc.code, int) else EXIT_USAGE
        return run(args)

    main.__doc__ = run.__doc__
    return main


def add_device_option(parser: argparse.ArgumentParser) -> None:
    """``--device auto|cpu|cuda``: where inference runs."""
    parser.add_argument(
        "--device", default="auto", choices=["auto", "cpu", "cuda"], help="where to run (default: auto)"
    )
