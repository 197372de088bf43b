"""Scores outside the loss, the loss recorded with a model, and the quality benchmark on tiny inputs."""

from __future__ import annotations

import json

import pytest
import torch

from fast_style.errors import FastStyleError
from fast_style.metrics import color_distance, color_histogram, luminance_ssim
from fast_style.trained_loss import differences, loss_arguments, recorded_loss, weights_mismatch


def test_color_histogram_counts_pixels_into_their_cells():
    image = torch.zeros(1, 3, 2, 2)
    image[..., 0, 0] = torch.tensor([1.0, 1.0, 1.0])  # one white pixel, three black
    hist = color_histogram(image, bins=2)
    assert hist.sum().item() == pytest.approx(1.0)
    assert hist[0].item() == pytest.approx(0.75) and hist[7].item() == pytest.approx(0.25)


def test_color_distance_is_zero_for_one_palette_and_one_for_disjoint_ones():
    torch.manual_seed(0)
    a = torch.rand(1, 3, 16, 16)
    shuffled = a.flatten(2)[..., torch.randperm(256)].view(1, 3, 16, 16)  # same colours, other places
    assert color_distance(a, shuffled) == pytest.approx(0.0, abs=1e-6)
    dark, bright = torch.full((1, 3, 8, 8), 0.05), torch.full((1, 3, 12, 4), 0.95)
    assert color_distance(dark, bright) == pytest.approx(1.0)
    half = torch.cat([dark, torch.full((1, 3, 8, 8), 0.95)], dim=-1)
    assert 0.0 < color_distance(half, bright) < 1.0


def test_luminance_ssim_is_one_for_the_same_structure_and_low_for_noise():
    torch.manual_seed(0)
    ramp = torch.linspace(0, 1, 48).view(1, 1, 1, 48).expand(1, 3, 32, 48).contiguous()
    assert luminance_ssim(ramp, ramp) == pytest.approx(1.0, abs=1e-5)
    noise = torch.rand(1, 3, 32, 48)
    assert luminance_ssim(noise, ramp) < 0.2
    tinted = (ramp * torch.tensor([1.0, 0.9, 0.8]).view(1, 3, 1, 1)).clamp(0, 1)  # colour changes a little
    assert luminance_ssim(tinted, ramp) > 0.9
    with pytest.raises(ValueError, match="one size"):
        luminance_ssim(ramp, noise[..., :16])


# -- the loss a model records -----------------------------------------------------------------------
RECORDED = {
    "network": "vgg16_bn",
    "weights": "file",
    "weights_file": "features.pt",
    "weights_sha256": "0" * 64,
    "content_layers": ["relu2_2"],
    "style_layers": ["relu1_2", "relu2_2"],
    "content_layer_weights": "auto",
    "style_layer_weights": "auto",
    "content_weight": 1.0,
    "style_weight": 10.0,
    "tv_weight": 0.0,
    "style_image": "starry_night.jpg",
    "style_size": 256,
}


def test_recorded_loss_reads_the_metadata_and_fills_in_old_files():
    assert recorded_loss({"training": {"loss": RECORDED}}) == RECORDED
    old = recorded_loss({"training": {"loss": {"network": "vgg16", "style_weight": 1e5}}})
    assert old["style_layer_weights"] is None and old["content_layer_weights"] is None  # raw, all ones
    assert recorded_loss({}) == {}


def test_differences_name_each_setting_that_differs():
    same = dict(RECORDED, style_layers=("relu1_2", "relu2_2"), network="VGG16_BN")
    assert differences(RECORDED, same) == []
    other = dict(RECORDED, style_weight=20.0, style_layer_weights=None)
    found = differences(RECORDED, other)
    assert found == [
        "style_layer_weights auto (model) vs None (here)",
        "style_weight 10.0 (model) vs 20.0 (here)",
    ]


def test_weights_file_is_checked_by_hash(tmp_path):
    path = tmp_path / "features.pt"
    path.write_bytes(b"weights")
    import hashlib

    good = dict(RECORDED, weights_sha256=hashlib.sha256(b"weights").hexdigest())
    assert weights_mismatch(good, str(path)) is None
    assert "sha256" in weights_mismatch(RECORDED, str(path))
    assert "features.pt (model) vs imagenet" in weights_mismatch(RECORDED, "imagenet")
    assert weights_mismatch({"weights": "imagenet"}, "imagenet") is None
    assert loss_arguments(good, str(path))["weights"] == str(path)
    with pytest.raises(FastStyleError, match=r"trained with the loss-network weights file features\.pt"):
        loss_arguments(good)
    with pytest.raises(FastStyleError, match="not the model's loss-network weights"):
        loss_arguments(RECORDED, str(path))


def test_training_records_the_loss_and_export_carries_it(tmp_path, image_folder, style_path):
    from fast_style.cli.main import main
    from fast_style.inference import Stylizer
    from tests.test_training import train

    run = tmp_path / "run"
    assert train(run, image_folder, style_path, "trainer.max_steps=2", "loss.style_weight=3.5") == 0
    out = tmp_path / "model.safetensors"
    assert main(["export", str(run / "checkpoints" / "last.ckpt"), "-o", str(out)]) == 0
    loss = recorded_loss(Stylizer.from_file(out, backend="torch").metadata)
    assert loss["style_weight"] == 3.5 and loss["style_layer_weights"] == "auto"
    assert loss["style_image"] == style_path.name and loss["style_size"] > 0
    from fast_style.files import file_sha256

    assert loss["style_sha256"] == file_sha256(style_path)  # compare knows the picture under any name
    assert len(loss["resolved_style_layer_weights"]) == len(loss["style_layers"])
    assert loss["weights"] == "none"
    json.dumps(loss)  # plain values only


def test_quality_benchmark_scores_a_model_with_its_own_loss(tmp_path, image_folder, style_path, capsys):
    from PIL import Image

    from benchmarks.quality import main as quality
    from fast_style.cli.main import main
    from tests.test_training import train

    run = tmp_path / "run"
    assert train(run, image_folder, style_path, "trainer.max_steps=2") == 0
    model = tmp_path / "tiny.safetensors"
    assert main(["export", str(run / "checkpoints" / "last.ckpt"), "-o", str(model)]) == 0
    photos = tmp_path / "held_out"
    photos.mkdir()
    for i, path in enumerate(sorted(image_folder.iterdir())[:2]):
        Image.open(path).save(photos / f"p{i}.png")
    out = tmp_path / "quality"
    code = quality(
        [
            str(model),
            "--content",
            str(photos),
            "--styles",
            str(style_path.parent),
            "--size",
            "32",
            "48",
            "--max-steps",
            "3",
            "--refine-target",
            "2",
            "--refine-steps",
            "3",
            "--out",
            str(out),
            "--no-progress",
            "--backend",
            "torch",
        ]
    )
    printed = capsys.readouterr().out
    assert code == 0
    assert "refine steps to L-BFGS@2 from photo" in printed
    assert {p.name for p in out.iterdir()} == {"quality.md", "quality.csv", "quality.png"}
    rows = (out / "quality.csv").read_text().splitlines()
    # two photos at two sizes, each worth some steps from noise and from the photo
    assert len(rows) == 5
    assert rows[0].startswith(
        "model,photo,size,content,style,total,photo_total,steps_from_noise,steps_from_photo"
    )
    goal = rows[0].split(",").index("refine_goal")
    assert all(float(row.split(",")[goal]) > 0 for row in rows[1:])  # the photo start ran 2 steps
    assert "| tiny | p0 | 32 |" in printed and "| tiny | p1 | 48 |" in printed
    assert "steps-worth from noise | steps-worth from photo" in printed and "Means over the photos" in printed
    means = printed.split("Means over the photos")[1]
    assert "| tiny | 32 |" in means and "| tiny | 48 |" in means
    sheet = Image.open(out / "quality.png")
    assert sheet.width > sheet.height  # photo | style | model | L-BFGS, one row per photo (first size)


def test_refine_benchmark_compares_the_three_starts(tmp_path, style_path, capsys):
    from PIL import Image

    from benchmarks.refine import main as refine
    from tests.conftest import random_image
    from tests.test_refine import model_with_loss

    model = model_with_loss(tmp_path, style_path)
    photos = tmp_path / "photos"
    photos.mkdir()
    for i in range(2):
        random_image((48, 40), i).save(photos / f"p{i}.png")
    out, sheet = tmp_path / "out", tmp_path / "docs" / "sheet.png"
    args = [
        "--content",
        str(photos),
        "--styles",
        str(style_path.parent),
        "--size",
        "32",
        "--refine",
        "1",
        "2",
    ]
    args += [
        "--baseline",
        "3",
        "--sheet",
        str(sheet),
        "--sheet-steps",
        "4",
        "--out",
        str(out),
        "--no-progress",
    ]
    code = refine([str(model), *args, "--backend", "torch"])
    printed = capsys.readouterr().out
    assert code == 0
    assert "| p0 | 32 |" in printed and "| p1 | 32 |" in printed
    assert "refine steps to L-BFGS@3 from photo" in printed and "refine 2 ≤ photo@3, ≤ ½ time" in printed
    rows = (out / "refine.csv").read_text().splitlines()
    assert len(rows) == 3 and "refine_total_2" in rows[0] and "refine_seconds_2" in rows[0]
    picture = Image.open(sheet)
    # two rows of photo | feed-forward | refine 1 | refine 2 | optimization, 256 px tiles
    assert picture.width > 4 * 256 and picture.height > 2 * 200


def test_refine_benchmark_blend_zero_starts_from_the_photo(tmp_path, style_path, capsys):
    import csv

    from benchmarks.refine import main as refine
    from tests.conftest import random_image
    from tests.test_refine import model_with_loss

    model = model_with_loss(tmp_path, style_path)
    photos = tmp_path / "photos"
    photos.mkdir()
    random_image((40, 40), 3).save(photos / "p.png")
    common = ["--content", str(photos), "--styles", str(style_path.parent), "--size", "32", "--refine", "2"]
    common += ["--baseline", "3", "--no-progress", "--backend", "torch"]
    totals = {}
    for blend in ("0", "1"):
        out = tmp_path / f"out{blend}"
        assert refine([str(model), *common, "--blend", blend, "--out", str(out)]) == 0
        with open(out / "refine.csv", encoding="utf-8") as fh:
            row = next(csv.DictReader(fh))
        totals[blend] = (
            float(row["ff_total"]),
            float(row["refine_total_2"]),
            float(row["photo_start_same_steps"]),
        )
    # From the photo alone, two refine steps are the photo start's first two steps.
    assert totals["0"][1] == pytest.approx(totals["0"][2], rel=1e-5)
    # The start's score differs from the model's picture's, which blend 1 starts from.
    assert totals["0"][0] != pytest.approx(totals["1"][0], rel=1e-3)
    capsys.readouterr()
    assert refine([str(model), *common, "--blend", "1.5", "--out", str(tmp_path / "bad")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--blend takes a share in [0, 1]" in err[0], err


def test_quality_benchmark_needs_the_models_weights_file(tmp_path, style_path, capsys):
    from benchmarks.quality import main as quality
    from tests.test_compare import write_model

    model = write_model(tmp_path, loss=dict(RECORDED, style_image=style_path.name))
    code = quality([str(model), "--content", str(tmp_path), "--styles", str(style_path.parent)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "weights file features.pt" in err[0], err


def test_steps_worth_interpolates_between_the_bracketing_steps():
    from benchmarks.scoring import steps_worth

    totals = [4.0, 3.0, 2.0, 1.5]
    assert steps_worth(totals, 5.0) == 0.0  # the start is already as good
    assert steps_worth(totals, 3.0) == pytest.approx(1.0)
    assert steps_worth(totals, 2.5) == pytest.approx(1.5)
    assert steps_worth(totals, 1.75) == pytest.approx(2.5)
    assert steps_worth(totals, 1.0) is None  # never reached
    assert steps_worth([], 1.0) is None


def test_lbfgs_curve_is_cached_and_reused_only_when_it_covers_the_request(tmp_path, monkeypatch):
    import benchmarks.scoring as scoring
    from fast_style.losses import build_perceptual_loss

    torch.manual_seed(0)
    loss = build_perceptual_loss(network="vgg16", weights="none", style_layers=["relu1_2"])
    content, style = torch.rand(1, 3, 24, 32), torch.rand(1, 3, 24, 24)
    loss.set_style_image(style)
    loss.set_content_image(content)
    calls = []
    real = scoring.optimize_pixels
    monkeypatch.setattr(scoring, "optimize_pixels", lambda *a, **k: calls.append(a[2]) or real(*a, **k))
    key = {"photo": "p", "loss": "l"}
    first = scoring.lbfgs_curve(loss, content, style, "noise", 4, cache=tmp_path, cache_key=key)
    again = scoring.lbfgs_curve(loss, content, style, "noise", 3, cache=tmp_path, cache_key=key)
    assert calls == [4] and again.totals == first.totals[:4] and again.image is None
    scoring.lbfgs_curve(loss, content, style, "noise", 6, cache=tmp_path, cache_key=key)  # longer: run again
    scoring.lbfgs_curve(loss, content, style, "content", 3, cache=tmp_path, cache_key=key)  # other start
    assert calls == [4, 6, 3]
    assert first.totals[0] > first.totals[-1]


def test_learning_curve_scores_every_checkpoint_of_a_run(tmp_path, image_folder, style_path, capsys):
    from PIL import Image

    from benchmarks.learning_curve import main as learning_curve
    from tests.test_training import train

    run = tmp_path / "run"
    extra = ["trainer.max_steps=5", "callbacks.model_checkpoint.every_n_train_steps=2", "model.skip=true"]
    assert train(run, image_folder, style_path, *extra) == 0
    photos = tmp_path / "held_out"
    photos.mkdir()
    for i, path in enumerate(sorted(image_folder.iterdir())[:3]):
        Image.open(path).save(photos / f"p{i}.png")
    out = tmp_path / "curve"
    args = ["--content", str(photos), "--styles", str(style_path.parent), "--photos", "2", "--size", "32"]
    args += ["--max-steps", "3", "--out", str(out), "--cache", str(tmp_path / "cache"), "--no-progress"]
    assert learning_curve([str(run), *args]) == 0
    printed = capsys.readouterr().out
    rows = (out / "learning_curve.csv").read_text().splitlines()
    assert rows[0].startswith("run,step,cpu_minutes,wall_minutes,size,total")
    steps = [int(r.split(",")[1]) for r in rows[1:]]
    assert steps == [2, 4, 5]  # the step checkpoints, then last.ckpt where the run ended
    assert all(float(r.split(",")[2]) > 0 for r in rows[1:])  # training CPU time recorded per checkpoint
    assert "p0, p1" in printed and "| run | 32 | 4 |" in printed and "| run | 32 | 5 |" in printed
    assert Image.open(out / "learning_curve.png").size[0] > 800
    assert len(list((tmp_path / "cache").glob("lbfgs_*.json"))) == 2  # one curve per photo, reused
