"""The references the benchmarks compare against, written here from the papers' descriptions.

``ReferenceTransformerNet`` is the architecture of Johnson et al. (2016) as popularised by
pytorch/examples' fast_neural_style: 0-255 images in and out, reflection padding, affine instance
norm, five residual blocks, nearest upsampling followed by convolution, run in plain eager PyTorch.

``ReferenceOptimizer`` is per-image optimization (Gatys et al. 2016) in the structure of the classic
PyTorch neural-style tutorial: the VGG feature stack copied into one ``nn.Sequential`` with
content- and style-loss modules inserted after the chosen layers, the whole stack run on every
evaluation, the style image's Gram matrices recomputed on every evaluation, the image clamped at
the start of the closure, and L-BFGS over the image's pixels. (The tutorial's published code cuts
the model after the last loss module and takes the style targets once; ``trim=True`` does that.)
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from functools import partial

import torch
from torch import nn
from torch.nn import functional as F

__all__ = ["ReferenceOptimizer", "ReferenceTransformerNet"]


class _Conv(nn.Module):
    def __init__(self, cin: int, cout: int, k: int, stride: int = 1, upsample: bool = False) -> None:
        super().__init__()
        self.upsample = upsample
        self.pad = nn.ReflectionPad2d(k // 2)
        self.conv = nn.Conv2d(cin, cout, k, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.upsample:
            x = F.interpolate(x, scale_factor=2, mode="nearest")
        return self.conv(self.pad(x))


class _Residual(nn.Module):
    def __init__(self, c: int) -> None:
        super().__init__()
        self.conv1, self.in1 = _Conv(c, c, 3), nn.InstanceNorm2d(c, affine=True)
        self.conv2, self.in2 = _Conv(c, c, 3), nn.InstanceNorm2d(c, affine=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.in1(self.conv1(x)))
        return x + self.in2(self.conv2(y))


class ReferenceTransformerNet(nn.Module):
    """The reference transform network: 0-255 float images in, 0-255 out (unclamped)."""

    def __init__(self) -> None:
        super().__init__()
        self.c1, self.n1 = _Conv(3, 32, 9), nn.InstanceNorm2d(32, affine=True)
        self.c2, self.n2 = _Conv(32, 64, 3, 2), nn.InstanceNorm2d(64, affine=True)
        self.c3, self.n3 = _Conv(64, 128, 3, 2), nn.InstanceNorm2d(128, affine=True)
        self.res = nn.Sequential(*(_Residual(128) for _ in range(5)))
        self.u1, self.n4 = _Conv(128, 64, 3, upsample=True), nn.InstanceNorm2d(64, affine=True)
        self.u2, self.n5 = _Conv(64, 32, 3, upsample=True), nn.InstanceNorm2d(32, affine=True)
        self.out = _Conv(32, 3, 9)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.n1(self.c1(x)))
        y = torch.relu(self.n2(self.c2(y)))
        y = torch.relu(self.n3(self.c3(y)))
        y = self.res(y)
        y = torch.relu(self.n4(self.u1(y)))
        y = torch.relu(self.n5(self.u2(y)))
        return self.out(y)


# -- per-image optimization in the tutorial's structure ---------------------------------------------
def _gram(x: torch.Tensor) -> torch.Tensor:
    """Tutorial-style Gram matrix of a batch-1 activation, divided by the number of its elements."""
    b, c, h, w = x.size()
    flat = x.view(b * c, h * w)
    return torch.mm(flat, flat.t()).div(b * c * h * w)


class _Normalization(nn.Module):
    def __init__(self, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean).view(-1, 1, 1))
        self.register_buffer("std", torch.tensor(std).view(-1, 1, 1))

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        return (img - self.mean) / self.std


class _ContentLoss(nn.Module):
    """Passes its input through; by ``mode``: its MSE to the target, takes the target, or nothing."""

    def __init__(self, weight: float = 1.0) -> None:
        super().__init__()
        self.weight = weight
        self.mode = "loss"  # "loss" | "capture" | "idle"
        self.target: torch.Tensor | None = None
        self.loss = torch.zeros(())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.mode == "capture":
            self.target = x.detach()
        elif self.mode == "loss":
            self.loss = self.weight * F.mse_loss(x, self.target)
        return x


class _StyleLoss(nn.Module):
    """Like ``_ContentLoss`` on the Gram matrix of its input, times a per-layer weight."""

    def __init__(self, weight: float) -> None:
        super().__init__()
        self.weight = weight
        self.mode = "loss"
        self.target: torch.Tensor | None = None
        self.loss = torch.zeros(())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.mode == "capture":
            self.target = _gram(x).detach()
        elif self.mode == "loss":
            self.loss = self.weight * F.mse_loss(_gram(x), self.target)
        return x


def _tv(img: torch.Tensor) -> torch.Tensor:
    return (img[..., 1:, :] - img[..., :-1, :]).pow(2).mean() + (img[..., 1:] - img[..., :-1]).pow(2).mean()


class ReferenceOptimizer:
    """Tutorial-structured style transfer by L-BFGS on the pixels, with fast_style's loss definitions.

    ``features`` is a whole VGG ``features`` stack (every layer is run unless ``trim``);
    ``layer_indices`` maps layer names such as ``relu2_2`` to positions in it. Content and style
    terms are mean squared errors of activations and of Gram matrices divided by C*H*W, weighted as
    in ``fast_style.losses.PerceptualLoss``. The content targets are taken once; the style image
    goes through the network again before every evaluation to give its Gram matrices.

    ``trim=True`` does what the tutorial's published code does instead: it cuts the model after the
    last loss module and takes the style targets once.
    """

    def __init__(
        self,
        features: nn.Sequential,
        layer_indices: Mapping[str, int],
        content: torch.Tensor,
        style: torch.Tensor,
        content_layers: Sequence[str],
        style_layers: Sequence[str],
        style_layer_weights: Sequence[float] | None = None,
        content_weight: float = 1.0,
        content_layer_weights: Sequence[float] | None = None,
        style_weight: float = 1.0,
        tv_weight: float = 0.0,
        make_optimizer: Callable[[list[torch.Tensor]], torch.optim.Optimizer] | None = None,
        mean: Sequence[float] = (0.485, 0.456, 0.406),
        std: Sequence[float] = (0.229, 0.224, 0.225),
        trim: bool = False,
    ) -> None:
        device = content.device
        layer_weights = list(style_layer_weights or [1.0] * len(style_layers))
        content_layer_weight = dict(
            zip(content_layers, content_layer_weights or [1.0] * len(content_layers), strict=True)
        )
        self.content_losses: list[_ContentLoss] = []
        self.style_losses: list[_StyleLoss] = []
        self.model = nn.Sequential(_Normalization(mean, std))
        for index, layer in enumerate(features):
            if isinstance(layer, nn.ReLU):
                layer = nn.ReLU(inplace=False)  # the loss modules keep references to activations
            self.model.add_module(f"layer_{index}", layer)
            for name in content_layers:
                if layer_indices[name] == index:
                    self.content_losses.append(_ContentLoss(content_layer_weight[name]))
                    self.model.add_module(f"content_loss_{name}", self.content_losses[-1])
            for name, weight in zip(style_layers, layer_weights, strict=False):
                if layer_indices[name] == index:
                    self.style_losses.append(_StyleLoss(weight))
                    self.model.add_module(f"style_loss_{name}", self.style_losses[-1])
        self.model.to(device).eval().requires_grad_(False)
        self.style = style.to(device)
        self.content_weight, self.style_weight, self.tv_weight = content_weight, style_weight, tv_weight
        self.make_optimizer = make_optimizer or partial(
            torch.optim.LBFGS, lr=1.0, max_iter=1, tolerance_grad=0.0, tolerance_change=0.0
        )
        self.trim = trim
        if trim:
            last = max(i for i, m in enumerate(self.model) if isinstance(m, (_ContentLoss, _StyleLoss)))
            self.model = self.model[: last + 1]
            self._capture(self.style, self.style_losses)
        self._capture(content.to(device), self.content_losses)

    @torch.no_grad()
    def _capture(self, image: torch.Tensor, modules: Sequence[_ContentLoss | _StyleLoss]) -> None:
        """Run ``image`` through the model so that ``modules`` take their targets from it."""
        everything = [*self.content_losses, *self.style_losses]
        for module in everything:
            module.mode = "capture" if module in modules else "idle"
        try:
            self.model(image)
        finally:
            for module in everything:
                module.mode = "loss"

    def terms(self, image: torch.Tensor) -> dict[str, torch.Tensor]:
        """Weighted ``content``, ``style``, ``tv`` and ``total`` loss of ``image`` (1, 3, H, W) in [0, 1]."""
        if not self.trim:
            self._capture(self.style, self.style_losses)
        self.model(image)
        zero = image.new_zeros(())
        content = self.content_weight * sum((m.loss for m in self.content_losses), zero)
        style = self.style_weight * sum((m.loss for m in self.style_losses), zero)
        tv = self.tv_weight * _tv(image) if self.tv_weight else zero
        return {"content": content, "style": style, "tv": tv, "total": content + style + tv}

    def run(self, image: torch.Tensor, steps: int) -> torch.Tensor:
        """``steps`` optimizer steps from ``image``; returns the result, clamped to [0, 1]."""
        img = image.detach().clone(memory_format=torch.contiguous_format).requires_grad_(True)
        optimizer = self.make_optimizer([img])

        def closure() -> torch.Tensor:
            with torch.no_grad():
                img.clamp_(0, 1)
            optimizer.zero_grad()
            loss = self.terms(img)["total"]
            loss.backward()
            return loss

        for _ in range(steps):
            optimizer.step(closure)
        with torch.no_grad():
            img.clamp_(0, 1)
        return img.detach()
