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
) -> torch.Tensor:
    """How much ``net`` amplifies pixel noise (Gupta et al. 2017), with no optical flow needed.

    ``outputs`` is ``net(images)``; the images get Gaussian noise of standard deviation ``noise``
    (in [0, 1] pixel units) and the term is the mean squared change of the output divided by
    ``noise ** 2``, so the identity scores about 1 and a network that shimmers on video scores high.
    Gradients flow through both passes.
    """
    noisy = (images + noise * torch.randn_like(images)).clamp(0, 1)
    moved = net(noisy) if style is None else net(noisy, style=style)
    return (moved.float() - outputs.float()).pow(2).mean() / noise**2
