"""The Johnson et al. (2016) image transform network."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from fast_style.models.base import TransformNetwork
from fast_style.models.layers import ConvLayer, ResidualBlock, UpsampleConvLayer

__all__ = ["TransformerNet"]


class TransformerNet(TransformNetwork):
    """9x9 conv, two stride-2 convs, residual blocks, two upsample+conv, 9x9 conv.

    Takes and returns float images ``(B, 3, H, W)`` in [0, 1]. Any ``H x W`` works: the input is
    reflect-padded to a multiple of 4 and the output cropped back.
    """

    arch = "johnson"

    def __init__(self, channels: Sequence[int] = (32, 64, 128), num_residual: int = 5) -> None:
        super().__init__()
        if len(channels) != 3 or any(int(c) <= 0 for c in channels):
            raise ValueError(f"channels must be three positive widths, got {list(channels)}")
        if num_residual < 0:
            raise ValueError(f"num_residual must be >= 0, got {num_residual}")
        c1, c2, c3 = (int(c) for c in channels)
        self.channels = (c1, c2, c3)
        self.num_residual = int(num_residual)
        self.encoder = nn.Sequential(
            ConvLayer(3, c1, 9),
            ConvLayer(c1, c2, 3, stride=2),
            ConvLayer(c2, c3, 3, stride=2),
        )
        self.residuals = nn.Sequential(*(ResidualBlock(c3) for _ in range(self.num_residual)))
        self.decoder = nn.Sequential(
            UpsampleConvLayer(c3, c2, 3),
            UpsampleConvLayer(c2, c1, 3),
            ConvLayer(c1, 3, 9, norm=False, relu=False),
        )

    def config(self) -> dict[str, Any]:
        """Constructor arguments that rebuild this network (stored in checkpoints and exports)."""
        return {"channels": list(self.channels), "num_residual": self.num_residual}

    def receptive_radius(self) -> int:
        """Pixels of context on each side that one output pixel depends on (tiling margin)."""
        # 9x9 conv (4), stride-2 3x3 at 1x (1) and 2x (2), residual 3x3s at 4x (4 each),
        # upsample 3x3s at 2x (2) and 1x (1), final 9x9 (4).
        return 4 + 1 + 2 + 8 * self.num_residual + 2 + 1 + 4

    def forward_aligned(self, x: torch.Tensor) -> torch.Tensor:
        """Stylize ``(B, 3, H, W)`` in [0, 1] whose ``H`` and ``W`` are multiples of ``multiple``."""
        y = self.decoder(self.residuals(self.encoder(x)))
        # A bounded output keeps the perceptual loss in the range VGG was trained on.
        return torch.sigmoid(y)
