"""``fast-style train key=value ...``: build everything from the Hydra config and fit."""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from omegaconf import DictConfig, OmegaConf, open_dict

from fast_style.cli.hydra_app import run_hydra_task
from fast_style.errors import FastStyleError

if TYPE_CHECKING:
    from fast_style.training import SpeedSettings

__all__ = ["main", "train"]

log = logging.getLogger("fast_style.train")


def _resolve_ckpt_path(ckpt_path: str | None, run_dir: Path) -> str | None:
    if ckpt_path in (None, "", "none", "null"):
        return None
    if ckpt_path == "last":
        last = run_dir / "checkpoints" / "last.ckpt"
        if not last.is_file():
            raise FastStyleError(
                f"ckpt_path=last but there is no {last}; pass hydra.run.dir=<the run folder to resume>"
            )
        return str(last)
    if not Path(ckpt_path).is_file():
        raise FastStyleError(f"checkpoint not found: {ckpt_path}")
    return ckpt_path


def _resolve_speed(cfg: DictConfig) -> SpeedSettings:
    """Resolve the ``auto`` speed options for the run's accelerator and write them back into ``cfg``.

    Lightning's Trainer, the DataLoader and Adam take only concrete values, so this runs before any
    of them is instantiated; the checkpoint's ``run_config`` then records what the run really used.
    """
    from fast_style.training import resolve_speed_settings, training_device

    speed = resolve_speed_settings(
        training_device(cfg.trainer.get("accelerator", "auto")),
        precision=cfg.trainer.get("precision", "auto"),
        benchmark=cfg.trainer.get("benchmark", "auto"),
        channels_last=cfg.speed.channels_last,
        fused=cfg.optimizer.get("fused", False),
        pin_memory=cfg.data.get("pin_memory", "auto"),
        deterministic=bool(cfg.trainer.get("deterministic", False)),
        compile=cfg.speed.compile,
        steps=int(cfg.trainer.get("max_steps", -1) or -1),
    )
    with open_dict(cfg):
        cfg.trainer.precision = speed.precision
        cfg.trainer.benchmark = speed.benchmark
        cfg.speed.channels_last = speed.channels_last
        cfg.data.pin_memory = speed.pin_memory
        cfg.speed.compile = speed.compile
        if cfg.speed.compile_loss is None or str(cfg.speed.compile_loss).lower() == "auto":
            cfg.speed.compile_loss = speed.compile
        if "fused" in cfg.optimizer:
            # None, not False: Adam(fused=False) would also switch off its default foreach kernels.
            cfg.optimizer.fused = True if speed.fused else None
    return speed


def train(cfg: DictConfig) -> Path:
    """Train from a composed ``train`` config; returns the run folder."""
    import pytorch_lightning as pl
    from hydra.core.hydra_config import HydraConfig
    from hydra.utils import instantiate

    from fast_style.images import load_image_tensor
    from fast_style.training import StyleTransferModule

    run_dir = Path(HydraConfig.get().runtime.output_dir)
    ckpt_path = _resolve_ckpt_path(cfg.get("ckpt_path"), run_dir)
    if cfg.seed is not None:
        pl.seed_everything(cfg.seed, workers=True, verbose=False)

    # Cheap checks first, so a typo fails in a second rather than after loading VGG.
    speed = _resolve_speed(cfg)
    style = load_image_tensor(cfg.style_image, cfg.style_size)
    datamodule = instantiate(cfg.data)
    loss = instantiate(cfg.loss)
    loss.set_style_image(style)
    net = instantiate(cfg.model)

    module = StyleTransferModule(
        net=net,
        loss=loss,
        optimizer=instantiate(cfg.optimizer),
        scheduler=instantiate(cfg.scheduler) if cfg.get("scheduler") else None,
        log_images_every_n_steps=cfg.log_images_every_n_steps,
        style_name=Path(cfg.style_image).stem,
        style_info={"style_image": Path(cfg.style_image).name, "style_size": int(max(style.shape[-2:]))},
        run_config=OmegaConf.to_container(cfg, resolve=True),
        channels_last=speed.channels_last,
        compile_net=cfg.speed.compile,
        compile_loss=cfg.speed.compile_loss,
        compile_backend=cfg.speed.compile_backend,
    )
    logger = instantiate(cfg.logger)
    callbacks = [instantiate(c) for c in (cfg.get("callbacks") or {}).values() if c]
    trainer = instantiate(cfg.trainer, logger=logger, callbacks=callbacks)
    log.info("run folder: %s", run_dir)
    log.info(
        "speed: precision %s, cudnn benchmark %s, channels_last %s, fused Adam %s, pin_memory %s, compile %s/%s",
        speed.precision, speed.benchmark, speed.channels_last, speed.fused, speed.pin_memory,
        cfg.speed.compile, cfg.speed.compile_loss,
    )
    trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path)
    log.info("checkpoints in %s", run_dir / "checkpoints")
    return run_dir


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``fast-style train``."""
    return run_hydra_task("train", train, argv, script=__file__)


if __name__ == "__main__":
    sys.exit(main())
