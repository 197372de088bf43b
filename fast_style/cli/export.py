"""``fast-style export CKPT -o OUT [--format safetensors|onnx]``: training checkpoint -> inference file."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from fast_style.cli.arguments import argparse_main
from fast_style.errors import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, FastStyleError, one_line
from fast_style.files import check_writable

__all__ = ["main"]

PROG = "fast-style export"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description=(
            "Turn a training checkpoint (.ckpt) into an inference file: .safetensors (weights plus the "
            "metadata that rebuilds the network) or .onnx. A .safetensors file can also be converted to ONNX."
        ),
        epilog="TorchScript is not offered: safetensors serves PyTorch, ONNX serves other runtimes.",
    )
    parser.add_argument(
        "checkpoint", metavar="CKPT", help="a fast-style training checkpoint (.ckpt) or a .safetensors file"
    )
    parser.add_argument(
        "-o", "--output", required=True, metavar="OUT", help="the file to write (.safetensors or .onnx)"
    )
    parser.add_argument(
        "--format",
        # torchscript is accepted only to be refused with the reason; the help lists what is offered
        choices=["safetensors", "onnx", "torchscript"],
        metavar="{safetensors,onnx}",
        default=None,
        help="output format (default: from OUT's extension, else safetensors)",
    )
    parser.add_argument("--overwrite", action="store_true", help="replace OUT if it exists")
    return parser


def _export(args: argparse.Namespace) -> int:
    """``fast-style export`` on parsed arguments; returns the exit code."""
    from fast_style.export import export_model

    out = Path(args.output)
    try:
        if out.exists() and not args.overwrite:
            raise FastStyleError(f"{out} exists; pass --overwrite to replace it")
        if out.exists() and out.resolve() == Path(args.checkpoint).resolve():
            raise FastStyleError(f"{out} is the file being exported; choose another output")
        check_writable(out)
        written = export_model(args.checkpoint, out, args.format)
    except FastStyleError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except OSError as exc:  # the disk filled up or the folder went away while writing
        print(f"{PROG}: error: cannot write {out}: {one_line(exc)}; nothing was written", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted; nothing was written", file=sys.stderr)
        return EXIT_INTERRUPTED
    print(f"wrote {written} ({written.stat().st_size / 1e6:.2f} MB)")
    return EXIT_OK


main = argparse_main(_parser, _export)

if __name__ == "__main__":
    sys.exit(main())
