"""Feed-forward + N steps: a model's picture refined by L-BFGS on the loss the model was trained with.

A transform network paints in a fraction of a second; per-image optimization started from that
picture, instead of the photo or noise, adds the optimizer's brush marks in a few steps.
``fast-style stylize --refine N`` and the web page run it after the network. It needs the loss
network (VGG), so it lives beside ``fast_style.optimize``: inference never imports it, and the
commands import it only when asked to refine.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from fast_style.errors import FastStyleError
from fast_style.files import file_sha256
from fast_style.losses import PerceptualLoss, build_perceptual_loss
from fast_style.optimize import MIN_SIDE, OptimizeResult, optimize_pixels
from fast_style.trained_loss import loss_arguments, recorded_loss

if TYPE_CHECKING:
    from PIL import Image

    from fast_style.inference import Stylizer

__all__ = [
    "Refiner",
    "TooLargeToRefine",
    "available_memory",
    "find_style_image",
    "refine_memory",
    "shipped_styles_dir",
]

# Peak memory of one L-BFGS step per pixel: the loss network's activations to relu4_3 kept for the
# backward pass, measured on the CPU at 3.1-4.4 KiB per pixel (128-512 px squares, VGG16-BN folded).
_STEP_BYTES_PER_PIXEL = 4608
# L-BFGS keeps two float32 RGB vectors per step in its history (at most ``history_size`` of them).
_HISTORY_BYTES_PER_PIXEL_STEP = 2 * 3 * 4
_HISTORY_SIZE = 100
_FIXED_BYTES = 256 * 2**20  # the loss network's weights, the style targets, the allocator's slack
_USABLE_SHARE = 0.8  # of the memory free when a refine starts

_SOURCE_ROOT = Path(__file__).resolve().parents[1]


class TooLargeToRefine(FastStyleError):
    """An image whose optimization would not fit in memory; ``largest`` is the long side that would."""

    def __init__(self, message: str, largest: int) -> None:
        super().__init__(message)
        self.largest = largest


def refine_memory(height: int, width: int, steps: int) -> int:
    """Bytes that ``steps`` L-BFGS steps on a ``height`` x ``width`` image need at their peak (an estimate)."""
    per_pixel = _STEP_BYTES_PER_PIXEL + _HISTORY_BYTES_PER_PIXEL_STEP * min(steps, _HISTORY_SIZE)
    return _FIXED_BYTES + height * width * per_pixel


def available_memory(device: torch.device) -> int | None:
    """Bytes free for a refine on ``device``: free GPU memory, or the system's available memory; ``None`` if unknown."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free)
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (AttributeError, ValueError, OSError):
        return None


def shipped_styles_dir() -> Path | None:
    """``assets/styles/`` of the source checkout this package runs from (the shipped models' paintings)."""
    folder = _SOURCE_ROOT / "assets" / "styles"
    return folder if folder.is_dir() else None


def _matches(path: Path, record: Mapping[str, Any]) -> bool:
    digest = record.get("style_sha256")
    return file_sha256(path) == digest if digest else path.name == record.get("style_image")


def find_style_image(
    record: Mapping[str, Any],
    model_path: str | os.PathLike[str],
    given: Sequence[str | os.PathLike[str]] = (),
) -> Path:
    """The style image a model (or one style of it, ``record``) was trained on.

    Looked for among ``given`` paths, then beside the model file and in the shipped styles; a file
    is the one when its SHA-256 is the recorded one, or, for files that predate the hash, its name.
    """
    name = record.get("style_image")
    if not name:
        raise FastStyleError("the model records no style image; refining needs the loss it was trained with")
    candidates = [Path(p).expanduser() for p in given]
    candidates.append(Path(model_path).parent / str(name))
    shipped = shipped_styles_dir()
    if shipped is not None:
        candidates.append(shipped / str(name))
    for path in candidates:
        if path.is_file() and _matches(path, record):
            return path
    digest = record.get("style_sha256")
    which = f"{name}, sha256 {str(digest)[:12]}..." if digest else str(name)
    raise FastStyleError(
        f"refining needs the style image the model was trained on ({which}); pass --style-image PATH to it"
    )


@dataclass(frozen=True)
class _Style:
    name: str | None
    record: dict[str, Any]
    weight: float


class Refiner:
    """N L-BFGS steps from a model's picture on the loss it was trained with: ``Refiner.for_model(...)``.

    The loss holds its style targets from the start; each call sets the photo's content targets.
    Calls are not thread-safe (one loss object, one set of targets).
    """

    def __init__(self, loss: PerceptualLoss, steps: int, device: torch.device) -> None:
        if steps < 1:
            raise FastStyleError(f"refine steps must be at least 1, got {steps}")
        self.loss = loss.to(device)
        self.steps = int(steps)
        self.device = device

    @classmethod
    def for_model(
        cls,
        stylizer: Stylizer,
        model_path: str | os.PathLike[str],
        steps: int,
        *,
        weights: str | None = None,
        style_images: Sequence[str | os.PathLike[str]] = (),
        style: int | str | None = None,
        mix: dict[str, float] | None = None,
    ) -> Refiner:
        """A refiner on the loss ``stylizer``'s model records, for the style (or ``mix``) it paints.

        ``weights``: the loss network's weights, ``imagenet`` (the default) or a path; a model trained
        with a weights file needs that file. The style images are found by ``find_style_image``.
        """
        from fast_style.images import load_image_tensor

        if steps < 1:
            raise FastStyleError(f"--refine must be at least 1, got {steps}")
        chosen = _styles(stylizer, style, mix)
        first = chosen[0].record
        if not first:
            raise FastStyleError(
                f"{Path(model_path).name} records no training loss, which refining optimizes; "
                "use fast-style optimize with the loss settings instead"
            )
        if str(first.get("weights", "")).lower() == "file" and weights is None:
            raise FastStyleError(
                f"refining needs the loss-network weights the model was trained with "
                f"({first.get('weights_file', '?')}): pass --loss-weights PATH"
            )
        kind = str(first.get("weights", "imagenet")).lower()
        if kind == "imagenet" and weights is not None and weights.lower() not in ("imagenet", "none"):
            # a local copy of the ImageNet weights: the record names no file to check it against
            arguments = loss_arguments(first, "imagenet") | {"weights": weights}
        else:
            arguments = loss_arguments(first, weights)
        paths = [find_style_image(s.record, model_path, style_images) for s in chosen]
        if not all(s.record.get("style_size") for s in chosen):
            raise FastStyleError(
                "the model records no style size; refining needs the loss it was trained with"
            )
        sizes = [int(s.record["style_size"]) for s in chosen]
        try:
            loss = build_perceptual_loss(**arguments)
        except FastStyleError:
            if str(arguments["weights"]).lower() != "imagenet":
                raise
            network = arguments.get("network", "vgg16")
            raise FastStyleError(
                f"refining needs the loss network's weights: torchvision's ImageNet {network} is not in the "
                f"torch hub cache and could not be downloaded; pass --loss-weights PATH to a state dict "
                f"of {network}().features"
            ) from None
        styles = [load_image_tensor(p, size) for p, size in zip(paths, sizes, strict=True)]
        loss.set_style_image(styles, [s.weight for s in chosen])
        return cls(loss.to(stylizer.device), steps, stylizer.device)

    def check_size(
        self, height: int, width: int, available: int | None = None, steps: int | None = None
    ) -> None:
        """Refuse an image too small for the loss network, or whose optimization would not fit in memory.

        ``available``: bytes free (default: ``available_memory`` of the device); ``steps``: the refine
        steps (default: ``self.steps``).
        """
        if min(height, width) < MIN_SIDE:
            raise FastStyleError(
                f"a {width}x{height} px image is too small to refine: the loss network needs {MIN_SIDE} px a side"
            )
        free = available_memory(self.device) if available is None else available
        if free is None:
            return
        budget = free * _USABLE_SHARE
        need = refine_memory(height, width, steps or self.steps)
        if need <= budget:
            return
        per_pixel = (need - _FIXED_BYTES) / (height * width)
        pixels = max(0.0, budget - _FIXED_BYTES) / per_pixel
        largest = math.floor(max(height, width) * math.sqrt(pixels / (height * width)))
        raise TooLargeToRefine(
            f"refining {width}x{height} px needs about {need / 2**30:.1f} GiB, more than the "
            f"{budget / 2**30:.1f} GiB this {self.device.type} can spare; {largest} px on the long side "
            f"would fit",
            largest,
        )

    def refine(
        self,
        picture: torch.Tensor,
        content: torch.Tensor,
        *,
        steps: int | None = None,
        progress: bool = False,
        description: str = "",
    ) -> OptimizeResult:
        """``steps`` (default: ``self.steps``) L-BFGS steps from ``picture`` (the model's, ``(1, 3, H, W)``
        in [0, 1]) for ``content``."""
        steps = steps or self.steps
        h, w = content.shape[-2:]
        self.check_size(h, w, steps=steps)
        content = content.to(self.device, torch.float32).clone()
        self.loss.set_content_image(content)
        return optimize_pixels(
            self.loss,
            picture.to(self.device, torch.float32).clone(),
            steps,
            "lbfgs",
            progress=progress,
            description=description or "refine",
        )

    def stylize(
        self,
        stylizer: Stylizer,
        image: Image.Image,
        *,
        max_size: int | None = None,
        strength: float = 1.0,
        preserve_color: bool = False,
        tile: int | None = None,
        style: int | str | None = None,
        mix: dict[str, float] | None = None,
        steps: int | None = None,
        progress: bool = False,
        description: str = "",
    ) -> Image.Image:
        """``stylizer.stylize`` with the refine steps between the network and ``strength`` / ``preserve_color``.

        Raises ``RunFailed`` when the loss becomes non-finite.
        """
        from fast_style.errors import RunFailed
        from fast_style.images import normalize_mode, resize_long_side, rgb_array, tensor_to_image
        from fast_style.inference import finish_stylized
        from fast_style.inference.tiling import to_tensor

        img = normalize_mode(image)
        if max_size is not None and max(img.size) > max_size:
            img = resize_long_side(img, max_size)
        pixels, alpha = rgb_array(img)
        height, width = pixels.shape[:2]
        self.check_size(height, width, steps=steps)  # before the network runs
        picture = stylizer.stylize_array(pixels, tile=tile, style=style, mix=mix)
        content = to_tensor(pixels, self.device)
        result = self.refine(
            to_tensor(picture, self.device), content, steps=steps, progress=progress, description=description
        )
        if result.error is not None:
            raise RunFailed(f"refining stopped: {result.error}")
        out = tensor_to_image(finish_stylized(result.image.clone(), content, strength, preserve_color))
        if alpha is not None:
            out.putalpha(alpha)
        return out


def _styles(stylizer: Stylizer, style: int | str | None, mix: dict[str, float] | None) -> list[_Style]:
    """The styles the model paints for ``style`` / ``mix``, each with its recorded loss and blend weight."""
    weights = stylizer.style_weights(style, mix)
    if weights is None:
        return [_Style(None, recorded_loss(stylizer.metadata), 1.0)]
    chosen = []
    for name, weight in zip(stylizer.styles, weights[0].tolist(), strict=True):
        if weight > 0:
            chosen.append(_Style(name, recorded_loss(stylizer.metadata, name), float(weight)))
    return chosen
