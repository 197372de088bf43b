"""The references the benchmarks compare against, written here from the papers' descriptions.

``ReferenceTransformerNet`` is the architecture of Johnson et al. (2016) as popularised by
pytorch/examples' fast_neural_style: 0-255 images in and out, reflection padding, affine instance
norm, five residual blocks, nearest upsampling followed by convolution, run in plain eager PyTorch.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

__all__ = ["ReferenceTransformerNet"]


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
