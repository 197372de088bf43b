"""Shared fixtures: tiny generated images, and the data beside the project in ../shared."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
VGG16_BN_OFFLINE = SHARED / "weights" / "vgg16_bn_features_offline.pt"
COCO128 = SHARED / "data" / "coco128"
STYLES = SHARED / "data" / "styles"
CONTENT = SHARED / "data" / "content"


def random_image(size: tuple[int, int], seed: int) -> Image.Image:
    """A smooth random RGB image (gradients plus noise), so crops and convolutions see structure."""
    rng = np.random.default_rng(seed)
    w, h = size
    yy, xx = np.mgrid[0:h, 0:w]
    base = np.stack(
        [np.sin(xx / (3 + seed % 5)), np.cos(yy / (4 + seed % 3)), np.sin((xx + yy) / 7.0)], axis=-1
    )
    pixels = (base * 0.35 + 0.5 + rng.normal(0, 0.08, (h, w, 3))).clip(0, 1)
    return Image.fromarray((pixels * 255).astype(np.uint8))


@pytest.fixture
def image_folder(tmp_path: Path) -> Path:
    """Six small photos (jpg and png, one in a subfolder) of varied sizes."""
    folder = tmp_path / "photos"
    (folder / "sub").mkdir(parents=True)
    sizes = [(48, 40), (40, 56), (64, 64), (50, 45), (72, 40), (40, 40)]
    for i, size in enumerate(sizes):
        target = folder / ("sub" if i == 5 else "") / f"img{i}.{'png' if i % 2 else 'jpg'}"
        random_image(size, i).save(target)
    return folder


@pytest.fixture
def style_path(tmp_path: Path) -> Path:
    path = tmp_path / "style.png"
    random_image((48, 48), 99).save(path)
    return path


def require(path: Path) -> Path:
    """Skip the calling test, with the reason, when a file from ../shared is absent."""
    if not path.exists():
        pytest.skip(f"{path.name} not found beside the project (expected at ../shared/...)")
    return path
