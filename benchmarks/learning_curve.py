"""Learning curves of training runs: every saved checkpoint exported and scored on photos it never saw.

    python -m benchmarks.learning_curve RUN_DIR [RUN_DIR ...] --content PHOTOS/ --styles STYLES/ \\
        [--weights VGG_FEATURES.pt] [--size 256] [--photos 5] [--max-steps 300] [--out DIR]

For each ``step*.ckpt`` in ``RUN_DIR/checkpoints`` (``fast-style train`` writes one every
``callbacks.model_checkpoint.every_n_train_steps``), and ``last.ckpt`` where it is newer: export it to ``.safetensors`` (as
``fast-style export`` does), stylize the first ``--photos`` photos of ``--content`` at ``--size`` px
on the long side, and score the pictures with the loss the model was trained with (or, with
``--loss-of FILE``, the loss recorded in another model file: one yardstick for runs trained on
different losses). Its worth in steps is where L-BFGS from white noise on the same loss reaches the
model's total (``benchmarks.scoring``); the L-BFGS curves are computed once and cached.

Prints a table per run (steps, training CPU and wall minutes, mean total / content / style /
steps-worth) and writes ``learning_curve.csv`` and ``learning_curve.png`` (the four measures
against training steps and against CPU minutes, one line per run) into ``--out``.
"""

from __future__ import annotations

import argparse
import csv
import json
import re
import statistics
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from benchmarks.common import device_line, markdown_table
from benchmarks.plot import chart_grid, line_chart
from benchmarks.scoring import add_photo_arguments, lbfgs_curve, steps_worth
from fast_style.checkpoints import read_training_checkpoint
from fast_style.compare import evaluate_image
from fast_style.errors import FastStyleError
from fast_style.export import export_safetensors
from fast_style.files import file_sha256
from fast_style.images import IMAGE_EXTENSIONS, load_image_tensor
from fast_style.inference import Stylizer
from fast_style.inference.loading import read_metadata
from fast_style.losses import PerceptualLoss, build_perceptual_loss
from fast_style.model_file import record_from_checkpoint
from fast_style.trained_loss import loss_arguments, recorded_loss

__all__ = ["Point", "checkpoints_of", "main", "score_run"]

_STEP = re.compile(r"step(\d+)\.ckpt$")


@dataclass
class Point:
    """One checkpoint of one run, scored at one size (means over the photos)."""

    run: str
    step: int
    cpu_minutes: float | None
    wall_minutes: float | None
    size: int
    total: float
    content: float
    style: float
    steps_worth: float  # capped at the curve's length when some photo was not reached
    capped: bool


def checkpoints_of(run_dir: Path) -> list[tuple[int, Path]]:
    """``(step, path)`` of the run's ``step*.ckpt`` files, in step order, then ``last.ckpt`` if it is newer.

    A run stopped by a time limit ends between two step checkpoints; its ``last.ckpt`` is its end.
    """
    found = []
    for path in (run_dir / "checkpoints").glob("step*.ckpt"):
        match = _STEP.search(path.name)
        if match:
            found.append((int(match.group(1)), path))
    found.sort()
    last = run_dir / "checkpoints" / "last.ckpt"
    if last.is_file():
        step = int(read_training_checkpoint(last).get("global_step", 0))
        if not found or step > found[-1][0]:
            found.append((step, last))
    return found


class _Yardstick:
    """Losses (one per recorded setting) with their style targets set, and the photos at each size."""

    def __init__(self, photos: list[Path], styles: Path, weights: str | None, args: argparse.Namespace):
        self.photos, self.styles, self.weights, self.args = photos, styles, weights, args
        self._losses: dict[str, tuple[PerceptualLoss, torch.Tensor, dict[str, Any]]] = {}

    def loss_for(self, recorded: dict[str, Any]) -> tuple[PerceptualLoss, torch.Tensor, dict[str, Any]]:
        loss_args = loss_arguments(recorded, self.weights)
        if not recorded.get("style_image") or not recorded.get("style_size"):
            raise FastStyleError("the model records no style image and size")
        style_path = self.styles / recorded["style_image"]
        if not style_path.is_file():
            raise FastStyleError(f"style image {recorded['style_image']} not found in {self.styles}")
        key = json.dumps([loss_args, file_sha256(style_path), recorded["style_size"]], sort_keys=True)
        if key not in self._losses:
            loss = build_perceptual_loss(**loss_args)
            style = load_image_tensor(style_path, int(recorded["style_size"]))
            loss.set_style_image(style)
            cache_key = {
                "loss": {k: v for k, v in loss_args.items() if k != "weights"},
                "weights": file_sha256(self.weights) if Path(str(self.weights)).is_file() else self.weights,
                "style": file_sha256(style_path),
                "style_size": recorded["style_size"],
            }
            self._losses[key] = (loss, style, cache_key)
        return self._losses[key]


def score_run(
    run_dir: Path,
    yardstick: _Yardstick,
    sizes: Sequence[int],
    fixed_loss: dict[str, Any] | None,
    progress: bool,
    only_styles: Sequence[str] = (),
) -> list[Point]:
    """Export and score every checkpoint of one run; one ``Point`` per checkpoint and size."""
    args = yardstick.args
    points = []
    checkpoints = checkpoints_of(run_dir)
    if not checkpoints:
        raise FastStyleError(f"no step*.ckpt checkpoints in {run_dir / 'checkpoints'}")
    with tempfile.TemporaryDirectory() as tmp:
        for step, ckpt_path in checkpoints:
            spent = (
                record_from_checkpoint(read_training_checkpoint(ckpt_path))["training"].get("training_time")
                or {}
            )
            model_file = export_safetensors(ckpt_path, Path(tmp) / f"{step}.safetensors")
            stylizer = Stylizer.from_file(model_file, device="cpu", backend="torch")
            # a multi-style run: each style scored against its own style image, as run:style
            names = stylizer.styles
            chosen: list[str | None] = (
                [n for n in names if not only_styles or n in only_styles] if names else [None]
            )
            for style in chosen:
                recorded = fixed_loss or recorded_loss(read_metadata(model_file), style)
                loss, style_image, cache_key = yardstick.loss_for(recorded)
                name = run_dir.name if style is None else f"{run_dir.name}:{style}"
                for size in sizes:
                    rows = []
                    for photo in yardstick.photos:
                        content = load_image_tensor(photo, size)
                        loss.set_content_image(content)
                        curve = lbfgs_curve(
                            loss,
                            content,
                            style_image,
                            "noise",
                            args.max_steps,
                            cache=args.cache,
                            cache_key={**cache_key, "photo": file_sha256(photo)},
                            progress=progress,
                            description=f"{photo.stem} {size}px L-BFGS from noise",
                        )
                        out = stylizer.stylize_tensor(content, style=style)
                        terms = evaluate_image(loss, out[..., : content.shape[-2], : content.shape[-1]])
                        rows.append((terms, steps_worth(curve.totals, terms["total"]), curve.steps))
                    worth = [w for _, w, _ in rows]
                    points.append(
                        Point(
                            run=name,
                            step=step,
                            cpu_minutes=spent["cpu_seconds"] / 60 if "cpu_seconds" in spent else None,
                            wall_minutes=spent["wall_seconds"] / 60 if "wall_seconds" in spent else None,
                            size=size,
                            total=statistics.fmean(t["total"] for t, _, _ in rows),
                            content=statistics.fmean(t["content"] for t, _, _ in rows),
                            style=statistics.fmean(t["style"] for t, _, _ in rows),
                            steps_worth=statistics.fmean(float(n) if w is None else w for _, w, n in rows),
                            capped=any(w is None for w in worth),
                        )
                    )
    return points


def _fmt(value: float | None, digits: int = 3) -> str:
    return "–" if value is None else f"{value:.{digits}g}"


def report(points: list[Point]) -> str:
    """Markdown: one row per run, size and checkpoint."""
    header = ["run", "size", "step", "CPU min", "wall min", "total", "content", "style", "steps-worth"]
    rows = [
        [
            p.run,
            p.size,
            p.step,
            _fmt(p.cpu_minutes),
            _fmt(p.wall_minutes),
            _fmt(p.total),
            _fmt(p.content),
            _fmt(p.style),
            f"{p.steps_worth:.1f}" + (" (capped)" if p.capped else ""),
        ]
        for p in points
    ]
    return markdown_table(header, rows)


def plot(points: list[Point]) -> Any:
    """The four measures against training steps (top row) and CPU minutes (bottom row)."""
    charts = []
    measures = [
        ("total", "total loss"),
        ("content", "content"),
        ("style", "style"),
        ("steps_worth", "steps-worth"),
    ]
    for axis, label in (("step", "training steps"), ("cpu_minutes", "training CPU minutes")):
        for measure, title in measures:
            series: dict[str, list[tuple[float, float]]] = {}
            for p in points:
                x = getattr(p, axis)
                if x is None:
                    continue
                name = p.run if len({q.size for q in points}) == 1 else f"{p.run} @{p.size}"
                series.setdefault(name, []).append((float(x), float(getattr(p, measure))))
            charts.append(line_chart(series, title, label, legend=measure == "steps_worth"))
    return chart_grid(charts, columns=len(measures))


def main(argv: Sequence[str] | None = None) -> int:
    """Parse arguments, score every run and write the report; returns an exit code."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("runs", nargs="+", type=Path, help="run folders of fast-style train")
    add_photo_arguments(parser, "runs")
    parser.add_argument("--size", type=int, nargs="+", default=[256], help="long side(s) of the photos")
    parser.add_argument("--photos", type=int, default=5, help="score the first N photos (sorted by name)")
    parser.add_argument("--max-steps", type=int, default=300, help="length of the L-BFGS curves")
    parser.add_argument(
        "--loss-of", type=Path, default=None, help="score every run on this model file's loss"
    )
    parser.add_argument("--out", type=Path, default=Path("outputs/learning_curve"))
    parser.add_argument("--cache", type=Path, default=Path("outputs/lbfgs_cache"), help="L-BFGS curve cache")
    parser.add_argument(
        "--style",
        nargs="+",
        default=(),
        help="multi-style runs: score only these styles (default: every one)",
    )
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        photos = sorted(p for p in args.content.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS)
        photos = photos[: args.photos]
        if not photos:
            raise FastStyleError(f"no photos in {args.content}")
        fixed = recorded_loss(read_metadata(args.loss_of)) if args.loss_of else None
        yardstick = _Yardstick(photos, args.styles, args.weights, args)
        print(device_line())
        print(f"{len(photos)} photos ({', '.join(p.stem for p in photos)}), L-BFGS from noise\n")
        points: list[Point] = []
        for run in args.runs:
            points += score_run(run, yardstick, args.size, fixed, not args.no_progress, args.style)
    except FastStyleError as exc:
        print(f"learning_curve: error: {exc}", file=sys.stderr)
        return 2
    text = report(points)
    print(text)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "learning_curve.md").write_text(text + "\n", encoding="utf-8")
    with open(args.out / "learning_curve.csv", "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(asdict(points[0])))
        writer.writeheader()
        for p in points:
            writer.writerow(asdict(p))
    plot(points).save(args.out / "learning_curve.png")
    print(f"wrote {args.out / 'learning_curve.md'}, learning_curve.csv, learning_curve.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
