"""``fast-style optimize content_image=... style_image=... output=...``: stylize one image by optimization.

With ``init=model model_file=FILE`` the optimization starts from the model's picture at ``image_size``
and, for every ``loss.*`` key the command line leaves alone, uses the loss the model was trained with.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from omegaconf import DictConfig

from fast_style.cli.hydra_app import run_hydra_task
from fast_style.cli.model_loss import adopt_model_loss, model_style_size, overridden, style_differences
from fast_style.cli.pixel_inputs import (
    check_style_sides,
    load_content,
    load_styles,
    pixel_optimizer_settings,
    style_paths,
)
from fast_style.errors import FastStyleError, RunFailed, one_line
from fast_style.files import check_writable, rescue_path

if TYPE_CHECKING:
    from fast_style.inference import Stylizer

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
    from fast_style.trained_loss import recorded_loss

    # Cheap checks first, so a typo fails in a second rather than after loading VGG.
    resolve_auto_settings(cfg)
    output = check_output(cfg.output, bool(cfg.overwrite))
    if int(cfg.steps) < 0:
        raise FastStyleError(f"steps must be >= 0, got {cfg.steps}")
    device = resolve_device(cfg.device)
    model = _start_model(cfg, device)
    picture = None
    recorded: dict[str, Any] = {}
    painted: list[str | None] = []
    if model is not None:
        style = cfg.get("model_style")
        mix = _model_mix(cfg.get("model_mix"))
        weights = model.style_weights(style, mix)  # an unknown style fails here, before any work
        if weights is None:
            painted = [None]
        else:
            painted = [n for n, w in zip(model.styles, weights[0].tolist(), strict=True) if w > 0]
        recorded = recorded_loss(model.metadata, painted[0])
        picture = partial(model.stylize_tensor, style=style, mix=mix)
    settings = pixel_optimizer_settings(cfg, model=picture)
    content = load_content(cfg)
    long_side = max(content.shape[-2:])
    style_long = math.ceil(float(cfg.style_scale) * long_side)
    differences: list[str] = []
    if recorded:
        # init=model: the model's training loss and style size, for every setting not given
        differences = adopt_model_loss(cfg, recorded, overridden("loss"))
        style_long = model_style_size(cfg, recorded, long_side)
    style_scale = style_long / long_side if recorded else float(cfg.style_scale)
    blend = list(cfg.style_blend) if cfg.style_blend is not None else None
    paths = style_paths(cfg.style_image)
    styles = load_styles(paths, style_long, blend)
    height, width = content.shape[-2:]
    coarsest = scale_sizes(height, width, int(cfg.scales))[0]
    check_style_sides(styles, paths, max(1, round(style_scale * max(coarsest))), cfg.loss)
    if recorded and len(painted) == 1:  # a mix paints several styles; its loss is the user's blend
        differences += style_differences(recorded, paths, style_long)
    if differences:
        log.warning(
            "the model was trained with another loss than the one optimized here: %s", "; ".join(differences)
        )

    loss = instantiate(cfg.loss).to(device)
    run_dir = Path(HydraConfig.get().runtime.output_dir)
    choices = HydraConfig.get().runtime.choices
    plan = list(cfg.scale_steps) if cfg.scale_steps is not None else [int(cfg.steps)] * int(cfg.scales)
    log.info(
        "pixel_optimizer=%s from %s, steps per scale %s, %dx%d px, loss network %s; TensorBoard in %s",
        choices.get("pixel_optimizer"),
        f"{Path(cfg.model_file).name}'s picture" if model is not None else f"init={cfg.init}",
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
            style_scale=style_scale,
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


def _model_mix(value: Any) -> dict[str, float] | None:
    """``model_mix`` as ``{style name: weight}``; ``None`` when not given."""
    if value is None:
        return None
    example = "e.g. 'model_mix={wave:0.7,night:0.3}'"
    if not isinstance(value, DictConfig):
        raise FastStyleError(f"model_mix must map style names to weights, {example}; got {value}")
    try:
        return {str(k): float(v) for k, v in value.items()}
    except (TypeError, ValueError):
        raise FastStyleError(f"model_mix weights must be numbers, {example}; got {value}") from None


def _start_model(cfg: DictConfig, device: Any) -> Stylizer | None:
    """The exported model whose picture ``init=model`` starts from; ``None`` for the other starts."""
    from fast_style.inference import Stylizer

    model_file = cfg.get("model_file")
    if cfg.init != "model":
        for key in ("model_file", "model_style", "model_mix"):
            if cfg.get(key) is not None:
                raise FastStyleError(f"{key}={cfg.get(key)} is for init=model; pass init=model too")
        return None
    if model_file is None:
        raise FastStyleError(
            "init=model starts from a model's picture: pass model_file=PATH to an exported model"
        )
    return Stylizer.from_file(model_file, device=str(device))


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
