"""Does the default optimization ever diverge? Totals at fixed steps for every photo and style.

    python -m benchmarks.optimize_stability --content PHOTOS/ --styles A.jpg B.jpg ... \\
        [--size 512] [--steps 10 50 100 300] [--weights VGG_FEATURES.pt] [-- loss.key=value ...]

Each photo is stylized with each style by ``optimize_image`` with the settings of
``fast-style optimize`` (fast_style/configs/optimize.yaml and fast_style/configs/loss/: L-BFGS with
its line search, init=content, the balanced loss); extra ``key=value`` overrides go to that config. The table gives the
total loss at each checkpoint step, the largest rise from one checkpoint to the next (the acceptance
limit is 2%), the largest rise between any two consecutive steps, and the loss evaluations and
seconds per step.
"""

from __future__ import annotations

import argparse
import itertools
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path

import torch

from benchmarks.common import device_line, markdown_table
from fast_style.images import IMAGE_EXTENSIONS, load_image_tensor
from fast_style.optimize import optimize_image


def _config(overrides: Sequence[str]):
    from fast_style.auto_settings import resolve_auto_settings
    from fast_style.cli.hydra_app import compose_config

    # The loss and the image stay on the CPU here.
    base = ["content_image=x", "style_image=x", "output=x.png", "device=cpu"]
    cfg = compose_config("optimize", [*base, *overrides])
    resolve_auto_settings(cfg)
    return cfg


def rise(values: Sequence[float]) -> float:
    """The largest relative increase from one value to the next (0 when they never rise)."""
    return max([0.0] + [(b - a) / abs(a) for a, b in itertools.pairwise(values) if a])


def main(argv: Sequence[str] | None = None) -> int:
    """Run every photo with every style and print the table; exit 1 if any checkpoint rise exceeds 2%."""
    from fast_style.optimize import PixelSettings

    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--content", type=Path, required=True, help="folder of photos")
    parser.add_argument("--styles", type=Path, nargs="+", required=True, help="style images")
    parser.add_argument(
        "--size", type=int, default=512, help="long side of the result (optimize's image_size)"
    )
    parser.add_argument("--steps", type=int, nargs="+", default=[10, 50, 100, 300])
    parser.add_argument("--weights", default=None, help="loss-network weights (loss.weights)")
    parser.add_argument("--network", default=None, help="loss network (loss.network)")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("overrides", nargs="*", help="optimize config overrides, key=value")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    from hydra.utils import instantiate

    overrides = list(args.overrides)
    if args.weights:
        overrides.append(f"loss.weights={args.weights}")
    if args.network:
        overrides.append(f"loss.network={args.network}")
    cfg = _config(overrides)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        loss = instantiate(cfg.loss)
    photos = sorted(p for p in args.content.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS)
    checkpoints = sorted(set(args.steps))
    print(device_line())
    print(
        f"{len(photos)} photos x {len(args.styles)} styles at {args.size} px; optimizer {cfg.pixel_optimizer._target_} "
        f"(line search {cfg.pixel_optimizer.get('line_search_fn')}), init {cfg.init}, loss {cfg.loss.network}, "
        f"style weight {cfg.loss.style_weight}, layer weights {cfg.loss.style_layer_weights}\n"
    )
    rows, worst = [], 0.0
    for photo in photos:
        content = load_image_tensor(photo, args.size)
        for style_path in args.styles:
            style = load_image_tensor(style_path, round(float(cfg.style_scale) * max(content.shape[-2:])))
            optimizer = instantiate(cfg.pixel_optimizer)
            result = optimize_image(
                loss,
                content,
                style,
                steps=checkpoints[-1],
                style_scale=float(cfg.style_scale),
                settings=PixelSettings(optimizer, init=cfg.init, seed=cfg.seed),
            )
            totals = {int(h["step"]): h["total"] for h in result.history}
            at = [totals[s] for s in checkpoints if s in totals]
            step_rise = rise([h["total"] for h in result.history])
            worst = max(worst, rise(at))
            rows.append(
                [
                    photo.stem,
                    style_path.stem,
                    *(f"{v:.4g}" for v in at),
                    f"{100 * rise(at):.2f}%",
                    f"{100 * step_rise:.2f}%",
                    f"{result.evaluations / max(result.steps, 1):.2f}",
                    f"{result.elapsed / max(result.steps, 1):.3f}",
                    result.error or "",
                ]
            )
            print(" | ".join(str(c) for c in rows[-1]), flush=True)
    header = [
        "photo",
        "style",
        *(f"total @{s}" for s in checkpoints),
        "max rise between checkpoints",
        "max rise between steps",
        "evaluations/step",
        "s/step",
        "error",
    ]
    print()
    print(markdown_table(header, rows))
    print(f"\nlargest rise from one checkpoint to the next: {100 * worst:.2f}% (limit 2%)")
    return 0 if worst <= 0.02 else 1


if __name__ == "__main__":
    sys.exit(main())
