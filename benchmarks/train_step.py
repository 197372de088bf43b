"""Training throughput: images/s of optimizer steps, a plain PyTorch loop against fast_style's training.

    python -m benchmarks.train_step [--size 256] [--batches 4 16] [--steps 10] [--warmup 2] [--rounds 3]
        [--device auto] [--threads N] [--no-compile] [--network vgg16] [--weights none|PATH]

Cases, all in this one process and interleaved round-robin:
  reference   a plain fp32 loop written here in the pytorch-examples manner: the network of
              reference.py on 0-255 images, a VGG perceptual loss (content relu2_2, Gram style at
              relu1_2/2_2/3_3/4_3), Adam; the same frozen VGG weights as ours.
  ours        fast_style's StyleTransferModule fitted by a Lightning Trainer: with the settings that
              ``fast-style train`` picks by default for a long run on this device (on a CPU with native
              bfloat16: bf16 mixed precision and torch.compile), with plain fp32, and with single
              options on top of plain fp32 (bf16, channels-last, torch.compile, on CUDA fused Adam).
Every round of every case runs ``--warmup`` untimed steps, then ``--steps`` timed ones on the same
random batches, moved from host memory each step; the table gives medians over ``--rounds``.
The loss network has random weights unless ``--weights`` names a file: speed does not depend on them.
"""

from __future__ import annotations

import argparse
import copy
import logging
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import replace
from functools import partial

import pytorch_lightning as pl
import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.data import DataLoader

from benchmarks.common import Case, device_line, interleaved, markdown_table
from benchmarks.reference import ReferenceTransformerNet
from fast_style.auto_settings import SpeedSettings, resolve_speed_settings, training_device
from fast_style.losses import build_perceptual_loss, layer_index_map
from fast_style.losses.vgg import IMAGENET_MEAN, IMAGENET_STD
from fast_style.models import TransformerNet
from fast_style.training import StyleTransferModule

COCO_IMAGES = 82_783  # MS-COCO train2014
CONTENT_LAYER = "relu2_2"
STYLE_LAYERS = ("relu1_2", "relu2_2", "relu3_3", "relu4_3")
STYLE_WEIGHT = 1.0e5


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# -- the reference: a plain loop ------------------------------------------------------------------------
class ReferenceTraining:
    """pytorch-examples' training step in plain eager fp32: 0-255 images, VGG features, Gram matrices, Adam."""

    def __init__(
        self, features: nn.Sequential, network: str, style: torch.Tensor, device: torch.device
    ) -> None:
        self.device = device
        self.net = ReferenceTransformerNet().to(device)
        self.features = features.to(device).eval().requires_grad_(False)
        index = layer_index_map(network)
        self.style_indices = [index[name] for name in STYLE_LAYERS]
        self.last_index = max(self.style_indices)
        self.content_index = index[CONTENT_LAYER]
        self.mean = torch.tensor(IMAGENET_MEAN, device=device).view(1, 3, 1, 1)
        self.std = torch.tensor(IMAGENET_STD, device=device).view(1, 3, 1, 1)
        self.optimizer = torch.optim.Adam(self.net.parameters(), lr=1e-3)
        with torch.no_grad():
            feats = self.vgg(style.to(device) * 255)
            self.style_grams = [self.gram(feats[i]) for i in self.style_indices]

    def vgg(self, images_255: torch.Tensor) -> dict[int, torch.Tensor]:
        """Activations after every layer up to relu4_3, keyed by layer index."""
        x = (images_255 / 255 - self.mean) / self.std
        out = {}
        for i, layer in enumerate(self.features):
            x = layer(x)
            out[i] = x
            if i == self.last_index:
                break
        return out

    @staticmethod
    def gram(f: torch.Tensor) -> torch.Tensor:
        b, c, h, w = f.shape
        f = f.view(b, c, h * w)
        return f.bmm(f.transpose(1, 2)) / (c * h * w)

    def step(self, batch: torch.Tensor) -> None:
        x = batch.to(self.device) * 255
        y = self.net(x)
        feats_y = self.vgg(y)
        with torch.no_grad():
            feats_x = self.vgg(x)
        content = F.mse_loss(feats_y[self.content_index], feats_x[self.content_index])
        style = sum(
            F.mse_loss(self.gram(feats_y[i]), gram.expand(len(x), -1, -1))
            for i, gram in zip(self.style_indices, self.style_grams, strict=False)
        )
        loss = content + STYLE_WEIGHT * style
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()

    def run(self, batches: Sequence[torch.Tensor], warmup: int) -> float:
        """Seconds taken by the steps after the first ``warmup``."""
        torch.backends.cudnn.benchmark = False  # a plain loop; Lightning trainers set this globally
        start = 0.0
        for i, batch in enumerate(batches):
            if i == warmup:
                _sync(self.device)
                start = time.perf_counter()
            self.step(batch)
        _sync(self.device)
        return time.perf_counter() - start


# -- ours: the LightningModule under a Trainer ------------------------------------------------------------
def _no_bad_images(batch: torch.Tensor) -> tuple[torch.Tensor, list[int]]:
    return batch, []  # the (images, unreadable indices) pair that StyleDataModule's batches are


def fit_timed(
    module: StyleTransferModule,
    settings: SpeedSettings,
    batches: Sequence[torch.Tensor],
    warmup: int,
    device: torch.device,
) -> Callable[[], float]:
    """A case that fits ``module`` with a fresh Trainer over ``batches``; returns the seconds of the steps after ``warmup``."""

    class StepTimer(pl.Callback):
        def __init__(self) -> None:
            self.start = self.end = 0.0

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
            # Synchronise only where the clock is read, as the reference loop does.
            if batch_idx == warmup - 1:
                _sync(device)
                self.start = time.perf_counter()
            if batch_idx == len(batches) - 1:
                _sync(device)
                self.end = time.perf_counter()

    def run() -> float:
        timer = StepTimer()
        trainer = pl.Trainer(
            accelerator=device.type,
            devices=1,
            precision=settings.precision,
            benchmark=settings.benchmark,
            max_steps=len(batches),
            max_epochs=-1,
            logger=False,
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            num_sanity_val_steps=0,
            limit_val_batches=0,
            callbacks=[timer],
        )
        loader = DataLoader(
            batches, batch_size=None, collate_fn=_no_bad_images, pin_memory=settings.pin_memory
        )
        trainer.fit(module, train_dataloaders=loader)
        return timer.end - timer.start

    return run


def main(argv: Sequence[str] | None = None) -> None:
    """Parse arguments, run every case interleaved and print the table and the COCO projection."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--size", type=int, default=256, help="square crop side in pixels")
    parser.add_argument("--batches", type=int, nargs="+", default=[4, 16], help="batch sizes")
    parser.add_argument("--steps", type=int, default=10, help="timed optimizer steps per round")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps before them (at least 1)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    parser.add_argument("--no-compile", action="store_true", help="skip the torch.compile case")
    parser.add_argument("--compile-backend", default="inductor")
    parser.add_argument("--network", default="vgg16", help="vgg16, vgg16_bn or vgg19")
    parser.add_argument(
        "--weights", default="none", help="loss network weights: none (random), imagenet, a path"
    )
    args = parser.parse_args(argv)
    if args.warmup < 1:
        parser.error("--warmup must be at least 1: the first step of a fit allocates and compiles")

    warnings.simplefilter("ignore")
    for name in ("pytorch_lightning", "lightning_fabric", "lightning", "torch.utils.cpp_extension"):
        logging.getLogger(name).setLevel(logging.ERROR)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(training_device(args.device))
    torch.manual_seed(0)

    style = torch.rand(1, 3, args.size, args.size)
    base_loss = build_perceptual_loss(
        args.network, args.weights, [CONTENT_LAYER], list(STYLE_LAYERS), style_weight=STYLE_WEIGHT
    )
    base_loss.set_style_image(style)

    # What `fast-style train` picks for a long run on this device (compile is on for long CPU runs).
    auto = resolve_speed_settings(device.type, compile="auto", steps=-1)
    if args.no_compile:
        auto = replace(auto, compile=False)
    plain = SpeedSettings("32-true", False, False, False, False)
    options: list[tuple[str, SpeedSettings]] = [(f"ours, default ({_describe(auto)})", auto)]
    if auto != plain:
        options.append(("ours, plain fp32", plain))
    singles = {
        "bf16-mixed": replace(plain, precision="bf16-mixed"),
        "channels_last": replace(plain, channels_last=True),
    }
    if device.type == "cuda":
        singles["fused Adam"] = replace(plain, fused=True)
    if not args.no_compile:
        singles[f"torch.compile ({args.compile_backend})"] = replace(plain, compile=True)
    options += [(f"ours, plain fp32 + {name}", s) for name, s in singles.items() if s != auto]
    if not args.no_compile and not auto.compile:
        options.append(
            (f"ours, default + torch.compile ({args.compile_backend})", replace(auto, compile=True))
        )

    def make_module(settings: SpeedSettings) -> StyleTransferModule:
        return StyleTransferModule(
            net=TransformerNet(),
            loss=copy.deepcopy(base_loss),
            optimizer=partial(torch.optim.Adam, lr=1e-3, fused=True if settings.fused else None),
            log_images_every_n_steps=0,
            channels_last=settings.channels_last,
            compile_net=settings.compile,
            compile_loss=settings.compile,
            compile_backend=args.compile_backend,
        )

    print(device_line())
    print(
        f"{args.size}² random crops, {args.steps} timed steps after {args.warmup} warm-up steps per round, "
        f"median of {args.rounds} rounds; loss network {args.network}, weights {args.weights}\n"
    )
    header = ["batch", "case", "images/s", "vs reference", "ms/step", "peak RSS MiB"]
    if device.type == "cuda":
        header.append("peak CUDA MiB")
    rows, best = [], []
    for batch in args.batches:
        batches = [torch.rand(batch, 3, args.size, args.size) for _ in range(args.warmup + args.steps)]
        reference = ReferenceTraining(copy.deepcopy(base_loss.encoder.features), args.network, style, device)
        cases = [
            Case("reference: plain fp32 PyTorch loop", partial(reference.run, batches, args.warmup), warmup=0)
        ]
        for name, settings in options:
            run = fit_timed(make_module(settings), settings, batches, args.warmup, device)
            cases.append(Case(name, run, warmup=0))
        cuda_peaks = _track_cuda_peaks(cases, device)
        interleaved(cases, args.rounds)
        base = args.steps * batch / cases[0].median
        for case in cases:
            speed = args.steps * batch / case.median
            row = [
                batch,
                case.name,
                f"{speed:.2f}",
                f"{speed / base:.2f}×",
                f"{1000 * case.median / args.steps:.0f}",
            ]
            row.append(f"{case.peak_mib:.0f}")
            if device.type == "cuda":
                row.append(f"{cuda_peaks[case.name]:.0f}")
            rows.append(row)
        fastest = min(cases, key=lambda c: c.median)
        best.append((batch, fastest.name, args.steps * batch / fastest.median))
        del reference, cases

    print(markdown_table(header, rows))
    print()
    for batch, name, speed in best:
        seconds = 2 * COCO_IMAGES / speed
        print(
            f"2 COCO epochs (2 × {COCO_IMAGES:,} images) at batch {batch}, fastest case ({name}, "
            f"{speed:.2f} images/s): {seconds / 3600:.1f} h"
        )


def _describe(settings: SpeedSettings) -> str:
    """``bf16-mixed, channels_last, fused Adam, ...`` for a case name."""
    parts = [str(settings.precision)]
    parts += [
        label
        for label, on in (
            ("channels_last", settings.channels_last),
            ("fused Adam", settings.fused),
            ("cudnn.benchmark", settings.benchmark),
            ("pinned memory", settings.pin_memory),
            ("torch.compile", settings.compile),
        )
        if on
    ]
    return ", ".join(parts)


def _track_cuda_peaks(cases: Sequence[Case], device: torch.device) -> dict[str, float]:
    """Wrap each case so its CUDA allocator peak (MiB) is recorded; empty on other devices."""
    peaks: dict[str, float] = {}
    if device.type != "cuda":
        return peaks

    def tracked(case: Case, fn: Callable[[], object]) -> Callable[[], object]:
        def run() -> object:
            torch.cuda.reset_peak_memory_stats(device)
            result = fn()
            peaks[case.name] = max(peaks.get(case.name, 0.0), torch.cuda.max_memory_allocated(device) / 2**20)
            return result

        return run

    for case in cases:
        case.fn = tracked(case, case.fn)
    return peaks


if __name__ == "__main__":
    main()
