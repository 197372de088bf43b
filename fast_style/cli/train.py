"""``fast-style train key=value ...``: build everything from the Hydra config and fit."""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from fast_style.cli.hydra_app import run_hydra_task
from fast_style.errors import FastStyleError

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
        run_config=OmegaConf.to_container(cfg, resolve=True),
    )
    logger = instantiate(cfg.logger)
    callbacks = [instantiate(c) for c in (cfg.get("callbacks") or {}).values() if c]
    trainer = instantiate(cfg.trainer, logger=logger, callbacks=callbacks)
    log.info("run folder: %s", run_dir)
    trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path)
    log.info("checkpoints in %s", run_dir / "checkpoints")
    return run_dir


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``fast-style train``."""
    return run_hydra_task("train", train, argv, script=__file__)


if __name__ == "__main__":
    sys.exit(main())
