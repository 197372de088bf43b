"""Feed-forward + N steps: optimize init=model, the refine step of stylize, its memory check, its style image."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from fast_style.cli.main import main
from fast_style.compare import evaluate_image
from fast_style.errors import FastStyleError
from fast_style.files import file_sha256
from fast_style.images import image_to_tensor, load_image_tensor
from fast_style.inference import Stylizer
from fast_style.losses import build_perceptual_loss
from fast_style.optimize import PixelSettings, initial_image, optimize_image, optimize_pixels
from fast_style.trained_loss import loss_arguments, recorded_loss
from tests.conftest import random_image
from tests.test_compare import write_model
from tests.tiny import image, tiny_loss

pytestmark = pytest.mark.filterwarnings("ignore:loss.weights=none")


def vgg_features_file(folder: Path) -> Path:
    """Random VGG16-BN features up to relu2_2 (seeded), saved as a loss-network weights file."""
    from torchvision.models.vgg import cfgs, make_layers

    path = folder / "vgg_features.pt"
    if not path.exists():
        torch.manual_seed(0)
        torch.save(make_layers(cfgs["D"], batch_norm=True)[:13].state_dict(), path)
    return path


def model_with_loss(folder: Path, style: Path, **loss: object) -> Path:
    """A tiny model recording a small loss on random VGG16-BN features, trained on ``style``."""
    record = {
        "network": "vgg16_bn",
        "weights": "none",
        "content_layers": ["relu2_2"],
        "style_layers": ["relu1_2", "relu2_2"],
        "content_layer_weights": "auto",
        "style_layer_weights": "auto",
        "style_weight": 3.0,
        "style_image": style.name,
        "style_sha256": file_sha256(style),
        "style_size": 32,
        **loss,
    }
    return write_model(folder, loss=record)


@pytest.fixture
def photo_path(tmp_path: Path) -> Path:
    path = tmp_path / "photo.png"
    random_image((48, 40), 4).save(path)
    return path


# -- where the optimization starts ----------------------------------------------------------------
def test_init_model_starts_from_the_models_picture():
    content, style = image((40, 32), 1), image((48, 48), 7)
    picture = image((40, 32), 3)
    calls = []

    def model(x: torch.Tensor) -> torch.Tensor:
        calls.append(tuple(x.shape))
        return picture

    loss = tiny_loss()
    result = optimize_image(loss, content, style, steps=0, settings=PixelSettings(init="model", model=model))
    assert torch.equal(result.image, picture) and calls == [(1, 3, 32, 40)]  # at the optimization's size
    assert result.history[0]["total"] == pytest.approx(evaluate_image(loss, picture)["total"], rel=1e-6)
    # a model run under inference mode still gives a start the optimizer can take gradients of
    with torch.inference_mode():
        frozen = picture.clone()
    moved = optimize_pixels(loss, initial_image("model", content, model=lambda _: frozen), 2)
    assert moved.error is None and moved.history[-1]["total"] < moved.history[0]["total"]
    with pytest.raises(FastStyleError, match="init=model needs a feed-forward model"):
        PixelSettings(init="model")


def test_min_steps_runs_on_past_stop_at_total():
    content, style = image((40, 32), 1), image((48, 48), 7)
    loss = tiny_loss()
    loss.set_style_image(style)
    loss.set_content_image(content)
    start = initial_image("noise", content)
    assert optimize_pixels(loss, start, 10, stop_at_total=1e9).steps == 1
    assert optimize_pixels(loss, start, 10, stop_at_total=1e9, min_steps=4).steps == 4


def run_optimize(tmp_path: Path, *args: str) -> int:
    return main(["optimize", f"hydra.run.dir={tmp_path / 'run'}", "progress=false", *args])


def test_cli_optimize_init_model_starts_from_the_picture_on_the_models_loss(
    tmp_path, photo_path, style_path, capsys
):
    model = model_with_loss(tmp_path, style_path)
    out = tmp_path / "start.png"
    code = run_optimize(
        tmp_path,
        f"content_image={photo_path}",
        f"style_image={style_path}",
        f"output={out}",
        "init=model",
        f"model_file={model}",
        "image_size=48",
        "steps=0",
    )
    assert code == 0
    # Zero steps: the saved image is the model's picture at the optimization's size.
    expected = Stylizer.from_file(model, backend="torch").stylize_tensor(load_image_tensor(photo_path, 48))
    assert (image_to_tensor(Image.open(out)) - expected).abs().max().item() <= 0.5 / 255 + 1e-6
    log = capsys.readouterr().out  # Hydra's log handler
    # The model's loss (vgg16_bn, not optimize's default vgg16) with nothing reported as different.
    assert "loss network vgg16_bn" in log and "tiny.safetensors's picture" in log
    assert "trained with another loss" not in log


def test_cli_optimize_init_model_reports_settings_given_that_differ(tmp_path, photo_path, style_path, capsys):
    model = model_with_loss(tmp_path, style_path)
    other = tmp_path / "other.png"
    random_image((48, 48), 9).save(other)
    code = run_optimize(
        tmp_path,
        f"content_image={photo_path}",
        f"style_image={other}",
        f"output={tmp_path / 'out.png'}",
        "init=model",
        f"model_file={model}",
        "image_size=32",
        "steps=1",
        "loss.style_weight=5",
    )
    assert code == 0
    log = capsys.readouterr().out
    assert "style_weight 3.0 (model) vs 5" in log
    assert f"style image {style_path.name} (model) vs other.png (here)" in log


@pytest.mark.parametrize(
    "args, message",
    [
        (["init=model"], "init=model starts from a model's picture: pass model_file=PATH"),
        (["model_file={model}"], "is for init=model; pass init=model too"),
        (["init=model", "model_file={model}", "model_style=wave"], "this model paints one style"),
        (["init=model", "model_file={model}", "model_mix=5"], "model_mix must map style names to weights"),
        (["init=model", "model_file={model}", "model_mix={{a:x}}"], "model_mix weights must be numbers"),
        (["init=model", "model_file={tmp}/missing.safetensors"], "not found"),
    ],
)
def test_cli_optimize_init_model_bad_input_is_one_line(
    tmp_path, photo_path, style_path, capsys, args, message
):
    model = model_with_loss(tmp_path, style_path)
    out = tmp_path / "out.png"
    names = {"model": model, "tmp": tmp_path}
    code = run_optimize(
        tmp_path,
        f"content_image={photo_path}",
        f"style_image={style_path}",
        f"output={out}",
        *(a.format(**names) for a in args),
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(err) == 1 and err[0].startswith("fast-style optimize: error:") and message in err[0], err
    assert not out.exists() and not (tmp_path / "run").exists()


# -- the refine step --------------------------------------------------------------------------------
def run_stylize(capsys: pytest.CaptureFixture[str], *args: object) -> tuple[int, str, str]:
    code = main(["stylize", *map(str, args)])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def model_loss(model: Path, style: Path, content: torch.Tensor, weights: str | None = None):
    """The loss ``model`` records, with its targets for ``content``."""
    recorded = recorded_loss(Stylizer.from_file(model, backend="torch").metadata)
    loss = build_perceptual_loss(**loss_arguments(recorded, weights))
    loss.set_style_image(load_image_tensor(style, recorded["style_size"]))
    loss.set_content_image(content)
    return loss


def test_stylize_refine_lowers_the_models_loss_and_keeps_strength_after_it(
    tmp_path, photo_path, style_path, capsys
):
    vgg = vgg_features_file(tmp_path)
    weights = {"weights": "file", "weights_file": vgg.name, "weights_sha256": file_sha256(vgg)}
    model = model_with_loss(tmp_path, style_path, **weights)
    plain, refined, faded = tmp_path / "plain.png", tmp_path / "refined.png", tmp_path / "faded.png"
    assert run_stylize(capsys, photo_path, "-m", model, "-o", plain)[0] == 0
    args = [photo_path, "-m", model, "--loss-weights", vgg]
    code, out, err = run_stylize(capsys, *args, "-o", refined, "--refine", "6")
    assert code == 0, err
    assert "each refined with 6 L-BFGS steps" in out
    assert "6/6" in err  # the progress bar
    content = image_to_tensor(Image.open(photo_path))
    loss = model_loss(model, style_path, content, str(vgg))
    totals = [evaluate_image(loss, image_to_tensor(Image.open(p)))["total"] for p in (plain, refined)]
    assert totals[1] < 0.9 * totals[0], totals
    # --strength blends the refined picture with the photo afterwards: 0 gives the photo back.
    code, _, err = run_stylize(capsys, *args, "-o", faded, "--refine", "2", "--strength", "0")
    assert code == 0, err
    assert np.array_equal(np.asarray(Image.open(faded)), np.asarray(Image.open(photo_path)))


def test_stylize_refine_finds_the_style_image_by_its_content(tmp_path, photo_path, style_path, capsys):
    folder = tmp_path / "models"
    folder.mkdir()
    model = model_with_loss(folder, style_path)  # the style is not beside the model
    out = tmp_path / "out.png"
    code, _, err = run_stylize(capsys, photo_path, "-m", model, "-o", out, "--refine", "1")
    assert code == 2 and "pass --style-image PATH" in err and not out.exists()
    other = tmp_path / "other.png"
    random_image((48, 48), 9).save(other)
    renamed = tmp_path / "a copy.png"
    renamed.write_bytes(style_path.read_bytes())
    code, _, err = run_stylize(
        capsys, photo_path, "-m", model, "-o", out, "--refine", "1", "--style-image", other
    )
    assert code == 2 and "pass --style-image PATH" in err, err  # another picture is not the model's
    code, _, err = run_stylize(
        capsys, photo_path, "-m", model, "-o", out, "--refine", "1", "--style-image", renamed
    )
    assert code == 0, err


@pytest.mark.parametrize(
    "extra, loss, message",
    [
        (["--refine", "-1"], {}, "--refine takes a number of steps >= 0"),
        (["--loss-weights", "w.pt"], {}, "--loss-weights and --style-image are for --refine N"),
        (
            ["--refine", "2"],
            {"weights": "file", "weights_file": "vgg.pt", "weights_sha256": "0" * 64},
            "refining needs the loss-network weights the model was trained with (vgg.pt): pass --loss-weights PATH",
        ),
        (["--refine", "2", "--loss-weights", "{tmp}/missing.pt"], {"weights": "imagenet"}, "missing.pt"),
        (["--refine", "2", "--style", "wave"], {}, "this model paints one style"),
    ],
)
def test_stylize_refine_bad_input_is_one_line(tmp_path, photo_path, style_path, capsys, extra, loss, message):
    model = model_with_loss(tmp_path, style_path, **loss)
    out = tmp_path / "out.png"
    code, _, err = run_stylize(
        capsys, photo_path, "-m", model, "-o", out, *(a.format(tmp=tmp_path) for a in extra)
    )
    lines = err.strip().splitlines()
    assert code == 2
    assert len(lines) == 1 and lines[0].startswith("fast-style stylize: error:") and message in lines[0], err
    assert not out.exists()


def test_stylize_refine_without_imagenet_weights_is_one_line(
    tmp_path, photo_path, style_path, capsys, monkeypatch
):
    import fast_style.losses.vgg as vgg

    def offline(network: str) -> None:
        raise FastStyleError("ImageNet weights are not in the torch hub cache")

    monkeypatch.setattr(vgg, "_imagenet_state_dict", offline)
    model = model_with_loss(tmp_path, style_path, weights="imagenet")
    code, _, err = run_stylize(capsys, photo_path, "-m", model, "-o", tmp_path / "out.png", "--refine", "2")
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1
    assert "refining needs the loss network's weights" in lines[0] and "--loss-weights PATH" in lines[0]


def test_stylize_refine_refuses_a_size_that_would_not_fit_and_names_one_that_would(
    tmp_path, photo_path, style_path, capsys, monkeypatch
):
    import fast_style.refine as refine

    big = tmp_path / "big.png"
    random_image((160, 120), 5).save(big)
    budget = refine.refine_memory(90, 120, 4) / 0.8  # room for about 120 px on the long side
    monkeypatch.setattr(refine, "available_memory", lambda device: int(budget))
    model = model_with_loss(tmp_path, style_path)
    out = tmp_path / "out.png"
    code, _, err = run_stylize(capsys, big, "-m", model, "-o", out, "--refine", "4")
    lines = err.strip().splitlines()
    assert code == 1 and len(lines) == 1 and not out.exists(), err
    assert "refining 160x120 px needs about" in lines[0]
    largest = int(lines[0].split("--max-size ")[1].rstrip(")"))
    assert 110 <= largest <= 120
    assert refine.refine_memory(round(largest * 0.75), largest, 4) <= 0.8 * budget
    code, _, err = run_stylize(capsys, big, "-m", model, "-o", out, "--refine", "4", "--max-size", largest)
    assert code == 0, err
    assert Image.open(out).size[0] == largest


def test_refine_memory_grows_with_pixels_and_steps():
    from fast_style.refine import refine_memory

    assert refine_memory(512, 512, 20) > 2.5 * refine_memory(256, 256, 20)
    assert refine_memory(256, 256, 50) > refine_memory(256, 256, 10)
    assert refine_memory(256, 256, 500) == refine_memory(256, 256, 100)  # L-BFGS keeps 100 steps at most


def test_refiner_targets_the_models_style_and_finds_old_records_by_name(tmp_path, photo_path, style_path):
    from fast_style.refine import Refiner, find_style_image

    vgg = vgg_features_file(tmp_path)
    model = model_with_loss(tmp_path, style_path, weights="file", weights_sha256=file_sha256(vgg))
    refiner = Refiner.for_model(Stylizer.from_file(model, backend="torch"), model, 2, weights=str(vgg))
    alone = model_loss(model, style_path, image_to_tensor(Image.open(photo_path)), str(vgg))
    assert torch.equal(refiner.loss.style_gram_relu1_2, alone.style_gram_relu1_2)
    (tmp_path / "painting.jpg").write_bytes(b"")
    assert find_style_image({"style_image": "painting.jpg"}, model) == tmp_path / "painting.jpg"  # no hash
    with pytest.raises(FastStyleError, match="records no style image"):
        find_style_image({}, model)


def multi_model(folder: Path, style: Path) -> tuple[Path, Path, Path]:
    """A two-style model ("wave" on ``style``, "night" on another picture) with a recorded loss; the
    model, the other picture and the loss-network weights file."""
    from safetensors.torch import save_file

    from fast_style.export import model_metadata
    from fast_style.model_file import new_record
    from tests.test_multistyle import _multi_net

    other = folder / "other.png"
    random_image((48, 48), 9).save(other)
    styles = [
        {"name": name, "style_image": path.name, "style_sha256": file_sha256(path), "style_size": 32}
        for name, path in (("wave", style), ("night", other))
    ]
    vgg = vgg_features_file(folder)
    loss = {"network": "vgg16_bn", "weights": "file", "style_layers": ["relu1_2"], "styles": styles}
    net = _multi_net(2)
    record = new_record("johnson", net.config(), multiple=4, styles=["wave", "night"], loss=loss)
    model = folder / "multi.safetensors"
    save_file(
        {k: v.contiguous() for k, v in net.state_dict().items()}, str(model), model_metadata(net, record)
    )
    return model, other, vgg


def test_refine_of_a_mix_targets_the_blend_of_the_mixed_styles(tmp_path, style_path):
    from fast_style.refine import Refiner

    model, _, vgg = multi_model(tmp_path, style_path)
    stylizer = Stylizer.from_file(model, backend="torch")

    def gram(**choice: object) -> torch.Tensor:
        refiner = Refiner.for_model(stylizer, model, 1, weights=str(vgg), **choice)  # type: ignore[arg-type]
        return refiner.loss.style_gram_relu1_2

    wave, night = gram(style="wave"), gram(style="1")
    assert not torch.allclose(wave, night)
    assert torch.allclose(gram(mix={"wave": 3.0, "night": 1.0}), 0.75 * wave + 0.25 * night, rtol=1e-5)
    assert torch.equal(gram(), wave)  # a multi-style model paints its first style by default


def test_cli_optimize_init_model_paints_the_chosen_style_of_a_multi_style_model(
    tmp_path, photo_path, style_path, capsys
):
    model, night, vgg = multi_model(tmp_path, style_path)
    out = tmp_path / "start.png"
    code = run_optimize(
        tmp_path,
        f"content_image={photo_path}",
        f"style_image={night}",
        f"output={out}",
        "init=model",
        f"model_file={model}",
        "model_style=night",
        f"loss.weights={vgg}",
        "image_size=48",
        "steps=0",
    )
    assert code == 0
    content = load_image_tensor(photo_path, 48)
    expected = Stylizer.from_file(model, backend="torch").stylize_tensor(content, style="night")
    assert (image_to_tensor(Image.open(out)) - expected).abs().max().item() <= 0.5 / 255 + 1e-6
    assert "trained with another loss" not in capsys.readouterr().out  # night's picture and size


# -- the web page ---------------------------------------------------------------------------------
def web_client(models: Path, **options: object):
    pytest.importorskip("starlette", reason="the web extra is not installed: pip install -e '.[web]'")
    pytest.importorskip("python_multipart", reason="the web extra is not installed: pip install -e '.[web]'")
    pytest.importorskip("httpx", reason="the dev extra is not installed: pip install -e '.[dev]'")
    from starlette.testclient import TestClient

    from fast_style.web.app import create_app

    app = create_app([models], shipped=False, device="cpu", allowed_hosts=["testserver"], **options)
    return TestClient(app)


def post_photo(client, photo: Path, **fields: str):
    files = {"image": ("photo.png", photo.read_bytes(), "image/png")}
    return client.post("/api/stylize", files=files, data={"model": "tiny", **fields})


def test_web_refine_is_offered_only_with_the_loss_networks_weights(tmp_path, photo_path, style_path):
    vgg = vgg_features_file(tmp_path)
    model_with_loss(tmp_path, style_path, weights="file", weights_sha256=file_sha256(vgg))
    with web_client(tmp_path) as client:
        info = client.get("/api/models").json()
        assert info["refine"]["available"] is False and "--loss-weights" in info["refine"]["reason"]
        refused = post_photo(client, photo_path, refine="3")
        assert refused.status_code == 400 and "this server does not refine" in refused.json()["error"]
    with web_client(tmp_path, loss_weights=str(vgg)) as client:
        info = client.get("/api/models").json()
        assert info["refine"] == {"available": True, "reason": None}
        assert info["limits"]["max_refine_steps"] == 50 and info["limits"]["max_refine_side"] == 512
        plain = post_photo(client, photo_path)
        refined = post_photo(client, photo_path, refine="3")
        assert plain.status_code == 200 and refined.status_code == 200, refined.text
        assert plain.headers["x-refine-steps"] == "0" and refined.headers["x-refine-steps"] == "3"
        pictures = [np.asarray(Image.open(io.BytesIO(r.content))) for r in (plain, refined)]
        assert pictures[0].shape == pictures[1].shape == (40, 48, 3)
        assert not np.array_equal(*pictures)
        for bad in ("51", "-1", "two"):
            answer = post_photo(client, photo_path, refine=bad)
            assert answer.status_code == 400 and "refine must be a number of steps" in answer.json()["error"]


def test_web_refine_too_large_is_a_413_naming_a_size_that_fits(tmp_path, photo_path, style_path, monkeypatch):
    import fast_style.refine as refine

    vgg = vgg_features_file(tmp_path)
    model_with_loss(tmp_path, style_path, weights="file", weights_sha256=file_sha256(vgg))
    monkeypatch.setattr(refine, "available_memory", lambda device: int(refine.refine_memory(20, 24, 3) / 0.8))
    with web_client(tmp_path, loss_weights=str(vgg)) as client:
        answer = post_photo(client, photo_path, refine="3")
    assert answer.status_code == 413
    assert "choose a longest side of at most 2" in answer.json()["error"]


def test_serve_refuses_a_missing_loss_weights_file(tmp_path, style_path, capsys):
    pytest.importorskip("starlette", reason="the web extra is not installed: pip install -e '.[web]'")
    model_with_loss(tmp_path, style_path)
    code = main(
        ["serve", "--no-shipped", "--models", str(tmp_path), "--loss-weights", str(tmp_path / "no.pt")]
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "loss-network weights file not found" in err[0], err
