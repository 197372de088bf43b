"""``Stylizer``: the entry point of inference; decides how each image runs (whole or tiled)."""

from __future__ import annotations

import collections
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypedDict

import numpy as np
import torch
from PIL import Image

from fast_style.color import combine_luminance
from fast_style.devices import resolve_device
from fast_style.errors import FastStyleError
from fast_style.images import normalize_mode, resize_long_side, rgb_array
from fast_style.inference import tiling
from fast_style.inference.backends import (
    Backend,
    OnnxRuntimeBackend,
    TorchBackend,
    require_tiles,
    resolve_backend,
)
from fast_style.inference.loading import build_network, read_metadata
from fast_style.models import TransformNetwork

if TYPE_CHECKING:
    from typing_extensions import Unpack

__all__ = ["AUTO_TILE_PIXELS", "StylizeOptions", "Stylizer", "finish_stylized"]

# Images with more pixels than this are tiled automatically (about 2048 x 2048); the instance-norm
# statistics of a tiled image come from a copy scaled down to at most this many pixels.
AUTO_TILE_PIXELS = 2048 * 2048
# The statistics pass holds a few full-resolution activations at once; this caps each of them
# (2048 x 2048 x 16 channels, 256 MiB) so a 4096 x 4096 image stays under 2 GiB on CPU.
_STATS_ELEMENTS = 2048 * 2048 * 16
_MIN_SIDE = 8  # smaller images are edge-padded up to this before any backend sees them


class StylizeOptions(TypedDict, total=False):
    """The keyword options of ``Stylizer.stylize_array``, which ``Stylizer.stylize`` passes on."""

    strength: float
    preserve_color: bool
    tile: int | None
    style: int | str | None
    mix: dict[str, float] | None


def finish_stylized(
    stylized: torch.Tensor, content: torch.Tensor, strength: float, preserve_color: bool
) -> torch.Tensor:
    """Blend toward the content by ``1 - strength``, then keep the content's colours if asked (in place)."""
    if strength != 1.0:
        stylized = content + strength * (stylized - content)
    if preserve_color:
        # Luminance is linear, so blending first equals scaling the luminance change, clamped once.
        stylized = combine_luminance(stylized, content)
    return stylized.clamp_(0, 1)


def _release_cached_memory() -> None:
    """Hand the CUDA allocator's cached blocks back before a retry in smaller pieces."""
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def _to_uint8(images: torch.Tensor) -> np.ndarray:
    return images[0].mul(255).round_().to(torch.uint8).permute(1, 2, 0).cpu().numpy()


class Stylizer:
    """A transform network ready to stylize: ``Stylizer.from_file(path).stylize(pil_image)``.

    Images run on a ``Backend``: ``auto`` picks onnxruntime on CPU when it is installed (the
    graph is built from the network on first use) and PyTorch otherwise. The backend runs whole
    images and tiles; a stylizer for an ``.onnx`` file has no network and runs whole images only. ``release_memory`` hands onnxruntime's
    scratch memory back after each image, for long-running processes (a server).
    """

    def __init__(
        self,
        net: TransformNetwork | None,
        metadata: dict[str, Any] | None = None,
        device: str | torch.device = "cpu",
        backend: str | Backend = "auto",
        release_memory: bool = False,
    ) -> None:
        self.device = resolve_device(device)
        self.net = net.eval().requires_grad_(False).to(self.device) if net is not None else None
        self.metadata = metadata or {}
        if isinstance(backend, str):
            if net is None:
                raise ValueError("a Stylizer without a network needs a Backend object")
            name = resolve_backend(backend, self.device)
            backend = (
                TorchBackend(net)
                if name == "torch"
                else OnnxRuntimeBackend(net=net, device=self.device, release_memory=release_memory)
            )
        self._backend: Backend = backend
        self.backend = backend.name
        self.min_side = net.min_side if net is not None else _MIN_SIDE
        self.auto_tile_pixels = AUTO_TILE_PIXELS
        width = net.channels[0] if net is not None else 32  # channels of the full-resolution layers
        self.stats_pixels = min(AUTO_TILE_PIXELS, _STATS_ELEMENTS // max(1, width))
        # How images went: "onnxruntime", "torch" or "tiled in torch".
        self.paths_used: collections.Counter[str] = collections.Counter()

    @property
    def styles(self) -> list[str]:
        """The style names of a multi-style model, in order; ``[]`` for a single-style one."""
        return [str(name) for name in self.metadata.get("styles") or []]

    def style_weights(
        self, style: int | str | None = None, mix: dict[str, float] | None = None
    ) -> torch.Tensor | None:
        """``(1, S)`` weights for one style (a name or an index) or a ``mix`` of named styles; ``None``
        for a single-style model. A multi-style model without either paints its first style.
        """
        weights = style_weights_for(self.styles, style, mix)
        return None if weights is None else weights[None].to(self.device)

    def require_tiling(self) -> None:
        """A one-line ``FastStyleError`` when this model cannot run in tiles (an ``.onnx`` file)."""
        require_tiles(self._backend)

    @classmethod
    def from_file(
        cls,
        path: str | os.PathLike[str],
        device: str = "cpu",
        backend: str = "auto",
        release_memory: bool = False,
    ) -> Stylizer:
        """Load an exported ``.safetensors`` (or ``.onnx``) model; pickles are refused unread."""
        path = Path(path)
        meta = read_metadata(path)
        if path.suffix.lower() != ".onnx":
            return cls(build_network(path, meta), meta, device, backend, release_memory)
        if backend == "torch":
            raise FastStyleError(
                f"{path.name} is an ONNX model; it runs on onnxruntime, not the torch backend"
            )
        resolved = resolve_device(device)
        multiple = int(meta.get("multiple", 4))
        return cls(
            None, meta, resolved, OnnxRuntimeBackend.from_file(path, multiple, resolved, release_memory)
        )

    @torch.inference_mode()
    def stylize_tensor(
        self, images: torch.Tensor, style: int | str | None = None, mix: dict[str, float] | None = None
    ) -> torch.Tensor:
        """``(B, 3, H, W)`` in [0, 1] -> stylized ``(B, 3, H, W)`` in [0, 1], in one pass."""
        weights = self.style_weights(style, mix)
        return self._backend.run(images.to(self.device, torch.float32), weights).clamp_(0, 1)

    @torch.inference_mode()
    def stylize_array(
        self,
        pixels: np.ndarray,
        *,
        strength: float = 1.0,
        preserve_color: bool = False,
        tile: int | None = None,
        style: int | str | None = None,
        mix: dict[str, float] | None = None,
    ) -> np.ndarray:
        """``(H, W, 3)`` uint8 or uint16 pixels -> stylized ``(H, W, 3)`` uint8.

        ``tile`` forces tiles of that side; ``None`` tiles only images over ``auto_tile_pixels``,
        or after running out of GPU memory. ``style`` / ``mix``: see ``style_weights``.
        """
        if not 0.0 <= strength <= 1.0:
            raise FastStyleError(f"strength must be within [0, 1], got {strength}")
        weights = self.style_weights(style, mix)
        if tile is not None:
            self.require_tiling()
        h, w = pixels.shape[:2]
        if min(h, w) < self.min_side:
            # The networks' reflection padding needs a few pixels on each side, on every backend.
            grow = ((0, max(0, self.min_side - h)), (0, max(0, self.min_side - w)), (0, 0))
            padded = np.pad(pixels, grow, mode="edge")
            out = self.stylize_array(
                padded, strength=strength, preserve_color=preserve_color, tile=tile, style=style, mix=mix
            )
            return out[:h, :w]
        stats_pixels = min(self.auto_tile_pixels, self.stats_pixels)
        if tile is None and (not self._backend.tiles or h * w <= self.auto_tile_pixels):
            whole = self._stylize_whole(pixels, strength, preserve_color, weights)
            if whole is not None:
                return whole
            _release_cached_memory()
            stats_pixels = min(stats_pixels, h * w // 4)  # the whole image did not fit
        return self._stylize_tiled(
            pixels, tile or tiling.DEFAULT_TILE, stats_pixels, strength, preserve_color, weights
        )

    def _stylize_whole(
        self, pixels: np.ndarray, strength: float, preserve_color: bool, weights: torch.Tensor | None
    ) -> np.ndarray | None:
        """The image in one pass on the backend; ``None`` when memory ran out and tiles can take over."""
        try:
            content = tiling.to_tensor(pixels, self.device)
            out = finish_stylized(self._backend.run(content, weights), content, strength, preserve_color)
        except RuntimeError as exc:
            if not tiling.out_of_memory(exc) or not self._backend.tiles:
                raise
            return None  # the tensors of the failed pass go with this frame
        self.paths_used[self.backend] += 1
        return _to_uint8(out)

    def _stylize_tiled(
        self,
        pixels: np.ndarray,
        size: int,
        stats_pixels: int,
        strength: float,
        preserve_color: bool,
        weights: torch.Tensor | None,
    ) -> np.ndarray:
        """Tiles of ``size``, halved (with a quarter of the statistics copy) after each out-of-memory."""
        while True:
            try:
                result = self._backend.run_tiled(
                    pixels,
                    tile=size,
                    stats_pixels=stats_pixels,
                    finish=lambda out, content: finish_stylized(out, content, strength, preserve_color),
                    style=weights,
                )
                self.paths_used["tiled in torch"] += 1
                return result
            except RuntimeError as exc:
                if not tiling.out_of_memory(exc):
                    raise
                _release_cached_memory()
                if size <= 128:
                    raise FastStyleError("out of memory even with 128 px tiles") from None
                size, stats_pixels = size // 2, stats_pixels // 4

    def stylize(
        self, image: Image.Image, *, max_size: int | None = None, **options: Unpack[StylizeOptions]
    ) -> Image.Image:
        """Stylize a PIL image of any mode; alpha is kept, the result is RGB or RGBA.

        ``max_size`` scales the image down so its longer side is at most that many pixels;
        ``options`` are those of ``stylize_array``.
        """
        img = normalize_mode(image)
        if max_size is not None and max(img.size) > max_size:
            img = resize_long_side(img, max_size)
        pixels, alpha = rgb_array(img)
        out = Image.fromarray(self.stylize_array(pixels, **options), mode="RGB")
        if alpha is not None:
            out.putalpha(alpha)
        return out


def style_weights_for(
    names: list[str], style: int | str | None = None, mix: dict[str, float] | None = None
) -> torch.Tensor | None:
    """``(S,)`` weights of a model with the styles ``names`` for ``style`` (name or index) or ``mix``.

    ``None`` for a single-style model (``names`` empty); a one-line ``FastStyleError`` for a choice the
    model cannot paint.
    """
    if not names:
        if style is not None or mix:
            raise FastStyleError("this model paints one style; --style and --mix need a multi-style model")
        return None
    if style is not None and mix:
        raise FastStyleError("give either a style or a mix, not both")
    weights = torch.zeros(len(names))
    if mix:
        unknown = [name for name in mix if name not in names]
        if unknown:
            raise FastStyleError(f"unknown style {unknown[0]!r}; the model's styles: {', '.join(names)}")
        for name, weight in mix.items():
            if not float(weight) >= 0:  # also refuses NaN
                raise FastStyleError(f"mix weights must be non-negative numbers, got {name}={weight}")
            weights[names.index(name)] += float(weight)
        if float(weights.sum()) <= 0:
            raise FastStyleError("mix weights must not all be 0")
        return weights / weights.sum()
    chosen = style if style is not None else 0
    if isinstance(chosen, str) and chosen in names:
        weights[names.index(chosen)] = 1.0
        return weights
    if isinstance(chosen, int) or (isinstance(chosen, str) and chosen.isdigit()):
        index = int(chosen)
        if not 0 <= index < len(names):
            raise FastStyleError(f"style index {index} is not within 0..{len(names) - 1}")
        weights[index] = 1.0
        return weights
    raise FastStyleError(f"unknown style {chosen!r}; the model's styles: {', '.join(names)}")


def parse_mix(text: str) -> dict[str, float]:
    """``a=0.7,b=0.3`` -> ``{"a": 0.7, "b": 0.3}``; a one-line ``FastStyleError`` for anything else."""
    mix: dict[str, float] = {}
    for part in text.split(","):
        name, sep, value = part.partition("=")
        try:
            weight = float(value)
        except ValueError:
            weight = float("nan")
        if not sep or not name.strip() or not 0 <= weight < float("inf"):
            raise FastStyleError(
                f"--mix takes NAME=WEIGHT pairs with weights >= 0, e.g. a=0.5,b=0.5; got {part!r}"
            )
        mix[name.strip()] = mix.get(name.strip(), 0.0) + weight
    return mix
