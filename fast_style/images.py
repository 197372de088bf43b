"""Load and save images safely, and convert between PIL images and float tensors in [0, 1]."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from fast_style.errors import FastStyleError
from fast_style.files import atomic_path

__all__ = [
    "IMAGE_EXTENSIONS",
    "MAX_PIXELS",
    "load_image",
    "load_image_tensor",
    "resize_long_side",
    "save_image",
    "tensor_to_image",
    "image_to_tensor",
]

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".bmp")

# Larger inputs are refused as likely decompression bombs (about 16k x 16k).
MAX_PIXELS = 256_000_000


def load_image(path: str | os.PathLike[str], max_pixels: int = MAX_PIXELS) -> Image.Image:
    """Open an image fully, apply its EXIF orientation, and return it as RGB."""
    path = Path(path)
    if not path.exists():
        raise FastStyleError(f"image not found: {path}")
    if path.is_dir():
        raise FastStyleError(f"expected an image file, got a folder: {path}")
    if path.stat().st_size == 0:
        raise FastStyleError(f"image file is empty: {path}")
    try:
        with Image.open(path) as img:
            if img.width * img.height > max_pixels:
                raise FastStyleError(
                    f"{path} is {img.width}x{img.height}, more than the {max_pixels:,}-pixel limit"
                )
            img.load()
            img = ImageOps.exif_transpose(img)
            return img.convert("RGB")
    except FastStyleError:
        raise
    except UnidentifiedImageError:
        raise FastStyleError(f"not an image (or an unsupported format): {path}") from None
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise FastStyleError(f"cannot read image {path}: {exc}") from None


def resize_long_side(img: Image.Image, size: int | None) -> Image.Image:
    """Scale ``img`` so its longer side is ``size`` pixels (``None`` keeps it as is)."""
    if size is None or max(img.size) == size:
        return img
    scale = size / max(img.size)
    new = (max(1, round(img.width * scale)), max(1, round(img.height * scale)))
    return img.resize(new, Image.Resampling.LANCZOS)


def image_to_tensor(img: Image.Image) -> torch.Tensor:
    """RGB PIL image -> ``(1, 3, H, W)`` float32 tensor in [0, 1]."""
    rgb = img.convert("RGB")
    pixels = torch.from_numpy(np.array(rgb)).permute(2, 0, 1)
    return pixels.float().div_(255).unsqueeze(0)


def load_image_tensor(path: str | os.PathLike[str], size: int | None = None) -> torch.Tensor:
    """``load_image`` then optional long-side resize, as a ``(1, 3, H, W)`` tensor in [0, 1]."""
    return image_to_tensor(resize_long_side(load_image(path), size))


def tensor_to_image(tensor: torch.Tensor) -> Image.Image:
    """``(3, H, W)`` or ``(1, 3, H, W)`` tensor in [0, 1] -> RGB PIL image (values are clamped)."""
    if tensor.dim() == 4:
        if tensor.shape[0] != 1:
            raise ValueError(f"expected one image, got a batch of {tensor.shape[0]}")
        tensor = tensor[0]
    pixels = tensor.detach().float().clamp(0, 1).mul(255).round().to(torch.uint8)
    hwc = pixels.permute(1, 2, 0).contiguous().cpu()
    return Image.fromarray(hwc.numpy())


def save_image(img: Image.Image, path: str | os.PathLike[str], **params: object) -> Path:
    """Write ``img`` atomically: a temporary file in the same folder, then a rename."""
    path = Path(path)
    fmt = Image.registered_extensions().get(path.suffix.lower())
    if fmt is None:
        raise FastStyleError(f"unknown image extension {path.suffix!r} for {path}")
    with atomic_path(path) as tmp:
        img.save(tmp, format=fmt, **params)
    return path
