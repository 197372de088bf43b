"""Load and save images safely, and convert between PIL images and float tensors in [0, 1]."""

from __future__ import annotations

import io
import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import BinaryIO

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from fast_style.errors import FastStyleError
from fast_style.files import atomic_path

__all__ = [
    "IMAGE_EXTENSIONS",
    "MAX_PIXELS",
    "decode_image",
    "folder_images",
    "image_format_for",
    "image_to_tensor",
    "load_image",
    "load_image_tensor",
    "normalize_mode",
    "open_image",
    "resize_long_side",
    "rgb_array",
    "save_image",
    "tensor_to_image",
]

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff")

# Larger inputs are refused as likely decompression bombs (about 13,300 x 13,300). It sits just under
# Pillow's own hard limit (2 x Image.MAX_IMAGE_PIXELS), so both checks give the same message.
MAX_PIXELS = 178_000_000

_SIXTEEN_BIT = ("I;16", "I;16L", "I;16B", "I;16N")


def _too_large(label: str, max_pixels: int, size: str = "") -> FastStyleError:
    return FastStyleError(
        f"{label} is {size or 'too large'}: more than the {max_pixels:,}-pixel limit (a possible decompression bomb)"
    )


def _read(source: Path | BinaryIO, label: str, limit: int, formats: Sequence[str] | None) -> Image.Image:
    """Decode ``source`` fully with EXIF orientation applied; every failure is a one-line error."""
    try:
        with warnings.catch_warnings():
            # Our own limit replaces Pillow's warning threshold; its hard limit still applies.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(source, formats=None if formats is None else tuple(formats)) as img:
                if img.width * img.height > limit:
                    raise _too_large(label, limit, f"{img.width}x{img.height}")
                img.load()
                return ImageOps.exif_transpose(img)
    except FastStyleError:
        raise
    except Image.DecompressionBombError:
        raise _too_large(label, limit) from None
    except UnidentifiedImageError:
        raise FastStyleError(f"not an image (or an unsupported format): {label}") from None
    except (OSError, ValueError, SyntaxError, EOFError) as exc:
        raise FastStyleError(f"cannot read image {label}: {exc}") from None


def folder_images(folder: str | os.PathLike[str]) -> list[Path]:
    """The image files below ``folder`` (recursive, by extension), sorted; empty if there are none."""
    root = Path(folder)
    return sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())


def open_image(path: str | os.PathLike[str], max_pixels: int | None = None) -> Image.Image:
    """Open an image fully and apply its EXIF orientation, keeping its mode; errors are one line.

    Images over ``max_pixels`` (default ``MAX_PIXELS``) are refused before their pixels are decoded.
    """
    path = Path(path)
    limit = MAX_PIXELS if max_pixels is None else max_pixels
    if not path.exists():
        raise FastStyleError(f"image not found: {path}")
    if path.is_dir():
        raise FastStyleError(f"expected an image file, got a folder: {path}")
    if path.stat().st_size == 0:
        raise FastStyleError(f"image file is empty: {path}")
    return _read(path, str(path), limit, None)


def decode_image(
    data: bytes, max_pixels: int | None = None, formats: Sequence[str] | None = None, name: str = "upload"
) -> Image.Image:
    """``open_image`` for bytes in memory (an upload): nothing touches the disk.

    ``formats`` limits the Pillow decoders that may be tried (e.g. ``("JPEG", "PNG")``); ``name``
    labels the image in error messages.
    """
    if not data:
        raise FastStyleError(f"image file is empty: {name}")
    return _read(io.BytesIO(data), name, MAX_PIXELS if max_pixels is None else max_pixels, formats)


def normalize_mode(img: Image.Image) -> Image.Image:
    """Convert any Pillow mode to one of RGB, RGBA, L, LA (8-bit) or I (16-bit values), keeping alpha."""
    mode = img.mode
    if mode in ("RGB", "RGBA", "L", "LA", "I"):
        if "transparency" in img.info and mode in ("RGB", "L"):
            return img.convert(mode + "A")
        return img
    if mode in _SIXTEEN_BIT:
        return img.convert("I")
    if mode == "F":
        # Float images are taken to be in [0, 1]; stored as 16-bit values like I.
        pixels = np.clip(np.asarray(img, dtype=np.float32), 0.0, 1.0) * 65535.0
        return Image.fromarray(np.rint(pixels).astype(np.int32), mode="I")
    if mode in ("P", "PA"):
        return img.convert("RGBA" if mode == "PA" or "transparency" in img.info else "RGB")
    if mode == "RGBa":
        return img.convert("RGBA")
    if mode == "La":
        return img.convert("LA")
    if mode == "1":
        return img.convert("L")
    return img.convert("RGB")  # CMYK, YCbCr, LAB, HSV, ...


def rgb_array(img: Image.Image) -> tuple[np.ndarray, Image.Image | None]:
    """A ``normalize_mode`` image -> ``(H, W, 3)`` uint8 (or uint16 for 16-bit) pixels, and its alpha."""
    img = normalize_mode(img)
    alpha = img.getchannel("A") if img.mode in ("RGBA", "LA") else None
    if img.mode == "I":
        gray = np.clip(np.asarray(img), 0, 65535).astype(np.uint16)
        return np.repeat(gray[..., None], 3, axis=2), alpha
    if img.mode in ("L", "LA"):
        gray = np.asarray(img.getchannel("L"))
        return np.repeat(gray[..., None], 3, axis=2), alpha
    return np.asarray(img.convert("RGB")), alpha


def load_image(path: str | os.PathLike[str], max_pixels: int = MAX_PIXELS) -> Image.Image:
    """Open an image fully, apply its EXIF orientation, and return it as 8-bit RGB."""
    img = open_image(path, max_pixels)
    if img.mode in _SIXTEEN_BIT or img.mode in ("I", "F"):
        pixels, _ = rgb_array(img)
        return Image.fromarray((pixels.astype(np.float32) / 257.0).round().astype(np.uint8))
    return normalize_mode(img).convert("RGB")


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


def image_format_for(path: str | os.PathLike[str]) -> str:
    """The Pillow format name that writes ``path``'s extension; an error for unknown extensions."""
    suffix = Path(path).suffix.lower()
    fmt = Image.registered_extensions().get(suffix)
    if fmt is None or fmt not in Image.SAVE:
        raise FastStyleError(
            f"unknown image extension {suffix or '(none)'!r} for {path}; use e.g. .png, .jpg, .webp, .tif"
        )
    return fmt


def save_image(
    img: Image.Image, path: str | os.PathLike[str], *, overwrite: bool = True, **params: object
) -> Path:
    """Write ``img`` atomically: a temporary file in the same folder, then a rename.

    With ``overwrite=False`` an existing ``path`` is an error and is left untouched.
    """
    path = Path(path)
    fmt = image_format_for(path)
    with atomic_path(path, overwrite=overwrite) as tmp:
        img.save(tmp, format=fmt, **params)
    return path
