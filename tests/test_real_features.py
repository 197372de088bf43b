"""Training with real learned VGG features (the offline VGG16-BN weights beside the project)."""

from __future__ import annotations

import statistics

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from fast_style.cli.main import main
from tests.conftest import COCO128, STYLES, VGG16_BN_OFFLINE, require

pytestmark = [pytest.mark.real_weights, pytest.mark.slow]


def test_sixty_steps_on_coco128_cut_the_style_loss_by_a_fifth(tmp_path):
    weights = require(VGG16_BN_OFFLINE)
    data = require(COCO128)
    style = require(STYLES / "starry_night.jpg")
    run = tmp_path / "run"
    code = main(
        [
            "train",
            f"style_image={style}",
            f"data.root={data}",
            "loss.network=vgg16_bn",
            f"loss.weights={weights}",
            "data.image_size=64",
            "data.batch_size=4",
            "data.num_workers=0",
            "style_size=128",
            "trainer.max_steps=60",
            "trainer.accelerator=cpu",
            "trainer.log_every_n_steps=1",
            "trainer.enable_progress_bar=false",
            f"hydra.run.dir={run}",
        ]
    )
    assert code == 0
    acc = EventAccumulator(str(run / "tensorboard"), size_guidance={"scalars": 0})
    acc.Reload()
    style = [e.value for e in acc.Scalars("train/style")]
    assert len(style) == 60
    first, last = statistics.mean(style[:5]), statistics.mean(style[-5:])
    print(f"style loss: first 5 steps {first:.4g}, last 5 steps {last:.4g}")
    # With balanced layers the deep layers count as much as relu1_2, whose colour statistics alone
    # used to fall fastest; 60 steps measured a cut of 27% (4.93 -> 3.61).
    assert last <= first * 0.8, (first, last)
