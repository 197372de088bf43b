"""Seconds per optimization step and peak memory at several image sizes, printed as a Markdown table.

    python -m benchmarks.optimize_step --content photo.jpg --style painting.jpg --sizes 256 512 \
        -- loss.network=vgg16_bn loss.weights=path/to/features.pt

Arguments after ``--`` are Hydra overrides of fast_style/configs/optimize.yaml (loss, pixel_optimizer,
preset), so the step measured is the one ``fast-style optimize`` takes. Each size runs ``--warmup`` untimed
steps, then ``--steps`` timed ones. Peak memory is measured over the timed steps; with L-BFGS the
curvature history grows for ``history_size`` steps, so the table also gives its full size, computed.
"""

from __future__ import annotations

import argparse
import warnings

import torch

from fast_style.compare import PeakMemory
from fast_style.devices import resolve_device
from fast_style.images import load_image_tensor
from fast_style.optimize import optimize_pixels


def main() -> None:
    """Parse arguments, run the measurements and print the table."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--content", required=True)
    parser.add_argument("--style", required=True)
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 512])
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (CPU)")
    parser.add_argument("overrides", nargs="*", help="Hydra overrides of fast_style/configs/optimize.yaml")
    args = parser.parse_args()

    from hydra.utils import instantiate

    from fast_style.auto_settings import resolve_auto_settings
    from fast_style.cli.hydra_app import compose_config

    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = compose_config("optimize", [f"device={args.device}", *args.overrides])
    resolve_auto_settings(cfg)
    device = resolve_device(cfg.device)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        loss = instantiate(cfg.loss).to(device)
    make_optimizer = instantiate(cfg.pixel_optimizer)
    history_size = (
        int(cfg.pixel_optimizer.get("history_size", 0)) if "LBFGS" in cfg.pixel_optimizer._target_ else 0
    )

    print(
        f"{cfg.pixel_optimizer._target_.rsplit('.', 1)[-1]} on {device} ({torch.get_num_threads()} threads), "
        f"loss {cfg.loss.network} {list(cfg.loss.content_layers)} / {list(cfg.loss.style_layers)}, "
        f"{args.steps} timed steps after {args.warmup} warm-up steps\n"
    )
    print("| long side | size | s/step | peak memory, timed steps (MiB) | full L-BFGS history (MiB) |")
    print("|---:|---:|---:|---:|---:|")
    for size in args.sizes:
        content = load_image_tensor(args.content, size).to(device)
        style = load_image_tensor(args.style, size).to(device)
        loss.set_style_image(style)
        loss.set_content_image(content)
        warm = optimize_pixels(loss, content, args.warmup, make_optimizer)
        with PeakMemory(device) as memory:
            run = optimize_pixels(loss, warm.image, args.steps, make_optimizer)
        if run.error:
            raise SystemExit(run.error)
        h, w = content.shape[-2:]
        # old_dirs + old_stps: two float32 vectors of 3*H*W values per stored pair
        history = f"{2 * history_size * 3 * h * w * 4 / 2**20:.0f}" if history_size else "–"
        print(f"| {size} | {w}x{h} | {run.elapsed / args.steps:.3f} | {memory.peak_mb:.0f} | {history} |")


if __name__ == "__main__":
    main()
