"""Per-image optimization: optimizers, starting images, range, multi-scale, colour, failures, CLI."""

from __future__ import annotations

import itertools
import math
import warnings
from pathlib import Path

import pytest
import torch
from PIL import Image

from fast_style.cli.main import main
from fast_style.color import combine_luminance, luminance, rgb_to_yiq, yiq_to_rgb
from fast_style.compare import evaluate_image
from fast_style.errors import FastStyleError
from fast_style.images import image_to_tensor
from fast_style.losses import PerceptualLoss, total_variation
from fast_style.optimize import (
    PixelSettings,
    initial_image,
    optimize_image,
    optimize_pixels,
    resize_to,
    scale_sizes,
)
from tests.conftest import CONTENT, STYLES, VGG16_BN_OFFLINE, random_image, require
from tests.tiny import TinyEncoder, image, tiny_loss

pytestmark = pytest.mark.filterwarnings("ignore:loss.weights=none")


@pytest.fixture
def content() -> torch.Tensor:
    return image((40, 32), 1)


@pytest.fixture
def style() -> torch.Tensor:
    return image((48, 48), 7)


# -- the loss terms ---------------------------------------------------------------------------------
def test_tv_term_matches_a_hand_computed_value():
    img = torch.tensor([[0.0, 0.5, 1.0], [0.25, 0.25, 0.75]]).expand(1, 3, 2, 3).contiguous()
    # vertical differences 0.25, -0.25, -0.25 -> mean square 0.0625
    # horizontal differences 0.5, 0.5, 0, 0.5 -> mean square 0.1875
    expected = 0.0625 + 0.1875
    assert total_variation(img).item() == pytest.approx(expected)
    loss = tiny_loss(tv_weight=3.0)
    loss.set_style_image(img)
    loss.set_content_image(img)
    assert loss(img)["tv"].item() == pytest.approx(3.0 * expected)
    assert loss.raw_terms(img)["tv"].item() == pytest.approx(expected)
    assert evaluate_image(loss, img)["tv"] == pytest.approx(expected)


def test_the_shared_evaluation_gives_the_numbers_the_optimizer_minimises(content, style):
    loss = tiny_loss(tv_weight=0.5)
    loss.set_style_image(style)
    loss.set_content_image(content)
    other = image((40, 32), 5)
    forward = loss(other)
    scores = evaluate_image(loss, other)
    for key in ("content", "style", "total"):
        assert scores[key] == pytest.approx(forward[key].item(), rel=1e-6)
    run = optimize_pixels(loss, other, steps=0)
    assert run.history[0]["style"] == pytest.approx(scores["style"], rel=1e-6)
    assert run.history[0]["total"] == pytest.approx(scores["total"], rel=1e-6)


# -- optimizers -------------------------------------------------------------------------------------
@pytest.mark.parametrize("optimizer", ["lbfgs", "adam"])
def test_each_optimizer_lowers_the_total_loss(optimizer, content, style):
    loss = tiny_loss(tv_weight=0.1)
    result = optimize_image(
        loss, content, style, steps=20, settings=PixelSettings(optimizer, init="noise", seed=3)
    )
    first, last = result.history[0]["total"], result.history[-1]["total"]
    assert result.error is None
    assert [h["step"] for h in result.history] == list(range(21))
    assert last < 0.5 * first, (first, last)
    assert result.image.shape == content.shape
    assert result.image.min().item() >= 0.0 and result.image.max().item() <= 1.0
    assert evaluate_image(loss, result.image)["total"] == pytest.approx(last, rel=1e-5)


@pytest.mark.parametrize("style_weight", [100.0, 1e4])
def test_default_lbfgs_never_raises_the_loss_and_evaluates_once_a_step(content, style, style_weight):
    loss = tiny_loss(style_weight=style_weight, tv_weight=0.1)
    result = optimize_image(loss, content, style, steps=60, settings=PixelSettings(init="noise", seed=3))
    totals = [h["total"] for h in result.history]
    rises = [(i, a, b) for i, (a, b) in enumerate(itertools.pairwise(totals)) if b > a * (1 + 1e-6)]
    assert not rises, rises
    assert totals[-1] < 0.01 * totals[0]
    # The line search's accepted point is not evaluated again at the start of the next step.
    assert result.evaluations <= 1.25 * 60, result.evaluations


def test_blind_lbfgs_steps_can_raise_the_loss_where_the_default_does_not(content, style):
    from functools import partial

    blind = partial(
        torch.optim.LBFGS, lr=1.0, max_iter=1, history_size=100, tolerance_grad=0.0, tolerance_change=0.0
    )
    loss = tiny_loss(style_weight=1e4, tv_weight=0.1)
    result = optimize_image(
        loss, content, style, steps=60, settings=PixelSettings(blind, init="noise", seed=3)
    )
    totals = [h["total"] for h in result.history]
    assert any(b > a * (1 + 1e-6) for a, b in itertools.pairwise(totals))  # what the line search prevents


def test_stop_at_total_ends_the_run_once_the_total_is_reached(content, style):
    loss = tiny_loss()
    loss.set_style_image(style)
    loss.set_content_image(content)
    full = optimize_pixels(loss, content, 30)
    target = full.history[10]["total"]
    early = optimize_pixels(loss, content, 30, stop_at_total=target)
    assert early.steps == 11 and len(early.history) == 12
    assert early.history[10]["total"] == pytest.approx(target, rel=1e-6)


def test_pixels_stay_in_range_even_with_a_large_step(content, style):
    loss = tiny_loss()
    adam = lambda params: torch.optim.Adam(params, lr=0.8)  # noqa: E731
    result = optimize_image(
        loss, content, style, steps=6, settings=PixelSettings(adam), snapshot_at=[1, 3, 6]
    )
    for snap in [result.image, *result.snapshots.values()]:
        assert snap.min().item() >= 0.0 and snap.max().item() <= 1.0
    assert sorted(result.snapshots) == [1, 3, 6]
    assert not torch.equal(result.snapshots[1], result.snapshots[6])


def test_lr_decay_lowers_the_learning_rate(content, style):
    loss = tiny_loss()
    loss.set_style_image(style)
    loss.set_content_image(content)
    seen = []

    def adam(params):
        opt = torch.optim.Adam(params, lr=0.1)
        seen.append(opt)
        return opt

    optimize_pixels(loss, content, steps=5, optimizer=adam, lr_decay_every=2, lr_decay_gamma=0.5)
    assert seen[0].param_groups[0]["lr"] == pytest.approx(0.1 * 0.5**2)


# -- where the optimization starts ---------------------------------------------------------------
def test_init_variants_start_where_they_say(content, style):
    loss = tiny_loss()
    from_content = optimize_image(loss, content, style, steps=0, settings=PixelSettings(init="content"))
    assert torch.equal(from_content.image, content)

    from_style = optimize_image(loss, content, style, steps=0, settings=PixelSettings(init="style"))
    assert torch.allclose(from_style.image, resize_to(style, tuple(content.shape[-2:])))

    noise = optimize_image(loss, content, style, steps=0, settings=PixelSettings(init="noise", seed=5)).image
    again = optimize_image(loss, content, style, steps=0, settings=PixelSettings(init="noise", seed=5)).image
    other = optimize_image(loss, content, style, steps=0, settings=PixelSettings(init="noise", seed=6)).image
    assert torch.equal(noise, again) and not torch.equal(noise, other)
    assert noise.shape == content.shape
    assert noise.min().item() >= 0 and noise.max().item() <= 1
    assert noise.mean().item() == pytest.approx(0.5, abs=0.02)
    assert noise.std().item() == pytest.approx(1 / math.sqrt(12), abs=0.02)  # uniform on [0, 1]
    # The content start has no content loss; the others do.
    assert from_content.history[0]["content"] == 0.0
    assert (
        from_style.history[0]["content"] > 0
        and optimize_image(loss, content, style, steps=0, settings=PixelSettings(init="noise")).history[0][
            "content"
        ]
        > 0
    )


def test_bad_init_and_steps_are_user_errors(content, style):
    loss = tiny_loss()
    with pytest.raises(FastStyleError, match="init"):
        initial_image("zeros", content)
    with pytest.raises(FastStyleError, match="steps"):
        optimize_image(loss, content, style, steps=-1)


# -- style images ---------------------------------------------------------------------------------
def test_blend_weights_pick_between_style_images(content, style):
    other = image((48, 40), 11)
    alone = optimize_image(tiny_loss(), content, style, steps=3)
    blended = optimize_image(tiny_loss(), content, [style, other], blend=[1.0, 0.0], steps=3)
    mixed = optimize_image(tiny_loss(), content, [style, other], blend=[0.5, 0.5], steps=3)
    assert torch.allclose(alone.image, blended.image, atol=1e-6)
    assert not torch.allclose(alone.image, mixed.image, atol=1e-4)


def test_multiscale_returns_the_requested_size_and_scales_the_style(content, style, monkeypatch):
    loss = tiny_loss()
    style_sizes = []
    original = loss.set_style_image

    def spy(images, blend=None):
        style_sizes.append(tuple(images[0].shape[-2:]))
        original(images, blend)

    monkeypatch.setattr(loss, "set_style_image", spy)
    big = image((75, 64), 2)  # odd sizes: the pyramid must still end exactly here
    result = optimize_image(
        loss, big, style, steps=2, scales=3, scale_steps=[3, 2, 1], style_scale=0.5, snapshot_at=[0, 3, 6]
    )
    assert result.image.shape == big.shape
    assert scale_sizes(64, 75, 3) == [(16, 19), (32, 38), (64, 75)]
    assert style_sizes == [(10, 10), (19, 19), (38, 38)]  # long side = 0.5 x the scale's long side
    # A scale's last image is re-scored at the next scale, so each boundary appears once.
    assert [h["scale"] for h in result.history] == [0] * 3 + [1] * 2 + [2] * 2
    assert [h["step"] for h in result.history] == list(range(7))
    assert result.steps == 6
    assert sorted(result.snapshots) == [0, 3, 6]
    assert all(s.shape == big.shape for s in result.snapshots.values())
    with pytest.raises(FastStyleError, match="coarsest"):
        optimize_image(loss, big, style, steps=1, scales=4)


def test_preserve_color_keeps_the_content_colours(content, style):
    x = torch.rand(2, 3, 5, 7)
    assert torch.allclose(yiq_to_rgb(rgb_to_yiq(x)), x, atol=1e-5)
    result = optimize_image(
        tiny_loss(), content, style, steps=8, preserve_color=True, settings=PixelSettings(init="noise")
    )
    out_iq = rgb_to_yiq(result.image)[:, 1:]
    in_iq = rgb_to_yiq(content)[:, 1:]
    inside = ((result.image > 0.01) & (result.image < 0.99)).all(dim=1, keepdim=True).expand_as(out_iq)
    assert torch.allclose(out_iq[inside], in_iq[inside], atol=1e-4)  # clamping aside, chroma is the content's
    assert not torch.allclose(luminance(result.image), luminance(content), atol=1e-2)
    assert torch.allclose(combine_luminance(content, content), content, atol=1e-4)


# -- failure ----------------------------------------------------------------------------------------
class FailingLoss(PerceptualLoss):
    """Returns a NaN style term from its ``fail_at``-th evaluation on."""

    fail_at = 4

    def forward(self, images, content=None):
        self.calls = getattr(self, "calls", 0) + 1
        terms = super().forward(images, content)
        if self.calls > self.fail_at:
            terms["style"] = terms["style"] * float("nan")
            terms["total"] = terms["content"] + terms["style"] + terms["tv"]
        return terms


def test_a_non_finite_loss_stops_and_keeps_the_last_good_image(content, style):
    loss = FailingLoss(TinyEncoder(), content_layers=["b"], style_layers=["a", "b"], style_weight=100.0)
    result = optimize_image(
        loss, content, style, steps=10, settings=PixelSettings("adam"), snapshot_at=[3, 4, 8]
    )
    assert result.error is not None and "non-finite" in result.error and "after 4 steps" in result.error
    assert result.steps == 3
    assert len(result.history) == 4
    assert torch.equal(result.image, result.snapshots[3])
    assert sorted(result.snapshots) == [3]
    assert torch.isfinite(result.image).all()


# -- the command line --------------------------------------------------------------------------------
def run_cli(tmp_path: Path, *args: str) -> int:
    return main(
        ["optimize", f"hydra.run.dir={tmp_path / 'run'}", "loss.weights=none", "progress=false", *args]
    )


def test_cli_writes_the_image_and_tensorboard_logs(tmp_path, style_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    content_path = tmp_path / "photo.jpg"
    random_image((60, 45), 3).save(content_path)
    out = tmp_path / "out" / "result.png"
    code = run_cli(
        tmp_path,
        f"content_image={content_path}",
        f"style_image=[{style_path},{style_path}]",
        "style_blend=[2,1]",
        f"output={out}",
        "image_size=32",
        "steps=4",
        "log_images_every_n_steps=2",
        "loss.tv_weight=1.0",
    )
    assert code == 0
    assert Image.open(out).size == (32, 24)
    acc = EventAccumulator(str(tmp_path / "run" / "tensorboard"), size_guidance={"scalars": 0, "images": 0})
    acc.Reload()
    assert [e.step for e in acc.Scalars("optimize/total")] == [0, 1, 2, 3, 4]
    assert all(e.value > 0 for e in acc.Scalars("optimize/tv"))
    assert [e.step for e in acc.Images("optimize/image")] == [0, 2, 4]
    assert [e.step for e in acc.Images("optimize/final")] == [4]
    assert not list(out.parent.glob(".*.part"))


def test_cli_adam_reaches_torch_with_fused_resolved(tmp_path, style_path, adam_fused_args):
    seen = adam_fused_args
    out = tmp_path / "out.png"
    args = [f"content_image={style_path}", f"style_image={style_path}", f"output={out}", "image_size=32"]
    code = run_cli(tmp_path, *args, "steps=2", "device=cpu", "pixel_optimizer=adam")
    assert code == 0
    assert seen and all(fused is None for fused in seen), seen  # fused: auto is off on the CPU


def test_presets_compose_the_classic_settings():
    from fast_style.cli.hydra_app import compose_config

    gatys = compose_config("optimize", ["experiment=gatys"])
    d2l = compose_config("optimize", ["experiment=d2l"])
    adam = compose_config("optimize", ["pixel_optimizer=adam"])
    gatys_adam = compose_config("optimize", ["experiment=gatys", "pixel_optimizer=adam"])
    assert gatys.loss.network == "vgg19"
    assert list(gatys.loss.content_layers) == ["relu4_2"]
    assert list(gatys.loss.style_layers) == ["relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1"]
    assert gatys.pixel_optimizer._target_ == "torch.optim.LBFGS"
    assert d2l.loss.network == "vgg19" and d2l.loss.tv_weight == 10.0 and d2l.loss.style_weight == 1e4
    assert d2l.pixel_optimizer._target_ == "torch.optim.Adam" and d2l.lr_decay.every == 50
    assert adam.pixel_optimizer._target_ == "torch.optim.Adam" and adam.pixel_optimizer.lr == 0.02
    assert gatys_adam.pixel_optimizer._target_ == "torch.optim.Adam"


def test_cli_gatys_preset_runs_on_vgg19(tmp_path, style_path):
    out = tmp_path / "gatys.png"
    code = run_cli(
        tmp_path,
        f"content_image={style_path}",
        f"style_image={style_path}",
        f"output={out}",
        "image_size=32",
        "steps=2",
        "experiment=gatys",
        "pixel_optimizer=adam",
        "init=noise",
    )
    assert code == 0 and out.is_file()
    saved = (tmp_path / "run" / ".hydra" / "config.yaml").read_text()
    assert "network: vgg19" in saved and "torch.optim.Adam" in saved


@pytest.mark.parametrize(
    "args, message",
    [
        (["content_image={missing}", "style_image={style}", "output={out}"], "image not found"),
        (["content_image={style}", "style_image={style}", "output={existing}"], "already exists"),
        (["content_image={style}", "style_image={style}", "output={tmp}/x.txt"], "image extension"),
        (["content_image={style}", "style_image={style}", "output={out}", "init=zeros"], "unknown init"),
        (
            ["content_image={style}", "style_image={style}", "output={out}", "style_blend=[1,2]"],
            "style_blend",
        ),
        (["content_image={style}", "style_image={style}", "output={out}", "device=cuda:7"], "device"),
        (["content_image={style}", "style_image={style}"], "missing output"),
        (
            ["content_image={style}", "style_image={style}", "output={out}", "optimizer=adam"],
            "optimize has no 'optimizer': did you mean pixel_optimizer=adam?",
        ),
    ],
)
def test_cli_bad_input_is_one_line_and_overwrites_nothing(tmp_path, style_path, capsys, args, message):
    existing = tmp_path / "existing.png"
    existing.write_bytes(b"keep me")
    names = {
        "missing": tmp_path / "nope.jpg",
        "style": style_path,
        "out": tmp_path / "out.png",
        "existing": existing,
        "tmp": tmp_path,
    }
    if "device=cuda:7" in args and torch.cuda.device_count() > 7:
        pytest.skip("this machine has a cuda:7")
    code = run_cli(tmp_path, *(a.format(**names) for a in args))
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(err) == 1 and err[0].startswith("fast-style optimize: error:") and message in err[0], err
    assert existing.read_bytes() == b"keep me"
    assert not (tmp_path / "out.png").exists()


def test_cli_non_finite_loss_keeps_the_last_good_image(tmp_path, style_path, capsys):
    out = tmp_path / "out.png"
    code = run_cli(
        tmp_path,
        f"content_image={style_path}",
        f"style_image={style_path}",
        f"output={out}",
        "image_size=32",
        "steps=5",
        "loss.style_weight=inf",
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1  # a failure during the work
    assert len(err) == 1 and "non-finite" in err[0] and "starting image" in err[0], err
    # The starting image (the content, init=content) is what was kept.
    kept = image_to_tensor(Image.open(out))
    start = image_to_tensor(Image.open(style_path).resize((32, 32), Image.Resampling.LANCZOS))
    assert (kept - start).abs().max().item() <= 1 / 255 + 1e-6


# -- real features ----------------------------------------------------------------------------------
@pytest.mark.real_weights
@pytest.mark.slow
def test_thirty_lbfgs_steps_cut_the_style_loss_five_fold():
    from hydra.utils import instantiate

    from fast_style.cli.hydra_app import compose_config
    from fast_style.images import load_image_tensor

    weights = require(VGG16_BN_OFFLINE)
    content = load_image_tensor(require(CONTENT / "tubingen.jpg"), 128)
    style = load_image_tensor(require(STYLES / "starry_night.jpg"), 128)
    cfg = compose_config("optimize", ["loss.network=vgg16_bn", f"loss.weights={weights}"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        loss = instantiate(cfg.loss)
    result = optimize_image(
        loss, content, style, steps=30, settings=PixelSettings(instantiate(cfg.pixel_optimizer))
    )
    first, last = result.history[0]["style"], result.history[-1]["style"]
    print(f"style loss {first:.4g} -> {last:.4g} ({first / last:.1f}x) in 30 L-BFGS steps at 128 px")
    # Measured: 5.9x after 20 steps, 7.9x after 30, 11.4x after 100.
    assert result.error is None
    assert last <= first / 5, (first, last)
