"""An animated image of a slow pan over the demo photo: the photo, then each model's frames side by side.

    python -m scripts.stability_demo MODEL [MODEL ...] --out assets/stability_demo.gif
        [--photo assets/demo/astronaut.jpg] [--size 192x144] [--frames 24] [--step 3] [--stabilize both]

Each frame is a ``--size`` window of the photo moved ``--step`` pixels right per frame (a known
motion, as in ``benchmarks.video``), stylized alone by every model (``--stabilize`` adds the
inference-time option to a copy of the first model's column). A model whose strokes move with the
picture looks like a painting being panned; one that repaints them shimmers.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from fast_style.images import load_image
from fast_style.inference import Stylizer
from fast_style.video.job import frame_stylizer
from fast_style.video.stabilize import TemporalStabilizer

ROOT = Path(__file__).resolve().parents[1]
_LABEL = 14  # pixels of caption above each column


def pan_frames(photo: Image.Image, size: tuple[int, int], count: int, step: int) -> list[np.ndarray]:
    """``count`` windows of ``size`` moving ``step`` px right per frame, the photo scaled to fit the pan."""
    w, h = size
    scale = max((w + step * count) / photo.width, h / photo.height)
    scaled = photo.resize((round(photo.width * scale), round(photo.height * scale)), Image.Resampling.LANCZOS)
    top = (scaled.height - h) // 2
    return [np.asarray(scaled.crop((i * step, top, i * step + w, top + h))) for i in range(count)]


def _caption(text: str, width: int) -> Image.Image:
    label = Image.new("RGB", (width, _LABEL), (255, 255, 255))
    ImageDraw.Draw(label).text((3, 1), text, fill=(0, 0, 0))
    return label


def main(argv: Sequence[str] | None = None) -> None:
    """Parse arguments, stylize the pan with every model and write the animated image."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("models", type=Path, nargs="+", help="exported models, one column each")
    parser.add_argument("--labels", nargs="+", help="column captions (default: the file names)")
    parser.add_argument("--out", type=Path, required=True, help="the .gif (or .webp) to write")
    parser.add_argument("--photo", type=Path, default=ROOT / "assets" / "demo" / "astronaut.jpg")
    parser.add_argument("--size", default="192x144", help="frame size WxH")
    parser.add_argument("--frames", type=int, default=24)
    parser.add_argument("--step", type=int, default=3, help="pixels the window moves per frame")
    parser.add_argument(
        "--stabilize", choices=["blend", "denoise", "both"], help="also: the first model with it"
    )
    args = parser.parse_args(argv)
    w, h = (int(v) for v in args.size.split("x"))
    frames = pan_frames(load_image(args.photo), (w, h), args.frames, args.step)
    labels = args.labels or [m.stem for m in args.models]
    columns: list[tuple[str, list[np.ndarray]]] = [("photo", frames)]
    for model, label in zip(args.models, labels, strict=True):
        step = frame_stylizer(Stylizer.from_file(model), None)
        columns.append((label, [step(f) for f in frames]))
    if args.stabilize:
        step = frame_stylizer(Stylizer.from_file(args.models[0]), TemporalStabilizer(args.stabilize))
        columns.append((f"{labels[0]} + --stabilize {args.stabilize}", [step(f) for f in frames]))
    sheet = []
    for i in range(args.frames):
        canvas = Image.new("RGB", (w * len(columns), h + _LABEL), (255, 255, 255))
        for c, (label, pictures) in enumerate(columns):
            canvas.paste(_caption(label, w), (c * w, 0))
            canvas.paste(Image.fromarray(pictures[i]), (c * w, _LABEL))
        sheet.append(canvas)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    sheet[0].save(args.out, save_all=True, append_images=sheet[1:], duration=80, loop=0, optimize=True)
    print(f"wrote {args.out} ({args.out.stat().st_size / 1e6:.2f} MB, {args.frames} frames)")


if __name__ == "__main__":
    main()
