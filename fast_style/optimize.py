"""Per-image style transfer by optimizing pixels (Gatys et al. 2016) against the shared perceptual loss.

No Lightning here: one image, one optimizer over its pixels, and the very ``PerceptualLoss`` that
trains the feed-forward networks. The loss network runs only as deep as the loss needs, the style
Gram targets and the content targets are computed once per scale, and each step costs one forward
and one backward pass of the truncated VGG.

Pixels stay in [0, 1] by projection: the loss is evaluated on the clamped pixels, and after every
optimizer step they are clamped in place. The loss therefore always sees a valid image, the image
that is saved is the one that was scored, and the objective a line search measures is the one the
saved image has.

The default L-BFGS step is one iteration with a strong-Wolfe line search: the loss of the accepted
image never exceeds that of the image the step started from, so a run cannot drift into noise. A
step usually costs one loss evaluation (forward and backward pass), sometimes two or three.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import cast

import torch
from torch.nn import functional as F

from fast_style.color import combine_luminance, luminance_image, match_luminance
from fast_style.errors import FastStyleError
from fast_style.losses import PerceptualLoss
from fast_style.schema import AdamPixelConfig, LBFGSConfig

__all__ = [
    "INITS",
    "MIN_SIDE",
    "OPTIMIZERS",
    "ModelPicture",
    "OptimizeResult",
    "OptimizerFactory",
    "PixelSettings",
    "StepCallback",
    "TensorBoardMonitor",
    "check_init",
    "initial_image",
    "optimize_image",
    "optimize_pixels",
    "resize_to",
    "scale_sizes",
]

OptimizerFactory = Callable[[list[torch.Tensor]], torch.optim.Optimizer]
# called with (step, image after `step` steps, its weighted loss terms as floats)
StepCallback = Callable[[int, torch.Tensor, dict[str, float]], None]
# a feed-forward model as a start: (1, 3, H, W) content in [0, 1] -> its stylized picture, same size
ModelPicture = Callable[[torch.Tensor], torch.Tensor]

INITS = ("content", "noise", "style", "model")


def _pixel_optimizer(schema: type[LBFGSConfig] | type[AdamPixelConfig]) -> OptimizerFactory:
    """The optimizer of a ``pixel_optimizer`` schema with its defaults, for calls from Python."""
    settings = {key: value for key, value in asdict(schema()).items() if not key.startswith("_")}
    settings.pop("fused", None)  # "auto" is the commands' to resolve; from Python, torch's default
    return partial(getattr(torch.optim, schema._target_.rsplit(".", 1)[1]), **settings)


# The pixel_optimizer configs (lbfgs.yaml, adam.yaml) by name, with their schema's defaults.
OPTIMIZERS: dict[str, OptimizerFactory] = {
    "lbfgs": _pixel_optimizer(LBFGSConfig),
    "adam": _pixel_optimizer(AdamPixelConfig),
}

# The smallest side a scale may have: the deepest VGG layers pool the image by 16.
MIN_SIDE = 16

_TERMS = ("content", "style", "tv", "total")


@dataclass
class OptimizeResult:
    """The optimized image and how it got there."""

    image: torch.Tensor
    """``(1, 3, H, W)`` in [0, 1]: the final image, or the last good one when ``error`` is set."""
    history: list[dict[str, float]] = field(default_factory=list)
    """Weighted loss terms of the image after 0, 1, 2, ... steps (``step`` and ``scale`` included)."""
    snapshots: dict[int, torch.Tensor] = field(default_factory=dict)
    """Images after the requested numbers of steps, at the output size."""
    seconds: dict[int, float] = field(default_factory=dict)
    """Wall time from the start of the first step to each snapshot."""
    steps: int = 0
    """Steps behind ``image`` (over all scales)."""
    elapsed: float = 0.0
    """Wall time of all steps, in seconds."""
    error: str | None = None
    """Why the run stopped early (a non-finite loss), else ``None``."""
    evaluations: int = 0
    """Loss evaluations (forward and backward passes) of all steps; a line search may take several a step."""


class _NonFiniteLoss(Exception):
    def __init__(self, terms: dict[str, float]) -> None:
        super().__init__("non-finite loss")
        self.terms = terms


def _optimizer_factory(optimizer: str | OptimizerFactory) -> OptimizerFactory:
    if callable(optimizer):
        return optimizer
    try:
        return OPTIMIZERS[optimizer]
    except KeyError:
        raise FastStyleError(
            f"unknown optimizer {optimizer!r}; choose one of {', '.join(OPTIMIZERS)}"
        ) from None


def resize_to(images: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """Bilinear resize of ``(B, 3, H, W)`` to ``size = (H', W')``, antialiased when shrinking."""
    if tuple(images.shape[-2:]) == tuple(size):
        return images
    shrink = size[0] < images.shape[-2] or size[1] < images.shape[-1]
    return F.interpolate(images, size=size, mode="bilinear", align_corners=False, antialias=shrink).clamp(
        0, 1
    )


def _resize_long_side(images: torch.Tensor, long_side: int) -> torch.Tensor:
    h, w = images.shape[-2:]
    scale = long_side / max(h, w)
    return resize_to(images, (max(1, round(h * scale)), max(1, round(w * scale))))


def scale_sizes(height: int, width: int, scales: int) -> list[tuple[int, int]]:
    """Sizes of a coarse-to-fine pyramid ending at ``(height, width)``; each coarser one is half as big."""
    if scales < 1:
        raise FastStyleError(f"scales must be at least 1, got {scales}")
    sizes = []
    for level in range(scales):
        factor = 2 ** (scales - 1 - level)
        sizes.append((max(1, round(height / factor)), max(1, round(width / factor))))
    if min(sizes[0]) < MIN_SIDE:
        raise FastStyleError(
            f"scales={scales} makes the coarsest scale {sizes[0][1]}x{sizes[0][0]} px; each side must be "
            f"at least {MIN_SIDE} px: use fewer scales or a larger image_size"
        )
    return sizes


@dataclass(frozen=True)
class PixelSettings:
    """How the pixels are optimized, for ``optimize_image`` and ``run_compare``.

    ``optimizer`` is a name in ``OPTIMIZERS`` or a factory ``params -> Optimizer``; with
    ``lr_decay_every`` the learning rate is multiplied by ``lr_decay_gamma`` every that many steps.
    The run starts from ``init``, one of ``INITS``; ``seed`` draws the noise (``None``: at random);
    ``model`` stylizes the content for ``init="model"`` (e.g. ``Stylizer.stylize_tensor``).
    """

    optimizer: str | OptimizerFactory = "lbfgs"
    lr_decay_every: int | None = None
    lr_decay_gamma: float = 0.5
    init: str = "content"
    seed: int | None = 0
    model: ModelPicture | None = None

    def __post_init__(self) -> None:
        check_init(self.init)
        if self.init == "model" and self.model is None:
            raise FastStyleError("init=model needs a feed-forward model: pass model_file=...")
        _optimizer_factory(self.optimizer)  # an unknown name fails here, before any work

    def start(self, content: torch.Tensor, style: torch.Tensor | None = None) -> torch.Tensor:
        """The image the run starts from, for ``content`` (and ``style``, for ``init="style"``)."""
        return initial_image(self.init, content, style, self.seed, self.model)


def check_init(init: str) -> None:
    """Refuse a starting image that is not one of ``INITS``."""
    if init not in INITS:
        raise FastStyleError(f"unknown init {init!r}; choose one of {', '.join(INITS)}")


def initial_image(
    init: str,
    content: torch.Tensor,
    style: torch.Tensor | None = None,
    seed: int | None = 0,
    model: ModelPicture | None = None,
) -> torch.Tensor:
    """The starting image: a copy of ``content``, uniform noise in [0, 1], ``style`` resized to it, or
    ``model``'s picture of ``content`` (``init="model"``)."""
    if init == "content":
        return content.detach().clone()
    if init == "noise":
        generator = torch.Generator()
        if seed is None:
            generator.seed()
        else:
            generator.manual_seed(int(seed))
        # Drawn on the CPU so a seed gives the same start on every device.
        noise = torch.rand(tuple(content.shape), generator=generator, dtype=content.dtype)
        return noise.to(content.device)
    if init == "style":
        if style is None:
            raise FastStyleError("init=style needs a style image")
        # Stretched to the content's shape: the start only has to carry the style's colours and marks.
        return resize_to(style.detach().to(content.device, content.dtype), content.shape[-2:]).clone()
    if init == "model":
        if model is None:
            raise FastStyleError("init=model needs a feed-forward model: pass model_file=...")
        picture = model(content.detach()).to(content.device, content.dtype)
        if tuple(picture.shape) != tuple(content.shape):
            raise FastStyleError(
                f"the model's picture is {tuple(picture.shape)}, the content {tuple(content.shape)}"
            )
        # A clone made here is an ordinary tensor even when the model ran in inference mode.
        return picture.clamp(0, 1).clone()
    check_init(init)
    raise AssertionError(f"init {init!r} is in INITS but has no starting image")


class _Objective:
    """The loss of the clamped pixels, for the optimizer's closure, remembering its last evaluations.

    L-BFGS starts every step by evaluating the point its last line search accepted: the loss and
    gradient of the last few evaluations are reused instead of running the loss network again. They
    are keyed by the clamped pixels, which is all the loss sees, so a point that the projection after
    a step moved back into [0, 1] also has its loss already measured. Its reused gradient is 0 at the
    pixels clamped, which keeps them from being pushed outwards again.
    """

    def __init__(self, loss: PerceptualLoss, pixels: torch.Tensor) -> None:
        self.loss, self.pixels = loss, pixels
        self.evaluations = 0
        self._recent: deque[tuple[torch.Tensor, torch.Tensor | None, dict[str, torch.Tensor]]] = deque(
            maxlen=4
        )

    def evaluate(self, with_grad: bool) -> dict[str, torch.Tensor]:
        """The loss terms at the current pixels; with ``with_grad``, their gradient is left in ``pixels.grad``."""
        clamped = self.pixels.detach().clamp(0, 1)
        for point, grad, terms in self._recent:
            if (grad is not None or not with_grad) and torch.equal(point, clamped):
                if grad is not None and with_grad:
                    self.pixels.grad = grad.clone()
                return terms
        self.pixels.grad = None
        self.evaluations += 1
        with torch.set_grad_enabled(with_grad):
            terms = self.loss(self.pixels.clamp(0, 1))
        grad = None
        if with_grad and torch.isfinite(terms["total"]):
            (grad,) = torch.autograd.grad(terms["total"], self.pixels)
            self.pixels.grad = grad.clone()
        terms = {k: v.detach() for k, v in terms.items()}
        self._recent.append((clamped, grad, terms))
        return terms

    def closure(self) -> torch.Tensor:
        """What ``optimizer.step`` calls; a non-finite line-search probe has no gradient, and the
        optimizer backs off from it."""
        return self.evaluate(with_grad=True)["total"]


def _values(terms: dict[str, torch.Tensor]) -> dict[str, float]:
    values = dict(zip(_TERMS, torch.stack([terms[k] for k in _TERMS]).tolist(), strict=False))
    if not all(math.isfinite(v) for v in values.values()):
        raise _NonFiniteLoss(values)
    return values


def optimize_pixels(
    loss: PerceptualLoss,
    image: torch.Tensor,
    steps: int,
    optimizer: str | OptimizerFactory = "lbfgs",
    *,
    lr_decay_every: int | None = None,
    lr_decay_gamma: float = 0.5,
    snapshot_at: Iterable[int] = (),
    callback: StepCallback | None = None,
    progress: bool = False,
    description: str = "",
    stop_at_total: float | None = None,
    min_steps: int = 0,
) -> OptimizeResult:
    """Minimise ``loss(image)["total"]`` over the pixels of ``image`` for ``steps`` steps.

    The loss must already hold its style and content targets. ``history[i]`` holds the loss terms of
    the image after ``i`` steps (``steps + 1`` entries on success). A non-finite loss stops the run;
    the result then holds the last image whose loss was finite and an ``error`` message. With
    ``stop_at_total`` the run ends early, one step after the total first drops to that value, but
    not before ``min_steps`` steps.
    """
    if steps < 0:
        raise FastStyleError(f"steps must be >= 0, got {steps}")
    make_optimizer = _optimizer_factory(optimizer)
    wanted = {int(s) for s in snapshot_at}
    # L-BFGS flattens the gradient with view(), which needs a contiguous tensor.
    pixels = image.detach().clone(memory_format=torch.contiguous_format).clamp_(0, 1).requires_grad_(True)
    opt = make_optimizer([pixels])
    scheduler = None
    if lr_decay_every:
        scheduler = torch.optim.lr_scheduler.StepLR(opt, step_size=int(lr_decay_every), gamma=lr_decay_gamma)
    objective = _Objective(loss, pixels)
    result = OptimizeResult(image=pixels.detach().clone())

    def record(step: int, with_grad: bool) -> dict[str, float]:
        """Score the current image as the one after ``step`` steps; it becomes the last good image."""
        values = _values(objective.evaluate(with_grad))
        result.image = pixels.detach().clamp(0, 1)
        result.history.append({"step": step, **values})
        if callback is not None:
            callback(step, result.image, values)
        return values

    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=steps, desc=description or "optimize", unit="step", dynamic_ncols=True)
    done = 0
    start = time.perf_counter()
    try:
        if 0 in wanted:
            result.snapshots[0], result.seconds[0] = pixels.detach().clamp(0, 1), 0.0
        for step in range(steps):
            # The image this step starts from; the optimizer's first evaluation reuses this one.
            current = record(step, with_grad=True)
            before = pixels.detach().clone()
            # torch annotates the closure as returning a float; L-BFGS and Adam take the loss tensor.
            opt.step(cast("Callable[[], float]", objective.closure))
            with torch.no_grad():
                pixels.clamp_(0, 1)
            if torch.equal(before, pixels.detach()):
                # The line search found no lower point along the direction its curvature history
                # gives: start that history afresh (the next step is a short gradient step).
                opt.state.clear()
            if scheduler is not None:
                scheduler.step()
            done = step + 1
            if done in wanted:
                result.seconds[done] = time.perf_counter() - start
                result.snapshots[done] = pixels.detach().clamp(0, 1)
            if bar is not None:
                bar.set_postfix({k: f"{v:.3g}" for k, v in current.items()}, refresh=False)
                bar.update(1)
            if stop_at_total is not None and current["total"] <= stop_at_total and done >= min_steps:
                break
        result.elapsed = time.perf_counter() - start  # the steps only, not the final scoring
        record(done, with_grad=False)
        result.steps = done
    except _NonFiniteLoss as exc:
        # ``done`` steps are behind the pixels that scored non-finite; the image before them is kept.
        result.elapsed = result.elapsed or time.perf_counter() - start
        detail = ", ".join(f"{k}={v:.4g}" for k, v in exc.terms.items())
        result.steps = max(done - 1, 0)
        kept = f"after {done - 1} steps" if done else "the starting image"
        result.error = (
            f"the loss became non-finite after {done} steps ({detail}); stopped and kept the last good "
            f"image ({kept}). Lower the learning rate or the loss weights"
        )
        for late in [s for s in result.snapshots if s > done - 1]:
            result.snapshots.pop(late)
            result.seconds.pop(late)
    finally:
        result.evaluations = objective.evaluations
        if bar is not None:
            bar.close()
    return result


def optimize_image(
    loss: PerceptualLoss,
    content: torch.Tensor,
    styles: torch.Tensor | Sequence[torch.Tensor],
    *,
    blend: Sequence[float] | None = None,
    steps: int = 300,
    settings: PixelSettings | None = None,
    style_scale: float = 1.0,
    scales: int = 1,
    scale_steps: Sequence[int] | None = None,
    preserve_color: bool = False,
    snapshot_at: Iterable[int] = (),
    callback: StepCallback | None = None,
    progress: bool = False,
) -> OptimizeResult:
    """Stylize ``content`` ``(1, 3, H, W)`` by optimization; the result has the content's size.

    ``styles`` are ``(1, 3, h, w)`` images of any size: at each scale they are resized so that their
    long side is ``style_scale`` times the image's, and their Gram targets are blended by ``blend``.
    With ``scales > 1`` the image is first optimized at ``1/2**(scales-1)`` of its size, then
    upsampled to start the next scale. ``steps`` (or ``scale_steps``, one per scale) counts steps per
    scale; ``snapshot_at`` and ``history`` count steps over all scales. ``preserve_color`` optimizes
    luminance only and puts the content's colours back at the end. ``settings``: the defaults of
    ``PixelSettings`` (L-BFGS from the content) unless given.
    """
    settings = settings or PixelSettings()
    if isinstance(styles, torch.Tensor):
        styles = [styles]
    styles = [s if s.dim() == 4 else s.unsqueeze(0) for s in styles]
    if not styles:
        raise FastStyleError("at least one style image is needed")
    if content.dim() == 3:
        content = content.unsqueeze(0)
    if style_scale <= 0:
        raise FastStyleError(f"style_scale must be positive, got {style_scale}")
    height, width = content.shape[-2:]
    sizes = scale_sizes(height, width, scales)
    if scale_steps is None:
        per_scale = [int(steps)] * scales
    else:
        per_scale = [int(s) for s in scale_steps]
        if len(per_scale) != scales:
            raise FastStyleError(f"scale_steps has {len(per_scale)} entries for scales={scales}")
    if any(s < 0 for s in per_scale):
        raise FastStyleError(f"steps must be >= 0, got {per_scale}")

    device = next(iter([*loss.buffers(), *loss.parameters()]), content).device
    content = content.to(device)
    styles = [s.to(device) for s in styles]
    wanted = sorted({int(s) for s in snapshot_at})

    def finish(image: torch.Tensor) -> torch.Tensor:
        image = resize_to(image, (height, width))
        return combine_luminance(image, content) if preserve_color else image

    total = OptimizeResult(image=content)
    offset = 0
    image: torch.Tensor | None = None
    for level, (size, level_steps) in enumerate(zip(sizes, per_scale, strict=False)):
        level_content = resize_to(content, size)
        long_side = max(1, round(style_scale * max(size)))
        level_styles = [_resize_long_side(s, long_side) for s in styles]
        start_style = styles[0]  # init=style resizes the original once, not the scaled copy
        if preserve_color:
            level_styles = [match_luminance(s, level_content) for s in level_styles]
            start_style = match_luminance(start_style, level_content)
            level_content = luminance_image(level_content)
        loss.set_style_image(level_styles, blend)
        loss.set_content_image(level_content)
        if image is None:
            image = settings.start(level_content, start_style)
        else:
            image = resize_to(image, size)

        def shifted(step: int, img: torch.Tensor, terms: dict[str, float], _offset: int = offset) -> None:
            if callback is not None:
                callback(step + _offset, img, terms)

        # A scale's final evaluation and the next scale's first are the same step number; the
        # finer one is kept.
        local = [s - offset for s in wanted if offset <= s <= offset + level_steps]
        desc = f"{size[1]}x{size[0]}" + (f" (scale {level + 1}/{scales})" if scales > 1 else "")
        part = optimize_pixels(
            loss,
            image,
            level_steps,
            settings.optimizer,
            lr_decay_every=settings.lr_decay_every,
            lr_decay_gamma=settings.lr_decay_gamma,
            snapshot_at=local,
            callback=shifted if callback is not None else None,
            progress=progress,
            description=desc,
        )
        for s, snap in part.snapshots.items():
            total.snapshots[s + offset] = finish(snap)
            total.seconds[s + offset] = total.elapsed + part.seconds[s]
        total.elapsed += part.elapsed
        total.evaluations += part.evaluations
        if total.history and part.history and part.history[0]["step"] == 0:
            total.history.pop()  # the previous scale's last entry, re-scored at this scale
        total.history.extend({**h, "step": h["step"] + offset, "scale": level} for h in part.history)
        offset += part.steps
        image = part.image
        if part.error is not None:
            total.error = part.error if scales == 1 else f"at scale {level + 1}/{scales}: {part.error}"
            break
    total.steps = offset
    assert image is not None  # scale_sizes gives at least one scale
    total.image = finish(image)
    return total


class TensorBoardMonitor:
    """A ``StepCallback`` that writes loss curves every step and the image every ``image_every`` steps."""

    def __init__(self, log_dir: str | Path, image_every: int | None = 50, tag: str = "optimize") -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(log_dir=str(log_dir))
        self.image_every = image_every
        self.tag = tag
        self._last_step = -1

    def __call__(self, step: int, image: torch.Tensor, terms: dict[str, float]) -> None:
        for name, value in terms.items():
            self.writer.add_scalar(f"{self.tag}/{name}", value, step)
        if self.image_every and step % self.image_every == 0:
            self.add_image(step, image)
        self._last_step = step

    def add_image(self, step: int, image: torch.Tensor, name: str = "image") -> None:
        """Log one ``(1, 3, H, W)`` image in [0, 1]."""
        self.writer.add_image(f"{self.tag}/{name}", image[0].detach().float().clamp(0, 1).cpu(), step)

    def close(self) -> None:
        """Flush and close the event file."""
        self.writer.close()
