"""Quality of feed-forward models on photos they never saw: losses, L-BFGS-equivalent steps, non-loss scores.

    python -m benchmarks.quality MODEL.safetensors [MODEL ...] --content PHOTOS/ --styles STYLES/ \\
        [--weights VGG_FEATURES.pt] [--size 512] [--max-steps 300] [--out outputs/quality]

Every model is scored with the loss it was trained with (read from its file: network, layers, layer
and term weights, style image name and size); ``--styles`` is the folder holding that style image
and ``--weights`` the loss-network weights file when the model was trained with one (its SHA-256 is
checked). For each photo, scaled to ``--size`` on its long side:

- feed-forward: the model's content, style and total loss, and its time (median of 3 passes);
- L-BFGS-equivalent steps: the optimization (L-BFGS with the default settings of ``fast-style
  optimize``, from the photo, or from noise with ``--init noise``) runs on the same loss until its
  total is at most the model's; the step where that happens is the model's worth in optimization
  steps (``>N`` if not within ``--max-steps``);
- time ratio: the optimization's time to that step over the feed-forward time;
- scores outside the loss: colour distance to the style image (Hellinger distance of RGB
  histograms; lower is closer to the painting's palette) and luminance SSIM to the photo (higher
  keeps more of its structure), for the model's output and the optimized image.

Models that share a loss (siblings trained on one style) share one optimization run per photo. The
script prints a Markdown table per model and the means, and writes ``quality.md``, ``quality.csv``
and a contact sheet ``quality.png`` (photo | style | each model | optimization) into ``--out``.
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image

from benchmarks.common import device_line, markdown_table
from fast_style.compare import evaluate_image, make_figure
from fast_style.errors import FastStyleError
from fast_style.images import IMAGE_EXTENSIONS, load_image_tensor, save_image
from fast_style.inference import Stylizer
from fast_style.losses import build_perceptual_loss
from fast_style.metrics import color_distance, luminance_ssim
from fast_style.optimize import initial_image, optimize_pixels
from fast_style.trained_loss import loss_arguments, recorded_loss

COLUMNS = (
    "model",
    "photo",
    "content",
    "style",
    "total",
    "lbfgs_steps",
    "time_ratio",
    "ff_seconds",
    "color_distance",
    "ssim",
    "lbfgs_color_distance",
    "lbfgs_ssim",
    "photo_color_distance",
)


@dataclass
class Score:
    """One model on one photo."""

    model: str
    photo: str
    content: float
    style: float
    total: float
    lbfgs_steps: int | None  # None: not reached within max_steps
    time_ratio: float | None
    ff_seconds: float
    color_distance: float
    ssim: float
    lbfgs_color_distance: float
    lbfgs_ssim: float
    photo_color_distance: float


def _photos(folder: Path) -> list[Path]:
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS)
    if not files:
        raise FastStyleError(f"no photos in {folder}")
    return files


def _time_model(stylizer: Stylizer, content: torch.Tensor, repeats: int = 3) -> tuple[torch.Tensor, float]:
    out = stylizer.stylize_tensor(content)  # warm-up (and onnxruntime session build)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        out = stylizer.stylize_tensor(content)
        times.append(time.perf_counter() - start)
    return out.float().clamp(0, 1), statistics.median(times)


def first_step_at_most(history: Sequence[dict[str, float]], total: float) -> int | None:
    """The first step whose total loss is at most ``total``, else ``None``."""
    return next((int(h["step"]) for h in history if h["total"] <= total), None)


def score_group(
    models: list[tuple[str, Stylizer]],
    loss_args: dict,
    style_path: Path,
    style_size: int,
    photos: list[Path],
    size: int,
    max_steps: int,
    progress: bool,
    init: str = "content",
) -> tuple[list[Score], list[list[tuple[str, str, torch.Tensor]]]]:
    """Score models that share one loss on every photo; return the scores and the contact-sheet rows."""
    loss = build_perceptual_loss(**loss_args)
    style = load_image_tensor(style_path, style_size)
    loss.set_style_image(style)
    scores, rows = [], []
    for photo in photos:
        content = load_image_tensor(photo, size)
        loss.set_content_image(content)
        outputs = {}
        for name, stylizer in models:
            out, seconds = _time_model(stylizer, content)
            out = out[..., : content.shape[-2], : content.shape[-1]]
            outputs[name] = (out, seconds, evaluate_image(loss, out))
        target = min(terms["total"] for _, _, terms in outputs.values())
        start = initial_image(init, content, style, seed=0)
        result = optimize_pixels(
            loss,
            start,
            max_steps,
            "lbfgs",
            stop_at_total=target,
            progress=progress,
            description=f"{photo.stem} L-BFGS",
        )
        per_step = result.elapsed / max(result.steps, 1)
        lbfgs = result.image
        row = [("photo", photo.stem, content), ("style", style_path.stem, style)]
        for name, (out, seconds, terms) in outputs.items():
            steps = first_step_at_most(result.history, terms["total"])
            scores.append(
                Score(
                    model=name,
                    photo=photo.stem,
                    content=terms["content"],
                    style=terms["style"],
                    total=terms["total"],
                    lbfgs_steps=steps,
                    time_ratio=None if steps is None else steps * per_step / seconds,
                    ff_seconds=seconds,
                    color_distance=color_distance(out, style),
                    ssim=luminance_ssim(out, content),
                    lbfgs_color_distance=color_distance(lbfgs, style),
                    lbfgs_ssim=luminance_ssim(lbfgs, content),
                    photo_color_distance=color_distance(content, style),
                )
            )
            label = f"~{steps} L-BFGS steps" if steps is not None else f">{result.steps} L-BFGS steps"
            row.append((name, f"total {terms['total']:.3g}, {label}", out))
        row.append((f"L-BFGS, {result.steps} steps", f"total {result.history[-1]['total']:.3g}", lbfgs))
        rows.append(row)
    return scores, rows


def _mean(values: Sequence[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return statistics.fmean(known) if known and len(known) == len(values) else None


def _fmt(value: float | int | None, digits: int = 3) -> str:
    if value is None:
        return "–"
    return str(value) if isinstance(value, int) else f"{value:.{digits}g}"


def report(scores: list[Score], max_steps: int) -> str:
    """Markdown: one table of every model on every photo, then one of the means per model."""
    header = [
        "model",
        "photo",
        "content",
        "style",
        "total",
        "L-BFGS-equiv. steps",
        "time ratio",
        "colour dist. (model / L-BFGS / photo)",
        "SSIM (model / L-BFGS)",
    ]
    rows = []
    for s in scores:
        steps = _fmt(s.lbfgs_steps) if s.lbfgs_steps is not None else f">{max_steps}"
        rows.append(
            [
                s.model,
                s.photo,
                _fmt(s.content),
                _fmt(s.style),
                _fmt(s.total),
                steps,
                _fmt(s.time_ratio),
                f"{s.color_distance:.3f} / {s.lbfgs_color_distance:.3f} / {s.photo_color_distance:.3f}",
                f"{s.ssim:.3f} / {s.lbfgs_ssim:.3f}",
            ]
        )
    means = []
    for model in dict.fromkeys(s.model for s in scores):
        mine = [s for s in scores if s.model == model]
        steps = [s.lbfgs_steps for s in mine]
        capped = [max_steps if v is None else v for v in steps]
        mean_steps = f"{statistics.fmean(capped):.1f}" + ("" if None not in steps else " (capped: some >max)")
        means.append(
            [
                model,
                _fmt(statistics.fmean(s.total for s in mine)),
                mean_steps,
                _fmt(_mean([s.time_ratio for s in mine])),
                f"{statistics.fmean(s.ff_seconds for s in mine):.3f}",
                f"{statistics.fmean(s.color_distance for s in mine):.3f}",
                f"{statistics.fmean(s.lbfgs_color_distance for s in mine):.3f}",
                f"{statistics.fmean(s.photo_color_distance for s in mine):.3f}",
                f"{statistics.fmean(s.ssim for s in mine):.3f}",
                f"{statistics.fmean(s.lbfgs_ssim for s in mine):.3f}",
            ]
        )
    mean_header = [
        "model",
        "mean total",
        "mean L-BFGS-equiv. steps",
        "mean time ratio",
        "model s/image",
        "colour dist. model",
        "colour dist. L-BFGS",
        "colour dist. photo",
        "SSIM model",
        "SSIM L-BFGS",
    ]
    return (
        markdown_table(header, rows)
        + "\n\nMeans over the photos:\n\n"
        + markdown_table(mean_header, means)
        + "\n"
    )


def contact_sheet(rows: list[list[tuple[str, str, torch.Tensor]]], tile: int) -> Image.Image:
    """The rows of images stacked into one picture (each row: photo | style | models | L-BFGS)."""
    pictures = [make_figure(row, tile) for row in rows]
    width = max(p.width for p in pictures)
    sheet = Image.new("RGB", (width, sum(p.height for p in pictures)), "white")
    y = 0
    for picture in pictures:
        sheet.paste(picture, (0, y))
        y += picture.height
    return sheet


def main(argv: Sequence[str] | None = None) -> int:
    """Parse arguments, score every model and write the report; returns an exit code."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("models", nargs="+", type=Path, help="exported .safetensors models")
    parser.add_argument("--content", type=Path, required=True, help="folder of photos the models never saw")
    parser.add_argument("--styles", type=Path, required=True, help="folder holding the models' style images")
    parser.add_argument(
        "--weights", default=None, help="loss-network weights file the models were trained with"
    )
    parser.add_argument("--size", type=int, default=512, help="long side of the photos in pixels")
    parser.add_argument("--max-steps", type=int, default=300, help="L-BFGS steps at most per photo")
    parser.add_argument(
        "--init",
        default="content",
        choices=["content", "noise"],
        help="where L-BFGS starts: the photo (fast-style optimize's default) or noise",
    )
    parser.add_argument("--tile", type=int, default=256, help="long side of each contact-sheet image")
    parser.add_argument("--out", type=Path, default=Path("outputs/quality"))
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--backend", default="auto", help="stylize backend: auto, torch or onnxruntime")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        photos = _photos(args.content)
        groups: dict[str, tuple[dict, Path, int, list[tuple[str, Stylizer]]]] = {}
        for path in args.models:
            stylizer = Stylizer.from_file(path, device="cpu", backend=args.backend)
            recorded = recorded_loss(stylizer.metadata)
            loss_args = loss_arguments(recorded, args.weights)
            if not recorded.get("style_image") or not recorded.get("style_size"):
                raise FastStyleError(f"{path} records no style image and size; it predates loss metadata")
            style_path = args.styles / recorded["style_image"]
            if not style_path.is_file():
                raise FastStyleError(
                    f"{path} was trained on {recorded['style_image']}, not found in {args.styles}"
                )
            key = json.dumps([loss_args, recorded["style_image"], recorded["style_size"]], sort_keys=True)
            group = groups.setdefault(key, (loss_args, style_path, int(recorded["style_size"]), []))
            group[3].append((path.stem, stylizer))
    except FastStyleError as exc:
        print(f"quality.py: error: {exc}", file=sys.stderr)
        return 2

    print(device_line())
    print(
        f"{len(photos)} photos at {args.size} px, L-BFGS from {args.init}, at most {args.max_steps} steps\n"
    )
    scores: list[Score] = []
    sheet_rows = []
    for loss_args, style_path, style_size, models in groups.values():
        group_scores, rows = score_group(
            models,
            loss_args,
            style_path,
            style_size,
            photos,
            args.size,
            args.max_steps,
            not args.no_progress,
            args.init,
        )
        scores += group_scores
        sheet_rows += rows
    text = report(scores, args.max_steps)
    print(text)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "quality.md").write_text(text, encoding="utf-8")
    with open(args.out / "quality.csv", "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(COLUMNS)
        for s in scores:
            writer.writerow([getattr(s, c) for c in COLUMNS])
    save_image(contact_sheet(sheet_rows, args.tile), args.out / "quality.png")
    print(f"wrote {args.out / 'quality.md'}, quality.csv, quality.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
