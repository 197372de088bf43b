"""A lighter transform network for CPU stylization of large photos."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from fast_style.models.base import ResidualTransformNetwork
from fast_style.models.layers import BandedConv2d, ConvLayer, upsample2x_conv3x3
from fast_style.models.norm import InstanceNorm

__all__ = ["FastTransformerNet", "SeparableConv", "SeparableUpsample"]


class SeparableConv(nn.Sequential):
    """Depthwise 3x3 + pointwise 1x1 convolution, instance norm, optional ReLU.

    About ``9 / out_channels + 1 / 9`` of the multiply-adds of a full 3x3 convolution.
    """

    def __init__(self, in_channels: int, out_channels: int, relu: bool = True) -> None:
        layers: list[nn.Module] = [
            nn.ReflectionPad2d(1),
            BandedConv2d(in_channels, in_channels, 3, groups=in_channels, bias=False),
            BandedConv2d(in_channels, out_channels, 1),
            InstanceNorm(out_channels),
        ]
        if relu:
            layers.append(nn.ReLU(inplace=True))
        super().__init__(*layers)


class SeparableUpsample(nn.Module):
    """2x upsampling for the decoder: pointwise 1x1, nearest 2x, depthwise 3x3, instance norm, ReLU.

    The pointwise convolution mixes channels before upsampling, at a quarter of the pixels, so the
    full-resolution work (padding, depthwise convolution, norm) runs on the narrower output width.
    """

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.pointwise = BandedConv2d(in_channels, out_channels, 1)
        self.depthwise = nn.Conv2d(out_channels, out_channels, 3, groups=out_channels, bias=False)
        self.norm = InstanceNorm(out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dw = self.depthwise
        y = upsample2x_conv3x3(self.pointwise(x), dw.weight, dw.bias, groups=dw.groups)
        return torch.relu(self.norm(y))


class _SeparableResidual(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            SeparableConv(channels, channels), SeparableConv(channels, channels, relu=False)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class FastTransformerNet(ResidualTransformNetwork):
    """Johnson's layout, slimmed: narrower widths, a 5x5 first and 3x3 last conv, separable residual
    and decoder convs.

    Same contract as ``TransformerNet``: ``(B, 3, H, W)`` in [0, 1] to the same shape in [0, 1], any size.
    """

    arch = "fast"

    def __init__(
        self,
        channels: Sequence[int] = (16, 32, 64),
        num_residual: int = 4,
        skip: bool = False,
        num_styles: int = 1,
    ) -> None:
        super().__init__(
            channels,
            num_residual,
            first_kernel=5,
            last_kernel=3,
            residual_block=_SeparableResidual,
            skip=skip,
            num_styles=num_styles,
        )
        c1, c2, c3 = self.channels
        self.up1 = SeparableUpsample(c3, c2)
        self.up2 = SeparableUpsample(c2, c1)
        self.head = ConvLayer(c1, 3, self.last_kernel, norm=False, relu=False)
        self._zero_last_conv(self.head.conv)
        self._condition_norms(num_styles)

    def forward_aligned(self, x: torch.Tensor) -> torch.Tensor:
        """Stylize ``(B, 3, H, W)`` in [0, 1] whose ``H`` and ``W`` are multiples of ``multiple``."""
        y = self.residuals(self.encoder(x))
        return self.to_image(x, self.head(self.up2(self.up1(y))))
