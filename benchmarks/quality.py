"""Quality of feed-forward models on photos they never saw: losses, L-BFGS steps-worth, non-loss scores.

    python -m benchmarks.quality MODEL.safetensors [MODEL ...] --content PHOTOS/ --styles STYLES/ \\
        [--weights VGG_FEATURES.pt] [--size 256 512] [--init noise content] [--max-steps 300] \\
        [--refine-target 50] [--refine-steps 50] [--out DIR]

Every model is scored with the loss it was trained with (read from its file: network, layers, layer
and term weights, style image name and size); ``--styles`` is the folder holding that style image
and ``--weights`` the loss-network weights file when the model was trained with one (its SHA-256 is
checked). For each photo, scaled to each ``--size`` on its long side:

- feed-forward: the model's content, style and total loss, and its time (median of 3 passes), and
  the photo's own total (the loss of doing nothing);
- steps-worth (``benchmarks.scoring``): L-BFGS with the settings of ``fast-style optimize`` runs on
  the same loss until its total is at most the model's; the (interpolated) step where that happens
  is the model's worth. Two starts, as ``--init`` lists them: white noise (Johnson et al.'s
  protocol, the first column) and the photo (``fast-style optimize``'s default: harsher, since it
  starts with no content error). ``>N`` if not reached within ``--max-steps``;
- time ratio: the optimization's time to that step over the feed-forward time (first start);
- refine: L-BFGS started from the model's picture (``fast-style stylize --refine N``), the steps
  it needs to reach the total of ``--refine-target`` L-BFGS steps from the photo (default 50),
  at most ``--refine-steps``; ``>N`` if not within them (needs ``--init content``);
- scores outside the loss: colour distance to the style image (Hellinger distance of RGB
  histograms; lower is closer to the painting's palette) and luminance SSIM to the photo (higher
  keeps more of its structure), for the model's output and the optimized image.

Models that share a loss (siblings trained on one style) share one optimization run per photo,
size and start. The script prints a Markdown table per model and photo and one of the means per
model and size, and writes ``quality.md``, ``quality.csv`` and a contact sheet ``quality.png``
(photo | style | each model | optimization from the first start, at the first size) into ``--out``.
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from PIL import Image

from benchmarks.common import device_line, markdown_table
from benchmarks.scoring import add_photo_arguments, lbfgs_curve, recorded_style_loss, steps_worth
from fast_style.compare import evaluate_image, make_figure
from fast_style.errors import FastStyleError
from fast_style.images import IMAGE_EXTENSIONS, load_image_tensor, save_image
from fast_style.inference import Stylizer
from fast_style.losses import build_perceptual_loss
from fast_style.metrics import color_distance, luminance_ssim

COLUMNS = (
    "model",
    "photo",
    "size",
    "content",
    "style",
    "total",
    "photo_total",
    "steps_from_noise",
    "steps_from_photo",
    "time_ratio",
    "refine_goal",
    "refine_steps",
    "ff_seconds",
    "color_distance",
    "ssim",
    "lbfgs_color_distance",
    "lbfgs_ssim",
    "photo_color_distance",
)
INIT_COLUMN = {"noise": "steps_from_noise", "content": "steps_from_photo"}


@dataclass
class Score:
    """One model on one photo at one size."""

    model: str
    photo: str
    size: int
    content: float
    style: float
    total: float
    photo_total: float  # the loss of the photo itself
    time_ratio: float | None
    ff_seconds: float
    color_distance: float
    ssim: float
    lbfgs_color_distance: float
    lbfgs_ssim: float
    photo_color_distance: float
    worth: dict[str, float | None] = field(default_factory=dict)  # init -> steps (None: not reached)
    refine_goal: float | None = None  # the photo start's total after --refine-target steps (None: not run)
    refine_steps: float | None = (
        None  # refine steps from the model's picture to refine_goal (None: not reached)
    )

    @property
    def steps_from_noise(self) -> float | None:
        return self.worth.get("noise")

    @property
    def steps_from_photo(self) -> float | None:
        return self.worth.get("content")


def _photos(folder: Path) -> list[Path]:
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS)
    if not files:
        raise FastStyleError(f"no photos in {folder}")
    return files


class OneStyle:
    """One style of a multi-style model, scored as a model of its own."""

    def __init__(self, stylizer: Stylizer, style: str) -> None:
        self.stylizer, self.style = stylizer, style

    def stylize_tensor(self, images: torch.Tensor) -> torch.Tensor:
        return self.stylizer.stylize_tensor(images, style=self.style)


def _time_model(
    stylizer: Stylizer | OneStyle, content: torch.Tensor, repeats: int = 3
) -> tuple[torch.Tensor, float]:
    out = stylizer.stylize_tensor(content)  # warm-up (and onnxruntime session build)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        out = stylizer.stylize_tensor(content)
        times.append(time.perf_counter() - start)
    return out.float().clamp(0, 1), statistics.median(times)


def score_group(
    models: list[tuple[str, Stylizer | OneStyle]],
    loss_args: dict,
    style_path: Path,
    style_size: int,
    photos: list[Path],
    sizes: Sequence[int],
    max_steps: int,
    progress: bool,
    inits: Sequence[str] = ("noise", "content"),
    refine_target: int = 50,
    refine_steps: int = 0,
) -> tuple[list[Score], list[list[tuple[str, str, torch.Tensor]]]]:
    """Score models that share one loss on every photo and size; return the scores and the contact-sheet rows.

    With ``refine_steps``, the photo start runs at least ``refine_target`` steps, and each model's
    picture is refined until it reaches that total (at most ``refine_steps`` steps).
    """
    loss = build_perceptual_loss(**loss_args)
    style = load_image_tensor(style_path, style_size)
    loss.set_style_image(style)
    scores, rows = [], []
    for size in sizes:
        for photo in photos:
            content = load_image_tensor(photo, size)
            loss.set_content_image(content)
            photo_total = evaluate_image(loss, content)["total"]
            outputs = {}
            for name, stylizer in models:
                out, seconds = _time_model(stylizer, content)
                out = out[..., : content.shape[-2], : content.shape[-1]]
                outputs[name] = (out, seconds, evaluate_image(loss, out))
            target = min(terms["total"] for _, _, terms in outputs.values())
            curves = {
                init: lbfgs_curve(
                    loss,
                    content,
                    style,
                    init,
                    max_steps,
                    stop_at_total=target,
                    min_steps=refine_target if refine_steps and init == "content" else 0,
                    progress=progress,
                    description=f"{photo.stem} {size}px L-BFGS from {init}",
                )
                for init in inits
            }
            goal = None
            if refine_steps and "content" in curves and curves["content"].steps >= refine_target:
                goal = curves["content"].totals[refine_target]
            first = curves[inits[0]]
            assert first.image is not None  # computed here, not read from a cache
            row = [
                ("photo", f"{photo.stem}, total {photo_total:.3g}", content),
                ("style", style_path.stem, style),
            ]
            for name, (out, seconds, terms) in outputs.items():
                worth = {init: steps_worth(curve.totals, terms["total"]) for init, curve in curves.items()}
                lead = worth[inits[0]]
                refined = None
                if goal is not None:
                    refine = lbfgs_curve(
                        loss,
                        content,
                        style,
                        "model",
                        refine_steps,
                        stop_at_total=goal,
                        model=lambda _, picture=out: picture,
                        progress=progress,
                        description=f"{photo.stem} {size}px refine {name}",
                    )
                    refined = steps_worth(refine.totals, goal)
                scores.append(
                    Score(
                        model=name,
                        photo=photo.stem,
                        size=size,
                        content=terms["content"],
                        style=terms["style"],
                        total=terms["total"],
                        photo_total=photo_total,
                        time_ratio=None if lead is None else lead * first.seconds_per_step / seconds,
                        ff_seconds=seconds,
                        color_distance=color_distance(out, style),
                        ssim=luminance_ssim(out, content),
                        lbfgs_color_distance=color_distance(first.image, style),
                        lbfgs_ssim=luminance_ssim(first.image, content),
                        photo_color_distance=color_distance(content, style),
                        worth=worth,
                        refine_goal=goal,
                        refine_steps=refined,
                    )
                )
                label = f"~{lead:.0f} L-BFGS steps" if lead is not None else f">{first.steps} L-BFGS steps"
                row.append((name, f"total {terms['total']:.3g}, {label}", out))
            row.append(
                (f"L-BFGS from {inits[0]}, {first.steps} steps", f"total {first.totals[-1]:.3g}", first.image)
            )
            if size == sizes[0]:
                rows.append(row)
    return scores, rows


def _mean(values: Sequence[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return statistics.fmean(known) if known and len(known) == len(values) else None


def _fmt(value: float | int | None, digits: int = 3) -> str:
    if value is None:
        return "–"
    return str(value) if isinstance(value, int) else f"{value:.{digits}g}"


def _steps(value: float | None, max_steps: int) -> str:
    return f">{max_steps}" if value is None else f"{value:.1f}"


def _mean_steps(values: Sequence[float | None], max_steps: int) -> str:
    if not values:
        return "–"
    capped = [max_steps if v is None else v for v in values]
    return f"{statistics.fmean(capped):.1f}" + ("" if None not in values else " (capped: some >max)")


def _refine_cell(score: Score, most: int) -> str:
    return "–" if score.refine_goal is None else _steps(score.refine_steps, most)


def _mean_refine(scores: Sequence[Score], most: int) -> str:
    if any(s.refine_goal is None for s in scores):
        return "–"
    return _mean_steps([s.refine_steps for s in scores], most)


def report(scores: list[Score], max_steps: int, refine_target: int = 50, refine_steps: int = 0) -> str:
    """Markdown: one table of every model on every photo and size, then one of the means per model and size.

    With ``refine_steps``, a column holds the refine steps to the photo start's ``refine_target`` total.
    """
    inits = [init for init in INIT_COLUMN if any(init in s.worth for s in scores)]
    names = {"noise": "from noise", "content": "from photo"}
    refine = [f"refine steps to L-BFGS@{refine_target} from photo"] if refine_steps else []
    header = [
        "model",
        "photo",
        "size",
        "content",
        "style",
        "total",
        "total / photo's",
        *(f"steps-worth {names[i]}" for i in inits),
        "time ratio",
        *refine,
        "colour dist. (model / L-BFGS / photo)",
        "SSIM (model / L-BFGS)",
    ]
    rows = []
    for s in scores:
        rows.append(
            [
                s.model,
                s.photo,
                s.size,
                _fmt(s.content),
                _fmt(s.style),
                _fmt(s.total),
                f"{s.total / s.photo_total:.2f}",
                *(_steps(s.worth.get(i), max_steps) for i in inits),
                _fmt(s.time_ratio),
                *([_refine_cell(s, refine_steps)] if refine else []),
                f"{s.color_distance:.3f} / {s.lbfgs_color_distance:.3f} / {s.photo_color_distance:.3f}",
                f"{s.ssim:.3f} / {s.lbfgs_ssim:.3f}",
            ]
        )
    means = []
    for model, size in dict.fromkeys((s.model, s.size) for s in scores):
        mine = [s for s in scores if s.model == model and s.size == size]
        ratios = [s.total / s.photo_total for s in mine]
        means.append(
            [
                model,
                size,
                _fmt(statistics.fmean(s.total for s in mine)),
                _fmt(statistics.fmean(s.content for s in mine)),
                _fmt(statistics.fmean(s.style for s in mine)),
                f"{statistics.fmean(ratios):.2f} (worst {max(ratios):.2f})",
                *(_mean_steps([s.worth.get(i) for s in mine], max_steps) for i in inits),
                _fmt(_mean([s.time_ratio for s in mine])),
                *([_mean_refine(mine, refine_steps)] if refine else []),
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
        "size",
        "mean total",
        "content",
        "style",
        "total / photo's",
        *(f"steps-worth {names[i]}" for i in inits),
        "mean time ratio",
        *refine,
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
    add_photo_arguments(parser, "models")
    parser.add_argument(
        "--size", type=int, nargs="+", default=[256, 512], help="long side(s) of the photos in pixels"
    )
    parser.add_argument("--max-steps", type=int, default=300, help="L-BFGS steps at most per photo")
    parser.add_argument(
        "--init",
        nargs="+",
        default=["noise", "content"],
        choices=["noise", "content"],
        help="where L-BFGS starts: white noise (Johnson et al.'s protocol) and/or the photo",
    )
    parser.add_argument(
        "--refine-target",
        type=int,
        default=50,
        help="refine: reach the total of this many L-BFGS steps from the photo",
    )
    parser.add_argument(
        "--refine-steps",
        type=int,
        default=50,
        help="refine: at most this many steps from the model's picture (0: do not measure)",
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
        groups: dict[str, tuple[dict, Path, int, list[tuple[str, Stylizer | OneStyle]]]] = {}
        for path in args.models:
            stylizer = Stylizer.from_file(path, device="cpu", backend=args.backend)
            # a multi-style file: each style against its own style image, named model:style
            entries: list[tuple[str, str | None]] = [(f"{path.stem}:{n}", n) for n in stylizer.styles]
            for name, style in entries or [(path.stem, None)]:
                recorded, loss_args, style_path = recorded_style_loss(
                    path, stylizer.metadata, args.weights, args.styles, style
                )
                key = json.dumps([loss_args, recorded["style_image"], recorded["style_size"]], sort_keys=True)
                group = groups.setdefault(key, (loss_args, style_path, int(recorded["style_size"]), []))
                group[3].append((name, stylizer if style is None else OneStyle(stylizer, style)))
    except FastStyleError as exc:
        print(f"quality.py: error: {exc}", file=sys.stderr)
        return 2

    print(device_line())
    print(
        f"{len(photos)} photos at {', '.join(map(str, args.size))} px, L-BFGS from "
        f"{' and from '.join(args.init)}, at most {args.max_steps} steps\n"
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
            args.refine_target,
            args.refine_steps,
        )
        scores += group_scores
        sheet_rows += rows
    text = report(scores, args.max_steps, args.refine_target, args.refine_steps)
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
