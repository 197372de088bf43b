"""``fast-style stylize INPUT... -m MODEL -o OUTPUT``: stylize photos with an exported model.

Imports nothing from training, Lightning, Hydra or VGG, so it starts fast and runs anywhere; only
``--refine N`` (optimization after the network) loads the loss network, from ``fast_style.refine``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from PIL import Image

from fast_style.cli.arguments import add_device_option, argparse_main
from fast_style.errors import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE, FastStyleError, one_line
from fast_style.files import check_writable
from fast_style.images import IMAGE_EXTENSIONS, folder_images, image_format_for, open_image, save_image

if TYPE_CHECKING:  # imported when needed: the command starts without torch (or VGG, unless refining)
    from fast_style.inference import Stylizer
    from fast_style.refine import Refiner

__all__ = ["Job", "main", "plan_jobs"]

PROG = "fast-style stylize"

# Formats that store an alpha channel; for the others a transparent image is flattened onto white.
_ALPHA_FORMATS = {"PNG", "WEBP", "TIFF", "GIF", "TGA", "ICO", "JPEG2000"}
_SAVE_OPTIONS: dict[str, dict[str, object]] = {
    "JPEG": {"quality": 95},
    "WEBP": {"quality": 95},
}


@dataclass(frozen=True)
class Job:
    """One input image and where its stylized version goes (``error`` set when it cannot be planned)."""

    source: Path
    target: Path
    error: str | None = None


def plan_jobs(inputs: Sequence[str], output: str) -> list[Job]:
    """Map inputs (files or folders) to output files; OUTPUT is a file for one input, else a folder.

    Raises ``FastStyleError`` for problems that concern the whole command: an input that does not
    exist, an unknown output extension, an output that is a file where a folder is needed, or two
    inputs with one output.
    """
    missing = [name for name in inputs if not Path(name).exists()]
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise FastStyleError(f"input not found: {missing[0]}{more}; nothing was stylized")
    out = Path(output)
    single = len(inputs) == 1 and not Path(inputs[0]).is_dir()
    as_folder = out.is_dir() or output.endswith(("/", os.sep))  # "-o newdir/" names a folder to create
    jobs: list[Job] = []
    if single and not as_folder:
        source = Path(inputs[0])
        image_format_for(out)
        jobs.append(Job(source, out))
    else:
        if out.exists() and not out.is_dir():
            raise FastStyleError(f"OUTPUT must be a folder for several inputs, but {out} is a file")
        if not out.exists() and not as_folder and out.suffix.lower() in Image.registered_extensions():
            raise FastStyleError(
                f"OUTPUT {out} is a file name, but several inputs need a folder; name a folder (e.g. {out.stem}/)"
            )
        for name in inputs:
            source = Path(name)
            if source.is_dir():
                found = folder_images(source)
                if not found:
                    jobs.append(
                        Job(source, out, f"no images ({', '.join(IMAGE_EXTENSIONS)}) in folder {source}")
                    )
                jobs.extend(Job(p, out / p.relative_to(source)) for p in found)
            else:
                jobs.append(Job(source, out / source.name))
        for job in jobs:
            if job.error is None:
                image_format_for(job.target)
    seen: dict[Path, Path] = {}
    for job in jobs:
        if job.error is not None:
            continue
        key = job.target.resolve()
        if key in seen:
            raise FastStyleError(f"{seen[key]} and {job.source} would both be written to {job.target}")
        seen[key] = job.source
        if job.source.exists() and key == job.source.resolve():
            raise FastStyleError(f"output {job.target} would replace its input; choose another OUTPUT")
    return jobs


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Stylize photos with an exported model (.safetensors, or .onnx with onnxruntime).",
        epilog="Exit codes: 0 all done, 1 some inputs failed, 2 usage or model error, 130 interrupted.",
    )
    parser.add_argument(
        "inputs", nargs="*", metavar="INPUT", help="image files or folders (searched recursively)"
    )
    parser.add_argument("-m", "--model", required=True, help="exported model file (.safetensors or .onnx)")
    parser.add_argument(
        "-o", "--output", help="output file for one input image, else an output folder (required with INPUT)"
    )
    parser.add_argument(
        "--style", metavar="NAME", help="a multi-style model's style, by name or index (default: its first)"
    )
    parser.add_argument(
        "--mix",
        metavar="NAME=W,...",
        help="blend a multi-style model's styles, e.g. starry_night=0.7,great_wave=0.3 (weights normalised)",
    )
    parser.add_argument(
        "--list-styles", action="store_true", help="print the model's styles and exit (no INPUT needed)"
    )
    parser.add_argument(
        "--max-size",
        type=int,
        default=None,
        metavar="N",
        help="scale down so the longer side is at most N px",
    )
    parser.add_argument(
        "--tile",
        type=int,
        default=None,
        metavar="N",
        help="process in N px tiles (default: only when needed)",
    )
    parser.add_argument(
        "--strength",
        type=float,
        default=1.0,
        metavar="S",
        help="blend with the original: 0 = photo, 1 = full style",
    )
    parser.add_argument(
        "--preserve-color", action="store_true", help="keep the photo's colours (transfer luminance only)"
    )
    add_device_option(parser)
    parser.add_argument(
        "--backend",
        default="auto",
        choices=["auto", "torch", "onnxruntime"],
        help="what runs whole images (default: auto = onnxruntime on CPU when installed, else torch)",
    )
    parser.add_argument("--overwrite", action="store_true", help="replace existing output files")
    refine = parser.add_argument_group(
        "refine",
        "optimization started from the network's picture: closer to fast-style optimize, seconds a step",
    )
    refine.add_argument(
        "--refine",
        type=int,
        default=0,
        metavar="N",
        help="after the network, N L-BFGS steps on the loss the model was trained with (default: 0, none)",
    )
    refine.add_argument(
        "--loss-weights",
        metavar="PATH",
        help="the loss network's weights (default: torchvision's ImageNet VGG; a model trained with a "
        "weights file needs that file)",
    )
    refine.add_argument(
        "--style-image",
        metavar="PATH",
        action="append",
        default=[],
        help="the painting the model was trained on (default: found beside the model or among the "
        "shipped styles); repeat for a mix",
    )
    return parser


def parse_mix(text: str) -> dict[str, float]:
    """``--mix a=0.7,b=0.3`` as a dict (``fast_style.inference.parse_mix``; imported when used, so
    ``--help`` stays quick)."""
    from fast_style.inference.stylizer import parse_mix as parse

    return parse(text)


def _list_styles(path: str) -> int:
    from fast_style.inference import read_metadata

    meta = read_metadata(path)
    names = meta.get("styles") or []
    if names:
        for index, name in enumerate(names):
            print(f"{index}  {name}")
    else:
        print(f"{Path(path).name} paints one style: {meta.get('style_name') or '(unnamed)'}")
    return EXIT_OK


def _check_options(args: argparse.Namespace) -> None:
    if not args.inputs or not args.output:
        raise FastStyleError("give INPUT... and -o OUTPUT (or --list-styles to see a model's styles)")
    if args.max_size is not None and args.max_size < 16:
        raise FastStyleError(f"--max-size must be at least 16, got {args.max_size}")
    if args.tile is not None and args.tile < 64:
        raise FastStyleError(f"--tile must be at least 64, got {args.tile}")
    if not 0.0 <= args.strength <= 1.0:
        raise FastStyleError(f"--strength must be within [0, 1], got {args.strength}")
    if args.refine < 0:
        raise FastStyleError(f"--refine takes a number of steps >= 0, got {args.refine}")
    if not args.refine and (args.loss_weights is not None or args.style_image):
        raise FastStyleError("--loss-weights and --style-image are for --refine N; add it or leave them out")


def _for_format(img: Image.Image, fmt: str) -> Image.Image:
    if img.mode == "RGBA" and fmt not in _ALPHA_FORMATS:
        flat = Image.new("RGB", img.size, (255, 255, 255))
        flat.paste(img, mask=img.getchannel("A"))
        return flat
    return img


def _save_params(source: Image.Image, fmt: str) -> dict[str, object]:
    params: dict[str, object] = dict(_SAVE_OPTIONS.get(fmt, {}))
    exif = source.info.get("exif")
    if exif and fmt in ("JPEG", "PNG", "WEBP", "TIFF"):
        params["exif"] = exif  # orientation already applied and removed by the loader
    icc = source.info.get("icc_profile")
    if icc and len(icc) > 20 and icc[16:20] == b"RGB " and fmt in ("JPEG", "PNG", "WEBP", "TIFF"):
        params["icc_profile"] = icc  # only RGB profiles describe the RGB output
    return params


def _run_job(job: Job, stylizer: Stylizer, args: argparse.Namespace, refiner: Refiner | None = None) -> None:
    if job.error is not None:
        raise FastStyleError(job.error)
    if job.target.exists() and not args.overwrite:
        raise FastStyleError(f"{job.target} exists; pass --overwrite to replace it")
    source = open_image(job.source)
    fmt = image_format_for(job.target)
    options = {
        "strength": args.strength,
        "preserve_color": args.preserve_color,
        "tile": args.tile,
        "max_size": args.max_size,
        "style": args.style,
        "mix": args.mix,
    }
    if refiner is None:
        result = stylizer.stylize(source, **options)
    else:
        from fast_style.refine import TooLargeToRefine

        try:
            result = refiner.stylize(stylizer, source, progress=True, description=job.source.name, **options)
        except TooLargeToRefine as exc:
            raise FastStyleError(f"{job.source}: {exc} (pass --max-size {exc.largest})") from None
    try:
        save_image(
            _for_format(result, fmt), job.target, overwrite=args.overwrite, **_save_params(source, fmt)
        )
    except FileExistsError:
        raise FastStyleError(f"{job.target} exists; pass --overwrite to replace it") from None
    except (OSError, ValueError) as exc:
        raise FastStyleError(f"cannot write {job.target}: {exc}") from None


def _refiner(stylizer: Stylizer, args: argparse.Namespace) -> Refiner:
    """The refine step of ``--refine N``; its loss network loads here, once, before any image."""
    from fast_style.refine import Refiner

    return Refiner.for_model(
        stylizer,
        args.model,
        args.refine,
        weights=args.loss_weights,
        style_images=args.style_image,
        style=args.style,
        mix=args.mix,
    )


def _error(message: str) -> None:
    from tqdm import tqdm

    tqdm.write(f"{PROG}: error: {message}", file=sys.stderr)


def _stylize(args: argparse.Namespace) -> int:
    """``fast-style stylize`` on parsed arguments; returns the exit code."""
    from fast_style.inference import Stylizer

    try:
        if args.list_styles:
            return _list_styles(args.model)
        _check_options(args)
        args.mix = parse_mix(args.mix) if args.mix is not None else None
        jobs = plan_jobs(args.inputs, args.output)
        for folder in sorted({job.target.parent for job in jobs if job.error is None}):
            check_writable(folder, folder=True, what="output folder")
        stylizer = Stylizer.from_file(args.model, device=args.device, backend=args.backend)
        if args.tile is not None:
            stylizer.require_tiling()
        stylizer.style_weights(args.style, args.mix)  # an unknown style fails before any image
        refiner = _refiner(stylizer, args) if args.refine else None
    except FastStyleError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED

    from tqdm import tqdm

    start = time.perf_counter()
    done = failed = 0
    progress = tqdm(
        jobs, desc="stylize", unit="image", disable=None if len(jobs) > 1 else True, file=sys.stderr
    )
    try:
        for job in progress:
            try:
                _run_job(job, stylizer, args, refiner)
                done += 1
            except FastStyleError as exc:
                failed += 1
                _error(str(exc))
            except Exception as exc:  # an unforeseen fault in one image must not end the batch
                failed += 1
                _error(f"{job.source}: {one_line(exc)}")
    except KeyboardInterrupt:
        progress.close()
        print(f"{PROG}: interrupted after {done} image(s); no partial file was left", file=sys.stderr)
        return EXIT_INTERRUPTED
    progress.close()

    seconds = time.perf_counter() - start
    per_image = f", {seconds / done:.2f} s/image" if done else ""
    paths = ", ".join(
        f"{n} {p}" if len(stylizer.paths_used) > 1 else p for p, n in stylizer.paths_used.items()
    )
    where = f"{stylizer.device.type} ({paths})" if paths else stylizer.device.type
    summary = f"stylized {done} of {len(jobs)} image(s) in {seconds:.2f} s{per_image} on {where}"
    if refiner is not None:
        summary += f", each refined with {refiner.steps} L-BFGS steps"
    if failed:
        summary += f"; {failed} failed"
    print(summary)
    return EXIT_FAILED if failed else EXIT_OK


main = argparse_main(_parser, _stylize)

if __name__ == "__main__":
    sys.exit(main())
