"""Feed-forward + N steps against optimization alone, on the loss the model was trained with.

    python -m benchmarks.refine MODEL.safetensors --content PHOTOS/ --styles STYLES/ \\
        [--weights VGG_FEATURES.pt] [--size 256 512] [--refine 5 10 15 20] [--baseline 50] \\
        [--sheet docs/refine_contact_sheet.jpg --sheet-refine 10 20 --sheet-steps 300] [--out DIR]

For each photo, scaled to each ``--size`` on its long side, three runs of ``fast-style optimize``'s
L-BFGS on the model's recorded loss (``benchmarks.scoring``'s yardstick):

- refine: from the model's picture (what ``fast-style stylize --refine N`` does; with ``--blend A``,
  from A times the picture plus 1 - A times the photo), snapshots at each ``--refine`` step; its
  time is the network's (median of 3 passes) plus the steps';
- from the photo (``fast-style optimize``'s default start) and from white noise (seed 0), each
  ``--baseline`` steps.

The table gives each total (the photo start's also after as many steps as the last refine one, an
equal-time comparison), the refine steps that reach the photo start's total at ``--baseline``
(interpolated; ``>N`` if not within the refine run) and the time ratio of refine at the last
``--refine`` step to the photo start at ``--baseline``. The targets it checks: the last refine
step's total is at most the photo start's at ``--baseline`` in at most half its time, and the
refine step before it beats the noise start at ``--baseline``. With ``--sheet``, the photo start
continues to ``--sheet-steps`` at the first size, and a contact sheet (photo | feed-forward | refine
at each ``--sheet-refine`` step | optimization) is written there.
"""

from __future__ import annotations

import argparse
import csv
import statistics
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from benchmarks.common import device_line, markdown_table
from benchmarks.quality import _photos, _time_model, contact_sheet
from benchmarks.scoring import add_photo_arguments, recorded_style_loss, steps_worth
from fast_style.compare import evaluate_image
from fast_style.errors import FastStyleError
from fast_style.images import load_image_tensor, save_image
from fast_style.inference import Stylizer
from fast_style.losses import PerceptualLoss, build_perceptual_loss
from fast_style.optimize import OptimizeResult, initial_image, optimize_pixels


@dataclass
class RefineScore:
    """One photo at one size: the totals and times of the three starts."""

    photo: str
    size: int
    photo_total: float
    ff_total: float
    ff_seconds: float
    refine_totals: dict[int, float]
    refine_seconds: dict[int, float]
    photo_start_total: float
    photo_start_seconds: float
    photo_start_same_steps: float  # the photo start's total after as many steps as the last refine one
    noise_start_total: float
    noise_start_seconds: float
    refine_steps_to_photo_start: float | None

    def time_ratio(self, steps: int) -> float:
        """Refine ``steps`` (network included) over the photo start's ``--baseline`` steps, in time."""
        return self.refine_seconds[steps] / self.photo_start_seconds


def _run(
    loss: PerceptualLoss, start: torch.Tensor, steps: int, snapshots: Sequence[int], progress: bool, what: str
) -> OptimizeResult:
    result = optimize_pixels(
        loss,
        start,
        steps,
        "lbfgs",
        snapshot_at=snapshots,
        progress=progress,
        description=what,
    )
    if result.error is not None:
        raise FastStyleError(f"{what}: {result.error}")
    return result


def score_photo(
    stylizer: Stylizer,
    loss: PerceptualLoss,
    content: torch.Tensor,
    name: str,
    refine: Sequence[int],
    baseline: int,
    sheet_steps: int | None,
    progress: bool,
    sheet_refine: Sequence[int] = (),
    blend: float = 1.0,
) -> tuple[RefineScore, list[tuple[str, str, torch.Tensor]]]:
    """The three starts on one photo (``loss`` holds its targets); the score and its contact-sheet row.

    Refine starts from ``blend`` times the model's picture plus ``1 - blend`` times the photo."""
    size = max(content.shape[-2:])
    photo_total = evaluate_image(loss, content)["total"]
    picture, ff_seconds = _time_model(stylizer, content)
    start = initial_image("model", content, model=lambda _: picture)
    if blend != 1.0:
        start = blend * start + (1.0 - blend) * content
    refined = _run(loss, start, refine[-1], refine, progress, f"{name} {size}px refine")
    photo_steps = max(baseline, sheet_steps or 0)
    from_photo = _run(loss, content, photo_steps, [baseline, photo_steps], progress, f"{name} {size}px photo")
    noise = initial_image("noise", content, seed=0)
    from_noise = _run(loss, noise, baseline, [baseline], progress, f"{name} {size}px noise")
    target = from_photo.history[baseline]["total"]
    score = RefineScore(
        photo=name,
        size=size,
        photo_total=photo_total,
        ff_total=refined.history[0]["total"],
        ff_seconds=ff_seconds,
        refine_totals={n: refined.history[n]["total"] for n in refine},
        refine_seconds={n: ff_seconds + refined.seconds[n] for n in refine},
        photo_start_total=target,
        photo_start_seconds=from_photo.seconds[baseline],
        photo_start_same_steps=from_photo.history[min(refine[-1], photo_steps)]["total"],
        noise_start_total=from_noise.history[baseline]["total"],
        noise_start_seconds=from_noise.seconds[baseline],
        refine_steps_to_photo_start=steps_worth([h["total"] for h in refined.history], target),
    )
    row = [("photo", f"{name}, total {photo_total:.3g}", content)]
    row.append(("feed-forward", f"total {score.ff_total:.3g}, {ff_seconds:.2f} s", picture))
    for n in sheet_refine or refine[-2:]:
        row.append(
            (
                f"feed-forward + {n} steps",
                f"total {score.refine_totals[n]:.3g}, {score.refine_seconds[n]:.1f} s",
                refined.snapshots[n],
            )
        )
    row.append(
        (
            f"optimization, {photo_steps} steps",
            f"total {from_photo.history[photo_steps]['total']:.3g}, {from_photo.seconds[photo_steps]:.0f} s",
            from_photo.snapshots[photo_steps],
        )
    )
    return score, row


def _csv_row(score: RefineScore) -> dict[str, object]:
    """The score as flat CSV cells: ``refine_total_<n>`` and ``refine_seconds_<n>`` for each refine step."""
    row: dict[str, object] = {}
    for key, value in asdict(score).items():
        if isinstance(value, dict):
            row.update({f"{key.replace('_totals', '_total')}_{n}": v for n, v in value.items()})
        else:
            row[key] = value
    return row


def _steps(value: float | None, most: int) -> str:
    return f">{most}" if value is None else f"{value:.1f}"


def report(scores: Sequence[RefineScore], refine: Sequence[int], baseline: int) -> str:
    """Markdown: every photo and size, the targets met, and the means per size."""
    last, before = refine[-1], refine[-2] if len(refine) > 1 else refine[-1]
    header = [
        "photo",
        "size",
        "photo's total",
        "feed-forward",
        *(f"refine {n}" for n in refine),
        f"L-BFGS@{last} from photo",
        f"L-BFGS@{baseline} from photo",
        f"L-BFGS@{baseline} from noise",
        f"refine steps to L-BFGS@{baseline} from photo",
        f"time refine {last} / L-BFGS@{baseline}",
        f"refine {last} ≤ photo@{baseline}, ≤ ½ time",
        f"refine {before} < noise@{baseline}",
    ]
    rows = []
    for s in scores:
        met_a = s.refine_totals[last] <= s.photo_start_total and s.time_ratio(last) <= 0.5
        met_b = s.refine_totals[before] < s.noise_start_total
        rows.append(
            [
                s.photo,
                s.size,
                f"{s.photo_total:.3f}",
                f"{s.ff_total:.3f}",
                *(f"{s.refine_totals[n]:.3f}" for n in refine),
                f"{s.photo_start_same_steps:.3f}",
                f"{s.photo_start_total:.3f}",
                f"{s.noise_start_total:.3f}",
                _steps(s.refine_steps_to_photo_start, last),
                f"{s.time_ratio(last):.2f}",
                "yes" if met_a else "no",
                "yes" if met_b else "no",
            ]
        )
    means = []
    for size in dict.fromkeys(s.size for s in scores):
        mine = [s for s in scores if s.size == size]
        means.append(
            [
                size,
                f"{statistics.fmean(s.ff_total for s in mine):.3f}",
                *(f"{statistics.fmean(s.refine_totals[n] for s in mine):.3f}" for n in refine),
                f"{statistics.fmean(s.photo_start_same_steps for s in mine):.3f}",
                f"{statistics.fmean(s.photo_start_total for s in mine):.3f}",
                f"{statistics.fmean(s.noise_start_total for s in mine):.3f}",
                f"{statistics.fmean(s.ff_seconds for s in mine):.2f}",
                f"{statistics.fmean(s.refine_seconds[last] for s in mine):.1f}",
                f"{statistics.fmean(s.photo_start_seconds for s in mine):.1f}",
            ]
        )
    mean_header = [
        "size",
        "feed-forward",
        *(f"refine {n}" for n in refine),
        f"L-BFGS@{last} photo",
        f"L-BFGS@{baseline} photo",
        f"L-BFGS@{baseline} noise",
        "feed-forward s",
        f"refine {last} s",
        f"L-BFGS@{baseline} s",
    ]
    return (
        markdown_table(header, rows)
        + "\n\nMean totals and times over the photos:\n\n"
        + markdown_table(mean_header, means)
        + "\n"
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Parse arguments, run the three starts on every photo and size, print and write the report."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("model", type=Path, help="an exported .safetensors model")
    add_photo_arguments(parser, "model")
    parser.add_argument("--size", type=int, nargs="+", default=[256, 512], help="long side(s) in pixels")
    parser.add_argument(
        "--refine", type=int, nargs="+", default=[5, 10, 15, 20], help="refine steps to score"
    )
    parser.add_argument(
        "--blend",
        type=float,
        default=1.0,
        help="refine from this share of the model's picture, the rest the photo's (1: the picture alone)",
    )
    parser.add_argument("--baseline", type=int, default=50, help="L-BFGS steps of the photo and noise starts")
    parser.add_argument("--sheet", type=Path, default=None, help="write the contact sheet here")
    parser.add_argument("--sheet-steps", type=int, default=300, help="optimization steps shown on the sheet")
    parser.add_argument(
        "--sheet-refine", type=int, nargs="+", default=[10, 20], help="refine steps shown on the sheet"
    )
    parser.add_argument("--tile", type=int, default=256, help="long side of each contact-sheet image")
    parser.add_argument("--out", type=Path, default=Path("outputs/refine"))
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--backend", default="auto", help="stylize backend: auto, torch or onnxruntime")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    refine = sorted(set(args.refine))
    sheet_refine = [n for n in args.sheet_refine if n in refine] or refine[-2:]
    try:
        if refine[0] < 1 or args.baseline < 1:
            raise FastStyleError("--refine and --baseline take positive step counts")
        if not 0.0 <= args.blend <= 1.0:
            raise FastStyleError(f"--blend takes a share in [0, 1], got {args.blend}")
        photos = _photos(args.content)
        stylizer = Stylizer.from_file(args.model, device="cpu", backend=args.backend)
        recorded, loss_args, style_path = recorded_style_loss(
            args.model, stylizer.metadata, args.weights, args.styles
        )
    except FastStyleError as exc:
        print(f"refine.py: error: {exc}", file=sys.stderr)
        return 2

    print(device_line())
    print(
        f"{len(photos)} photos at {', '.join(map(str, args.size))} px; refine {refine}, L-BFGS from the photo "
        f"and from noise for {args.baseline} steps\n"
    )
    loss = build_perceptual_loss(**loss_args)
    loss.set_style_image(load_image_tensor(style_path, int(recorded["style_size"])))
    scores, rows = [], []
    for size in args.size:
        for photo in photos:
            content = load_image_tensor(photo, size)
            loss.set_content_image(content)
            sheet_steps = args.sheet_steps if args.sheet is not None and size == args.size[0] else None
            score, row = score_photo(
                stylizer,
                loss,
                content,
                photo.stem,
                refine,
                args.baseline,
                sheet_steps,
                not args.no_progress,
                sheet_refine,
                args.blend,
            )
            scores.append(score)
            if sheet_steps is not None:
                rows.append(row)
    text = report(scores, refine, args.baseline)
    print(text)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "refine.md").write_text(text, encoding="utf-8")
    with open(args.out / "refine.csv", "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(list(_csv_row(scores[0])))
        writer.writerows(list(_csv_row(s).values()) for s in scores)
    written = [args.out / "refine.md", args.out / "refine.csv"]
    if args.sheet is not None:
        args.sheet.parent.mkdir(parents=True, exist_ok=True)
        save_image(contact_sheet(rows, args.tile), args.sheet, quality=88)
        written.append(args.sheet)
    print("wrote " + ", ".join(map(str, written)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
