"""``fast-style compare content_image=... style_image=... model_file=...``: optimization vs feed-forward."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from fast_style.cli.hydra_app import run_hydra_task
from fast_style.cli.model_loss import adopt_model_loss, model_style_size, overridden, style_differences
from fast_style.cli.pixel_inputs import (
    check_style_sides,
    load_content,
    load_styles,
    one_or_many,
    pixel_optimizer_settings,
    style_paths,
)
from fast_style.errors import FastStyleError, RunFailed, one_line
from fast_style.files import check_writable

__all__ = [
    "check_output_dir",
    "check_run_folder",
    "checkpoint_steps",
    "compare",
    "main",
]

log = logging.getLogger("fast_style.compare")


def checkpoint_steps(value: Any, name: str = "steps", allow_none: bool = False) -> list[int]:
    """``value`` as a sorted list of positive step counts: one number or a list of them.

    With ``allow_none``, ``null`` and ``[]`` mean none (an empty list).
    """
    if allow_none and (value is None or one_or_many(value) == []):
        return []
    expected = "a positive number or a list of them" + (", or null" if allow_none else "")
    try:
        steps = sorted({int(v) for v in one_or_many(value)})
    except (TypeError, ValueError):
        raise FastStyleError(f"{name} must be {expected}, got {value}") from None
    if not steps or steps[0] < 1:
        raise FastStyleError(f"{name} must be {expected}, got {value}")
    return steps


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
    refine = checkpoint_steps(cfg.refine_steps, "refine_steps", allow_none=True)
    device = resolve_device(cfg.device)
    stylizer = Stylizer.from_file(cfg.model_file, device=str(device))
    settings = pixel_optimizer_settings(cfg, model=stylizer.stylize_tensor)
    content = load_content(cfg)
    paths = style_paths(cfg.style_image)
    blend = list(cfg.style_blend) if cfg.style_blend is not None else None
    recorded = recorded_loss(stylizer.metadata)
    style_size = model_style_size(cfg, recorded, max(content.shape[-2:]))
    styles = load_styles(paths, style_size, blend)
    differences = adopt_model_loss(cfg, recorded, overridden("loss")) if recorded else []
    check_style_sides(styles, paths, style_size, cfg.loss)
    differences += style_differences(recorded, paths, max(styles[0].shape[-2:]))
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
        refine_steps=refine,
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
        f"optimizer {choice}, init {cfg.init}"
        f"{'; feed-forward + N steps: the same optimizer from the model picture' if refine else ''}. "
        f"Every image is scored by the same loss: {cfg.loss.network} "
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
