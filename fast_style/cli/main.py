"""``fast-style``: one console script, one subcommand per job."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence

from fast_style import __version__

__all__ = ["COMMANDS", "main"]

# command -> (module with a ``main(argv) -> int``, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "train": ("fast_style.cli.train", "train a feed-forward style network (Hydra config train.yaml)"),
    "optimize": (
        "fast_style.cli.optimize",
        "stylize one image by optimizing its pixels (Hydra config optimize.yaml)",
    ),
    "compare": (
        "fast_style.cli.compare",
        "optimization vs a feed-forward model on one image (Hydra config compare.yaml)",
    ),
    "export": (
        "fast_style.cli.export",
        "turn a training checkpoint into a .safetensors or .onnx inference file",
    ),
    "stylize": ("fast_style.cli.stylize", "stylize photos with an exported model (files or folders)"),
    "video": (
        "fast_style.cli.video",
        "stylize a video (or a folder of frames) with an exported model, sound kept (needs the video extra)",
    ),
    "serve": (
        "fast_style.cli.serve",
        "a local web page and HTTP API for stylizing photos (needs the web extra)",
    ),
}

USAGE = "usage: fast-style {" + ",".join(COMMANDS) + "} [args...]   (fast-style COMMAND --help for more)"


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``fast-style``; returns the exit code."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        print(USAGE)
        for name, (_, text) in COMMANDS.items():
            print(f"  {name:<10} {text}")
        return 0 if args else 2
    if args[0] == "--version":
        print(f"fast-style {__version__}")
        return 0
    command, rest = args[0], args[1:]
    if command not in COMMANDS:
        print(f"fast-style: error: unknown command {command!r}\n{USAGE}", file=sys.stderr)
        return 2
    module = importlib.import_module(COMMANDS[command][0])
    return int(module.main(rest) or 0)


if __name__ == "__main__":
    sys.exit(main())
