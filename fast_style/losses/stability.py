"""A training-only term for temporal stability: small input changes must not change the output."""

from __future__ import annotations

from collections.abc import Callable

import torch

__all__ = ["noise_stability"]


def noise_stability(
    net: Callable[..., torch.Tensor],
    images: torch.Tensor,
    outputs: torch.Tensor,
    noise: float,
    style: torch.Tensor | None = None,
    shift: int = 0,
) -> torch.Tensor:
    """How much ``net`` amplifies pixel noise (Gupta et al. 2017) and, with ``shift``, how far it is
    from moving its output as the input moves; no optical flow needed.

    ``outputs`` is ``net(images)``. The images get Gaussian noise of standard deviation ``noise`` (in
    [0, 1] pixel units); with ``shift`` > 0 the noisy copy is also a crop moved by up to ``shift``
    whole pixels each way (a pan between two video frames), compared with the same window of
    ``outputs`` away from the crop's borders. The term is the mean squared difference divided by
    ``noise ** 2``: the identity scores about 1, a network that shimmers on video scores high.
    Gradients flow through both passes.
    """
    noisy = (images + noise * torch.randn_like(images)).clamp(0, 1)
    target = outputs
    if shift > 0:
        h, w = images.shape[-2:]
        dy, dx = (int(v) for v in torch.randint(-shift, shift + 1, (2,)))
        # the window of the moved crop inside the image, and a margin the crop's own padding reaches
        top, left, height, width = shift + dy, shift + dx, h - 2 * shift, w - 2 * shift
        noisy = noisy[..., top : top + height, left : left + width]
        margin = min(16, height // 8, width // 8)
        target = outputs[..., top + margin : top + height - margin, left + margin : left + width - margin]
    moved = net(noisy) if style is None else net(noisy, style=style)
    if shift > 0:
        moved = moved[..., margin : moved.shape[-2] - margin, margin : moved.shape[-1] - margin]
    return (moved.float() - target.float()).pow(2).mean() / noise**2
