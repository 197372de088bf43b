"""The training-step benchmark runs end to end on tiny settings (its timings are never asserted)."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def test_train_step_benchmark_prints_every_case_and_the_projection(capsys):
    from benchmarks.train_step import main

    main(
        [
            "--device",
            "cpu",
            "--size",
            "32",
            "--batches",
            "1",
            "2",
            "--steps",
            "1",
            "--rounds",
            "1",
            "--warmup",
            "1",
            "--no-compile",
        ]
    )
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if line.startswith("| 1 |") or line.startswith("| 2 |")]
    names = [row.split(" | ")[1] for row in rows]
    from fast_style.auto_settings import cpu_bf16_native

    # The default is what `fast-style train` picks here (compile left out by --no-compile).
    if cpu_bf16_native():
        cases = ["ours, default (bf16-mixed)", "ours, plain fp32", "ours, plain fp32 + channels_last"]
    else:
        cases = [
            "ours, default (32-true)",
            "ours, plain fp32 + bf16-mixed",
            "ours, plain fp32 + channels_last",
        ]
    assert names == 2 * ["reference: plain fp32 PyTorch loop", *cases]
    assert rows[0].split(" | ")[3] == "1.00×"  # ratios are against the reference
    assert "threads 1" in out
    assert out.count("2 COCO epochs (2 × 82,783 images)") == 2
