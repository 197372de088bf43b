"""Multi-style networks (conditional instance norm): picking, mixing and listing styles, on every backend."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from fast_style.cli.main import main
from fast_style.errors import FastStyleError
from fast_style.inference import Stylizer
from fast_style.models import TransformerNet

STYLES = ["wave", "night", "cubes"]


def _multi_net(styles: int = 3) -> TransformerNet:
    torch.manual_seed(0)
    net = TransformerNet(channels=[4, 8, 8], num_residual=1, num_styles=styles)
    with torch.no_grad():  # distinct styles: every norm's scale and shift differ per style
        for norm in net.instance_norms():
            norm.weight.normal_(1.0, 0.5)
            norm.bias.normal_(0.0, 0.5)
    return net.eval()


@pytest.fixture(scope="module")
def multi_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from safetensors.torch import save_file

    from fast_style.export import model_metadata
    from fast_style.model_file import new_record

    net = _multi_net()
    record = new_record("johnson", net.config(), multiple=4, style_name="+".join(STYLES), styles=STYLES)
    path = tmp_path_factory.mktemp("multi") / "multi.safetensors"
    save_file(
        {k: v.contiguous() for k, v in net.state_dict().items()},
        str(path),
        metadata=model_metadata(net, record),
    )
    return path


@pytest.fixture
def photo(tmp_path: Path) -> Path:
    rng = np.random.default_rng(1)
    path = tmp_path / "photo.png"
    Image.fromarray(rng.integers(0, 255, (40, 48, 3), dtype=np.uint8)).save(path)
    return path


def test_a_style_is_its_own_scale_and_shift_and_a_mix_lies_between(multi_model: Path, photo: Path) -> None:
    stylizer = Stylizer.from_file(multi_model, backend="torch")
    assert stylizer.styles == STYLES
    image = Image.open(photo)
    wave, night = (np.asarray(stylizer.stylize(image, style=s), dtype=np.float64) for s in ("wave", "night"))
    half = np.asarray(stylizer.stylize(image, mix={"wave": 0.5, "night": 0.5}), dtype=np.float64)
    assert np.abs(wave - night).mean() > 5  # the styles differ
    assert np.array_equal(np.asarray(stylizer.stylize(image, style=1)), night.astype(np.uint8))  # by index
    # the mix differs from both and is nearer each than they are to each other
    assert np.abs(half - wave).mean() > 1 and np.abs(half - night).mean() > 1
    assert np.abs(half - wave).mean() < np.abs(wave - night).mean()
    assert np.abs(half - night).mean() < np.abs(wave - night).mean()
    # the default is the first style; weights are normalised
    assert np.array_equal(np.asarray(stylizer.stylize(image)), wave.astype(np.uint8))
    assert np.array_equal(
        np.asarray(stylizer.stylize(image, mix={"wave": 2, "night": 2})), half.astype(np.uint8)
    )


def test_tiles_and_onnxruntime_paint_the_same_style(multi_model: Path, photo: Path) -> None:
    pytest.importorskip("onnxruntime")
    pixels = np.asarray(Image.open(photo).convert("RGB"))
    torch_run = Stylizer.from_file(multi_model, backend="torch")
    onnx_run = Stylizer.from_file(multi_model, backend="onnxruntime")
    for options in ({"style": "cubes"}, {"mix": {"wave": 0.3, "cubes": 0.7}}):
        whole = torch_run.stylize_array(pixels, **options).astype(int)
        assert np.abs(onnx_run.stylize_array(pixels, **options).astype(int) - whole).max() <= 2
        tiled = torch_run.stylize_array(pixels, tile=64, **options).astype(int)  # one tile with shared stats
        assert np.abs(tiled - whole).max() <= 2


def test_the_onnx_export_takes_the_style_weights_as_an_input(multi_model: Path, tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime")
    from fast_style.export import export_onnx

    out = export_onnx(multi_model, tmp_path / "multi.onnx")
    stylizer = Stylizer.from_file(out)
    assert stylizer.styles == STYLES
    images = torch.rand(1, 3, 32, 32)
    reference = Stylizer.from_file(multi_model, backend="torch")
    for style in STYLES:
        assert torch.allclose(
            stylizer.stylize_tensor(images, style=style),
            reference.stylize_tensor(images, style=style),
            atol=1e-4,
        )


def test_style_and_mix_errors_are_one_line(multi_model: Path, tiny_model: Path) -> None:
    multi = Stylizer.from_file(multi_model, backend="torch")
    single = Stylizer.from_file(tiny_model, backend="torch")
    cases = [
        (single, {"style": "wave"}, "paints one style"),
        (single, {"mix": {"a": 1.0}}, "paints one style"),
        (multi, {"style": "sunset"}, "unknown style 'sunset'; the model's styles: wave, night, cubes"),
        (multi, {"style": 3}, "style index 3 is not within 0..2"),
        (multi, {"mix": {"wave": 1.0, "dusk": 1.0}}, "unknown style 'dusk'"),
        (multi, {"mix": {"wave": 0.0}}, "must not all be 0"),
        (multi, {"mix": {"wave": -1.0}}, "non-negative"),
        (multi, {"style": "wave", "mix": {"night": 1.0}}, "either a style or a mix"),
    ]
    for stylizer, options, message in cases:
        with pytest.raises(FastStyleError, match=message.replace("(", r"\(").replace(".", r"\.")):
            stylizer.style_weights(**options)


def test_stylize_command_picks_mixes_and_lists_styles(
    multi_model: Path, tiny_model: Path, photo: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["stylize", "--list-styles", "-m", str(multi_model)]) == 0
    assert capsys.readouterr().out.split() == ["0", "wave", "1", "night", "2", "cubes"]
    assert main(["stylize", "--list-styles", "-m", str(tiny_model)]) == 0
    assert "paints one style" in capsys.readouterr().out

    night, mixed = tmp_path / "night.png", tmp_path / "mixed.png"
    assert main(["stylize", str(photo), "-m", str(multi_model), "-o", str(night), "--style", "night"]) == 0
    assert (
        main(["stylize", str(photo), "-m", str(multi_model), "-o", str(mixed), "--mix", "night=1,cubes=1"])
        == 0
    )
    assert not np.array_equal(np.asarray(Image.open(night)), np.asarray(Image.open(mixed)))
    capsys.readouterr()

    for args, message in [
        (["--style", "dusk"], "unknown style 'dusk'"),
        (["--mix", "night"], "--mix takes NAME=WEIGHT pairs"),
        (["--mix", "night=-2"], "--mix takes NAME=WEIGHT pairs"),
    ]:
        out = tmp_path / "refused.png"
        assert main(["stylize", str(photo), "-m", str(multi_model), "-o", str(out), *args]) == 2
        err = capsys.readouterr().err.strip()
        assert err.count("\n") == 0 and message in err and not out.exists()
    assert (
        main(["stylize", str(photo), "-m", str(tiny_model), "-o", str(tmp_path / "x.png"), "--style", "a"])
        == 2
    )
    assert "paints one style" in capsys.readouterr().err


def test_multi_style_files_record_distinct_style_names(tmp_path: Path) -> None:
    from fast_style.model_file import decode, encode, new_record

    net = _multi_net(2)
    good = new_record("johnson", net.config(), multiple=4, styles=["a", "b"])
    assert decode(encode(good, "test"), "x")["styles"] == ["a", "b"]
    for styles in (["a", "a"], ["a"], None):
        bad = new_record("johnson", net.config(), multiple=4, styles=styles)
        if styles is not None:
            bad["styles"] = styles
        with pytest.raises(FastStyleError, match="corrupt metadata"):
            decode(encode(bad, "test"), "x")


def test_the_recorded_loss_of_each_style_names_its_own_image() -> None:
    from fast_style.trained_loss import recorded_loss

    styles = [
        {"name": "wave", "style_image": "wave.jpg", "style_size": 256, "style_sha256": "aa"},
        {"name": "night", "style_image": "night.png", "style_size": 300, "style_sha256": "bb"},
    ]
    meta = {"styles": ["wave", "night"], "training": {"loss": {"network": "vgg16_bn", "styles": styles}}}
    night = recorded_loss(meta, "night")
    assert (night["style_image"], night["style_size"], night["style_sha256"]) == ("night.png", 300, "bb")
    assert recorded_loss(meta)["style_image"] == "wave.jpg" and "styles" not in recorded_loss(meta)
    with pytest.raises(FastStyleError, match="no style 'dusk'"):
        recorded_loss(meta, "dusk")


def test_the_web_api_lists_picks_and_mixes_styles(
    multi_model: Path, tiny_model: Path, tmp_path: Path
) -> None:
    pytest.importorskip("starlette")
    pytest.importorskip("uvicorn")
    pytest.importorskip("python_multipart")
    httpx = pytest.importorskip("httpx")
    import io
    import shutil

    from fast_style.web.app import create_app
    from fast_style.web.server import BackgroundServer

    folder = tmp_path / "models"
    folder.mkdir()
    shutil.copy(multi_model, folder / "multi.safetensors")
    shutil.copy(tiny_model, folder / "single.safetensors")
    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(2).integers(0, 255, (40, 48, 3), dtype=np.uint8)).save(
        buffer, "PNG"
    )
    photo = buffer.getvalue()
    app = create_app([folder], shipped=False, device="cpu", allowed_hosts=["127.0.0.1", "localhost"])
    with BackgroundServer(app) as running:
        listing = {m["name"]: m["styles"] for m in httpx.get(f"{running.url}/api/models").json()["models"]}
        assert listing == {"multi": STYLES, "single": []}

        def post(model: str, **fields: str) -> httpx.Response:
            return httpx.post(
                f"{running.url}/api/stylize",
                files={"image": ("p.png", photo, "image/png")},
                data={"model": model, **fields},
                timeout=60,
            )

        pictures = {}
        for key, fields in {
            "night": {"style": "night"},
            "cubes": {"style": "cubes"},
            "half": {"mix": "night=0.5,cubes=0.5"},
        }.items():
            response = post("multi", **fields)
            assert response.status_code == 200, response.text
            pictures[key] = np.asarray(Image.open(io.BytesIO(response.content)), dtype=np.float64)
        assert np.abs(pictures["night"] - pictures["cubes"]).mean() > 5
        assert np.abs(pictures["half"] - pictures["night"]).mean() > 1
        assert np.abs(pictures["half"] - pictures["cubes"]).mean() > 1

        for model, fields, needle in [
            ("multi", {"style": "dusk"}, "unknown style 'dusk'"),
            ("multi", {"mix": "night"}, "mix takes NAME=WEIGHT pairs"),
            ("single", {"style": "night"}, "paints one style"),
        ]:
            response = post(model, **fields)
            assert response.status_code == 400 and needle in response.json()["error"]
