"""``fast-style train key=value ...``: build everything from the Hydra config and fit."""

from __future__ import annotations

import logging
import shutil
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from omegaconf import DictConfig, OmegaConf

from fast_style.cli.hydra_app import run_hydra_task
from fast_style.errors import FastStyleError, RunFailed, one_line
from fast_style.files import atomic_path, file_sha256

if TYPE_CHECKING:
    import torch

__all__ = ["RESOLVED_CONFIG", "check_run_folder", "drop_events_from", "main", "train"]

# In the run folder beside .hydra/: the composed config with every "auto" resolved, as the checkpoint records it.
RESOLVED_CONFIG = "resolved.yaml"

log = logging.getLogger("fast_style.train")


def _resuming(ckpt_path: str | None) -> bool:
    return ckpt_path not in (None, "", "none", "null")


def _resolve_ckpt_path(ckpt_path: str | None, run_dir: Path) -> tuple[str, dict[str, Any]] | None:
    """The checkpoint to resume and its contents, read safely; ``last`` is the run's newest readable one."""
    from fast_style.checkpoints import newest_valid_checkpoint, read_training_checkpoint

    if not _resuming(ckpt_path):
        return None
    if ckpt_path == "last":
        found = newest_valid_checkpoint(run_dir / "checkpoints")
        if found is None:
            raise FastStyleError(
                f"ckpt_path=last but there is no readable checkpoint in {run_dir / 'checkpoints'}; "
                "pass hydra.run.dir=<the run folder to resume>"
            )
        path, ckpt = found
        if path.name != "last.ckpt":
            log.warning(
                "resuming from %s (step %d): no newer readable last.ckpt", path, ckpt.get("global_step", 0)
            )
        return str(path), ckpt
    return str(ckpt_path), read_training_checkpoint(str(ckpt_path))


def check_run_folder(cfg: DictConfig, run_dir: Path) -> None:
    """Before Hydra writes to it: refuse a run folder that holds a run, unless resuming or ``overwrite=true``."""
    from fast_style.cli.hydra_app import refuse_existing_run

    refuse_existing_run(
        run_dir,
        ("checkpoints", "tensorboard", ".hydra"),
        allowed=_resuming(cfg.get("ckpt_path")) or bool(cfg.get("overwrite")),
        how="pass ckpt_path=last to resume it, overwrite=true to start it again (deleting its checkpoints "
        "and TensorBoard logs), or another hydra.run.dir",
    )


def _check_same_network(net: torch.nn.Module, ckpt: dict[str, Any], path: str) -> None:
    from fast_style.model_file import record_from_checkpoint
    from fast_style.models import model_config

    record = record_from_checkpoint(ckpt, path)
    saved, ours = {"arch": record["arch"], "kwargs": record["model_kwargs"]}, model_config(net)
    if saved != ours:
        raise FastStyleError(
            f"{path} holds another network ({saved}) than this run builds ({ours}); pass the model settings "
            "it was trained with, or start a new run folder"
        )


def drop_events_from(log_dir: Path, step: int) -> int:
    """Rewrite TensorBoard event files in ``log_dir`` without events at ``step`` or later; returns how many went."""
    from tensorboard.backend.event_processing.event_file_loader import RawEventFileLoader
    from tensorboard.compat.proto.event_pb2 import Event
    from tensorboard.summary.writer.record_writer import RecordWriter

    dropped = 0
    for path in sorted(log_dir.glob("events.out.tfevents.*")):
        records = list(RawEventFileLoader(str(path)).Load())
        keep = []
        for record in records:
            event = Event.FromString(record)
            if event.step < step or event.HasField("file_version"):
                keep.append(record)
        if len(keep) == len(records):
            continue
        dropped += len(records) - len(keep)
        with atomic_path(path) as tmp, open(tmp, "wb") as fh:
            writer = RecordWriter(fh)
            for record in keep:
                writer.write(record)
    return dropped


def _recorded_styles(loss: dict[str, Any], names: list[str]) -> list[dict[str, Any]]:
    """Each kept style's image record (name, image, size, hash) from the loss a file records."""
    if "styles" in loss:
        known = {s.get("name"): s for s in loss["styles"]}
        return [known.get(n, {"name": n}) for n in names]
    single: dict[str, Any] = {k: loss[k] for k in ("style_image", "style_size", "style_sha256") if k in loss}
    return [{"name": n, **single} for n in names]


def style_paths(value: Any) -> list[str]:
    """``style_image`` as a list of paths: one path, or several (``style_image=[a.jpg,b.jpg]``)."""
    paths = [str(value)] if isinstance(value, (str, Path)) else [str(v) for v in value]
    if not paths:
        raise FastStyleError("style_image is an empty list: give one style image or several")
    names = [Path(p).stem for p in paths]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise FastStyleError(
            f"style images must have distinct names (they name the styles); repeated: {', '.join(repeated)}"
        )
    return paths


def train(cfg: DictConfig) -> Path:
    """Train from a composed ``train`` config; returns the run folder."""
    import pytorch_lightning as pl
    from hydra.core.hydra_config import HydraConfig
    from hydra.utils import instantiate
    from pytorch_lightning.utilities.warnings import PossibleUserWarning

    from fast_style.auto_settings import resolve_auto_settings
    from fast_style.images import load_image_tensor
    from fast_style.training import StyleTransferModule
    from fast_style.validation import check_image_sides, config_dict, loss_min_side, warn_if_poor_style

    run_dir = Path(HydraConfig.get().runtime.output_dir)
    resume = _resolve_ckpt_path(cfg.get("ckpt_path"), run_dir)
    if cfg.seed is not None:
        pl.seed_everything(cfg.seed, workers=True, verbose=False)

    # Cheap checks first, so a typo fails in a second rather than after loading VGG. Lightning's
    # Trainer, the DataLoader and Adam take only concrete values: every "auto" is resolved before any
    # of them is built, and the checkpoint's run_config records what the run really used.
    resolve_auto_settings(cfg)
    paths = style_paths(cfg.style_image)
    styles = []
    for path in paths:
        style = load_image_tensor(path, cfg.style_size)
        check_image_sides(
            style,
            loss_min_side([*cfg.loss.content_layers, *cfg.loss.style_layers]),
            f"style image {path} at style_size={cfg.style_size}",
            "use a larger style_size or a less elongated style image",
        )
        warn_if_poor_style(path, style)
        styles.append(style)
    infos = [
        {
            "style_image": Path(path).name,
            "style_size": int(max(style.shape[-2:])),
            "style_sha256": file_sha256(path),
        }
        for path, style in zip(paths, styles, strict=True)
    ]
    names = [Path(path).stem for path in paths]
    new_infos = [{"name": n, **i} for n, i in zip(names, infos, strict=True)]
    slots: list[int] | None = None
    if cfg.get("init_from"):
        from fast_style.new_styles import extend_network

        start = extend_network(
            str(cfg.init_from), names, keep_styles=bool(cfg.init_keep_styles), train=str(cfg.init_train)
        )
        net, all_names, slots = start.net, start.names, start.slots
        log.info(
            "init_from %s: training %s of the styles %s (%s)", cfg.init_from, names, all_names, cfg.init_train
        )
        kept = _recorded_styles(start.loss, all_names[: len(all_names) - len(names)])
        style_infos = [*kept, *new_infos]
    else:
        # A multi-style network: one conditional instance norm per style, shared convolutions.
        net = instantiate(cfg.model, num_styles=len(paths)) if len(paths) > 1 else instantiate(cfg.model)
        all_names, style_infos = names, new_infos
    if resume is not None:
        _check_same_network(net, resume[1], resume[0])
    datamodule = instantiate(cfg.data)
    loss = instantiate(cfg.loss)
    if len(paths) > 1:
        loss.set_style_targets(styles)
    else:
        loss.set_style_image(styles[0])
    style_info: dict[str, Any] = (
        {"styles": style_infos}
        if len(all_names) > 1
        else {k: v for k, v in style_infos[0].items() if k != "name"}
    )

    run_config = config_dict(cfg)  # every "auto" resolved: what the checkpoint and TensorBoard record
    module = StyleTransferModule(
        net=net,
        loss=loss,
        optimizer=instantiate(cfg.optimizer),
        scheduler=instantiate(cfg.scheduler) if cfg.get("scheduler") else None,
        log_images_every_n_steps=cfg.log_images_every_n_steps,
        style_name="+".join(all_names),
        style_info=style_info,
        style_names=all_names if len(all_names) > 1 else None,
        style_slots=slots if len(all_names) > 1 else None,
        run_config=run_config,
        channels_last=cfg.speed.channels_last,
        compile_net=cfg.speed.compile,
        compile_loss=cfg.speed.compile_loss,
        compile_backend=cfg.speed.compile_backend,
        stability_weight=cfg.stability.weight,
        stability_noise=cfg.stability.noise,
        stability_shift=cfg.stability.shift,
    )
    if resume is None and cfg.get("overwrite"):
        for name in ("checkpoints", "tensorboard"):
            shutil.rmtree(run_dir / name, ignore_errors=True)
    # .hydra/config.yaml keeps the settings as given ("auto" included); this file is what the run used.
    with atomic_path(run_dir / RESOLVED_CONFIG) as tmp:
        tmp.write_text(OmegaConf.to_yaml(run_config), encoding="utf-8")
    # On resume, what the stopped run logged from the checkpoint's step on is removed from the event
    # files (readers order event files by name, so a purge marker in the new file alone can come
    # too early); purge_step also tells readers to drop anything left over.
    purge = {}
    if resume is not None:
        purge["purge_step"] = int(resume[1].get("global_step", 0))
        drop_events_from(run_dir / "tensorboard", purge["purge_step"])
    lightning_log = logging.getLogger("pytorch_lightning.utilities.rank_zero")
    if _drop_advertising not in lightning_log.filters:
        lightning_log.addFilter(_drop_advertising)
    logger = _instantiate_setting(cfg.logger, "logger", **purge)
    callbacks = [
        _instantiate_setting(c, f"callbacks.{name}") for name, c in (cfg.get("callbacks") or {}).items() if c
    ]
    trainer = _instantiate_setting(cfg.trainer, "trainer", logger=logger, callbacks=callbacks)
    log.info("run folder: %s", run_dir)
    log.info(
        "speed: precision %s, cudnn benchmark %s, channels_last %s, fused Adam %s, pin_memory %s, compile %s/%s",
        cfg.trainer.precision,
        cfg.trainer.benchmark,
        cfg.speed.channels_last,
        bool(cfg.optimizer.get("fused")),
        cfg.data.pin_memory,
        cfg.speed.compile,
        cfg.speed.compile_loss,
    )
    try:
        with warnings.catch_warnings():
            # The frozen loss network is in eval mode on purpose; Lightning warns about any such module.
            warnings.filterwarnings(
                "ignore", message=r"Found \d+ module\(s\) in eval mode", category=PossibleUserWarning
            )
            # Raised inside Lightning about its own use of torch's pytree API: nothing a user can act on.
            warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)` is deprecated")
            trainer.fit(module, datamodule=datamodule, ckpt_path=resume[0] if resume is not None else None)
        _save_the_end(trainer)
    except SystemExit:
        if trainer.interrupted:  # Lightning turns Ctrl-C into exit(1) after a graceful stop
            print(f"fast-style train: interrupted{_resume_hint(run_dir)}", file=sys.stderr)
            raise SystemExit(130) from None
        raise
    except FastStyleError as exc:  # found during the work: exit code 1
        raise RunFailed(f"{exc}{_resume_hint(run_dir)}") from None
    except OSError as exc:  # disk full, folder removed, ...
        raise RunFailed(f"training failed: {one_line(exc)}{_resume_hint(run_dir)}") from None
    log.info("checkpoints in %s", run_dir / "checkpoints")
    print(_next_steps(cfg, run_dir))
    return run_dir


def _next_steps(cfg: DictConfig, run_dir: Path) -> str:
    """Where the run's curves are and the commands that export and score its model, for the end of a run."""
    style = Path(style_paths(cfg.style_image)[0])
    weights = str(cfg.loss.get("weights", "imagenet"))
    weights_arg = "" if weights.lower() in ("imagenet", "none") else f" --weights {weights}"
    model = f"{style.stem}.safetensors"
    return "\n".join(
        [
            f"Training losses and samples: tensorboard --logdir {run_dir / 'tensorboard'}",
            "Score every checkpoint of the run on photos it never saw (from a clone of fast_style):",
            f"  python -m benchmarks.learning_curve {run_dir} --content PHOTOS/ --styles {style.parent}{weights_arg}",
            "Export the model and score it against L-BFGS from white noise and from the photo:",
            f"  fast-style export {run_dir / 'checkpoints' / 'last.ckpt'} -o {model}",
            f"  python -m benchmarks.quality {model} --content PHOTOS/ --styles {style.parent}{weights_arg}",
        ]
    )


def _save_the_end(trainer: Any) -> None:
    """Write ``last.ckpt`` at the step the run ended on.

    A run that stops between two step checkpoints (``trainer.max_time``, or a ``max_steps`` that is
    not a multiple of the interval) would otherwise keep only the steps up to the last interval.
    """
    from pytorch_lightning.callbacks import ModelCheckpoint

    callback = trainer.checkpoint_callback
    if (
        isinstance(callback, ModelCheckpoint)
        and callback.save_last
        and callback.dirpath
        and trainer.global_step
    ):
        last = Path(callback.dirpath) / f"{callback.CHECKPOINT_NAME_LAST}{callback.FILE_EXTENSION}"
        trainer.save_checkpoint(str(last))


def _instantiate_setting(node: Any, key: str, **kwargs: Any) -> Any:
    """``instantiate(node)``; a value its class refuses (``+trainer.max_time=1:2``) is a one-line error."""
    from hydra.errors import InstantiationException
    from hydra.utils import instantiate

    try:
        return instantiate(node, **kwargs)
    except InstantiationException as exc:
        raise FastStyleError(f"{key}: {one_line(exc.__cause__ or exc)}") from None


def _drop_advertising(record: logging.LogRecord) -> bool:
    """Logging filter: Lightning's tips that advertise other products are not about this run."""
    return "Tip:" not in record.getMessage()


def _resume_hint(run_dir: Path) -> str:
    folder = run_dir / "checkpoints"
    if folder.is_dir() and any(folder.glob("*.ckpt")):
        return f"; resume with hydra.run.dir={run_dir} ckpt_path=last"
    return ""


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``fast-style train``."""
    return run_hydra_task("train", train, argv, script=__file__, preflight=check_run_folder)


if __name__ == "__main__":
    sys.exit(main())
