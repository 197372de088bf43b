"""fast-style stylize: any input image, safe model loading, honest errors, nothing half-written."""

from __future__ import annotations

import json
import pickle
import struct
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from fast_style import images as images_module
from fast_style.cli.main import main as cli_main
from fast_style.cli.stylize import main as stylize_main
from fast_style.errors import FastStyleError
from fast_style.export import load_training_checkpoint
from fast_style.inference import Stylizer
from fast_style.inference.backends import TorchBackend
from fast_style.models import TransformNetwork

ROOT = Path(__file__).resolve().parents[1]


def photo(
    path: Path, size: tuple[int, int] = (48, 40), seed: int = 0, mode: str = "RGB", **save: object
) -> Path:
    """A small structured test photo saved at ``path`` in ``mode``."""
    rng = np.random.default_rng(seed)
    w, h = size
    yy, xx = np.mgrid[0:h, 0:w]
    base = np.stack([xx / max(w - 1, 1), yy / max(h - 1, 1), 0.5 + 0.4 * np.sin((xx + yy) / 5)], axis=-1)
    pixels = ((base * 0.8 + rng.uniform(0, 0.2, (h, w, 3))) * 255).astype(np.uint8)
    img = Image.fromarray(pixels).convert(mode) if mode != "RGB" else Image.fromarray(pixels)
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path, **save)
    return path


def run(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = stylize_main([str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def only_error_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


def files_in(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


# -- the happy path ----------------------------------------------------------------------------------
def test_one_image(tiny_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = photo(tmp_path / "in.png", (50, 37))
    out = tmp_path / "out" / "styled.png"
    code, stdout, err = run([src, "-m", tiny_model, "-o", out], capsys)
    assert code == 0, err
    assert "stylized 1 of 1 image(s) in" in stdout and "on cpu" in stdout
    with Image.open(out) as img:
        assert (img.format, img.mode, img.size) == ("PNG", "RGB", (50, 37))
        result = np.asarray(img)
    with Image.open(src) as original:
        expected = Stylizer.from_file(tiny_model).stylize(original)
    assert np.array_equal(result, np.asarray(expected))
    assert files_in(tmp_path / "out") == ["styled.png"]


def test_summary_names_the_backend_and_tiled_images(
    tiny_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    small, big = photo(tmp_path / "a.png", (40, 32)), photo(tmp_path / "b.png", (96, 80))
    code, stdout, err = run(
        [small, "-m", tiny_model, "-o", tmp_path / "a_out.png", "--backend", "torch"], capsys
    )
    assert code == 0, err
    assert "on cpu (torch)" in stdout
    code, stdout, err = run(
        [small, big, "-m", tiny_model, "-o", tmp_path / "out", "--backend", "torch", "--tile", "64"], capsys
    )
    assert code == 0, err
    assert "on cpu (tiled in torch)" in stdout


def test_output_extension_chooses_format(
    tiny_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src = photo(tmp_path / "in.png")
    code, _, err = run([src, "-m", tiny_model, "-o", tmp_path / "out.jpg"], capsys)
    assert code == 0, err
    with Image.open(tmp_path / "out.jpg") as img:
        assert img.format == "JPEG"


def test_batch_keeps_formats_and_folders(
    tiny_model: Path, image_folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    extra = photo(tmp_path / "single.webp", (40, 44))
    out = tmp_path / "styled"
    code, stdout, err = run([image_folder, extra, "-m", tiny_model, "-o", out], capsys)
    assert code == 0, err
    expected = sorted([*(str(p.relative_to(image_folder)) for p in image_folder.rglob("*.*")), "single.webp"])
    assert files_in(out) == expected
    for name in expected:
        with (
            Image.open(image_folder / name if name != "single.webp" else extra) as a,
            Image.open(out / name) as b,
        ):
            assert (b.format, b.size) == (a.format, a.size)
    assert "stylized 7 of 7 image(s)" in stdout


def test_single_input_into_existing_folder(
    tiny_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src = photo(tmp_path / "in.jpg")
    (tmp_path / "out").mkdir()
    code, _, err = run([src, "-m", tiny_model, "-o", tmp_path / "out"], capsys)
    assert code == 0, err
    assert files_in(tmp_path / "out") == ["in.jpg"]


def test_max_size_strength_and_preserve_color(tiny_model: Path, tmp_path: Path) -> None:
    stylizer = Stylizer.from_file(tiny_model)
    with Image.open(photo(tmp_path / "in.png", (80, 60))) as img:
        img.load()
    assert stylizer.stylize(img, max_size=40).size == (40, 30)
    assert stylizer.stylize(img, max_size=200).size == (80, 60)  # never enlarged

    original = np.asarray(img).astype(int)
    assert np.abs(np.asarray(stylizer.stylize(img, strength=0.0)).astype(int) - original).max() <= 1
    full = np.asarray(stylizer.stylize(img)).astype(int)
    half = np.asarray(stylizer.stylize(img, strength=0.5)).astype(int)
    assert np.abs(half - (full + original) / 2).max() <= 1.5

    kept = stylizer.stylize(img, preserve_color=True)
    chroma = lambda im: np.asarray(im.convert("YCbCr")).astype(int)[..., 1:]  # noqa: E731
    luma = lambda im: np.asarray(im.convert("YCbCr")).astype(int)[..., 0]  # noqa: E731
    assert np.abs(chroma(kept) - chroma(img)).mean() < 2  # colours of the photo
    assert np.abs(luma(kept) - luma(Image.fromarray(full.astype(np.uint8)))).mean() < 2  # light of the style
    assert np.abs(chroma(Image.fromarray(full.astype(np.uint8))) - chroma(img)).mean() > 2


# -- image modes, orientation, bit depth ----------------------------------------------------------------
def test_alpha_is_kept(tiny_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rgba = Image.open(photo(tmp_path / "rgb.png", (44, 36))).convert("RGBA")
    alpha = Image.fromarray((np.arange(44 * 36).reshape(36, 44) % 256).astype(np.uint8))
    rgba.putalpha(alpha)
    rgba.save(tmp_path / "rgba.png")
    Image.merge("LA", (rgba.convert("L"), alpha)).save(tmp_path / "la.png")
    palette = rgba.convert("RGB").convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    palette.info["transparency"] = 0
    palette.save(tmp_path / "p.png", transparency=0)
    for name in ["rgba.png", "la.png"]:
        out = tmp_path / "out" / name
        code, _, err = run([tmp_path / name, "-m", tiny_model, "-o", out], capsys)
        assert code == 0, err
        with Image.open(out) as img:
            assert (img.mode, img.size) == ("RGBA", (44, 36))
            assert np.array_equal(np.asarray(img.getchannel("A")), np.asarray(alpha))
    code, _, err = run([tmp_path / "p.png", "-m", tiny_model, "-o", tmp_path / "out" / "p.png"], capsys)
    assert code == 0, err
    with Image.open(tmp_path / "out" / "p.png") as img, Image.open(tmp_path / "p.png") as src:
        assert img.mode == "RGBA"
        assert np.array_equal(
            np.asarray(img.getchannel("A")), np.asarray(src.convert("RGBA").getchannel("A"))
        )
    # a format without alpha gets the image flattened, not an error
    code, _, err = run([tmp_path / "rgba.png", "-m", tiny_model, "-o", tmp_path / "flat.jpg"], capsys)
    assert code == 0, err
    with Image.open(tmp_path / "flat.jpg") as img:
        assert (img.mode, img.size) == ("RGB", (44, 36))


def test_exif_orientation_is_applied(
    tiny_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pixels = np.zeros((24, 40, 3), np.uint8)
    pixels[:, :20] = (255, 0, 0)  # stored: red left half, 40 wide and 24 high
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    Image.fromarray(pixels).save(tmp_path / "rotated.jpg", exif=exif.tobytes(), quality=100)
    out = tmp_path / "out.jpg"
    code, _, err = run([tmp_path / "rotated.jpg", "-m", tiny_model, "-o", out, "--strength", "0"], capsys)
    assert code == 0, err
    with Image.open(out) as img:
        assert img.size == (24, 40)  # displayed upright: portrait
        assert img.getexif().get(0x0112) in (None, 1)  # not rotated twice by viewers
        shown = np.asarray(img.convert("RGB")).astype(int)
    assert shown[:18, :, 0].mean() > 200 and shown[22:, :, 0].mean() < 60  # red on top after rotation


def test_sixteen_bit_gray_and_cmyk(
    tiny_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ramp = (np.linspace(0, 65535, 48 * 32).reshape(32, 48)).astype(np.uint16)
    Image.fromarray(ramp).save(tmp_path / "deep.png")
    with Image.open(tmp_path / "deep.png") as check:
        assert check.mode.startswith("I")
    code, _, err = run(
        [tmp_path / "deep.png", "-m", tiny_model, "-o", tmp_path / "deep_out.png", "--strength", "0"], capsys
    )
    assert code == 0, err
    with Image.open(tmp_path / "deep_out.png") as img:
        assert (img.mode, img.size) == ("RGB", (48, 32))
        got = np.asarray(img).astype(int)
    assert np.abs(got[..., 0] - np.rint(ramp / 257.0)).max() <= 1  # scaled, not clipped at 255

    photo(tmp_path / "cmyk.jpg", (40, 30), mode="CMYK")
    photo(tmp_path / "gray.jpg", (40, 30), mode="L")
    for name in ["cmyk.jpg", "gray.jpg"]:
        code, _, err = run([tmp_path / name, "-m", tiny_model, "-o", tmp_path / "out" / name], capsys)
        assert code == 0, err
        with Image.open(tmp_path / "out" / name) as img:
            assert (img.format, img.mode, img.size) == ("JPEG", "RGB", (40, 30))


# -- tiling --------------------------------------------------------------------------------------
def test_tiled_matches_untiled(tiny_model: Path, tmp_path: Path) -> None:
    stylizer = Stylizer.from_file(tiny_model)
    pixels = np.asarray(Image.open(photo(tmp_path / "big.png", (203, 150), seed=3)))
    whole = stylizer.stylize_array(pixels).astype(int)
    # 96 px tiles leave each tile a margin wider than the network's receptive radius: exact
    tiled = stylizer.stylize_array(pixels, tile=96).astype(int)
    assert tiled.shape == whole.shape
    assert np.abs(tiled - whole).max() <= 1
    # 64 px tiles see less context; the cross-fade keeps the difference small and seamless
    tiled = stylizer.stylize_array(pixels, tile=64).astype(int)
    diff = np.abs(tiled - whole)
    assert diff.mean() < 0.5 and diff.max() <= 12, (diff.mean(), diff.max())


def test_large_image_is_tiled_automatically(
    tiny_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    stylizer = Stylizer.from_file(tiny_model)
    pixels = np.asarray(Image.open(photo(tmp_path / "big.png", (160, 128), seed=4)))
    whole = stylizer.stylize_array(pixels).astype(int)
    sizes: list[tuple[int, int]] = []
    forward = stylizer.net.forward_aligned
    monkeypatch.setattr(
        stylizer.net, "forward_aligned", lambda x: (sizes.append(tuple(x.shape[-2:])), forward(x))[1]
    )
    # Over the limit: tiles, with statistics from a copy at most a quarter of the size.
    stylizer.auto_tile_pixels = 160 * 128 // 4
    tiled = stylizer.stylize_array(pixels).astype(int)
    statistics_pass, *tiles = sizes
    assert statistics_pass[0] * statistics_pass[1] <= 160 * 128 // 4
    assert tiles == [(128, 160)]  # one default-size tile holds this small image
    assert stylizer.paths_used["tiled in torch"] == 1
    assert np.abs(tiled - whole).mean() < 12  # statistics from a smaller copy: close, not equal


def test_out_of_memory_falls_back_to_tiles(
    tiny_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    stylizer = Stylizer.from_file(tiny_model)
    pixels = np.asarray(Image.open(photo(tmp_path / "big.png", (150, 140), seed=5)))
    whole = stylizer.stylize_array(pixels).astype(int)
    forward = stylizer.net.forward

    def limited(x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] * x.shape[-2] > 100 * 100:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (simulated)")
        return forward(x)

    monkeypatch.setattr(stylizer.net, "forward", limited)
    monkeypatch.setattr("fast_style.inference.tiling.DEFAULT_TILE", 96)
    stylizer.auto_tile_pixels = 200 * 200
    tiled = stylizer.stylize_array(pixels).astype(int)
    assert np.abs(tiled - whole).mean() < 12


def test_out_of_memory_is_known_by_type_or_by_the_allocators_message() -> None:
    from fast_style.inference.tiling import out_of_memory

    assert out_of_memory(torch.cuda.OutOfMemoryError("CUDA out of memory (simulated)"))
    try:
        torch.empty(2**50, dtype=torch.uint8)  # a petabyte: the CPU allocator refuses it at once
    except RuntimeError as exc:
        assert out_of_memory(exc), exc
    else:
        pytest.skip("this machine allocated a petabyte")
    assert out_of_memory(RuntimeError("MPS backend out of memory (MPS allocated: 9.00 GB)"))
    assert not out_of_memory(RuntimeError("Given groups=1, weight of size [8, 3, 3, 3], expected input"))
    assert not out_of_memory(ValueError("DefaultCPUAllocator: can't allocate memory"))


# -- bad inputs: one line on stderr, non-zero exit, nothing written -------------------------------------
def _truncated_jpeg(path: Path) -> None:
    photo(path, (64, 64), quality=95)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


@pytest.mark.parametrize(
    ("name", "make", "message"),
    [
        ("empty.jpg", lambda p: p.write_bytes(b""), "image file is empty"),
        ("notes.jpg", lambda p: p.write_text("not a picture"), "not an image"),
        ("cut.jpg", _truncated_jpeg, "cannot read image"),
    ],
)
def test_bad_input(
    tiny_model: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    name: str,
    make: object,
    message: str,
) -> None:
    src = tmp_path / "in" / name
    src.parent.mkdir()
    make(src)  # type: ignore[operator]
    out = tmp_path / "out" / "result.jpg"
    code, stdout, err = run([src, "-m", tiny_model, "-o", out], capsys)
    assert code == 1
    line = only_error_line(err)
    assert line.startswith("fast-style stylize: error:") and message in line
    assert "1 failed" in stdout
    assert not (tmp_path / "out").exists()


def test_decompression_bomb(
    tiny_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    src = photo(tmp_path / "wide.png", (64, 48))
    monkeypatch.setattr(images_module, "MAX_PIXELS", 64 * 48 - 1)
    code, _, err = run([src, "-m", tiny_model, "-o", tmp_path / "out.png"], capsys)
    assert code == 1
    assert "64x48: more than the 3,071-pixel limit" in only_error_line(err)
    # Pillow's own hard limit gives the same kind of message
    monkeypatch.setattr(images_module, "MAX_PIXELS", 10**9)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    code, _, err = run([src, "-m", tiny_model, "-o", tmp_path / "out.png"], capsys)
    assert code == 1
    assert "decompression bomb" in only_error_line(err)
    assert not (tmp_path / "out.png").exists()


def test_unknown_output_extension_fails_before_work(
    tiny_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    src = photo(tmp_path / "in.png")
    monkeypatch.setattr(
        Stylizer, "from_file", lambda *a, **k: pytest.fail("model loaded before the output was checked")
    )
    for out in ["out.xyz", "out"]:
        code, _, err = run([src, "-m", tiny_model, "-o", tmp_path / out], capsys)
        assert code == 2
        assert "unknown image extension" in only_error_line(err)
    assert files_in(tmp_path) == ["in.png", "tiny.ckpt", "tiny.safetensors"]


# -- bad models -----------------------------------------------------------------------------------
def _rewrite_safetensors(src: Path, dst: Path, meta: dict[str, str] | None = None, nan: bool = False) -> Path:
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    with safe_open(str(src), framework="pt") as fh:
        metadata = dict(fh.metadata())
    metadata.update(meta or {})
    tensors = load_file(str(src))
    if nan:
        tensors["decoder.2.1.weight"][0, 0, 0, 0] = float("nan")
    save_file(tensors, str(dst), metadata=metadata)
    return dst


@pytest.mark.parametrize(
    ("kind", "message"),
    [
        ("missing", "model file not found"),
        ("empty", "model file is empty"),
        ("garbage", "not a .safetensors model file"),
        ("truncated", "cannot read model file"),
        ("no_metadata", "not a fast_style model file"),
        ("unknown_arch", "unknown or invalid architecture"),
        ("wrong_shapes", "does not match its architecture"),
        ("nan", "non-finite weights"),
        ("pth", "is a pickle file"),
    ],
)
def test_bad_model(
    tiny_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], kind: str, message: str
) -> None:
    from safetensors.torch import save_file

    model = tmp_path / "bad" / "model.safetensors"
    model.parent.mkdir()
    if kind == "empty":
        model.write_bytes(b"")
    elif kind == "garbage":
        model.write_bytes(b"\x00" * 64)
    elif kind == "truncated":
        model.write_bytes(tiny_model.read_bytes()[:-100])
    elif kind == "no_metadata":
        save_file({"w": torch.zeros(2)}, str(model))
    elif kind == "unknown_arch":
        _rewrite_safetensors(tiny_model, model, {"arch": "unet9000"})
    elif kind == "wrong_shapes":
        _rewrite_safetensors(
            tiny_model, model, {"model_kwargs": json.dumps({"channels": [8, 8, 8], "num_residual": 1})}
        )
    elif kind == "nan":
        _rewrite_safetensors(tiny_model, model, nan=True)
    elif kind == "pth":
        model = model.with_suffix(".pth")
        torch.save({"w": torch.zeros(2)}, model)
    src = photo(tmp_path / "in.png")
    out = tmp_path / "out"
    code, _, err = run([src, "-m", model, "-o", out / "x.png"], capsys)
    assert code == 2
    assert message in only_error_line(err)
    if kind == "pth":
        assert "fast-style export" in err
    assert not out.exists()


@pytest.mark.parametrize("suffix", [".pth", ".ckpt", ".safetensors", ".onnx", ".model"])
@pytest.mark.parametrize("container", ["pickle", "torch.save"])
def test_pickle_payload_never_runs(
    pickle_payload: tuple[Path, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    suffix: str,
    container: str,
) -> None:
    payload, marker = pickle_payload
    model = tmp_path / f"model{suffix}"
    if container == "pickle":
        model.write_bytes(payload.read_bytes())
    else:
        model.write_bytes((payload.parent / "evil_zip.pt").read_bytes())
    src = photo(tmp_path / "in.png")
    code, _, err = run([src, "-m", model, "-o", tmp_path / "out.png"], capsys)
    assert code == 2
    only_error_line(err)
    assert not marker.exists()
    assert not (tmp_path / "out.png").exists()
    assert "pickle file" in err
    pickle.loads(payload.read_bytes())  # the payload is live: plain unpickling runs it
    assert marker.exists()


def test_cuda_requested_without_cuda(
    tiny_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    if torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    code, _, err = run(
        [photo(tmp_path / "in.png"), "-m", tiny_model, "-o", tmp_path / "o.png", "--device", "cuda"], capsys
    )
    assert code == 2
    assert "CUDA was requested but is not available" in only_error_line(err)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--strength", "1.5"], "--strength must be within"),
        (["--tile", "8"], "--tile must be at least 64"),
        (["--max-size", "4"], "--max-size"),
    ],
)
def test_bad_options(
    tiny_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    code, _, err = run(
        [photo(tmp_path / "in.png"), "-m", tiny_model, "-o", tmp_path / "o.png", *args], capsys
    )
    assert code == 2
    assert message in only_error_line(err)
    assert not (tmp_path / "o.png").exists()


# -- never overwrite, batches go on, Ctrl-C leaves nothing ------------------------------------------------
def test_existing_output_is_not_overwritten(
    tiny_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src = photo(tmp_path / "in.png")
    out = tmp_path / "out.png"
    out.write_bytes(b"precious")
    code, _, err = run([src, "-m", tiny_model, "-o", out], capsys)
    assert code == 1
    assert "exists; pass --overwrite" in only_error_line(err)
    assert out.read_bytes() == b"precious"
    code, _, err = run([src, "-m", tiny_model, "-o", out, "--overwrite"], capsys)
    assert code == 0, err
    with Image.open(out) as img:
        assert img.size == (48, 40)


def test_output_may_not_replace_input(
    tiny_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src = photo(tmp_path / "in.png")
    before = src.read_bytes()
    code, _, err = run([src, "-m", tiny_model, "-o", src, "--overwrite"], capsys)
    assert code == 2
    assert "would replace its input" in only_error_line(err)
    assert src.read_bytes() == before


def test_batch_goes_on_past_bad_files(
    tiny_model: Path, image_folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (image_folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    (image_folder / "readme.txt").write_text("ignored: not an image extension")
    out = tmp_path / "styled"
    out.mkdir()
    (out / "img2.jpg").write_bytes(b"already here")
    (image_folder / "empty.jpg").write_bytes(b"")
    code, stdout, err = run([image_folder, "-m", tiny_model, "-o", out], capsys)
    assert code == 1
    lines = err.strip().splitlines()
    assert len(lines) == 3 and all(line.startswith("fast-style stylize: error:") for line in lines)
    assert any("broken.png" in line for line in lines) and any("empty.jpg" in line for line in lines)
    assert any("img2.jpg exists" in line for line in lines)
    assert "stylized 5 of 8 image(s)" in stdout and "3 failed" in stdout
    assert files_in(out) == ["img0.jpg", "img1.png", "img2.jpg", "img3.png", "img4.jpg", "sub/img5.png"]
    assert (out / "img2.jpg").read_bytes() == b"already here"


def test_two_inputs_one_output_name(
    tiny_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a = photo(tmp_path / "a" / "x.png")
    b = photo(tmp_path / "b" / "x.png")
    code, _, err = run([a, b, "-m", tiny_model, "-o", tmp_path / "out"], capsys)
    assert code == 2
    assert "would both be written to" in only_error_line(err)
    assert not (tmp_path / "out").exists()


def test_ctrl_c_leaves_no_partial_file(
    tiny_model: Path,
    image_folder: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real_save = Image.Image.save
    calls = {"n": 0}

    def save_then_interrupt(self: Image.Image, fp: object, *args: object, **kwargs: object) -> None:
        calls["n"] += 1
        if calls["n"] == 2:
            real_save(self, fp, *args, **kwargs)  # bytes are on disk, the rename has not happened
            raise KeyboardInterrupt
        real_save(self, fp, *args, **kwargs)

    monkeypatch.setattr(Image.Image, "save", save_then_interrupt)
    out = tmp_path / "styled"
    code, _, err = run([image_folder, "-m", tiny_model, "-o", out], capsys)
    assert code == 130
    assert "interrupted" in err
    assert files_in(out) == ["img0.jpg"]  # the first finished image, and no temporary file


# -- ONNX models, the library API, and what inference imports -------------------------------------------
def test_onnx_model_stylizes_like_safetensors(
    tiny_ckpt: Path, tiny_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("onnxruntime", reason="ONNX models need onnxruntime (extra: onnx)")
    pytest.importorskip("onnx", reason="ONNX export needs the onnx package (extra: onnx)")
    onnx_model = tmp_path / "tiny.onnx"
    assert cli_main(["export", str(tiny_ckpt), "-o", str(onnx_model)]) == 0
    src = photo(tmp_path / "in.png", (50, 38))
    assert run([src, "-m", onnx_model, "-o", tmp_path / "a.png"], capsys)[0] == 0
    assert run([src, "-m", tiny_model, "-o", tmp_path / "b.png"], capsys)[0] == 0
    a, b = (np.asarray(Image.open(tmp_path / n)).astype(int) for n in ("a.png", "b.png"))
    assert np.abs(a - b).max() <= 1
    code, _, err = run([src, "-m", onnx_model, "-o", tmp_path / "c.png", "--tile", "64"], capsys)
    assert code == 2 and "--tile" in only_error_line(err)


def test_library_entry_point(tiny_ckpt: Path, tiny_model: Path) -> None:
    net, _ = load_training_checkpoint(tiny_ckpt)
    img = Image.new("RGB", (33, 21), (200, 120, 40))
    result = Stylizer.from_file(tiny_model).stylize(img)
    assert (result.mode, result.size) == ("RGB", (33, 21))
    with torch.no_grad():
        expected = net(torch.from_numpy(np.array(img)).permute(2, 0, 1)[None].float() / 255)
    got = torch.from_numpy(np.array(result)).permute(2, 0, 1)[None].float() / 255
    assert (got - expected).abs().max() <= 0.5 / 255 + 1e-6
    with pytest.raises(FastStyleError, match="strength"):
        Stylizer.from_file(tiny_model).stylize(img, strength=2.0)


class RecordingBackend(TorchBackend):
    """A backend that records how the stylizer called it (any ``Backend`` object may be handed in)."""

    name = "recording"

    def __init__(self, net: TransformNetwork, tiles: bool) -> None:
        super().__init__(net)
        self.can_tile = tiles
        self.calls: list[str] = []

    @property
    def tiles(self) -> bool:
        return self.can_tile

    def run(self, images: torch.Tensor, style: torch.Tensor | None = None) -> torch.Tensor:
        self.calls.append("run")
        return super().run(images, style)

    def run_tiled(self, pixels: np.ndarray, **kwargs: Any) -> np.ndarray:
        self.calls.append(f"run_tiled {kwargs['tile']}")
        return super().run_tiled(pixels, **kwargs)


def test_the_backend_runs_whole_images_and_tiles(tiny_ckpt: Path) -> None:
    net, _ = load_training_checkpoint(tiny_ckpt)
    pixels = np.random.default_rng(0).integers(0, 256, (40, 72, 3), dtype=np.uint8)
    tiled = RecordingBackend(net, tiles=True)
    stylizer = Stylizer(net, backend=tiled)
    whole = stylizer.stylize_array(pixels)
    in_tiles = stylizer.stylize_array(pixels, tile=64)
    assert tiled.calls == ["run", "run_tiled 64"]
    assert np.abs(whole.astype(int) - in_tiles.astype(int)).max() <= 2  # tiles share the statistics

    stylizer.auto_tile_pixels = 40 * 72 - 1  # over the threshold: tiles, on the backend
    stylizer.stylize_array(pixels)
    assert tiled.calls[-1].startswith("run_tiled")

    whole_only = RecordingBackend(net, tiles=False)
    stylizer = Stylizer(net, backend=whole_only)
    stylizer.auto_tile_pixels = 40 * 72 - 1  # a backend without tiles runs even a large image whole
    assert stylizer.stylize_array(pixels).shape == pixels.shape
    with pytest.raises(FastStyleError, match="--tile"):
        stylizer.stylize_array(pixels, tile=64)
    with pytest.raises(FastStyleError, match="--tile"):
        stylizer.require_tiling()
    assert whole_only.calls == ["run"]


def test_inference_imports_no_training_code(tiny_model: Path, tmp_path: Path) -> None:
    src = photo(tmp_path / "in.png")
    script = (
        "import sys\n"
        "from fast_style.cli.main import main\n"
        f"code = main(['stylize', {str(src)!r}, '-m', {str(tiny_model)!r}, '-o', {str(tmp_path / 'o.png')!r}])\n"
        "assert code == 0, code\n"
        "import fast_style.inference, fast_style.images, fast_style.models, fast_style.cli.export\n"
        "banned = ('pytorch_lightning', 'lightning', 'hydra', 'omegaconf', 'torchvision', 'tensorboard',\n"
        "          'fast_style.training', 'fast_style.losses', 'fast_style.data', 'fast_style.cli.train')\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in banned or m.startswith(banned)))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
        env={**__import__("os").environ, "PYTHONPATH": str(ROOT)},
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "[]"
    assert (tmp_path / "o.png").is_file()


def test_safetensors_header_is_what_the_loader_checks(tiny_model: Path) -> None:
    # the sniffing that tells safetensors from pickles relies on this layout
    head = tiny_model.read_bytes()[:9]
    (length,) = struct.unpack("<Q", head[:8])
    assert length > 2 and head[8:9] == b"{"


def test_pickle_sniffing_does_not_mistake_safetensors() -> None:
    from fast_style.model_file import looks_like_safetensors, looks_like_torch_file

    # a safetensors header of 0x0580 bytes starts with the same byte as a pickle PROTO opcode
    head = (0x0580).to_bytes(8, "little") + b'{"'
    assert looks_like_torch_file(head) and looks_like_safetensors(head)
    assert not looks_like_safetensors(pickle.dumps({"a": 1}, protocol=2)[:10])


def test_exclusive_write_keeps_a_file_that_appeared_meanwhile(tmp_path: Path) -> None:
    from fast_style.files import atomic_path

    target = tmp_path / "out.png"
    with pytest.raises(FileExistsError), atomic_path(target, overwrite=False) as tmp:
        tmp.write_bytes(b"new")
        target.write_bytes(b"someone else's")  # created after the early existence check
    assert target.read_bytes() == b"someone else's"
    assert files_in(tmp_path) == ["out.png"]


def test_a_missing_input_is_bad_input_before_any_work(
    tiny_model: Path, image_folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "styled"
    code, stdout, err = run([image_folder, tmp_path / "missing.png", "-m", tiny_model, "-o", out], capsys)
    assert code == 2  # the README's exit-code table: a missing file is bad input
    assert (
        err.strip()
        == f"fast-style stylize: error: input not found: {tmp_path / 'missing.png'}; nothing was stylized"
    )
    assert not out.exists() and stdout == ""
