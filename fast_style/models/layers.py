"""Building blocks of the transform networks."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

__all__ = ["ConvLayer", "ResidualBlock", "UpsampleConvLayer", "pad_to_multiple"]


class ConvLayer(nn.Sequential):
    """Reflection padding, convolution, then optional affine instance norm and ReLU."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int = 1,
        norm: bool = True,
        relu: bool = True,
    ) -> None:
        layers: list[nn.Module] = [
            nn.ReflectionPad2d(kernel_size // 2),
            nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride),
        ]
        if norm:
            layers.append(nn.InstanceNorm2d(out_channels, affine=True))
        if relu:
            layers.append(nn.ReLU(inplace=True))
        super().__init__(*layers)


class UpsampleConvLayer(nn.Module):
    """Nearest-neighbour upsampling followed by a convolution (no checkerboard artefacts)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, scale: int = 2) -> None:
        super().__init__()
        self.scale = scale
        self.conv = ConvLayer(in_channels, out_channels, kernel_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=self.scale, mode="nearest"))


class ResidualBlock(nn.Module):
    """Two 3x3 conv + instance-norm layers with an identity shortcut (Johnson et al. 2016)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            ConvLayer(channels, channels, 3),
            ConvLayer(channels, channels, 3, relu=False),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


def pad_to_multiple(x: torch.Tensor, multiple: int) -> torch.Tensor:
    """Pad the bottom and right of ``x`` so both sides are multiples of ``multiple``."""
    h, w = x.shape[-2:]
    pad_h, pad_w = (-h) % multiple, (-w) % multiple
    if not (pad_h or pad_w):
        return x
    # Reflection needs pad < size; replicate covers tiny inputs.
    mode = "reflect" if pad_h < h and pad_w < w else "replicate"
    return F.pad(x, (0, pad_w, 0, pad_h), mode=mode)
