"""Instance normalization that can share its statistics between the tiles of one image."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

__all__ = ["InstanceNorm", "NormStatistics"]

NormStatistics = tuple[torch.Tensor, torch.Tensor]  # per-channel mean and biased variance, each (B, C)


class InstanceNorm(nn.Module):
    """Affine instance norm over ``(B, C, H, W)``; the same parameters and ``state_dict`` keys as
    ``nn.InstanceNorm2d(channels, affine=True)``.

    Normally each image is normalized by its own mean and variance (through ``F.instance_norm``, so
    training and ONNX export keep the fused operator). For tiled inference the layer can instead
    record the statistics of one pass (``recording``) or normalize with given ones (``statistics``),
    so all tiles of an image are normalized alike.
    """

    def __init__(self, channels: int, eps: float = 1e-5, affine: bool = True) -> None:
        super().__init__()
        self.num_features = channels
        self.eps = eps
        self.affine = affine
        self.weight = nn.Parameter(torch.ones(channels)) if affine else None
        self.bias = nn.Parameter(torch.zeros(channels)) if affine else None
        self.recording = False
        self.statistics: NormStatistics | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.recording:
            self.statistics = (x.mean((2, 3)), x.var((2, 3), unbiased=False))
        if self.statistics is None:
            return F.instance_norm(x, weight=self.weight, bias=self.bias, eps=self.eps)
        mean, var = self.statistics
        scale = torch.rsqrt(var + self.eps)
        if self.weight is not None:
            scale = scale * self.weight[None]
        shift = -mean * scale
        if self.bias is not None:
            shift = shift + self.bias[None]
        scale, shift = scale[:, :, None, None], shift[:, :, None, None]
        if torch.is_grad_enabled() and x.requires_grad:
            return torch.addcmul(shift, x, scale)
        # Without autograd, in place: the statistics pass runs at up to 2048 x 2048, and in these
        # networks a norm always follows a convolution whose output nothing else reads.
        return x.mul_(scale).add_(shift)

    def extra_repr(self) -> str:
        return f"{self.num_features}, eps={self.eps}, affine={self.affine}"
