"""The Johnson et al. (2016) image transform network."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from fast_style.models.base import ResidualTransformNetwork
from fast_style.models.layers import ConvLayer, ResidualBlock, UpsampleConvLayer

__all__ = ["TransformerNet"]


class TransformerNet(ResidualTransformNetwork):
    """9x9 conv, two stride-2 convs, residual blocks, two upsample+conv, 9x9 conv.

    Takes and returns float images ``(B, 3, H, W)`` in [0, 1]. Any ``H x W`` works: the input is
    reflect-padded to a multiple of 4 and the output cropped back. ``skip``: see
    ``ResidualTransformNetwork``.
    """

    arch = "johnson"

    def __init__(
        self,
        channels: Sequence[int] = (32, 64, 128),
        num_residual: int = 5,
        skip: bool = False,
        num_styles: int = 1,
    ) -> None:
        super().__init__(
            channels,
            num_residual,
            first_kernel=9,
            last_kernel=9,
            residual_block=ResidualBlock,
            skip=skip,
            num_styles=num_styles,
        )
        c1, c2, c3 = self.channels
        last = ConvLayer(c1, 3, self.last_kernel, norm=False, relu=False)
        self.decoder = nn.Sequential(UpsampleConvLayer(c3, c2, 3), UpsampleConvLayer(c2, c1, 3), last)
        self._zero_last_conv(last.conv)
        self._condition_norms(num_styles)

    def forward_aligned(self, x: torch.Tensor) -> torch.Tensor:
        """Stylize ``(B, 3, H, W)`` in [0, 1] whose ``H`` and ``W`` are multiples of ``multiple``."""
        return self.to_image(x, self.decoder(self.residuals(self.encoder(x))))
