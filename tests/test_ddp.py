"""Two CPU processes (gloo) through ``trainer=ddp``: sharded data, synchronised weights, one writer."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from fast_style.model_file import record_from_checkpoint
from tests.conftest import ROOT, random_image

pytestmark = pytest.mark.slow


def test_two_process_ddp_shards_data_and_writes_once(tmp_path, image_folder, style_path):
    # Two styles, so the conditional instance norms' per-style rows are synchronised too.
    second_style = tmp_path / "second_style.png"
    random_image((40, 48), 7).save(second_style)
    for i in range(6, 12):  # 12 photos: 3 batches of 2 per rank and epoch
        shutil.copy(next(image_folder.glob("img0.jpg")), image_folder / f"copy{i}.jpg")
    script = Path(sys.executable).parent / "fast-style"
    command = [str(script)] if script.exists() else [sys.executable, "-m", "fast_style.cli.train"]
    run, probe = tmp_path / "run", tmp_path / "probe"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONWARNINGS": "ignore"}
    proc = subprocess.run(
        [
            *command,
            *(["train"] if script.exists() else []),
            f"style_image=[{style_path},{second_style}]",
            f"data.root={image_folder}",
            f"hydra.run.dir={run}",
            "trainer=ddp",
            "trainer.accelerator=cpu",
            "trainer.devices=2",
            "trainer.max_steps=3",
            "trainer.max_epochs=-1",
            "trainer.enable_progress_bar=false",
            "trainer.log_every_n_steps=1",
            "loss.weights=none",
            "data.image_size=32",
            "data.batch_size=2",
            "data.num_workers=0",
            "model.channels=[4,8,8]",
            "model.num_residual=1",
            "style_size=32",
            "+callbacks.probe._target_=tests.probes.ddp.RecordRankData",
            f"+callbacks.probe.dirpath={probe}",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=400,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    ranks = [json.loads((probe / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert [r["world_size"] for r in ranks] == [2, 2]
    assert all(r["sampler"] == "DistributedSampler" and r["backend"] == "gloo" for r in ranks)
    assert [r["batches"] for r in ranks] == [3, 3]
    first, second = (set(r["indices"]) for r in ranks)
    assert first and second and not first & second  # each rank saw its own shard
    assert first | second == set(range(12))
    assert ranks[0]["weights_checksum"] == pytest.approx(ranks[1]["weights_checksum"], rel=1e-6)

    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["last.ckpt"]
    checkpoint = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    assert checkpoint["global_step"] == 3
    record = record_from_checkpoint(checkpoint)
    assert record.get("styles") == ["style", "second_style"]
    assert len(list((run / "tensorboard").glob("events.out.tfevents.*"))) == 1
