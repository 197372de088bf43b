"""``fast-style video INPUT -m MODEL -o OUTPUT``: stylize a video (or a folder of frames), sound kept.

Needs the ``video`` extra (PyAV): ``pip install -e ".[video]"``. Imports nothing from training.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from fast_style.cli.arguments import add_device_option, argparse_main
from fast_style.errors import EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE, FastStyleError
from fast_style.video.stabilize import DEFAULT_STRENGTH, STABILIZE_METHODS, TemporalStabilizer

__all__ = ["main"]

PROG = "fast-style video"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Stylize a video with an exported model, frame by frame, keeping its frame rate, "
        "rotation and sound. INPUT and OUTPUT may also be folders of frames.",
        epilog="Exit codes: 0 done, 1 failed while stylizing (nothing written), 2 usage, input or "
        "model error (nothing done), 130 interrupted (nothing written).",
    )
    parser.add_argument(
        "input", metavar="INPUT", help="a video file (any format FFmpeg reads) or a folder of frames"
    )
    parser.add_argument("-m", "--model", required=True, help="exported model file (.safetensors or .onnx)")
    parser.add_argument(
        "-o",
        "--output",
        required=True,
        help="a video file (.mp4, .mkv, .mov, .webm, ...), or a folder for numbered PNG frames "
        "(an existing folder, or a name ending in /)",
    )
    parser.add_argument(
        "--style", metavar="NAME", help="a multi-style model's style, by name or index (default: its first)"
    )
    parser.add_argument(
        "--mix", metavar="NAME=W,...", help="blend a multi-style model's styles, e.g. a=0.7,b=0.3"
    )
    parser.add_argument(
        "--max-size",
        type=int,
        default=None,
        metavar="N",
        help="scale frames down so the longer side is at most N px",
    )
    parser.add_argument(
        "--strength",
        type=float,
        default=1.0,
        metavar="S",
        help="blend with the original: 0 = video, 1 = full style",
    )
    parser.add_argument(
        "--preserve-color", action="store_true", help="keep the video's colours (transfer luminance only)"
    )
    parser.add_argument(
        "--stabilize",
        default="none",
        choices=STABILIZE_METHODS,
        help="against flicker, where the picture stands still: blend = mix with the previous output, "
        "denoise = mix the input with the previous input before the network, both (default: none)",
    )
    parser.add_argument(
        "--stability",
        type=float,
        default=DEFAULT_STRENGTH,
        metavar="S",
        help=f"weight of the previous frame where the picture stands still, in [0, 1) (default: {DEFAULT_STRENGTH})",
    )
    parser.add_argument(
        "--fps", type=float, default=None, metavar="N", help="frame rate of a folder of frames (default: 25)"
    )
    parser.add_argument("--overwrite", action="store_true", help="replace an existing OUTPUT")
    add_device_option(parser)
    return parser


def _check_options(args: argparse.Namespace) -> TemporalStabilizer | None:
    """Option checks that need nothing loaded; returns the stabilizer asked for."""
    if args.max_size is not None and args.max_size < 16:
        raise FastStyleError(f"--max-size must be at least 16, got {args.max_size}")
    if not 0.0 <= args.strength <= 1.0:
        raise FastStyleError(f"--strength must be within [0, 1], got {args.strength}")
    if not 0.0 <= args.stability < 1.0:
        raise FastStyleError(f"--stability must be within [0, 1), got {args.stability}")
    if args.fps is not None and not 0 < args.fps <= 1000:
        raise FastStyleError(f"--fps must be a positive number of frames per second, got {args.fps}")
    if args.mix is not None:
        from fast_style.inference.stylizer import parse_mix  # imported here: --help starts without torch

        args.mix = parse_mix(args.mix)
    return None if args.stabilize == "none" else TemporalStabilizer(args.stabilize, args.stability)


def _fail(message: str, code: int) -> int:
    print(f"{PROG}: error: {message}", file=sys.stderr)
    return code


def _video(args: argparse.Namespace) -> int:
    """``fast-style video`` on parsed arguments; returns the exit code."""
    try:
        stabilizer = _check_options(args)
    except FastStyleError as exc:
        return _fail(str(exc), EXIT_USAGE)
    try:
        from fast_style.video.job import VideoJob, frame_stylizer
    except ImportError as exc:
        if exc.name != "av":
            raise
        return _fail('video needs PyAV, which is not installed: pip install -e ".[video]"', EXIT_USAGE)
    from fast_style.inference import Stylizer

    job = None
    try:
        job = VideoJob(
            args.input, args.output, max_size=args.max_size, fps=args.fps, overwrite=args.overwrite
        )
        stylizer = Stylizer.from_file(args.model, device=args.device)
        stylizer.style_weights(args.style, args.mix)  # an unknown style fails before any frame
    except FastStyleError as exc:
        if job is not None:
            job.source.close()
        return _fail(str(exc), EXIT_USAGE)
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    step = frame_stylizer(
        stylizer,
        stabilizer,
        strength=args.strength,
        preserve_color=args.preserve_color,
        style=args.style,
        mix=args.mix,
    )

    from tqdm import tqdm

    progress = tqdm(
        total=job.frame_count,
        unit="frame",
        desc=Path(args.input).name,
        file=sys.stderr,
        disable=None,
        leave=False,
    )
    try:
        result = job.run(step, on_frame=lambda _: progress.update())
    except KeyboardInterrupt:
        progress.close()
        print(
            f"{PROG}: interrupted after {job.frames_done} frame(s); nothing was written to {args.output}",
            file=sys.stderr,
        )
        return EXIT_INTERRUPTED
    except FastStyleError as exc:
        progress.close()
        return _fail(f"{exc}; nothing was written to {args.output}", exc.exit_code)
    progress.close()

    width, height = job.size
    summary = (
        f"stylized {result.frames} frames ({width}x{height}, {float(job.source.rate):.3g} fps) in "
        f"{result.seconds:.1f} s ({result.fps:.2f} frames/s on {stylizer.device.type}) -> {args.output}; "
        f"{result.audio}"
    )
    if stabilizer is not None:
        summary += f"; stabilized ({args.stabilize}, {args.stability:g})"
    if result.skipped:
        summary += f"; {result.skipped} damaged packet(s) skipped"
    print(summary)
    return EXIT_OK


main = argparse_main(_parser, _video)

if __name__ == "__main__":
    sys.exit(main())
