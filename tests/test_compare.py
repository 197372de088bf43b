"""Optimization vs feed-forward: one shared evaluation, the tables, the figure, the command line."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from fast_style.cli.compare import checkpoint_steps
from fast_style.cli.main import main
from fast_style.compare import (
    PeakMemory,
    evaluate_image,
    run_compare,
    steps_to_match,
    write_outputs,
)
from fast_style.errors import FastStyleError
from fast_style.export import export_safetensors
from fast_style.inference import Stylizer
from fast_style.models import TransformerNet, model_config
from fast_style.optimize import PixelSettings, optimize_pixels
from tests.conftest import random_image
from tests.tiny import image, tiny_loss

pytestmark = pytest.mark.filterwarnings("ignore:loss.weights=none")


def write_model(folder: Path, loss: dict | None = None) -> Path:
    """A tiny transform network saved the way training does, then exported like a real one."""
    torch.manual_seed(0)
    net = TransformerNet(channels=(4, 8, 8), num_residual=1)
    ckpt = {
        "fast_style": {"model": model_config(net), "style_name": "test", "loss": loss or {}},
        "state_dict": {f"net.{k}": v for k, v in net.state_dict().items()},
        "global_step": 2,
        "epoch": 0,
    }
    torch.save(ckpt, folder / "tiny.ckpt")
    return export_safetensors(folder / "tiny.ckpt", folder / "tiny.safetensors")


@pytest.fixture
def model_path(tmp_path: Path) -> Path:
    return write_model(tmp_path)


def test_both_modes_are_scored_by_the_same_function(model_path):
    content, style = image((40, 32), 1), image((48, 48), 7)
    stylizer = Stylizer.from_file(model_path)
    loss = tiny_loss(tv_weight=0.5)
    report = run_compare(
        loss, stylizer, content, style, checkpoints=[2, 5], settings=PixelSettings("adam"), repeats=1
    )

    # The feed-forward row is exactly the shared evaluation of the network's output ...
    ff_image = stylizer.stylize_tensor(content)
    ff_row = report.row("feed-forward")
    assert torch.equal(report.images["feed-forward"], ff_image)
    assert [ff_row.content, ff_row.style, ff_row.tv, ff_row.total] == list(
        evaluate_image(loss, ff_image).values()
    )
    # ... and the optimization's own accounting of that same image gives the same numbers.
    own = optimize_pixels(loss, ff_image, steps=0).history[0]
    for key in ("content", "style", "total"):
        assert own[key] == pytest.approx(getattr(ff_row, key), rel=1e-6)
    # Each checkpoint row is the shared evaluation of its image and agrees with the per-step history.
    for steps in (2, 5):
        row = report.row("optimization", steps)
        scores = evaluate_image(loss, report.images[f"optimized_{steps}"])
        assert [row.content, row.style, row.tv, row.total] == list(scores.values())
        assert report.history[steps]["style"] == pytest.approx(row.style, rel=1e-6)
        assert row.seconds is not None and row.seconds > 0 and row.peak_memory_mb is not None
    assert report.row("content image").content == 0.0
    # The match is the first step whose style loss is at most the feed-forward one.
    styles = [h["style"] for h in report.history]
    if report.match_step is None:
        assert min(styles) > ff_row.style
    else:
        assert styles[report.match_step] <= ff_row.style < min(styles[: report.match_step], default=math.inf)


def test_steps_to_match_finds_the_first_step_at_or_below():
    history = [{"step": i, "style": s} for i, s in enumerate([9.0, 5.0, 3.0, 3.0, 1.0])]
    assert steps_to_match(history, 3.0) == 2
    assert steps_to_match(history, 100.0) == 0
    assert steps_to_match(history, 0.5) is None


def test_written_tables_and_figure_match_recomputation(tmp_path, model_path):
    content, style = image((40, 32), 1), image((48, 48), 7)
    stylizer = Stylizer.from_file(model_path)
    loss = tiny_loss()
    report = run_compare(loss, stylizer, content, style, checkpoints=[1, 3, 6], repeats=1)
    paths = write_outputs(report, tmp_path / "out", header="# test", tile=64)

    with open(paths["compare.csv"], newline="") as fh:
        rows = list(csv.DictReader(fh))
    modes = ["content image", "optimization", "optimization", "optimization", "feed-forward"]
    assert [r["mode"] for r in rows] == modes
    assert [r["steps"] for r in rows] == ["0", "1", "3", "6", ""]
    recomputed = [evaluate_image(loss, content)]
    recomputed += [evaluate_image(loss, report.images[f"optimized_{k}"]) for k in (1, 3, 6)]
    recomputed += [evaluate_image(loss, stylizer.stylize_tensor(content))]
    for row, scores in zip(rows, recomputed, strict=False):
        for key, value in scores.items():
            assert float(row[key]) == pytest.approx(value, rel=1e-9, abs=1e-15), (row["mode"], key)
    # The saved final images are the scored ones, up to 8-bit rounding.
    saved = torch.from_numpy(np.asarray(Image.open(paths["feedforward.png"])).copy()).permute(2, 0, 1)
    assert (saved.float() / 255 - report.images["feed-forward"][0]).abs().max() <= 0.5 / 255 + 1e-6

    markdown = paths["compare.md"].read_text()
    assert markdown.startswith("# test") and markdown.count("| optimization |") == 3
    assert f"{report.row('feed-forward').style:.4g}" in markdown

    figure = Image.open(paths["compare.png"])
    # content | style | 3 checkpoints | feed-forward, each 64 px wide (the content is 40x32) plus 4 px gaps
    assert figure.width == 4 + 6 * (64 + 4)
    assert figure.height > 51

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(tmp_path / "out" / "tensorboard"), size_guidance={"scalars": 0, "images": 0})
    acc.Reload()
    assert [e.step for e in acc.Scalars("compare/optimization/style")] == [1, 3, 6]
    assert [e.value for e in acc.Scalars("compare/optimization/style")] == pytest.approx(
        [float(r["style"]) for r in rows[1:4]], rel=1e-6
    )
    assert len(acc.Images("compare/figure")) == 1


def test_feed_forward_plus_steps_is_the_optimization_started_from_the_networks_picture(tmp_path, model_path):
    from fast_style.compare import REFINED

    content, style = image((40, 32), 1), image((48, 48), 7)
    stylizer = Stylizer.from_file(model_path)
    loss = tiny_loss()
    report = run_compare(loss, stylizer, content, style, checkpoints=[2], refine_steps=[3, 1], repeats=1)
    ff = report.row("feed-forward")
    refined = [r for r in report.rows if r.mode == REFINED]
    assert [r.steps for r in refined] == [1, 3]
    # The same optimizer from the network's picture: scored by the shared evaluation, timed with the network.
    expected = optimize_pixels(loss, report.images["feed-forward"], 3, snapshot_at=[1, 3])
    for row in refined:
        image_k = report.images[f"refined_{row.steps}"]
        assert torch.allclose(image_k, expected.snapshots[row.steps].cpu(), atol=1e-5)
        assert [row.content, row.style, row.tv, row.total] == list(evaluate_image(loss, image_k).values())
        assert row.seconds is not None and ff.seconds is not None and row.seconds > ff.seconds
    assert refined[-1].total < ff.total

    paths = write_outputs(report, tmp_path / "out", tile=64)
    with open(paths["compare.csv"], newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [(r["mode"], r["steps"]) for r in rows][-2:] == [(REFINED, "1"), (REFINED, "3")]
    markdown = paths["compare.md"].read_text()
    assert "| feed-forward + steps | 3 |" in markdown
    assert f"Feed-forward + 3 steps reaches a total of {refined[-1].total:.4g}" in markdown
    # content | style | 1 checkpoint | feed-forward | 2 refine checkpoints
    assert Image.open(paths["compare.png"]).width == 4 + 6 * (64 + 4)
    assert paths["refined.png"].is_file()

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(tmp_path / "out" / "tensorboard"), size_guidance={"scalars": 0})
    acc.Reload()
    assert [(e.step, e.value) for e in acc.Scalars("compare/refined/total")] == [
        (1, pytest.approx(refined[0].total, rel=1e-6)),
        (3, pytest.approx(refined[1].total, rel=1e-6)),
    ]


def test_peak_memory_sees_a_large_allocation():
    with PeakMemory("cpu") as idle:
        pass
    with PeakMemory("cpu") as memory:
        block = torch.ones(16 * 2**20)  # 64 MiB, alive until the block ends
    del block
    assert idle.peak_mb < 16  # measured above the level at entry, not the process's whole memory
    assert 48 <= memory.peak_mb < 128
    assert memory.peak_until(memory.start) == 0  # the timeline starts at the entry level


def test_arguments():
    assert checkpoint_steps(50) == [50]
    assert checkpoint_steps([300, 10, 50, 10]) == [10, 50, 300]
    assert checkpoint_steps(None, "refine_steps", allow_none=True) == []
    assert checkpoint_steps([], "refine_steps", allow_none=True) == []
    with pytest.raises(FastStyleError, match="refine_steps must be a positive number"):
        checkpoint_steps([0], "refine_steps", allow_none=True)


def run_cli(tmp_path: Path, *args: str) -> int:
    return main(
        ["compare", f"hydra.run.dir={tmp_path / 'run'}", "loss.weights=none", "progress=false", *args]
    )


def test_cli_writes_the_figure_and_prints_the_table(tmp_path, style_path, capsys):
    content_path = tmp_path / "photo.png"
    random_image((64, 48), 4).save(content_path)
    model = write_model(tmp_path, loss={"network": "vgg16_bn", "style_weight": 1e5})
    code = run_cli(
        tmp_path,
        f"content_image={content_path}",
        f"style_image={style_path}",
        f"model_file={model}",
        "image_size=32",
        "steps=[1,2]",
        "repeats=1",
        "figure_tile=32",
    )
    out = capsys.readouterr().out
    assert code == 0
    run = tmp_path / "run"
    for name in (
        "compare.png",
        "compare.md",
        "compare.csv",
        "feedforward.png",
        "optimized.png",
        "refined.png",
    ):
        assert (run / name).is_file(), name
    assert "| feed-forward |" in out and "| optimization | 2 |" in out
    assert "| feed-forward + steps | 10 |" in out and "| feed-forward + steps | 20 |" in out  # the default
    markdown = (run / "compare.md").read_text()
    # The model records its training loss: compare measures with it, so nothing differs.
    assert "vgg16_bn (weights: none)" in markdown and "x 100000.0" in markdown
    assert "trained with another loss" not in markdown
    assert Image.open(run / "optimized.png").size == (32, 24)


def test_cli_adam_reaches_torch_with_fused_resolved(tmp_path, style_path, model_path, adam_fused_args):
    seen = adam_fused_args
    code = run_cli(
        tmp_path,
        f"content_image={style_path}",
        f"style_image={style_path}",
        f"model_file={model_path}",
        "image_size=32",
        "steps=[1]",
        "repeats=1",
        "figure_tile=32",
        "device=cpu",
        "pixel_optimizer=adam",
    )
    assert code == 0
    assert seen and all(fused is None for fused in seen), seen  # fused: auto is off on the CPU
    assert "optimizer adam" in (tmp_path / "run" / "compare.md").read_text()


def test_cli_reports_loss_settings_given_that_differ_from_the_models(tmp_path, style_path):
    content_path = tmp_path / "photo.png"
    random_image((64, 48), 4).save(content_path)
    model = write_model(tmp_path, loss={"network": "vgg16_bn", "style_weight": 1e5, "style_size": 40})
    code = run_cli(
        tmp_path,
        f"content_image={content_path}",
        f"style_image={style_path}",
        f"model_file={model}",
        "image_size=32",
        "steps=[1]",
        "repeats=1",
        "figure_tile=32",
        "loss.network=vgg16",
        "style_size=24",
    )
    assert code == 0
    markdown = (tmp_path / "run" / "compare.md").read_text()
    assert "vgg16 (weights: none)" in markdown
    assert "network vgg16_bn (model) vs vgg16 (here)" in markdown
    assert "style_size 40 (model) vs 24 (here)" in markdown
    assert "style_weight" not in markdown.split("trained with another loss")[1]  # adopted, not reported


def test_cli_names_the_model_with_model_file(tmp_path, style_path, model_path, capsys):
    # `model` is training's network group; compare's exported model is a key of its own.
    code = run_cli(
        tmp_path, f"content_image={style_path}", f"style_image={style_path}", f"model={model_path}"
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert err == [
        f"fast-style compare: error: compare has no 'model': did you mean model_file={model_path}?"
    ]
    assert not (tmp_path / "run").exists()


def test_cli_refuses_to_overwrite_results(tmp_path, style_path, model_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "compare.csv").write_text("keep me")
    code = run_cli(
        tmp_path,
        f"content_image={style_path}",
        f"style_image={style_path}",
        f"model_file={model_path}",
        f"output_dir={out}",
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "overwrite=true" in err[0], err
    assert (out / "compare.csv").read_text() == "keep me"


@pytest.mark.parametrize(
    "model, message",
    [
        ("missing.safetensors", "model file not found"),
        ("garbage.safetensors", "is not a .safetensors model file"),
        ("weights.pth", "pickle"),
    ],
)
def test_cli_bad_model_file_is_one_line(tmp_path, style_path, capsys, model, message):
    (tmp_path / "garbage.safetensors").write_bytes(b"\x00" * 64)
    (tmp_path / "weights.pth").write_bytes(b"\x00" * 64)
    code = run_cli(
        tmp_path, f"content_image={style_path}", f"style_image={style_path}", f"model_file={tmp_path / model}"
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(err) == 1 and err[0].startswith("fast-style compare: error:") and message in err[0], err
    assert not (tmp_path / "run" / "compare.csv").exists()


def test_cli_knows_the_style_image_by_its_content_not_its_name(tmp_path, style_path):
    from fast_style.files import file_sha256

    content_path = tmp_path / "photo.png"
    random_image((64, 48), 4).save(content_path)
    recorded = {"network": "vgg16_bn", "style_image": "painting.jpg", "style_sha256": file_sha256(style_path)}
    model = write_model(tmp_path, loss=recorded)
    renamed = tmp_path / "copy of the painting.png"
    renamed.write_bytes(style_path.read_bytes())
    other = tmp_path / "other.png"
    random_image((48, 48), 9).save(other)
    args = [f"content_image={content_path}", f"model_file={model}", "image_size=32", "steps=[1]", "repeats=1"]
    assert run_cli(tmp_path / "a", f"style_image={renamed}", *args, "figure_tile=32") == 0
    assert "trained with another loss" not in (tmp_path / "a" / "run" / "compare.md").read_text()
    assert run_cli(tmp_path / "b", f"style_image={other}", *args, "figure_tile=32") == 0
    markdown = (tmp_path / "b" / "run" / "compare.md").read_text()
    assert "style image painting.jpg (model) vs other.png (here)" in markdown
