"""Stylize the demo photo with every shipped checkpoint, and build a side-by-side gallery image.

    python -m scripts.gallery                       # -> outputs/gallery/{<style>.jpg, gallery.jpg}
    python -m scripts.gallery --readme-image assets/gallery.jpg --crop-image assets/gallery_1024_crop.jpg

``--mix MODEL A B`` also writes a strip of a multi-style model blending style A into style B.
``--crop-image`` also stylizes the photo at 1024 px on its long side with each style and writes one
row of 100% crops (a quarter of the image each, pixels as they come out of the network), which
shows the strokes at the size a user sees them.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from PIL import Image, ImageOps

from fast_style.images import open_image, save_image
from fast_style.inference import Stylizer

ROOT = Path(__file__).resolve().parents[1]

STYLES = ("starry_night", "great_wave_crop", "composition_vii")


def _panel(img: Image.Image, height: int, inset: Image.Image | None = None) -> Image.Image:
    """``img`` scaled to ``height``, with ``inset`` (the style image) in its lower-left corner."""
    panel = img.convert("RGB").resize(
        (round(img.width * height / img.height), height), Image.Resampling.LANCZOS
    )
    if inset is not None:
        side = height // 3
        thumb = ImageOps.fit(inset.convert("RGB"), (side, side), Image.Resampling.LANCZOS)
        framed = ImageOps.expand(thumb, border=2, fill=(255, 255, 255))
        panel.paste(framed, (6, height - framed.height - 6))
    return panel


def build_gallery(
    photo: Image.Image, results: list[tuple[Image.Image, Image.Image | None]], height: int
) -> Image.Image:
    """One row: the photo, then each stylized photo with its style image as an inset."""
    panels = [_panel(photo, height)] + [_panel(out, height, style) for out, style in results]
    gap = 4
    row = Image.new("RGB", (sum(p.width for p in panels) + gap * (len(panels) - 1), height), (255, 255, 255))
    x = 0
    for panel in panels:
        row.paste(panel, (x, 0))
        x += panel.width + gap
    return row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--photo", type=Path, default=ROOT / "assets/demo/astronaut.jpg")
    parser.add_argument("--checkpoints", type=Path, default=ROOT / "checkpoints")
    parser.add_argument(
        "--styles", type=Path, default=ROOT / "assets/styles", help="style images, for the insets"
    )
    parser.add_argument("-o", "--output", type=Path, default=Path("outputs/gallery"))
    parser.add_argument("--height", type=int, default=256, help="height of each gallery panel in pixels")
    parser.add_argument("--readme-image", type=Path, default=None, help="also write the gallery here")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument(
        "--crop-image", type=Path, default=None, help="also write 100%% crops of 1024 px results"
    )
    parser.add_argument("--crop-size", type=int, default=1024, help="long side of the full-size renderings")
    parser.add_argument(
        "--mix",
        nargs=3,
        metavar=("MODEL", "STYLE_A", "STYLE_B"),
        default=None,
        help="also a strip of a multi-style MODEL blending STYLE_A into STYLE_B in five steps (mix.jpg)",
    )
    parser.add_argument("--mix-image", type=Path, default=None, help="also write the mix strip here")
    args = parser.parse_args(argv)

    photo = open_image(args.photo).convert("RGB")
    results: list[tuple[Image.Image, Image.Image | None]] = []
    for style in STYLES:
        model = args.checkpoints / f"{style}.safetensors"
        start = time.perf_counter()
        out = Stylizer.from_file(model, device=args.device).stylize(photo)
        target = save_image(out, args.output / f"{style}.jpg", quality=92)
        print(f"{target}  ({time.perf_counter() - start:.2f} s)")
        results.append((out, open_image(args.styles / f"{style}.jpg")))
    gallery = build_gallery(photo, results, args.height)
    for target in [args.output / "gallery.jpg", args.readme_image]:
        if target is not None:
            save_image(gallery, target, quality=85, optimize=True)
            print(f"{target}  ({target.stat().st_size / 1024:.0f} KB)")
    if args.mix is not None:
        model, first, second = args.mix
        strip = mix_strip(photo, Stylizer.from_file(model, device=args.device), first, second, args.height)
        for target in [args.output / "mix.jpg", args.mix_image]:
            if target is not None:
                save_image(strip, target, quality=85, optimize=True)
                print(f"{target}  ({target.stat().st_size / 1024:.0f} KB)")
    if args.crop_image is not None:
        crops = full_size_crops(photo, args.checkpoints, args.styles, args.crop_size, args.device)
        save_image(crops, args.crop_image, quality=88, optimize=True)
        print(f"{args.crop_image}  ({args.crop_image.stat().st_size / 1024:.0f} KB)")
    return 0


def mix_strip(
    photo: Image.Image, stylizer: Stylizer, first: str, second: str, height: int, steps: int = 5
) -> Image.Image:
    """One row: the photo, then ``first`` blended into ``second`` with weights 0, 1/4, ..., 1."""
    results = []
    for i in range(steps):
        t = i / (steps - 1)
        results.append(stylizer.stylize(photo, mix={first: 1 - t, second: t}))
    return build_gallery(photo, [(out, None) for out in results], height)


def full_size_crops(
    photo: Image.Image, checkpoints: Path, styles: Path, size: int, device: str
) -> Image.Image:
    """The photo at ``size`` px stylized by each style; one row of the same centre crop at 100%."""
    scale = size / max(photo.size)
    big = photo.resize((round(photo.width * scale), round(photo.height * scale)), Image.Resampling.LANCZOS)
    w, h = big.width // 2, big.height // 2
    box = (big.width // 4, big.height // 4, big.width // 4 + w, big.height // 4 + h)
    results: list[tuple[Image.Image, Image.Image | None]] = []
    for style in STYLES:
        out = Stylizer.from_file(checkpoints / f"{style}.safetensors", device=device).stylize(big)
        results.append((out.crop(box), open_image(styles / f"{style}.jpg")))
    return build_gallery(big.crop(box), results, h)


if __name__ == "__main__":
    sys.exit(main())
