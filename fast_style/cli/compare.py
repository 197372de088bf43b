"""``fast-style compare content_image=... style_image=... model_file=...``: optimization vs feed-forward."""

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
    one_or_many,
    pixel_optimizer_settings,
    style_paths,
)
from fast_style.errors import FastStyleError, RunFailed, one_line
from fast_style.files import check_writable, file_sha256

__all__ = [
    "adopt_model_loss",
    "check_output_dir",
    "check_run_folder",
    "checkpoint_steps",
    "compare",
    "main",
]

log = logging.getLogger("fast_style.compare")


def checkpoint_steps(value: Any) -> list[int]:
    """``steps`` as a sorted list of positive step counts: one number or a list of them."""
    try:
        steps = sorted({int(v) for v in one_or_many(value)})
    except (TypeError, ValueError):
        raise FastStyleError(f"steps must be a positive number or a list of them, got {value}") from None
    if not steps or steps[0] < 1:
        raise FastStyleError(f"steps must be a positive number or a list of them, got {value}")
    return steps


def _overridden(prefix: str) -> set[str]:
    """Keys under ``prefix`` (e.g. ``loss``; ``""``: all) that the command line set, from Hydra's overrides."""
    from hydra.core.hydra_config import HydraConfig

    keys = set()
    for item in HydraConfig.get().overrides.task:
        key = item.split("=", 1)[0].lstrip("+~")
        if not prefix:
            keys.add(key)
        elif key.startswith(prefix + "."):
            keys.add(key[len(prefix) + 1 :])
    return keys


def adopt_model_loss(cfg: DictConfig, recorded: dict[str, Any], overridden: set[str]) -> list[str]:
    """Set every ``cfg.loss`` key the command line left alone to the model's training loss.

    Returns the differences that remain (settings given on the command line that differ from the
    model's), each as ``key X (model) vs Y (here)``.
    """
    from dataclasses import replace

    from omegaconf import OmegaConf, open_dict

    from fast_style.schema import LossConfig
    from fast_style.trained_loss import LOSS_KEYS, differences, weights_mismatch
    from fast_style.validation import config_dict

    adopted = {key: recorded[key] for key in LOSS_KEYS if key in recorded and key not in overridden}
    kind = str(recorded.get("weights", "")).lower()
    if "weights" not in overridden and kind in ("imagenet", "none"):
        adopted["weights"] = kind
    with open_dict(cfg):
        current = OmegaConf.to_object(cfg.loss)
        assert isinstance(current, LossConfig)  # the loss group's schema
        cfg.loss = OmegaConf.structured(replace(current, **adopted))
    found = differences(recorded, config_dict(cfg.loss))
    if kind == "file" and "weights" not in overridden:
        raise FastStyleError(
            f"the model was trained with the loss-network weights file {recorded.get('weights_file', '?')} "
            f"(sha256 {str(recorded.get('weights_sha256', '?'))[:12]}...): pass loss.weights=PATH to it"
        )
    problem = weights_mismatch(recorded, str(cfg.loss.weights))
    if problem:
        found.append(problem)
    return found


def compare(cfg: DictConfig) -> Path:
    """Run ``fast-style compare`` from a composed ``compare`` config; returns the output folder."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.utils import instantiate

    from fast_style.auto_settings import resolve_auto_settings
    from fast_style.compare import markdown_table, run_compare, write_outputs
    from fast_style.devices import resolve_device
    from fast_style.inference import Stylizer
    from fast_style.trained_loss import recorded_loss

    # Cheap checks first: files, settings and the model, before the loss network loads.
    resolve_auto_settings(cfg)
    out_dir = check_output_dir(Path(cfg.output_dir), bool(cfg.overwrite))
    steps = checkpoint_steps(cfg.steps)
    settings = pixel_optimizer_settings(cfg)
    device = resolve_device(cfg.device)
    stylizer = Stylizer.from_file(cfg.model_file, device=str(device))
    content = load_content(cfg)
    paths = style_paths(cfg.style_image)
    blend = list(cfg.style_blend) if cfg.style_blend is not None else None
    recorded = recorded_loss(stylizer.metadata)
    top_level = _overridden("")
    style_size = cfg.get("style_size")
    if style_size is None and recorded.get("style_size") and "style_scale" not in top_level:
        style_size = int(recorded["style_size"])  # the model's style target, unless style_scale was given
    if style_size is None:
        style_size = math.ceil(float(cfg.style_scale) * max(content.shape[-2:]))
    styles = load_styles(paths, int(style_size), blend)
    differences = adopt_model_loss(cfg, recorded, _overridden("loss")) if recorded else []
    check_style_sides(styles, paths, int(style_size), cfg.loss)
    trained_style = recorded.get("style_image")
    if recorded.get("style_sha256"):  # the same picture under any name is the same style
        same_style = [file_sha256(p) for p in paths] == [recorded["style_sha256"]]
    else:  # files recorded before the hash: by name
        same_style = [Path(p).name for p in paths] == [trained_style]
    if trained_style and not same_style:
        differences.append(
            f"style image {trained_style} (model) vs {', '.join(Path(p).name for p in paths)} (here)"
        )
    if recorded.get("style_size") and int(recorded["style_size"]) != max(styles[0].shape[-2:]):
        differences.append(
            f"style_size {recorded['style_size']} (model) vs {max(styles[0].shape[-2:])} (here)"
        )
    if differences:
        log.warning(
            "the model was trained with another loss than the one measuring here: %s", "; ".join(differences)
        )

    loss = instantiate(cfg.loss).to(device)
    choice = HydraConfig.get().runtime.choices.get("pixel_optimizer")
    report = run_compare(
        loss,
        stylizer,
        content,
        styles,
        checkpoints=steps,
        blend=blend,
        settings=settings,
        repeats=int(cfg.repeats),
        progress=bool(cfg.progress),
    )
    if differences:
        report.notes.append("the model was trained with another loss: " + "; ".join(differences))
    weights = str(cfg.loss.weights)
    header = (
        f"# Optimization vs feed-forward\n\n"
        f"Content `{Path(cfg.content_image).name}`, style {', '.join(f'`{Path(p).name}`' for p in paths)}, "
        f"model `{Path(cfg.model_file).name}`; {content.shape[-1]}x{content.shape[-2]} px on {report.device}; "
        f"optimizer {choice}, init {cfg.init}. Every image is scored by the same loss: {cfg.loss.network} "
        f"(weights: {Path(weights).name if weights not in ('imagenet', 'none') else weights}), content "
        f"{list(cfg.loss.content_layers)} x {cfg.loss.content_weight}, style {list(cfg.loss.style_layers)} "
        f"x {cfg.loss.style_weight}, tv x {cfg.loss.tv_weight}. content, style and total are the weighted "
        f"terms; tv is unweighted. Peak memory is the growth above the level before each mode started"
        f"{' (resident memory, sampled)' if report.device == 'cpu' else ''}."
    )
    print(markdown_table(report))
    try:
        written = write_outputs(report, out_dir, header=header, tile=int(cfg.figure_tile))
    except (OSError, ValueError) as exc:
        import tempfile

        rescue = Path(tempfile.mkdtemp(prefix="fast-style-rescued-compare-"))
        try:
            write_outputs(report, rescue, header=header, tile=int(cfg.figure_tile))
        except (OSError, ValueError):
            raise RunFailed(
                f"cannot write the results to {out_dir} ({one_line(exc)}), nor to {rescue}"
            ) from None
        raise RunFailed(
            f"cannot write the results to {out_dir} ({one_line(exc)}); they were kept in {rescue}"
        ) from None
    log.info("wrote %s", ", ".join(str(p) for p in written.values()))
    if report.error is not None:
        raise RunFailed(f"optimization stopped early: {report.error}; partial results are in {out_dir}")
    return out_dir


def check_output_dir(out_dir: Path, overwrite: bool) -> Path:
    """Refuse an ``output_dir`` that is a file, cannot be written, or already holds results (unless ``overwrite``)."""
    from fast_style.compare import OUTPUT_FILES

    out_dir = check_writable(out_dir.expanduser(), folder=True, what="output_dir")
    existing = [name for name in OUTPUT_FILES if (out_dir / name).exists()]
    if existing and not overwrite:
        raise FastStyleError(
            f"{out_dir} already holds {', '.join(existing)}; pass overwrite=true or another output_dir"
        )
    return out_dir


def check_run_folder(cfg: DictConfig, run_dir: Path) -> None:
    """Before Hydra writes to it: refuse a run folder or ``output_dir`` that holds an earlier comparison."""
    from omegaconf import OmegaConf

    from fast_style.cli.hydra_app import refuse_existing_run

    overwrite = bool(cfg.get("overwrite"))
    refuse_existing_run(
        run_dir,
        ("tensorboard", ".hydra"),
        allowed=overwrite,
        how="pass overwrite=true to replace its results, or another hydra.run.dir",
    )
    try:
        out_dir = Path(str(OmegaConf.select(cfg, "output_dir")))
    except Exception:  # the default, ${hydra:runtime.output_dir}, only resolves inside the run
        out_dir = run_dir
    check_output_dir(out_dir, overwrite)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``fast-style compare``."""
    return run_hydra_task("compare", compare, argv, preflight=check_run_folder)
