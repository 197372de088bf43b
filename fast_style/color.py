"""Luminance and chrominance of RGB images, for colour-preserving style transfer.

Gatys et al. (2016, "Preserving color in neural artistic style transfer") transfer style on the
luminance channel only and keep the content photo's colours. The YIQ space separates the two with a
fixed linear map, so the conversion is exact and differentiable.
"""

from __future__ import annotations

import torch

__all__ = [
    "combine_luminance",
    "luminance",
    "luminance_image",
    "match_luminance",
    "rgb_to_yiq",
    "yiq_to_rgb",
]

# NTSC YIQ; rows give Y, I, Q as combinations of R, G, B.
_RGB_TO_YIQ = torch.tensor(
    [
        [0.299, 0.587, 0.114],
        [0.595716, -0.274453, -0.321263],
        [0.211456, -0.522591, 0.311135],
    ]
)


def _apply(matrix: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
    matrix = matrix.to(device=images.device, dtype=images.dtype)
    return torch.einsum("ij,bjhw->bihw", matrix, images)


def rgb_to_yiq(images: torch.Tensor) -> torch.Tensor:
    """``(B, 3, H, W)`` RGB -> YIQ (Y in [0, 1] for RGB in [0, 1])."""
    return _apply(_RGB_TO_YIQ, images)


def yiq_to_rgb(images: torch.Tensor) -> torch.Tensor:
    """``(B, 3, H, W)`` YIQ -> RGB (not clamped)."""
    return _apply(torch.linalg.inv(_RGB_TO_YIQ.double()).float(), images)


def luminance(images: torch.Tensor) -> torch.Tensor:
    """``(B, 3, H, W)`` RGB -> ``(B, 1, H, W)`` luminance Y."""
    return rgb_to_yiq(images)[:, :1]


def luminance_image(images: torch.Tensor) -> torch.Tensor:
    """The luminance repeated on three channels: a grey RGB image the VGG loss can take."""
    return luminance(images).expand(-1, 3, -1, -1).contiguous()


def match_luminance(source: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """Shift and scale the luminance of ``source`` to the mean and spread of ``reference``'s.

    Returns the grey three-channel image of the matched luminance, clamped to [0, 1]. Without this a
    dark painting would darken a bright photo even though only its texture should transfer.
    """
    y_src = luminance(source)
    y_ref = luminance(reference)
    std_src = y_src.std().clamp_min(1e-6)
    matched = (y_src - y_src.mean()) * (y_ref.std() / std_src) + y_ref.mean()
    return matched.clamp(0, 1).expand(-1, 3, -1, -1).contiguous()


def combine_luminance(stylized: torch.Tensor, content: torch.Tensor) -> torch.Tensor:
    """RGB image with the luminance of ``stylized`` and the colours (I, Q) of ``content``, in [0, 1]."""
    yiq = rgb_to_yiq(content)
    yiq = torch.cat([luminance(stylized), yiq[:, 1:]], dim=1)
    return yiq_to_rgb(yiq).clamp(0, 1)
