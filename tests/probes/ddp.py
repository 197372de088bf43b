"""A callback that records, per rank, which samples it was given and the weights it ended with."""

from __future__ import annotations

import json
from pathlib import Path

import pytorch_lightning as pl
import torch


class RecordRankData(pl.Callback):
    def __init__(self, dirpath: str) -> None:
        self.dirpath = Path(dirpath)
        self.indices: list[int] = []
        self.batches = 0

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        sampler = trainer.train_dataloader.sampler
        self.indices += [int(i) for i in iter(sampler)]

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.batches += 1

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        checksum = float(sum(p.detach().double().sum() for p in pl_module.net.parameters()))
        record = {
            "rank": trainer.global_rank,
            "world_size": trainer.world_size,
            "sampler": type(trainer.train_dataloader.sampler).__name__,
            "indices": self.indices,
            "batches": self.batches,
            "weights_checksum": checksum,
            "backend": torch.distributed.get_backend() if torch.distributed.is_initialized() else None,
        }
        self.dirpath.mkdir(parents=True, exist_ok=True)
        (self.dirpath / f"rank{trainer.global_rank}.json").write_text(json.dumps(record))
