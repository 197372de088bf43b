"""A tiny stand-in for the VGG loss network, and small generated images, shared by the tests."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from fast_style.images import image_to_tensor
from fast_style.losses import PerceptualLoss
from tests.conftest import random_image

__all__ = ["TinyEncoder", "image", "tiny_loss"]


class TinyEncoder(nn.Module):
    """Two frozen random conv layers with VGGFeatures' interface: milliseconds per step."""

    def __init__(self) -> None:
        super().__init__()
        gen = torch.Generator().manual_seed(0)
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.conv2 = nn.Conv2d(8, 16, 3, stride=2, padding=1)
        for conv in (self.conv1, self.conv2):
            conv.weight.data = torch.randn(conv.weight.shape, generator=gen) * 0.3
            conv.bias.data.zero_()
        self.requires_grad_(False)

    def forward(self, images: torch.Tensor, layers=None) -> dict[str, torch.Tensor]:
        a = F.relu(self.conv1(images))
        b = F.relu(self.conv2(a))
        out = {"a": a, "b": b}
        return {k: out[k] for k in (layers or out)}


def tiny_loss(**weights: float) -> PerceptualLoss:
    """A PerceptualLoss over ``TinyEncoder``: content at ``b``, style at ``a`` and ``b``."""
    settings = {"content_weight": 1.0, "style_weight": 100.0, "tv_weight": 0.0, **weights}
    return PerceptualLoss(TinyEncoder(), content_layers=["b"], style_layers=["a", "b"], **settings)


def image(size: tuple[int, int], seed: int) -> torch.Tensor:
    """A generated ``(1, 3, H, W)`` image for ``size = (W, H)``."""
    return image_to_tensor(random_image(size, seed))
