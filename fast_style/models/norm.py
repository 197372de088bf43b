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

    With ``num_styles`` > 1 it is a conditional instance norm (Dumoulin et al. 2017): one scale and
    shift per style, ``weight`` and ``bias`` of shape ``(num_styles, C)``, mixed per image by
    ``style_weights`` ``(B or 1, num_styles)``, which the network sets before each pass.
    """

    def __init__(self, channels: int, eps: float = 1e-5, affine: bool = True, num_styles: int = 1) -> None:
        super().__init__()
        self.num_features = channels
        self.eps = eps
        self.affine = affine
        self.num_styles = int(num_styles)
        shape = (channels,) if self.num_styles == 1 else (self.num_styles, channels)
        self.weight = nn.Parameter(torch.ones(shape)) if affine else None
        self.bias = nn.Parameter(torch.zeros(shape)) if affine else None
        self.recording = False
        self.statistics: NormStatistics | None = None
        self.style_weights: torch.Tensor | None = None

    def _affine(self) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """Scale and shift: ``(C,)`` for one style, ``(B or 1, C)`` mixed by ``style_weights`` for several."""
        if self.num_styles == 1 or self.weight is None or self.bias is None:
            return self.weight, self.bias
        mix = self.style_weights
        if mix is None:
            raise RuntimeError("a multi-style network needs style weights (TransformNetwork.styled)")
        mix = mix.to(self.weight.dtype)
        return mix @ self.weight, mix @ self.bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.recording:
            self.statistics = (x.mean((2, 3)), x.var((2, 3), unbiased=False))
        weight, bias = self._affine()
        if self.statistics is None:
            if weight is None or bias is None or weight.dim() == 1:
                return F.instance_norm(x, weight=weight, bias=bias, eps=self.eps)
            if weight.shape[0] == 1:  # one mix for the whole batch (inference): the fused operator
                return F.instance_norm(x, weight=weight[0], bias=bias[0], eps=self.eps)
            y = F.instance_norm(x, eps=self.eps)
            return torch.addcmul(bias[:, :, None, None].to(y.dtype), y, weight[:, :, None, None].to(y.dtype))
        mean, var = self.statistics
        scale = torch.rsqrt(var + self.eps)
        if weight is not None:
            scale = scale * (weight[None] if weight.dim() == 1 else weight)
        shift = -mean * scale
        if bias is not None:
            shift = shift + (bias[None] if bias.dim() == 1 else bias)
        scale, shift = scale[:, :, None, None], shift[:, :, None, None]
        if torch.is_grad_enabled() and x.requires_grad:
            return torch.addcmul(shift, x, scale)
        # Without autograd, in place: the statistics pass runs at up to 2048 x 2048, and in these
        # networks a norm always follows a convolution whose output nothing else reads.
        return x.mul_(scale).add_(shift)

    def extra_repr(self) -> str:
        styles = f", num_styles={self.num_styles}" if self.num_styles > 1 else ""
        return f"{self.num_features}, eps={self.eps}, affine={self.affine}{styles}"
