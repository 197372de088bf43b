"""Stylize a large image in overlapping tiles that share one set of instance-norm statistics.

The statistics come from a copy of the image scaled down to a bounded size, so the tiles agree
with each other and blend without seams while peak memory stays bounded by the tile size.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Literal

import numpy as np
import torch

from fast_style.models import TransformNetwork

__all__ = ["DEFAULT_TILE", "downscaled", "out_of_memory", "pixel_scale", "stylize_tiled", "to_tensor"]

DEFAULT_TILE = 1024
_BLEND = 16  # width in pixels of the linear cross-fade between neighbouring tiles

# ``finish(stylized, content)``: colour handling and strength, applied to each tile.
Finish = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def pixel_scale(pixels: np.ndarray) -> float:
    """The value of full intensity for ``pixels``' dtype (uint16, uint8, or float in [0, 1])."""
    return 65535.0 if pixels.dtype == np.uint16 else (255.0 if pixels.dtype == np.uint8 else 1.0)


def to_tensor(pixels: np.ndarray, device: torch.device) -> torch.Tensor:
    """``(H, W, 3)`` pixels -> ``(1, 3, H, W)`` float32 in [0, 1] on ``device``."""
    tensor = torch.from_numpy(np.ascontiguousarray(pixels, dtype=np.float32)).permute(2, 0, 1)[None]
    return tensor.to(device).div_(pixel_scale(pixels))


# Allocators that still raise a plain RuntimeError when memory runs out, by the start of their message:
# PyTorch's CPU allocator (posix_memalign failing, or its own size check) and Apple's MPS backend.
_PLAIN_RUNTIME_ERRORS = (
    "DefaultCPUAllocator: can't allocate memory",
    "DefaultCPUAllocator: not enough memory",
    "MPS backend out of memory",
)


def out_of_memory(exc: BaseException) -> bool:
    """True for a GPU or CPU allocation failure, which a smaller tile may avoid.

    CUDA (and any backend that does) raises ``torch.OutOfMemoryError``, known by its type; elsewhere
    only the allocator's message tells, so a ``RuntimeError`` is matched against it as a fallback.
    """
    if isinstance(exc, torch.cuda.OutOfMemoryError):  # the same class as torch.OutOfMemoryError
        return True
    return isinstance(exc, RuntimeError) and any(text in str(exc) for text in _PLAIN_RUNTIME_ERRORS)


def downscaled(pixels: np.ndarray, max_pixels: int) -> np.ndarray:
    """Block-average ``(H, W, 3)`` pixels down to at most ``max_pixels``, a band of rows at a time."""
    h, w = pixels.shape[:2]
    k = max(1, math.ceil(math.sqrt(h * w / max_pixels)))
    if k == 1:
        return pixels
    scale = pixel_scale(pixels)
    rows, cols = h // k, w // k
    out = np.empty((rows, cols, 3), dtype=np.float32)
    band = max(1, 256 // k)
    for r in range(0, rows, band):
        block = pixels[r * k : (r + band) * k, : cols * k].astype(np.float32)
        n = block.shape[0] // k
        out[r : r + n] = block[: n * k].reshape(n, k, cols, k, 3).mean(axis=(1, 3)) / scale
    return out


def _tile_starts(length: int, tile: int, step: int) -> list[int]:
    if length <= tile:
        return [0]
    starts = list(range(0, length - tile, step))
    return [*starts, length - tile]


def _window(length: int, start: int, size: int, margin: int, total: int) -> torch.Tensor:
    """Per-axis weights of one tile: zero on its ``margin``, a ramp, then one (image edges stay 1)."""
    w = torch.ones(size)
    ramp = (torch.arange(_BLEND, dtype=torch.float32) + 0.5) / _BLEND
    if start > 0:
        w[:margin] = 0
        w[margin : margin + _BLEND] = ramp
    if start + size < total:
        w[size - margin :] = 0
        w[size - margin - _BLEND : size - margin] = torch.minimum(
            w[size - margin - _BLEND : size - margin], ramp.flip(0)
        )
    return w[:length]


def stylize_tiled(
    net: TransformNetwork, pixels: np.ndarray, *, tile: int, stats_pixels: int, finish: Finish
) -> np.ndarray:
    """``(H, W, 3)`` pixels -> stylized ``(H, W, 3)`` uint8, in tiles of about ``tile`` pixels a side.

    Instance-norm statistics come from a copy of at most ``stats_pixels`` pixels; the network runs
    on the device its parameters are on.
    """
    device = next(net.parameters()).device
    h, w = pixels.shape[:2]
    m = net.multiple
    # Pad once to the network's multiple, as the network itself does for a whole image.
    pad_h, pad_w = (-h) % m, (-w) % m
    mode: Literal["reflect", "edge"] = "reflect" if pad_h < h and pad_w < w else "edge"
    padded = np.pad(pixels, ((0, pad_h), (0, pad_w), (0, 0)), mode=mode) if pad_h or pad_w else pixels
    total_h, total_w = padded.shape[:2]
    statistics = net.record_norm_statistics(to_tensor(downscaled(padded, stats_pixels), device))

    tile = max(m * 16, tile // m * m)
    margin = min(math.ceil((net.receptive_radius() + 2) / m) * m, (tile // 4) // m * m)
    step = tile - 2 * margin - _BLEND
    ys = _tile_starts(total_h, tile, step)
    xs = _tile_starts(total_w, tile, step)

    result = np.empty((h, w, 3), dtype=np.uint8)
    acc = torch.zeros(3, 0, total_w)
    weight = torch.zeros(0, total_w)
    top = 0  # first image row held in acc / weight

    def emit(rows: int) -> None:
        nonlocal acc, weight, top
        done = (acc[:, :rows] / weight[:rows].clamp_min(1e-8)).clamp_(0, 1)
        end = min(top + rows, h)
        if end > top:
            block = done[:, : end - top, :w].mul_(255).round_().to(torch.uint8)
            result[top:end] = block.permute(1, 2, 0).numpy()
        acc, weight, top = acc[:, rows:], weight[rows:], top + rows

    with net.shared_norm_statistics(statistics):
        for y in ys:
            if y > top:
                emit(y - top)
            th = min(tile, total_h - y)
            grow = y + th - top - acc.shape[1]
            if grow > 0:
                acc = torch.cat([acc, torch.zeros(3, grow, total_w)], 1)
                weight = torch.cat([weight, torch.zeros(grow, total_w)], 0)
            wy = _window(th, y, tile, margin, total_h)
            for x in xs:
                tw = min(tile, total_w - x)
                content = to_tensor(padded[y : y + th, x : x + tw], device)
                out = finish(net.forward_aligned(content), content)
                wgt = wy[:, None] * _window(tw, x, tile, margin, total_w)[None, :]
                acc[:, y - top : y - top + th, x : x + tw] += out[0].float().cpu() * wgt
                weight[y - top : y - top + th, x : x + tw] += wgt
        emit(acc.shape[1])
    return result
