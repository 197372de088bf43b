"""``fast-style optimize content_image=... style_image=... output=...``: stylize one image by optimization."""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from fast_style.cli.hydra_app import run_hydra_task
from fast_style.cli.pixel_inputs import (
    check_style_sides,
    load_content,
    load_styles,
    pixel_optimizer_settings,
    style_paths,
)
from fast_style.errors import FastStyleError, RunFailed, one_line
from fast_style.files import check_writable, rescue_path

__all__ = ["check_output", "check_run_folder", "main", "optimize"]

log = logging.getLogger("fast_style.optimize")


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


def check_run_folder(cfg: DictConfig, run_dir: Path) -> None:
    """Refuse a run folder that already holds an earlier run, unless ``overwrite=true``."""
    from fast_style.cli.hydra_app import refuse_existing_run

    refuse_existing_run(
        run_dir,
        ("tensorboard", ".hydra"),
        allowed=bool(cfg.get("overwrite")),
        how="pass overwrite=true to add to it, or another hydra.run.dir",
    )


def optimize(cfg: DictConfig) -> Path:
    """Run ``fast-style optimize`` from a composed ``optimize`` config; returns the output path."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.utils import instantiate

    from fast_style.auto_settings import resolve_auto_settings
    from fast_style.devices import resolve_device
    from fast_style.images import tensor_to_image
    from fast_style.optimize import TensorBoardMonitor, optimize_image, scale_sizes

    # Cheap checks first, so a typo fails in a second rather than after loading VGG.
    resolve_auto_settings(cfg)
    output = check_output(cfg.output, bool(cfg.overwrite))
    settings = pixel_optimizer_settings(cfg)
    if int(cfg.steps) < 0:
        raise FastStyleError(f"steps must be >= 0, got {cfg.steps}")
    content = load_content(cfg)
    style_long = math.ceil(float(cfg.style_scale) * max(content.shape[-2:]))
    blend = list(cfg.style_blend) if cfg.style_blend is not None else None
    paths = style_paths(cfg.style_image)
    styles = load_styles(paths, style_long, blend)
    height, width = content.shape[-2:]
    coarsest = scale_sizes(height, width, int(cfg.scales))[0]
    check_style_sides(styles, paths, max(1, round(float(cfg.style_scale) * max(coarsest))), cfg.loss)
    device = resolve_device(cfg.device)

    loss = instantiate(cfg.loss).to(device)
    run_dir = Path(HydraConfig.get().runtime.output_dir)
    choices = HydraConfig.get().runtime.choices
    plan = list(cfg.scale_steps) if cfg.scale_steps is not None else [int(cfg.steps)] * int(cfg.scales)
    log.info(
        "pixel_optimizer=%s, steps per scale %s, %dx%d px, loss network %s; TensorBoard in %s",
        choices.get("pixel_optimizer"),
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
            settings=settings,
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
