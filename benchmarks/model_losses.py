"""Style and content losses of exported models on a folder of photos, to compare architectures.

    python -m benchmarks.model_losses checkpoints/starry_night.safetensors \\
        checkpoints/starry_night_fast.safetensors --content ../shared/data/content \\
        --style ../shared/data/styles/starry_night.jpg --style-size 256 --style-weight 1.5e6 \\
        --network vgg16_bn --weights ../shared/weights/vgg16_bn_features_offline.pt

Every photo (scaled to ``--size`` on its long side) is stylized by each model, then scored by one
``PerceptualLoss`` with the training recipe's layers and weights: the weighted content term
against the photo, and the weighted Gram style term against the style image. The table gives the
per-photo values, their means, and each model's means relative to the first model's.
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

import torch

from benchmarks.common import markdown_table
from fast_style.compare import evaluate_image
from fast_style.images import IMAGE_EXTENSIONS, load_image_tensor
from fast_style.inference import Stylizer
from fast_style.losses import build_perceptual_loss


def main() -> None:
    """Parse arguments, score every model on every photo and print the table."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "models", nargs="+", type=Path, help="exported .safetensors models; the first is the baseline"
    )
    parser.add_argument("--content", type=Path, required=True, help="folder of photos")
    parser.add_argument("--style", type=Path, required=True)
    parser.add_argument("--size", type=int, default=512, help="long side of the photos in pixels")
    parser.add_argument(
        "--style-size", type=int, default=256, help="long side of the style image (as in training)"
    )
    parser.add_argument("--style-weight", type=float, default=1.5e6)
    parser.add_argument("--content-weight", type=float, default=1.0)
    parser.add_argument("--network", default="vgg16")
    parser.add_argument("--weights", default="imagenet")
    args = parser.parse_args()

    photos = sorted(p for p in args.content.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS)
    if not photos:
        raise SystemExit(f"no images in {args.content}")
    loss = build_perceptual_loss(
        args.network, args.weights, content_weight=args.content_weight, style_weight=args.style_weight
    )
    loss.set_style_image(load_image_tensor(args.style, args.style_size))
    stylizers = [Stylizer.from_file(m, backend="torch") for m in args.models]

    scores: dict[Path, list[dict[str, float]]] = {m: [] for m in args.models}
    rows = []
    for photo in photos:
        content = load_image_tensor(photo, args.size)
        loss.set_content_image(content)
        row: list[object] = [photo.name]
        for model, stylizer in zip(args.models, stylizers, strict=False):
            terms = evaluate_image(loss, stylizer.stylize_tensor(content))
            scores[model].append(terms)
            row += [f"{terms['content']:.4f}", f"{terms['style']:.4f}"]
        rows.append(row)

    means = {
        m: {k: statistics.mean(t[k] for t in s) for k in ("content", "style")} for m, s in scores.items()
    }
    rows.append(["**mean**"] + [f"**{means[m][k]:.4f}**" for m in args.models for k in ("content", "style")])
    base = means[args.models[0]]
    rows.append(
        ["relative to first"]
        + [f"{means[m][k] / base[k]:.3f}" for m in args.models for k in ("content", "style")]
    )
    header = ["photo"] + [f"{m.stem} {k}" for m in args.models for k in ("content", "style")]
    print(
        f"loss network: {args.network} ({args.weights}); photos at {args.size} px, style at {args.style_size} px"
    )
    print(markdown_table(header, rows))


if __name__ == "__main__":
    torch.set_grad_enabled(False)
    main()
