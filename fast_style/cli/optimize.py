"""``fast-style optimize content_image=... style_image=... output=...``: stylize one image by optimization."""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, ListConfig

from fast_style.cli.hydra_app import run_hydra_task
from fast_style.errors import FastStyleError, RunFailed, one_line
from fast_style.files import check_writable, rescue_path

__all__ = [
    "check_output",
    "check_run_folder",
    "check_style_sides",
    "load_styles",
    "main",
    "optimize",
    "style_paths",
]

log = logging.getLogger("fast_style.optimize")


def style_paths(value: Any) -> list[str]:
    """``style_image`` as a list of paths: one path, or a list of them."""
    if isinstance(value, (list, tuple, ListConfig)):
        paths = [str(v) for v in value]
    else:
        paths = [str(value)]
    if not paths or any(not p for p in paths):
        raise FastStyleError("style_image must name at least one image")
    return paths


def pixel_optimizer_settings(cfg: DictConfig) -> dict[str, Any]:
    """The optimizer, learning-rate decay, start and seed arguments shared by optimize and compare."""
    from hydra.utils import instantiate

    lr_decay = cfg.get("lr_decay") or {}
    return {
        "optimizer": instantiate(cfg.optimizer),
        "lr_decay_every": lr_decay.get("every"),
        "lr_decay_gamma": float(lr_decay.get("gamma", 0.5)),
        "init": cfg.init,
        "seed": cfg.seed,
    }


def check_output(path: str | Path, overwrite: bool) -> Path:
    """Refuse an output that exists (unless ``overwrite``), is a folder, has no image extension, or cannot be written."""
    from PIL import Image

    path = Path(path).expanduser()
    if path.suffix.lower() not in Image.registered_extensions():
        raise FastStyleError(f"output {path} needs an image extension such as .png or .jpg")
    if path.is_dir():
        raise FastStyleError(f"output {path} is a folder; name an image file")
    if path.exists() and not overwrite:
        raise FastStyleError(f"output {path} already exists; pass overwrite=true to replace it")
    return check_writable(path)


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


def check_run_folder(cfg: DictConfig, run_dir: Path) -> None:
    """Refuse a run folder that already holds an earlier run, unless ``overwrite=true``."""
    from fast_style.cli.hydra_app import refuse_existing_run

    refuse_existing_run(
        run_dir,
        ("tensorboard", ".hydra"),
        allowed=bool(cfg.get("overwrite")),
        how="pass overwrite=true to add to it, or another hydra.run.dir",
    )


def load_styles(paths: Sequence[str], long_side: int | None, blend: Sequence[float] | None) -> list[Any]:
    """Load the style images at ``long_side`` pixels and check that ``blend`` fits them."""
    from fast_style.images import load_image_tensor

    if blend is not None:
        blend = [float(b) for b in blend]
        if len(blend) != len(paths) or min(blend) < 0 or sum(blend) <= 0:
            raise FastStyleError(
                f"style_blend {blend} must hold {len(paths)} non-negative weight(s), not all 0 "
                f"(one per style image)"
            )
    from fast_style.validation import warn_if_poor_style

    styles = [load_image_tensor(p, long_side) for p in paths]
    for path, style in zip(paths, styles, strict=False):
        warn_if_poor_style(path, style)
    return styles


def optimize(cfg: DictConfig) -> Path:
    """Run ``fast-style optimize`` from a composed ``optimize`` config; returns the output path."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.utils import instantiate

    from fast_style.devices import resolve_device
    from fast_style.images import load_image_tensor, tensor_to_image
    from fast_style.optimize import INITS, MIN_SIDE, TensorBoardMonitor, optimize_image, scale_sizes
    from fast_style.validation import check_image_sides

    # Cheap checks first, so a typo fails in a second rather than after loading VGG.
    output = check_output(cfg.output, bool(cfg.overwrite))
    if cfg.init not in INITS:
        raise FastStyleError(f"unknown init {cfg.init!r}; choose one of {', '.join(INITS)}")
    if int(cfg.steps) < 0:
        raise FastStyleError(f"steps must be >= 0, got {cfg.steps}")
    if float(cfg.style_scale) <= 0:
        raise FastStyleError(f"style_scale must be positive, got {cfg.style_scale}")
    content = load_image_tensor(cfg.content_image, cfg.image_size)
    check_image_sides(
        content,
        MIN_SIDE,
        f"content image {cfg.content_image} at image_size={cfg.image_size}",
        "use a larger image_size or a less elongated image",
    )
    style_long = math.ceil(float(cfg.style_scale) * max(content.shape[-2:]))
    blend = list(cfg.style_blend) if cfg.style_blend is not None else None
    paths = style_paths(cfg.style_image)
    styles = load_styles(paths, style_long, blend)
    height, width = content.shape[-2:]
    coarsest = scale_sizes(height, width, int(cfg.scales))[0]
    check_style_sides(styles, paths, max(1, round(float(cfg.style_scale) * max(coarsest))), cfg.loss)
    device = resolve_device(cfg.device)
    settings = pixel_optimizer_settings(cfg)

    loss = instantiate(cfg.loss).to(device)
    run_dir = Path(HydraConfig.get().runtime.output_dir)
    choices = HydraConfig.get().runtime.choices
    plan = list(cfg.scale_steps) if cfg.scale_steps is not None else [int(cfg.steps)] * int(cfg.scales)
    log.info(
        "optimizer=%s, steps per scale %s, %dx%d px, loss network %s; TensorBoard in %s",
        choices.get("optimizer"),
        plan,
        content.shape[-1],
        content.shape[-2],
        cfg.loss.network,
        run_dir / "tensorboard",
    )
    monitor = TensorBoardMonitor(run_dir / "tensorboard", cfg.log_images_every_n_steps)
    try:
        result = optimize_image(
            loss,
            content,
            styles,
            blend=blend,
            steps=int(cfg.steps),
            **settings,
            style_scale=float(cfg.style_scale),
            scales=int(cfg.scales),
            scale_steps=list(cfg.scale_steps) if cfg.scale_steps is not None else None,
            preserve_color=bool(cfg.preserve_color),
            callback=monitor,
            progress=bool(cfg.progress),
        )
        monitor.add_image(result.steps, result.image, name="final")
    finally:
        monitor.close()

    params = {"quality": 95} if output.suffix.lower() in (".jpg", ".jpeg", ".webp") else {}
    if output.exists() and not cfg.overwrite:
        rescue = rescue_path(output)
        _save_or_rescue(tensor_to_image(result.image), rescue, params)
        raise RunFailed(
            f"output {output} appeared while optimizing; not replacing it, the result is in {rescue}"
        )
    saved = _save_or_rescue(tensor_to_image(result.image), output, params)
    if result.error is not None:
        raise RunFailed(f"{result.error}; it is in {saved}")
    last = result.history[-1]
    log.info(
        "%d steps in %.1f s (%.3f s/step); loss content %.4g, style %.4g, tv %.4g, total %.4g",
        result.steps,
        result.elapsed,
        result.elapsed / max(result.steps, 1),
        last["content"],
        last["style"],
        last["tv"],
        last["total"],
    )
    log.info("wrote %s", output)
    return output


def _save_or_rescue(image: Any, output: Path, params: dict[str, Any]) -> Path:
    """Save the result; if that fails (disk full, folder gone), keep it in the temporary folder and say where."""
    from fast_style.images import save_image

    try:
        return save_image(image, output, **params)
    except (OSError, ValueError) as exc:
        rescue = rescue_path(output)
        try:
            save_image(image, rescue, **params)
        except (OSError, ValueError):
            raise RunFailed(
                f"cannot write {output} ({one_line(exc)}), nor a copy in {rescue.parent}"
            ) from None
        raise RunFailed(f"cannot write {output} ({one_line(exc)}); the result was kept in {rescue}") from None


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``fast-style optimize``."""
    return run_hydra_task("optimize", optimize, argv, preflight=check_run_folder)
