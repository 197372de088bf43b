"""Building blocks of the transform networks."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from fast_style.models.norm import InstanceNorm

__all__ = [
    "BandedConv2d",
    "ConvLayer",
    "ResidualBlock",
    "UpsampleConvLayer",
    "pad_to_multiple",
    "padded_side",
    "upsample2x_conv3x3",
]


_BAND_ELEMENTS = 1 << 25


class BandedConv2d(nn.Conv2d):
    """An unpadded ``nn.Conv2d`` that, when ``band_elements`` is set, runs a band of rows at a time.

    The result is the same; the convolution library's scratch copies of input and output then stay
    the size of one band instead of the whole image. Off (``None``) by default.
    """

    band_elements: int | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.band_elements is None or self.padding != (0, 0):
            return super().forward(x)
        b, c, h, w = x.shape
        (kh, kw), (sh, sw), (dh, dw) = self.kernel_size, self.stride, self.dilation
        out_h, out_w = (h - dh * (kh - 1) - 1) // sh + 1, (w - dw * (kw - 1) - 1) // sw + 1
        band = max(1, self.band_elements // max(1, b * c * w * sh))
        if band >= out_h:
            return super().forward(x)
        out = x.new_empty(b, self.out_channels, out_h, out_w)
        for top in range(0, out_h, band):
            bottom = min(out_h, top + band)
            rows = x[:, :, top * sh : (bottom - 1) * sh + dh * (kh - 1) + 1]
            out[:, :, top:bottom] = super().forward(rows)
        return out


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
            BandedConv2d(in_channels, out_channels, kernel_size, stride=stride),
        ]
        if norm:
            layers.append(InstanceNorm(out_channels))
        if relu:
            layers.append(nn.ReLU(inplace=True))
        super().__init__(*layers)

    @property
    def conv(self) -> nn.Conv2d:
        """The convolution, between the padding and the optional norm and ReLU."""
        conv = self[1]
        assert isinstance(conv, nn.Conv2d)
        return conv


class UpsampleConvLayer(nn.Module):
    """Nearest-neighbour upsampling followed by a convolution (no checkerboard artefacts).

    The common case, 2x upsampling and a 3x3 kernel, runs at the input resolution through
    ``upsample2x_conv3x3``: the same function with 4/9 of the multiply-adds.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, scale: int = 2) -> None:
        super().__init__()
        self.scale = scale
        self.conv = ConvLayer(in_channels, out_channels, kernel_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        conv = self.conv.conv
        if self.scale != 2 or conv.kernel_size != (3, 3):
            return self.conv(F.interpolate(x, scale_factor=self.scale, mode="nearest"))
        y = upsample2x_conv3x3(x, conv.weight, conv.bias)
        for layer in list(self.conv)[2:]:  # norm and ReLU
            y = layer(y)
        return y


def _phase_kernels(weight: torch.Tensor) -> torch.Tensor:
    """``(O, I, 3, 3)`` -> ``(O, 4, I, 2, 2)``: the 2x2 kernels that each output phase sees.

    Output row ``2i`` of a 3x3 conv over a 2x nearest-upsampled input reads input rows ``i-1, i, i``
    (so rows 1 and 2 of the kernel add up); row ``2i+1`` reads ``i, i, i+1``. Same for columns.
    """
    rows = (
        torch.stack([weight[:, :, 0], weight[:, :, 1] + weight[:, :, 2]], 2),
        torch.stack([weight[:, :, 0] + weight[:, :, 1], weight[:, :, 2]], 2),
    )
    phases = []
    for r in rows:
        phases.append(torch.stack([r[..., 0], r[..., 1] + r[..., 2]], -1))
        phases.append(torch.stack([r[..., 0] + r[..., 1], r[..., 2]], -1))
    return torch.stack(phases, 1)


def _replicate_pad1(x: torch.Tensor) -> torch.Tensor:
    """``F.pad(x, (1, 1, 1, 1), mode="replicate")`` written with ``torch.cat``.

    Under ``torch.compile`` (inductor), the backward of the replicate-pad operator is given the wrong
    strides when its gradient arrives in channels-last layout, and compiled training stops with a
    stride assertion; slicing and concatenation have no such problem.
    """
    x = torch.cat([x[..., :1, :], x, x[..., -1:, :]], dim=-2)
    return torch.cat([x[..., :1], x, x[..., -1:]], dim=-1)


def upsample2x_conv3x3(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, groups: int = 1
) -> torch.Tensor:
    """``conv3x3(reflect_pad(upsample_nearest_2x(x)))`` without building the upsampled image.

    Each of the four output phases is a 2x2 convolution of ``x`` itself; one convolution computes
    all four and they are interleaved. Reflection padding of the upsampled image equals edge
    padding of ``x`` by one pixel, so the result is the same up to float rounding.
    """
    if torch.onnx.is_in_onnx_export():  # onnxruntime runs Resize + Conv faster than the phase form
        up = F.interpolate(x, scale_factor=2, mode="nearest")
        return F.conv2d(F.pad(up, (1, 1, 1, 1), mode="reflect"), weight, bias, groups=groups)
    b, _, h, w = x.shape
    out_ch = weight.shape[0]
    kernels = _phase_kernels(weight)  # (O, 4, I/groups, 2, 2)
    if groups == 1:
        kernels = kernels.transpose(0, 1)  # phase-major output channels: (4, O, ...)
    kernels = kernels.reshape(4 * out_ch, *weight.shape[1:2], 2, 2)
    if bias is not None:
        bias = bias.repeat(4) if groups == 1 else bias.repeat_interleave(4)
    padded = _replicate_pad1(x)
    out = x.new_empty(b, out_ch, h, 2, w, 2)
    # Without autograd, large inputs go a band of rows at a time to bound the four-phase buffer.
    band = h if torch.is_grad_enabled() else max(1, _BAND_ELEMENTS // (b * 4 * out_ch * (w + 1)))
    for top in range(0, h, band):
        rows = min(band, h - top)
        y = F.conv2d(padded[:, :, top : top + rows + 2], kernels, bias, groups=groups)
        # Phase (a, c) of output pixel (i, j) sits at (i + a, j + c) of the (rows+1, W+1) result.
        if groups == 1:
            y = y.view(b, 4, out_ch, rows + 1, w + 1)
        else:
            y = y.view(b, out_ch, 4, rows + 1, w + 1).transpose(1, 2)
        for a in (0, 1):
            for c in (0, 1):
                out[:, :, top : top + rows, a, :, c] = y[:, 2 * a + c, :, a : a + rows, c : c + w]
    return out.view(b, out_ch, 2 * h, 2 * w)


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


def padded_side(side: int, multiple: int, minimum: int = 1) -> int:
    """The smallest multiple of ``multiple`` that is at least ``side`` and at least ``minimum``."""
    return max(side + (-side) % multiple, minimum + (-minimum) % multiple)


def pad_to_multiple(x: torch.Tensor, multiple: int, minimum: int = 1) -> torch.Tensor:
    """Pad the bottom and right of ``x`` so both sides are multiples of ``multiple``, and at least ``minimum``."""
    h, w = x.shape[-2:]
    pad_h, pad_w = padded_side(h, multiple, minimum) - h, padded_side(w, multiple, minimum) - w
    if not (pad_h or pad_w):
        return x
    # Reflection needs pad < size; replicate covers tiny inputs.
    mode = "reflect" if pad_h < h and pad_w < w else "replicate"
    return F.pad(x, (0, pad_w, 0, pad_h), mode=mode)
