"""What ``optimize`` and ``compare`` both read from their configs: content and style images, optimizer settings."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from omegaconf import DictConfig, ListConfig

from fast_style.errors import FastStyleError

if TYPE_CHECKING:
    import torch

    from fast_style.optimize import ModelPicture, PixelSettings

__all__ = [
    "check_style_sides",
    "load_content",
    "load_styles",
    "one_or_many",
    "pixel_optimizer_settings",
    "style_paths",
]


def one_or_many(value: Any) -> list[Any]:
    """A setting that takes one value or a list of them, as a list."""
    return list(value) if isinstance(value, (list, tuple, ListConfig)) else [value]


def style_paths(value: Any) -> list[str]:
    """``style_image`` as a list of paths: one path, or a list of them."""
    paths = [str(v) for v in one_or_many(value)]
    if not paths or any(not p for p in paths):
        raise FastStyleError("style_image must name at least one image")
    return paths


def pixel_optimizer_settings(cfg: DictConfig, model: ModelPicture | None = None) -> PixelSettings:
    """The optimizer, learning-rate decay, start and seed of an ``optimize`` or ``compare`` config.

    ``cfg`` has its ``auto`` settings resolved (``resolve_auto_settings``), ``fused`` included;
    ``model`` draws the start of ``init=model``.
    """
    from hydra.utils import instantiate

    from fast_style.optimize import PixelSettings

    lr_decay = cfg.get("lr_decay") or {}
    return PixelSettings(
        optimizer=instantiate(cfg.pixel_optimizer),
        lr_decay_every=lr_decay.get("every"),
        lr_decay_gamma=float(lr_decay.get("gamma", 0.5)),
        init=cfg.init,
        seed=cfg.seed,
        model=model,
    )


def check_style_sides(
    styles: Sequence[Any], paths: Sequence[str], long_side: int, loss_cfg: DictConfig
) -> None:
    """Refuse style images that would be thinner than the loss network allows once scaled to ``long_side``."""
    from fast_style.validation import check_image_sides, loss_min_side

    min_side = loss_min_side([*loss_cfg.content_layers, *loss_cfg.style_layers])
    for style, path in zip(styles, paths, strict=False):
        h, w = style.shape[-2:]
        scaled = style.new_empty(
            1, 3, max(1, round(h * long_side / max(h, w))), max(1, round(w * long_side / max(h, w)))
        )
        check_image_sides(
            scaled,
            min_side,
            f"style image {path} scaled to a {long_side} px long side",
            "use a larger image_size or style_scale, or a less elongated style image",
        )


def load_styles(paths: Sequence[str], long_side: int | None, blend: Sequence[float] | None) -> list[Any]:
    """Load the style images at ``long_side`` pixels and check that ``blend`` fits them."""
    from fast_style.images import load_image_tensor
    from fast_style.validation import warn_if_poor_style

    if blend is not None:
        blend = [float(b) for b in blend]
        if len(blend) != len(paths) or min(blend) < 0 or sum(blend) <= 0:
            raise FastStyleError(
                f"style_blend {blend} must hold {len(paths)} non-negative weight(s), not all 0 "
                f"(one per style image)"
            )
    styles = [load_image_tensor(p, long_side) for p in paths]
    for path, style in zip(paths, styles, strict=False):
        warn_if_poor_style(path, style)
    return styles


def load_content(cfg: DictConfig) -> torch.Tensor:
    """The content image at ``image_size``, refused when a side is too small for the loss network."""
    from fast_style.images import load_image_tensor
    from fast_style.optimize import MIN_SIDE
    from fast_style.validation import check_image_sides

    content = load_image_tensor(cfg.content_image, cfg.image_size)
    check_image_sides(
        content,
        MIN_SIDE,
        f"content image {cfg.content_image} at image_size={cfg.image_size}",
        "use a larger image_size or a less elongated image",
    )
    return content
