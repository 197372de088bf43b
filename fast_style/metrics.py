"""Image scores that do not come from the perceptual loss, so a model cannot look good by the loss alone.

- ``color_distance``: how far an image's colour distribution is from another's (the style image's):
  the Hellinger distance between their joint RGB histograms, 0 for the same palette, 1 for disjoint.
- ``luminance_ssim``: how much of a photo's structure an image keeps: SSIM (Wang et al. 2004) of the
  two luminance channels, 1 for the same structure, near 0 for unrelated images.
"""

from __future__ import annotations

import torch
from torch.nn import functional as F

from fast_style.color import luminance

__all__ = ["color_distance", "color_histogram", "luminance_ssim"]


def color_histogram(image: torch.Tensor, bins: int = 8) -> torch.Tensor:
    """Normalised joint RGB histogram (``bins**3`` cells) of ``(1, 3, H, W)`` or ``(3, H, W)`` in [0, 1]."""
    pixels = image.detach().float().reshape(3, -1).clamp(0, 1)
    cells = (pixels * bins).long().clamp_(max=bins - 1)
    index = (cells[0] * bins + cells[1]) * bins + cells[2]
    counts = torch.bincount(index, minlength=bins**3).float()
    return counts / counts.sum().clamp_min(1.0)


def color_distance(image: torch.Tensor, reference: torch.Tensor, bins: int = 8) -> float:
    """Hellinger distance in [0, 1] between the RGB histograms of ``image`` and ``reference``.

    The images may differ in size; only their colour distributions are compared.
    """
    p, q = color_histogram(image, bins), color_histogram(reference, bins)
    overlap = torch.sqrt(p * q).sum().clamp(0.0, 1.0)
    return float(torch.sqrt(1.0 - overlap))


def _gaussian_window(size: int = 11, sigma: float = 1.5) -> torch.Tensor:
    x = torch.arange(size, dtype=torch.float32) - (size - 1) / 2
    g = torch.exp(-(x**2) / (2 * sigma**2))
    g = g / g.sum()
    return (g[:, None] * g[None, :]).view(1, 1, size, size)


def luminance_ssim(image: torch.Tensor, reference: torch.Tensor) -> float:
    """Mean SSIM of the luminance of ``image`` against ``reference`` (same size, [0, 1], ``(1, 3, H, W)``).

    Gaussian window of 11 px and sigma 1.5, constants ``(0.01)²`` and ``(0.03)²`` for a data range of
    1, as in Wang et al. (2004); images smaller than the window use a window of their size.
    """
    if image.shape[-2:] != reference.shape[-2:]:
        raise ValueError(
            f"SSIM needs images of one size, got {tuple(image.shape[-2:])} and {tuple(reference.shape[-2:])}"
        )
    x = luminance(image.detach().float().reshape(1, 3, *image.shape[-2:]).clamp(0, 1))
    y = luminance(reference.detach().float().reshape(1, 3, *reference.shape[-2:]).clamp(0, 1))
    size = min(11, *x.shape[-2:])
    window = _gaussian_window(size).to(x.device)
    mu_x, mu_y = F.conv2d(x, window), F.conv2d(y, window)
    var_x = F.conv2d(x * x, window) - mu_x**2
    var_y = F.conv2d(y * y, window) - mu_y**2
    cov = F.conv2d(x * y, window) - mu_x * mu_y
    c1, c2 = 0.01**2, 0.03**2
    ssim = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2))
    return float(ssim.mean())
