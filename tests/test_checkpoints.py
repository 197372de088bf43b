"""The shipped inference files in checkpoints/ and the README's quick start (scripts/gallery.py)."""

from __future__ import annotations

import runpy
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from fast_style.inference import Stylizer, read_metadata

ROOT = Path(__file__).resolve().parents[1]
STYLES = ("starry_night", "great_wave_crop", "composition_vii")
SHIPPED = [(style, style, "johnson") for style in STYLES] + [
    ("starry_night_fast", "starry_night", "fast"),
    ("starry_night_stable", "starry_night", "johnson"),
]


@pytest.mark.parametrize(("name", "style", "arch"), SHIPPED)
def test_shipped_checkpoint(name: str, style: str, arch: str) -> None:
    path = ROOT / "checkpoints" / f"{name}.safetensors"
    meta = read_metadata(path)
    assert meta["style_name"] == style
    assert meta["arch"] == arch
    assert meta["training"]["loss"]["network"] == "vgg16_bn"
    assert meta["training"]["global_step"] > 0
    assert path.stat().st_size < 5_000_000
    with Image.open(ROOT / "assets" / "demo" / "astronaut.jpg") as img:
        small = img.convert("RGB").resize((64, 64))
    out = Stylizer.from_file(path).stylize(small)
    assert out.size == (64, 64)
    # a trained style visibly changes the photo
    assert np.abs(np.asarray(out).astype(int) - np.asarray(small).astype(int)).mean() > 10
    assert (ROOT / "assets" / "styles" / f"{style}.jpg").is_file()


def test_quick_start_gallery(tmp_path: Path) -> None:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        gallery = runpy.run_path(str(ROOT / "scripts" / "gallery.py"))
        code = gallery["main"](["-o", str(tmp_path / "gallery"), "--height", "64", "--device", "cpu"])
    finally:
        torch.set_num_threads(threads)
    assert code == 0
    written = sorted(p.name for p in (tmp_path / "gallery").iterdir())
    assert written == sorted([f"{s}.jpg" for s in STYLES] + ["gallery.jpg"])
    with Image.open(tmp_path / "gallery" / "starry_night.jpg") as img:
        assert img.size == (512, 512)
    with Image.open(tmp_path / "gallery" / "gallery.jpg") as img:
        assert img.height == 64 and img.width == 4 * 64 + 3 * 4


def test_shipped_four_style_file_paints_four_different_styles() -> None:
    path = ROOT / "checkpoints" / "four_styles.safetensors"
    stylizer = Stylizer.from_file(path)
    assert stylizer.styles == ["starry_night", "great_wave_crop", "composition_vii", "udnie_pytorch"]
    assert read_metadata(path)["training"]["loss"]["network"] == "vgg16_bn"
    with Image.open(ROOT / "assets" / "demo" / "astronaut.jpg") as img:
        small = img.convert("RGB").resize((64, 64))
    outs = [np.asarray(stylizer.stylize(small, style=name)).astype(int) for name in stylizer.styles]
    for i, out in enumerate(outs):
        assert np.abs(out - np.asarray(small).astype(int)).mean() > 10
        for other in outs[i + 1 :]:
            assert np.abs(out - other).mean() > 3  # each style its own picture
