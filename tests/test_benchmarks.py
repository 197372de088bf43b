"""The training-step benchmark runs end to end on tiny settings (its timings are never asserted)."""

from __future__ import annotations

import pytest
import torch

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


@pytest.mark.parametrize("layer_weights", ["auto", None])
def test_optimization_reference_computes_the_same_loss(capsys, layer_weights):
    """The speed comparison is like for like only if the reference's loss equals ours, balanced or raw."""
    import torch

    from benchmarks.optimize_reference import check_same_loss, reference_for
    from fast_style.losses import build_perceptual_loss

    torch.manual_seed(0)  # reference_for draws the same random network as the loss
    loss = build_perceptual_loss(
        network="vgg16",
        weights="none",
        content_layer_weights=layer_weights,
        style_layer_weights=layer_weights,
        style_weight=10.0,
    )
    generator = torch.Generator().manual_seed(1)
    content = torch.rand(1, 3, 40, 48, generator=generator)
    style = torch.rand(1, 3, 48, 40, generator=generator)
    loss.set_style_image(style)
    loss.set_content_image(content)
    reference = reference_for(loss, "none", content, style, lambda params: torch.optim.LBFGS(params))
    check_same_loss(loss, reference, content)
    out = capsys.readouterr().out
    assert "loss of a probe image" in out and "WARNING" not in out, out


def test_optimize_stability_scores_with_the_style_at_style_scale(
    monkeypatch, tmp_path, image_folder, style_path
):
    """The benchmark's loss is the one ``fast-style optimize`` builds: style long side = style_scale x size."""
    import benchmarks.optimize_stability as stability
    from fast_style.images import load_image_tensor

    photos = tmp_path / "held_out"
    photos.mkdir()
    first = sorted(image_folder.iterdir())[0]
    (photos / first.name).write_bytes(first.read_bytes())
    seen = []
    real = stability.optimize_image

    def spy(loss, content, style, **kwargs):
        result = real(loss, content, style, **kwargs)
        used = loss.style_gram_relu1_2.clone()
        long_side = round(0.5 * max(content.shape[-2:]))
        loss.set_style_image(load_image_tensor(style_path, long_side))
        seen.append(torch.allclose(used, loss.style_gram_relu1_2, rtol=1e-4, atol=1e-7))
        return result

    monkeypatch.setattr(stability, "optimize_image", spy)
    args = ["--content", str(photos), "--styles", str(style_path), "--size", "48", "--steps", "1"]
    stability.main([*args, "--network", "vgg16", "--weights", "none", "style_scale=0.5"])
    assert seen == [True]
