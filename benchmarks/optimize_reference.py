"""Seconds per L-BFGS step: fast_style's optimization vs a reference in the PyTorch tutorial's structure.

    python -m benchmarks.optimize_reference --content photo.jpg --style painting.jpg --sizes 256 512 \
        --steps 5 --threads 1 -- loss.network=vgg16_bn loss.weights=path/to/features.pt

fast_style's side is the code ``fast-style optimize`` runs: the loss and the optimizer built from
fast_style/configs/optimize.yaml (Hydra overrides after ``--``; without ``loss.weights=...`` the VGG is
random), targets set once by ``set_style_image`` / ``set_content_image``, then ``optimize_pixels``. The
reference (``ReferenceOptimizer`` in ``benchmarks/reference.py``) runs the whole VGG feature stack
with loss modules inserted and recomputes the style Gram matrices at every evaluation. Both use the
same weights for every layer the loss reads, the same layers, term weights and Gram normalisation,
and the same optimizer settings; the script checks that both give one image the same loss.
``--trimmed`` adds a third case: the tutorial's published code, which cuts the model after the last
loss module and takes the style targets once.

Each case runs blocks of ``--steps`` steps from the content image with a fresh optimizer:
``--warmup`` untimed blocks, then ``--repeats`` timed blocks, the cases round-robin. A step is
one ``optimizer.step(closure)``; the closure evaluations per step are counted. Peak RSS is that of
the whole process during a case's blocks (both networks stay loaded).
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings
from collections.abc import Callable
from functools import partial
from pathlib import Path

import torch
from torch import nn
from torchvision.models.vgg import cfgs, make_layers

from benchmarks.common import Case, device_line, interleaved, markdown_table
from benchmarks.reference import ReferenceOptimizer
from fast_style.cli.optimize import pixel_optimizer_settings
from fast_style.devices import resolve_device
from fast_style.images import load_image_tensor
from fast_style.losses import NETWORKS, PerceptualLoss, layer_index_map, load_vgg_features
from fast_style.losses.perceptual import energy
from fast_style.optimize import optimize_pixels

OptimizerFactory = Callable[[list[torch.Tensor]], torch.optim.Optimizer]


class CountingOptimizer:
    """Wraps an optimizer factory so that every closure evaluation of its optimizers is counted."""

    def __init__(self, make: OptimizerFactory) -> None:
        self.make, self.evaluations = make, 0

    def __call__(self, params: list[torch.Tensor]) -> torch.optim.Optimizer:
        optimizer = self.make(params)
        step = optimizer.step

        def counted_step(closure: Callable[[], torch.Tensor]) -> torch.Tensor:
            def counted() -> torch.Tensor:
                self.evaluations += 1
                return closure()

            return step(counted)

        optimizer.step = counted_step  # type: ignore[method-assign]
        return optimizer


def full_features(network: str, weights: str, depth: int) -> nn.Sequential:
    """The whole VGG ``features`` stack of ``network``, for the reference.

    Its first ``depth`` layers (those fast_style's loss runs) get their weights from fast_style's
    loader, as they are in the file, batch norms unfolded; deeper layers, which no loss term reads,
    keep torchvision's random initialisation (their cost does not depend on their values). Seeded
    like the loss is built, so that ``weights=none`` gives both the same random network.
    """
    cfg, batch_norm, _ = NETWORKS[network]
    features = make_layers(cfgs[cfg], batch_norm=batch_norm)
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        features[:depth].load_state_dict(load_vgg_features(network, weights, depth - 1).state_dict())
    return features


def reference_for(
    loss: PerceptualLoss,
    weights: str,
    content: torch.Tensor,
    style: torch.Tensor,
    make_optimizer: OptimizerFactory,
    trim: bool = False,
) -> ReferenceOptimizer:
    """A ``ReferenceOptimizer`` with ``loss``'s network, weights, layers and term weights.

    ``loss`` holds its targets already: balanced (``auto``) layer weights are resolved from them.
    """
    encoder = loss.encoder
    with torch.no_grad():
        targets = encoder(content, loss.content_layers)
    content_layer_weights = [
        1.0 / (len(loss.content_layers) * energy(targets[name]).item())
        if loss.content_auto
        else float(loss.content_layer_weights[name])
        for name in loss.content_layers
    ]
    return ReferenceOptimizer(
        full_features(encoder.network, weights, len(encoder.features)),
        layer_index_map(encoder.network),
        content,
        style,
        content_layers=loss.content_layers,
        style_layers=loss.style_layers,
        style_layer_weights=[loss.style_layer_weights[name] for name in loss.style_layers],
        content_weight=loss.content_weight,
        content_layer_weights=content_layer_weights,
        style_weight=loss.style_weight,
        tv_weight=loss.tv_weight,
        make_optimizer=make_optimizer,
        trim=trim,
    )


def check_same_loss(loss: PerceptualLoss, reference: ReferenceOptimizer, content: torch.Tensor) -> None:
    """Print both losses of one image (half content, half noise); warn if a term differs by > 1e-3."""
    noise = torch.rand(content.shape, generator=torch.Generator().manual_seed(0)).to(content.device)
    probe = torch.lerp(content, noise, 0.5)
    with torch.no_grad():
        ours = {k: v.item() for k, v in loss(probe).items()}
        theirs = {k: v.item() for k, v in reference.terms(probe).items()}
    rel = max(abs(ours[k] - theirs[k]) / max(abs(theirs[k]), 1e-12) for k in ("content", "style", "total"))
    print(
        f"  loss of a probe image: reference {theirs['total']:.6g}, fast_style {ours['total']:.6g} "
        f"(largest relative difference of the content, style and total terms {rel:.1e})"
    )
    if rel > 1e-3:
        print("  WARNING: the two losses differ by more than 1e-3: the comparison is not like for like")


def time_size(
    size: int,
    args: argparse.Namespace,
    loss: PerceptualLoss,
    weights: str,
    ours_optimizer: CountingOptimizer,
    reference_optimizer: CountingOptimizer,
) -> list[list[str]]:
    """Time every case at one size (long side); the table's rows. The references die on return."""
    device = loss.encoder.mean.device
    content = load_image_tensor(args.content, size).to(device)
    style = load_image_tensor(args.style, size).to(device)
    if min(*content.shape[-2:], *style.shape[-2:]) < 32:
        raise SystemExit(f"--sizes {size}: the reference runs all five VGG blocks; each side needs 32 px")
    loss.set_style_image(style)
    loss.set_content_image(content)
    reference = reference_for(loss, weights, content, style, reference_optimizer)
    print(f"{content.shape[-1]}x{content.shape[-2]}:")
    check_same_loss(loss, reference, content)

    def ours() -> float:
        run = optimize_pixels(loss, content, args.steps, ours_optimizer)
        if run.error:
            raise SystemExit(run.error)
        return run.elapsed

    def theirs(reference: ReferenceOptimizer) -> float:
        start = time.perf_counter()
        reference.run(content, args.steps)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return time.perf_counter() - start

    blocks: dict[str, list[tuple[float, int]]] = {}

    def timed(name: str, body: Callable[[], float], counter: CountingOptimizer) -> Case:
        def block() -> None:
            before = counter.evaluations
            seconds = body()
            blocks.setdefault(name, []).append((seconds, counter.evaluations - before))

        return Case(name, block, warmup=args.warmup)

    cases = [
        timed("reference (tutorial structure)", partial(theirs, reference), reference_optimizer),
        timed("fast_style (optimize_pixels)", ours, ours_optimizer),
    ]
    if args.trimmed:
        trimmed = reference_for(loss, weights, content, style, reference_optimizer, trim=True)
        name = "tutorial as published (trimmed, style targets once)"
        cases.append(timed(name, partial(theirs, trimmed), reference_optimizer))
    interleaved(cases, args.repeats)

    rows = []
    base = None
    for case in cases:
        kept = blocks[case.name][case.warmup :]
        per_step = statistics.median(seconds / args.steps for seconds, _ in kept)
        evaluations = sum(count for _, count in kept) / (len(kept) * args.steps)
        base = base or per_step  # the first case is the reference
        rows.append(
            [
                f"{content.shape[-1]}x{content.shape[-2]}",
                case.name,
                f"{per_step:.3f}",
                f"{evaluations:g}",
                f"{per_step / evaluations:.3f}",
                f"{base / per_step:.2f}×",
                f"{case.peak_mib:.0f}",
            ]
        )
    return rows


def main() -> None:
    """Parse arguments, time both cases at every size and print the table."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--content", required=True)
    parser.add_argument("--style", required=True)
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 512], help="long side in pixels")
    parser.add_argument("--steps", type=int, default=5, help="steps per timed block")
    parser.add_argument("--warmup", type=int, default=1, help="untimed blocks per case and size")
    parser.add_argument("--repeats", type=int, default=3, help="timed blocks per case and size")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (CPU)")
    parser.add_argument("--device", default="auto")
    parser.add_argument(
        "--trimmed",
        action="store_true",
        help="also time the tutorial's published code (model cut after the last loss, style targets once)",
    )
    parser.add_argument("overrides", nargs="*", help="Hydra overrides of fast_style/configs/optimize.yaml")
    args = parser.parse_args()

    from hydra.utils import instantiate

    from fast_style.auto_settings import resolve_auto_settings
    from fast_style.cli.hydra_app import compose_config

    if args.threads:
        torch.set_num_threads(args.threads)
    overrides = list(args.overrides)
    if not any(o.startswith("loss.weights=") for o in overrides):
        overrides.append("loss.weights=none")
    if not any(o.startswith("pixel_optimizer.line_search_fn=") for o in overrides):
        # The tutorial's L-BFGS takes every step blindly: one evaluation a step on both sides, so the
        # table compares the cost of an evaluation. The default line search costs 1.00 evaluations
        # a step as well (benchmarks/README.md, "Optimization stability").
        overrides.append("pixel_optimizer.line_search_fn=null")
    cfg = compose_config("optimize", [f"device={args.device}", *overrides])
    resolve_auto_settings(cfg)
    device = resolve_device(cfg.device)
    torch.manual_seed(0)  # as full_features does: with loss.weights=none both get one random network
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        loss = instantiate(cfg.loss).to(device)
    ours_optimizer = CountingOptimizer(pixel_optimizer_settings(cfg).optimizer)
    reference_optimizer = CountingOptimizer(instantiate(cfg.pixel_optimizer))

    weights = str(cfg.loss.weights)
    if weights.lower() == "none":
        weights_note = "random (loss.weights=none: timings only, the images mean nothing)"
    else:
        weights_note = Path(weights).name
    print(device_line())
    print(
        f"{cfg.pixel_optimizer._target_.rsplit('.', 1)[-1]} on {device}, loss {cfg.loss.network} "
        f"content {list(cfg.loss.content_layers)} style {list(cfg.loss.style_layers)}, VGG weights {weights_note}; "
        f"blocks of {args.steps} steps: {args.warmup} warm-up + {args.repeats} timed per case\n"
    )

    rows = []
    for size in args.sizes:
        rows += time_size(size, args, loss, weights, ours_optimizer, reference_optimizer)

    print()
    print(f"threads: {torch.get_num_threads()}")
    print(
        markdown_table(
            [
                "size",
                "case",
                "median s/step",
                "evaluations/step",
                "s/evaluation",
                "vs reference",
                "peak RSS MiB",
            ],
            rows,
        )
    )


if __name__ == "__main__":
    main()
