"""Shared fixtures: tiny generated images, and the data beside the project in ../shared."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
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


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Put the tests marked slow first (a stable sort), so pytest-xdist starts them on its workers
    early instead of leaving one worker alone with a minute-long test at the end."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


@pytest.fixture(autouse=True, scope="session")
def _graph_cache_in_tmp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Keep the ONNX graph cache of the stylize path out of the user's home during tests."""
    mp = pytest.MonkeyPatch()
    mp.setenv("FAST_STYLE_CACHE", str(tmp_path_factory.mktemp("graph_cache")))
    yield
    mp.undo()


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


# -- tiny transform networks and their files (export / stylize tests) ---------------------------------
TINY_NET = {"channels": [4, 8, 8], "num_residual": 1}


def tiny_checkpoint(path: Path, seed: int = 0, prefix: str = "net.", **kwargs: object) -> Path:
    """A training checkpoint as ``fast-style train`` writes it (network weights + fast_style metadata)."""
    import torch

    from fast_style.models import InstanceNorm, TransformerNet, model_config

    torch.manual_seed(seed)
    net = TransformerNet(**{**TINY_NET, **kwargs})
    with torch.no_grad():  # non-trivial affine norms, so a wrong load would show
        for module in net.modules():
            if isinstance(module, InstanceNorm):
                module.weight.uniform_(0.5, 1.5)
                module.bias.uniform_(-0.2, 0.2)
    ckpt = {
        "state_dict": {prefix + k: v for k, v in net.state_dict().items()},
        "global_step": 7,
        "epoch": 1,
        "fast_style": {
            "model": model_config(net),
            "style_name": "tiny_style",
            "loss": {"network": "vgg16_bn", "style_weight": 1.0e5},
        },
    }
    torch.save(ckpt, path)
    return path


@pytest.fixture
def make_tiny_checkpoint() -> object:
    """``tiny_checkpoint`` itself, for tests that need variants (a prefix, other widths)."""
    return tiny_checkpoint


@pytest.fixture
def tiny_net_config() -> dict[str, object]:
    return dict(TINY_NET)


@pytest.fixture
def tiny_ckpt(tmp_path: Path) -> Path:
    return tiny_checkpoint(tmp_path / "tiny.ckpt")


@pytest.fixture
def tiny_model(tiny_ckpt: Path) -> Path:
    """An exported ``.safetensors`` model of the tiny network."""
    from fast_style.export import export_safetensors

    return export_safetensors(tiny_ckpt, tiny_ckpt.with_name("tiny.safetensors"))


class PicklePayload:
    """Unpickling this creates ``marker``: proof that a pickle ran code."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str, str]]:
        return (open, (str(self.marker), "w"))


@pytest.fixture
def pickle_payload(tmp_path: Path) -> tuple[Path, Path]:
    """A ``.pth`` whose unpickling would create a marker file (and ``evil_zip.pt``, the same via torch.save)."""
    import pickle

    marker = tmp_path / "PWNED"
    payload = tmp_path / "evil.pth"
    payload.write_bytes(pickle.dumps({"state_dict": PicklePayload(marker)}, protocol=2))
    import torch

    torch.save({"state_dict": PicklePayload(marker)}, tmp_path / "evil_zip.pt")  # torch's zip container
    return payload, marker


@pytest.fixture(autouse=True)
def one_thread():
    """Every test on one torch thread: tiny networks run faster so, and on a machine whose other core
    is busy, two threads spin-waiting on each other made real-weight training ten times slower."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def tiny_model_folder(folder: Path, names: tuple[str, ...] = ("tiny_a", "tiny_b")) -> Path:
    """A folder of exported tiny models, one per name, each with its own random weights."""
    from fast_style.export import export_safetensors

    folder.mkdir(parents=True, exist_ok=True)
    for seed, name in enumerate(names):
        ckpt = tiny_checkpoint(folder / f"{name}.ckpt", seed=seed)
        export_safetensors(ckpt, folder / f"{name}.safetensors")
        ckpt.unlink()
    return folder


@pytest.fixture
def adam_fused_args(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """The ``fused`` argument of every ``torch.optim.Adam`` built during the test (``"not given"`` if absent)."""
    seen: list[object] = []

    class RecordingAdam(torch.optim.Adam):
        def __init__(self, params, **kwargs):
            seen.append(kwargs.get("fused", "not given"))
            super().__init__(params, **kwargs)

    monkeypatch.setattr(torch.optim, "Adam", RecordingAdam)
    return seen
