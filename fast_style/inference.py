"""Load an exported inference file and stylize images of any size; imports nothing from training or VGG.

``Stylizer.from_file(path).stylize(pil_image)`` is the entry point. Large images are processed in
overlapping tiles that share one set of instance-norm statistics, so tiles agree and blend without
seams while peak memory stays bounded by the tile size.
"""

from __future__ import annotations

import collections
import contextlib
import json
import math
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import nn

from fast_style import runtime
from fast_style.errors import FastStyleError, one_line
from fast_style.images import normalize_mode, resize_long_side, rgb_array
from fast_style.models import build_model, check_model_spec
from fast_style.models.layers import pad_to_multiple

__all__ = [
    "AUTO_TILE_PIXELS",
    "BACKENDS",
    "DEFAULT_TILE",
    "PICKLE_SUFFIXES",
    "Stylizer",
    "read_metadata",
    "resolve_backend",
    "resolve_device",
]

# Images with more pixels than this are tiled automatically (about 2048 x 2048); the instance-norm
# statistics of a tiled image come from a copy scaled down to at most this many pixels.
AUTO_TILE_PIXELS = 2048 * 2048
# The statistics pass holds a few full-resolution activations at once; this caps each of them
# (2048 x 2048 x 16 channels, 256 MiB) so a 4096 x 4096 image stays under 2 GiB on CPU.
_STATS_ELEMENTS = 2048 * 2048 * 16
DEFAULT_TILE = 1024
BACKENDS = ("auto", "torch", "onnxruntime")
PICKLE_SUFFIXES = (".pth", ".pt", ".ckpt", ".pkl", ".pickle", ".bin")
_BLEND = 16  # width in pixels of the linear cross-fade between neighbouring tiles
_LUMA = (0.299, 0.587, 0.114)  # ITU-R BT.601, as in JPEG's YCbCr
_MIN_SIDE = 8  # smaller images are edge-padded up to this before any backend sees them


def _pickle_message(path: Path) -> str:
    target = path.with_suffix(".safetensors")
    if target.name == path.name:  # a pickle named .safetensors: do not suggest writing onto it
        target = path.with_name(f"{path.stem}.exported.safetensors")
    return (
        f"{path.name} is a pickle file, which is never loaded for inference (it could run code); "
        f"export it first: fast-style export {path} -o {target}"
    )


def _looks_like_pickle(head: bytes) -> bool:
    # torch.save writes a zip archive; plain pickles start with the PROTO opcode.
    return head.startswith(b"PK\x03\x04") or (len(head) >= 2 and head[0] == 0x80 and head[1] <= 5)


def _is_safetensors(head: bytes) -> bool:
    # 8-byte little-endian header length, then a JSON object.
    return len(head) > 8 and 2 <= int.from_bytes(head[:8], "little") < 100_000_000 and head[8:9] == b"{"


def _check_model_path(path: Path) -> bytes:
    if not path.exists():
        raise FastStyleError(f"model file not found: {path}")
    if path.is_dir():
        raise FastStyleError(f"expected a model file, got a folder: {path}")
    if path.suffix.lower() in PICKLE_SUFFIXES:
        raise FastStyleError(_pickle_message(path))
    with path.open("rb") as fh:
        head = fh.read(16)
    if not head:
        raise FastStyleError(f"model file is empty: {path}")
    return head


def _decode_metadata(raw: dict[str, str], path: Path) -> dict[str, Any]:
    if raw.get("format") != "fast_style":
        raise FastStyleError(f"{path} is not a fast_style model file (no fast_style metadata)")
    meta: dict[str, Any] = dict(raw)
    try:
        meta["model_kwargs"] = json.loads(raw["model_kwargs"])
        meta["training"] = json.loads(raw.get("training", "{}"))
    except (KeyError, json.JSONDecodeError) as exc:
        raise FastStyleError(f"{path} has corrupt metadata ({exc})") from None
    if not isinstance(meta["model_kwargs"], dict) or not isinstance(meta.get("arch"), str):
        raise FastStyleError(f"{path} has corrupt metadata (no architecture)")
    multiple = str(meta.get("multiple", "4"))
    if not multiple.isdigit() or not 1 <= int(multiple) <= 64:
        raise FastStyleError(f"{path} has corrupt metadata (multiple={multiple!r}, expected 1 to 64)")
    return meta


def read_metadata(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The header metadata of a fast_style ``.safetensors`` or ``.onnx`` file, with JSON fields decoded."""
    path = Path(path)
    head = _check_model_path(path)
    if _looks_like_pickle(head) and not _is_safetensors(head):
        raise FastStyleError(_pickle_message(path))
    if path.suffix.lower() == ".onnx":
        session = runtime.build_session(path, "cpu", name=path.name)
        return _decode_metadata(session.get_modelmeta().custom_metadata_map, path)
    if not _is_safetensors(head):
        raise FastStyleError(f"{path} is not a .safetensors model file (corrupt or another format)")
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as fh:
            raw = dict(fh.metadata() or {})
    except Exception as exc:
        raise FastStyleError(f"cannot read model file {path}: {str(exc).splitlines()[0]}") from None
    return _decode_metadata(raw, path)


def _check_tensors_match(path: Path, meta: dict[str, Any]) -> None:
    """Refuse a file whose metadata describes another network than its tensors, before building it."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as fh:
            shapes = {key: fh.get_slice(key).get_shape() for key in fh.keys()}
    except Exception as exc:
        raise FastStyleError(f"cannot read model file {path}: {one_line(exc)}") from None
    try:
        check_model_spec(meta["arch"], meta["model_kwargs"], shapes)
    except ValueError as exc:
        raise FastStyleError(f"{path} describes an unknown or invalid architecture ({exc})") from None
    except RuntimeError as exc:
        raise FastStyleError(f"{path} does not match its architecture {meta['arch']!r}: {exc}") from None


def resolve_device(device: str | torch.device) -> torch.device:
    """``auto`` -> CUDA when available, else CPU; an error if CUDA is asked for but missing."""
    name = str(device)
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(name)
    except RuntimeError:
        raise FastStyleError(f"unknown device {name!r}; use auto, cpu or cuda") from None
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise FastStyleError("CUDA was requested but is not available; use --device cpu or auto")
    if resolved.type not in ("cpu", "cuda"):
        raise FastStyleError(f"unsupported device {name!r}; use auto, cpu or cuda")
    return resolved


# -- instance-norm statistics shared by all tiles ----------------------------------------------------
_Stats = dict[int, tuple[torch.Tensor, torch.Tensor]]


def _norm_layers(net: nn.Module) -> list[nn.Module]:
    return [m for m in net.modules() if isinstance(m, nn.modules.instancenorm._InstanceNorm)]


def _normalize(
    layer: nn.Module, x: torch.Tensor, mean: torch.Tensor, var: torch.Tensor, inplace: bool
) -> torch.Tensor:
    scale = torch.rsqrt(var + layer.eps)
    if layer.affine:
        scale = scale * layer.weight[None]
    shift = -mean * scale
    if layer.affine:
        shift = shift + layer.bias[None]
    scale, shift = scale[:, :, None, None], shift[:, :, None, None]
    # No full-size temporaries: the statistics pass runs at up to 2048 x 2048.
    return x.mul_(scale).add_(shift) if inplace else torch.addcmul(shift, x, scale)


@contextlib.contextmanager
def _shared_norm_stats(net: nn.Module, stats: _Stats, record: bool) -> Iterator[None]:
    """Within the block, instance norms record their statistics into ``stats`` or apply those."""
    layers = _norm_layers(net)
    # In fast_style's own networks every instance norm follows a convolution whose output nothing
    # else reads, so it can be normalized in place.
    inplace = type(net).__module__.startswith("fast_style.models.")

    def make(index: int, layer: nn.Module) -> Callable[[torch.Tensor], torch.Tensor]:
        def forward(x: torch.Tensor) -> torch.Tensor:
            if record:
                stats[index] = (x.mean((2, 3)), x.var((2, 3), unbiased=False))
            mean, var = stats[index]
            return _normalize(layer, x, mean, var, inplace)

        return forward

    if record:
        stats.clear()
    for index, layer in enumerate(layers):
        layer.forward = make(index, layer)  # type: ignore[method-assign]
    try:
        yield
    finally:
        for layer in layers:
            layer.__dict__.pop("forward", None)


@contextlib.contextmanager
def _banded_convolutions(net: nn.Module, max_elements: int = 1 << 22) -> Iterator[None]:
    """Within the block, unpadded convolutions over large inputs run a band of rows at a time.

    The result is the same; the convolution library's scratch copies of input and output then
    stay the size of one band instead of the whole image.
    """
    convs = [m for m in net.modules() if isinstance(m, nn.Conv2d) and m.padding == (0, 0)]

    def make(conv: nn.Conv2d) -> Callable[[torch.Tensor], torch.Tensor]:
        def forward(x: torch.Tensor) -> torch.Tensor:
            b, c, h, w = x.shape
            (kh, kw), (sh, sw), (dh, dw) = conv.kernel_size, conv.stride, conv.dilation
            out_h, out_w = (h - dh * (kh - 1) - 1) // sh + 1, (w - dw * (kw - 1) - 1) // sw + 1
            band = max(1, max_elements // max(1, b * c * w * sh))
            if band >= out_h:
                return conv._conv_forward(x, conv.weight, conv.bias)
            out = x.new_empty(b, conv.out_channels, out_h, out_w)
            for top in range(0, out_h, band):
                bottom = min(out_h, top + band)
                rows = x[:, :, top * sh : (bottom - 1) * sh + dh * (kh - 1) + 1]
                out[:, :, top:bottom] = conv._conv_forward(rows, conv.weight, conv.bias)
            return out

        return forward

    for conv in convs:
        conv.forward = make(conv)  # type: ignore[method-assign]
    try:
        yield
    finally:
        for conv in convs:
            conv.__dict__.pop("forward", None)


# -- tiling --------------------------------------------------------------------------------------
def _tile_starts(length: int, tile: int, step: int) -> list[int]:
    if length <= tile:
        return [0]
    starts = list(range(0, length - tile, step))
    return starts + [length - tile]


def _window(length: int, start: int, size: int, margin: int, total: int) -> torch.Tensor:
    """Per-axis weights of one tile: zero on its ``margin``, a ramp, then one (image edges stay 1)."""
    w = torch.ones(size)
    ramp = (torch.arange(_BLEND, dtype=torch.float32) + 0.5) / _BLEND
    if start > 0:
        w[:margin] = 0
        w[margin : margin + _BLEND] = ramp
    if start + size < total:
        w[size - margin :] = 0
        w[size - margin - _BLEND : size - margin] = torch.minimum(w[size - margin - _BLEND : size - margin], ramp.flip(0))
    return w[:length]


def _pixel_scale(pixels: np.ndarray) -> float:
    return 65535.0 if pixels.dtype == np.uint16 else (255.0 if pixels.dtype == np.uint8 else 1.0)


def _downscaled(pixels: np.ndarray, max_pixels: int) -> np.ndarray:
    """Block-average ``(H, W, 3)`` pixels down to at most ``max_pixels``, a band of rows at a time."""
    h, w = pixels.shape[:2]
    k = max(1, math.ceil(math.sqrt(h * w / max_pixels)))
    if k == 1:
        return pixels
    scale = _pixel_scale(pixels)
    rows, cols = h // k, w // k
    out = np.empty((rows, cols, 3), dtype=np.float32)
    band = max(1, 256 // k)
    for r in range(0, rows, band):
        block = pixels[r * k : (r + band) * k, : cols * k].astype(np.float32)
        n = block.shape[0] // k
        out[r : r + n] = block[: n * k].reshape(n, k, cols, k, 3).mean(axis=(1, 3)) / scale
    return out


def _out_of_memory(exc: BaseException) -> bool:
    return isinstance(exc, torch.cuda.OutOfMemoryError) or "can't allocate memory" in str(exc)


def resolve_backend(backend: str, device: torch.device) -> str:
    """``auto`` -> onnxruntime on CPU when installed, else torch; an error for a missing runtime."""
    if backend not in BACKENDS:
        raise FastStyleError(f"unknown backend {backend!r}; use one of {', '.join(BACKENDS)}")
    if backend == "auto":
        return "onnxruntime" if device.type == "cpu" and runtime.available() else "torch"
    if backend == "onnxruntime" and not runtime.available():
        raise FastStyleError("the onnxruntime backend needs onnx and onnxruntime: pip install onnx onnxruntime")
    return backend


class Stylizer:
    """A transform network ready to stylize: ``Stylizer.from_file(path).stylize(pil_image)``.

    Whole images run on ``backend``: ``auto`` picks onnxruntime on CPU when it is installed (the
    graph is built from the network on first use) and PyTorch otherwise. Tiled images always run
    in PyTorch, which lets the tiles share one set of instance-norm statistics.
    """

    supports_tiling = True

    def __init__(
        self, net: nn.Module, metadata: dict[str, Any] | None = None, device: str = "cpu", backend: str = "auto"
    ) -> None:
        self.device = resolve_device(device)
        self.backend = resolve_backend(backend, self.device)
        self.net = net.eval().requires_grad_(False).to(self.device)
        self.metadata = metadata or {}
        self.multiple = int(getattr(net, "multiple", 4))
        self.min_side = int(getattr(net, "min_side", _MIN_SIDE))
        self.auto_tile_pixels = AUTO_TILE_PIXELS
        width = int(getattr(net, "channels", (32,))[0])  # channels of the full-resolution layers
        self.stats_pixels = min(AUTO_TILE_PIXELS, _STATS_ELEMENTS // max(1, width))
        self._session: Any = None
        self.paths_used: collections.Counter[str] = collections.Counter()  # "onnxruntime", "torch", "tiled in torch"

    @classmethod
    def from_file(cls, path: str | os.PathLike[str], device: str = "cpu", backend: str = "auto") -> Stylizer:
        """Load an exported ``.safetensors`` (or ``.onnx``) model; pickles are refused unread."""
        path = Path(path)
        meta = read_metadata(path)
        if path.suffix.lower() == ".onnx":
            if backend == "torch":
                raise FastStyleError(f"{path.name} is an ONNX model; it runs on onnxruntime, not the torch backend")
            return OnnxStylizer(path, meta, device)
        from safetensors.torch import load_file

        _check_tensors_match(path, meta)
        try:
            net = build_model(meta["arch"], **meta["model_kwargs"])
        except (KeyError, TypeError, ValueError) as exc:
            raise FastStyleError(f"{path} describes an unknown or invalid architecture ({exc})") from None
        try:
            state = load_file(str(path))
        except Exception as exc:
            raise FastStyleError(f"cannot read model file {path}: {str(exc).splitlines()[0]}") from None
        try:
            net.load_state_dict(state, strict=True)
        except RuntimeError as exc:
            first = " ".join(str(exc).split())[:300]
            raise FastStyleError(f"{path} does not match its architecture {meta['arch']!r}: {first}") from None
        bad = [k for k, v in state.items() if v.is_floating_point() and not torch.isfinite(v).all()]
        if bad:
            raise FastStyleError(f"{path} contains non-finite weights ({bad[0]}); it cannot be used")
        return cls(net, meta, str(device), backend)

    # -- tensors -------------------------------------------------------------------------------
    def _forward(self, images: torch.Tensor) -> torch.Tensor:
        """The PyTorch network on ``(B, 3, H, W)`` in [0, 1] on this device, any size."""
        return self.net(images)

    def _forward_aligned(self, images: torch.Tensor) -> torch.Tensor:
        """The PyTorch network on sizes that are already multiples of ``self.multiple`` (no padding)."""
        aligned = getattr(self.net, "forward_aligned", None)
        return aligned(images) if aligned is not None else self.net(images)

    def _forward_whole(self, images: torch.Tensor) -> torch.Tensor:
        """A whole image through this stylizer's backend, any size."""
        if self.backend == "torch":
            return self._forward(images)
        if self._session is None:
            self._session = runtime.session_for(self.net, self.device.type)
            self.net.to(self.device)  # building a graph moves the network to the CPU
        h, w = images.shape[-2:]
        return runtime.run_session(self._session, pad_to_multiple(images, self.multiple))[..., :h, :w]

    @torch.inference_mode()
    def stylize_tensor(self, images: torch.Tensor) -> torch.Tensor:
        """``(B, 3, H, W)`` in [0, 1] -> stylized ``(B, 3, H, W)`` in [0, 1], in one pass."""
        return self._forward_whole(images.to(self.device, torch.float32)).clamp_(0, 1)

    @staticmethod
    def _finish(stylized: torch.Tensor, content: torch.Tensor, strength: float, preserve_color: bool) -> torch.Tensor:
        if preserve_color:
            luma = stylized.new_tensor(_LUMA)[None, :, None, None]
            delta = ((stylized - content) * luma).sum(1, keepdim=True)
            stylized = content + delta  # the stylized luminance with the content's chroma
        if strength != 1.0:
            stylized = content + strength * (stylized - content)
        return stylized.clamp_(0, 1)

    def _to_tensor(self, pixels: np.ndarray) -> torch.Tensor:
        scale = _pixel_scale(pixels)
        tensor = torch.from_numpy(np.ascontiguousarray(pixels, dtype=np.float32)).permute(2, 0, 1)[None]
        return tensor.to(self.device).div_(scale)

    # -- arrays --------------------------------------------------------------------------------
    @torch.inference_mode()
    def stylize_array(
        self,
        pixels: np.ndarray,
        *,
        strength: float = 1.0,
        preserve_color: bool = False,
        tile: int | None = None,
    ) -> np.ndarray:
        """``(H, W, 3)`` uint8 or uint16 pixels -> stylized ``(H, W, 3)`` uint8.

        ``tile`` forces tiles of that side; ``None`` tiles only images over ``auto_tile_pixels``,
        or after running out of GPU memory.
        """
        if not 0.0 <= strength <= 1.0:
            raise FastStyleError(f"strength must be within [0, 1], got {strength}")
        h, w = pixels.shape[:2]
        if min(h, w) < self.min_side:
            # The networks' reflection padding needs a few pixels on each side, on every backend.
            grow = ((0, max(0, self.min_side - h)), (0, max(0, self.min_side - w)), (0, 0))
            padded = np.pad(pixels, grow, mode="edge")
            out = self.stylize_array(padded, strength=strength, preserve_color=preserve_color, tile=tile)
            return out[:h, :w]
        stats_pixels = min(self.auto_tile_pixels, self.stats_pixels)
        if tile is None and h * w <= self.auto_tile_pixels:
            try:
                content = self._to_tensor(pixels)
                out = self._finish(self._forward_whole(content), content, strength, preserve_color)
                self.paths_used[self.backend] += 1
                return self._to_uint8(out)
            except RuntimeError as exc:  # out of GPU (or CPU) memory: go on in tiles
                if not _out_of_memory(exc):
                    raise
                content = out = None  # type: ignore[assignment]
                if torch.cuda.is_available():
                    torch.cuda.empty_cache()
                stats_pixels = min(stats_pixels, h * w // 4)  # the whole image did not fit
        size = tile or DEFAULT_TILE
        while True:
            try:
                result = self._stylize_tiled(pixels, size, stats_pixels, strength, preserve_color)
                self.paths_used["tiled in torch"] += 1
                return result
            except RuntimeError as exc:
                if not _out_of_memory(exc):
                    raise
                if torch.cuda.is_available():
                    torch.cuda.empty_cache()
                if size <= 128:
                    raise FastStyleError("out of memory even with 128 px tiles") from None
                size, stats_pixels = size // 2, stats_pixels // 4

    @staticmethod
    def _to_uint8(images: torch.Tensor) -> np.ndarray:
        return images[0].mul(255).round_().to(torch.uint8).permute(1, 2, 0).cpu().numpy()

    def _stylize_tiled(
        self, pixels: np.ndarray, tile: int, stats_pixels: int, strength: float, preserve_color: bool
    ) -> np.ndarray:
        h, w = pixels.shape[:2]
        m = self.multiple
        # Pad once to the network's multiple, as the network itself does for a whole image.
        pad_h, pad_w = (-h) % m, (-w) % m
        mode = "reflect" if pad_h < h and pad_w < w else "edge"
        padded = np.pad(pixels, ((0, pad_h), (0, pad_w), (0, 0)), mode=mode) if pad_h or pad_w else pixels
        total_h, total_w = padded.shape[:2]

        stats: _Stats = {}
        with _shared_norm_stats(self.net, stats, record=True), _banded_convolutions(self.net):
            self._forward(self._to_tensor(_downscaled(padded, stats_pixels)))

        tile = max(m * 16, tile // m * m)
        radius = int(getattr(self.net, "receptive_radius", lambda: 64)())
        margin = min(math.ceil((radius + 2) / m) * m, (tile // 4) // m * m)
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

        with _shared_norm_stats(self.net, stats, record=False):
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
                    content = self._to_tensor(padded[y : y + th, x : x + tw])
                    out = self._finish(self._forward_aligned(content), content, strength, preserve_color)
                    wgt = wy[:, None] * _window(tw, x, tile, margin, total_w)[None, :]
                    acc[:, y - top : y - top + th, x : x + tw] += out[0].float().cpu() * wgt
                    weight[y - top : y - top + th, x : x + tw] += wgt
            emit(acc.shape[1])
        return result

    # -- images --------------------------------------------------------------------------------
    def stylize(
        self,
        image: Image.Image,
        *,
        strength: float = 1.0,
        preserve_color: bool = False,
        tile: int | None = None,
        max_size: int | None = None,
    ) -> Image.Image:
        """Stylize a PIL image of any mode; alpha is kept, the result is RGB or RGBA.

        ``max_size`` scales the image down so its longer side is at most that many pixels.
        """
        img = normalize_mode(image)
        if max_size is not None and max(img.size) > max_size:
            img = resize_long_side(img, max_size)
        pixels, alpha = rgb_array(img)
        out = Image.fromarray(
            self.stylize_array(pixels, strength=strength, preserve_color=preserve_color, tile=tile), mode="RGB"
        )
        if alpha is not None:
            out.putalpha(alpha)
        return out


class OnnxStylizer(Stylizer):
    """A ``Stylizer`` that runs an exported ``.onnx`` model with onnxruntime (no tiling)."""

    supports_tiling = False

    def __init__(self, path: str | os.PathLike[str], metadata: dict[str, Any], device: str = "cpu") -> None:
        self.device = resolve_device(device)
        self.backend = "onnxruntime"
        self._session = runtime.build_session(Path(path), self.device.type, name=Path(path).name)
        self.metadata = metadata
        self.multiple = int(metadata.get("multiple", 4))
        self.min_side = _MIN_SIDE
        self.auto_tile_pixels = 1 << 62  # tiles need shared statistics, which ONNX graphs do not expose
        self.stats_pixels = AUTO_TILE_PIXELS
        self.paths_used = collections.Counter()

    def stylize_array(self, pixels: np.ndarray, *, tile: int | None = None, **kwargs: Any) -> np.ndarray:
        """As ``Stylizer.stylize_array``; tiling is not available for ONNX models."""
        if tile is not None:
            raise FastStyleError("tiling (--tile) needs a .safetensors model; ONNX models run whole images")
        return super().stylize_array(pixels, tile=None, **kwargs)
