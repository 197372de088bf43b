"""fast-style export: training checkpoint -> .safetensors / .onnx, and the metadata that rebuilds it."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from fast_style.cli.export import main as export_main
from fast_style.cli.main import main as cli_main
from fast_style.export import load_training_checkpoint
from fast_style.inference import Stylizer, read_metadata
from fast_style.models import TransformerNet
from fast_style.onnx_graph import onnx_graph


def test_round_trip_equals_in_memory_network(
    tiny_ckpt: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "model.safetensors"
    assert cli_main(["export", str(tiny_ckpt), "-o", str(out)]) == 0
    assert "wrote" in capsys.readouterr().out

    net, _ = load_training_checkpoint(tiny_ckpt)
    stylizer = Stylizer.from_file(out, backend="torch")
    images = torch.rand(2, 3, 37, 50)
    with torch.no_grad():
        expected = net(images).clamp(0, 1)
    assert torch.equal(stylizer.stylize_tensor(images), expected)


def test_onnxruntime_backend_matches_torch(tiny_ckpt: Path, tmp_path: Path) -> None:
    out = tmp_path / "model.safetensors"
    assert cli_main(["export", str(tiny_ckpt), "-o", str(out)]) == 0
    torch_path = Stylizer.from_file(out, backend="torch")
    ort_path = Stylizer.from_file(out, backend="auto")
    assert (torch_path.backend, ort_path.backend) == ("torch", "onnxruntime")  # auto on CPU with onnxruntime
    images = torch.rand(2, 3, 37, 50)
    expected = torch_path.stylize_tensor(images)
    got = ort_path.stylize_tensor(images)
    assert got.shape == expected.shape
    assert (got - expected).abs().max().item() < 1e-4
    pixels = (images[0].permute(1, 2, 0) * 255).round().to(torch.uint8).numpy()
    diff = torch_path.stylize_array(pixels).astype(int) - ort_path.stylize_array(pixels).astype(int)
    assert abs(diff).max() <= 1


@pytest.mark.parametrize("arch", ["johnson", "fast"])
def test_onnx_graph_runs_wide_rgb_head_on_pixel_blocks(arch: str) -> None:
    """The 9x9 three-channel head becomes SpaceToDepth -> conv -> DepthToSpace; 3x3 heads stay as they are."""
    from fast_style.inference import onnx_runtime
    from fast_style.models import FastTransformerNet

    torch.manual_seed(0)
    net = (
        TransformerNet(channels=(8, 16, 32), num_residual=1) if arch == "johnson" else FastTransformerNet()
    ).eval()
    with torch.no_grad():
        for param in net.parameters():  # random non-trivial weights, not the identity-like init
            param.add_(torch.randn_like(param) * 0.1)
    graph = onnx_graph(net)
    ops = [node.op_type for node in graph.graph.node]
    assert ("SpaceToDepth" in ops and ops[-1] == "DepthToSpace") == (arch == "johnson")
    images = torch.rand(2, 3, 36, 52)
    with torch.no_grad():
        expected = net(images)
    got = onnx_runtime.run_session(onnx_runtime.build_session(graph), images)
    assert (got - expected).abs().max().item() < 1e-5


def test_blocked_conv_weights_equal_the_plain_conv() -> None:
    import torch.nn.functional as F

    from fast_style.onnx_graph import _blocked_weights

    torch.manual_seed(0)
    weight, bias = torch.randn(3, 5, 5, 5), torch.randn(3)
    images = torch.randn(1, 5, 20, 24)
    blocked_weight, blocked_bias = _blocked_weights(weight.numpy(), bias.numpy(), block=2)
    # DCR order is block-major, pixel_unshuffle/pixel_shuffle are channel-major: regroup before shuffling.
    unshuffle = torch.arange(5 * 4).reshape(5, 4).T.reshape(-1)
    blocked = F.conv2d(
        F.pixel_unshuffle(images, 2)[:, unshuffle],
        torch.from_numpy(blocked_weight),
        torch.from_numpy(blocked_bias),
    )
    out = F.pixel_shuffle(blocked.reshape(1, 4, 3, 8, 10).transpose(1, 2).reshape(1, 12, 8, 10), 2)
    assert torch.allclose(out, F.conv2d(images, weight, bias), atol=1e-4)


def test_backend_falls_back_to_torch_without_onnxruntime(
    tiny_ckpt: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from fast_style.errors import FastStyleError
    from fast_style.inference import onnx_runtime

    out = tmp_path / "model.safetensors"
    assert cli_main(["export", str(tiny_ckpt), "-o", str(out)]) == 0
    monkeypatch.setattr(onnx_runtime, "available", lambda: False)
    assert Stylizer.from_file(out).backend == "torch"
    with pytest.raises(FastStyleError, match="needs onnx and onnxruntime"):
        Stylizer.from_file(out, backend="onnxruntime")


def test_onnx_graphs_are_cached_by_weights(
    tiny_ckpt: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:

    cache = tmp_path / "cache"
    monkeypatch.setenv("FAST_STYLE_CACHE", str(cache))
    out = tmp_path / "model.safetensors"
    assert cli_main(["export", str(tiny_ckpt), "-o", str(out)]) == 0
    images = torch.rand(1, 3, 24, 28)
    first = Stylizer.from_file(out).stylize_tensor(images)
    cached = list(cache.glob("*.onnx"))
    assert len(cached) == 1

    built = []
    import fast_style.onnx_graph

    monkeypatch.setattr(
        fast_style.onnx_graph, "onnx_graph", lambda *a, **k: built.append(1) or pytest.fail("graph rebuilt")
    )
    assert torch.equal(Stylizer.from_file(out).stylize_tensor(images), first)  # served from the cache
    assert built == []

    monkeypatch.undo()
    monkeypatch.setenv("FAST_STYLE_CACHE", str(cache))
    cached[0].write_bytes(b"not an onnx graph")  # a damaged entry is rebuilt and replaced
    assert torch.equal(Stylizer.from_file(out).stylize_tensor(images), first)
    assert cached[0].stat().st_size > 1000

    other = Stylizer.from_file(out)
    with torch.no_grad():
        next(other.net.parameters()).add_(0.1)  # other weights, another entry
    other.stylize_tensor(images)
    assert len(list(cache.glob("*.onnx"))) == 2


def test_onnx_graph_cache_can_be_turned_off(
    tiny_ckpt: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAST_STYLE_CACHE", "off")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    out = tmp_path / "model.safetensors"
    assert cli_main(["export", str(tiny_ckpt), "-o", str(out)]) == 0
    Stylizer.from_file(out).stylize_tensor(torch.rand(1, 3, 16, 16))
    assert not (tmp_path / "xdg").exists() and not (tmp_path / "home").exists()


def test_metadata_rebuilds_the_architecture(tiny_ckpt: Path, tmp_path: Path, tiny_net_config: dict) -> None:
    out = tmp_path / "model.safetensors"
    assert export_main([str(tiny_ckpt), "-o", str(out)]) == 0
    meta = read_metadata(out)
    assert meta["format"] == "fast_style" and meta["format_version"] == "2"
    assert meta["arch"] == "johnson"
    assert meta["model_kwargs"] == tiny_net_config
    assert meta["style_name"] == "tiny_style"
    assert meta["training"]["global_step"] == 7 and meta["training"]["loss"]["network"] == "vgg16_bn"
    net = Stylizer.from_file(out).net
    assert isinstance(net, TransformerNet)
    assert net.config() == tiny_net_config
    # only the transform network's weights, nothing from the loss network
    assert set(load_file(str(out))) == set(TransformerNet(**tiny_net_config).state_dict())


def test_compiled_prefix_is_removed(tmp_path: Path, make_tiny_checkpoint) -> None:
    ckpt = make_tiny_checkpoint(tmp_path / "compiled.ckpt", prefix="net._orig_mod.")
    out = tmp_path / "model.safetensors"
    assert export_main([str(ckpt), "-o", str(out)]) == 0
    keys = set(load_file(str(out)))
    assert keys and not any("_orig_mod" in k for k in keys)


def test_non_finite_weights_are_not_exported(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], make_tiny_checkpoint
) -> None:
    ckpt = make_tiny_checkpoint(tmp_path / "nan.ckpt")
    data = torch.load(ckpt, weights_only=True)
    data["state_dict"]["net.encoder.0.1.weight"][0, 0, 0, 0] = float("nan")
    torch.save(data, ckpt)
    out = tmp_path / "model.safetensors"
    assert export_main([str(ckpt), "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert "non-finite weights" in err and err.count("\n") == 1
    assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["nan.ckpt"]


def test_pickle_payload_never_runs_on_export(
    pickle_payload: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    payload, marker = pickle_payload
    out = tmp_path / "model.safetensors"
    assert export_main([str(payload), "-o", str(out)]) == 2
    assert "holds pickled objects other than tensors" in capsys.readouterr().err
    assert not marker.exists() and not out.exists()
    pickle.loads(payload.read_bytes())  # the payload is live: plain unpickling runs it
    assert marker.exists()


def test_existing_output_is_kept_without_overwrite(
    tiny_ckpt: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "model.safetensors"
    out.write_bytes(b"keep me")
    assert export_main([str(tiny_ckpt), "-o", str(out)]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert out.read_bytes() == b"keep me"
    assert export_main([str(tiny_ckpt), "-o", str(out), "--overwrite"]) == 0
    assert read_metadata(out)["arch"] == "johnson"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--format", "torchscript"], "TorchScript export is not offered"),
        (["--format", "onnx"], "must be written to a .onnx file"),
    ],
)
def test_format_errors(
    tiny_ckpt: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    out = tmp_path / "model.safetensors"
    assert export_main([str(tiny_ckpt), "-o", str(out), *args]) == 2
    assert message in capsys.readouterr().err
    assert not out.exists()


def test_not_a_training_checkpoint(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ckpt = tmp_path / "other.ckpt"
    torch.save({"weights": torch.zeros(3)}, ckpt)
    assert export_main([str(ckpt), "-o", str(tmp_path / "m.safetensors")]) == 2
    assert "not a fast-style training checkpoint" in capsys.readouterr().err
    assert export_main([str(tmp_path / "missing.ckpt"), "-o", str(tmp_path / "m.safetensors")]) == 2
    assert "checkpoint not found" in capsys.readouterr().err
    assert not (tmp_path / "m.safetensors").exists()


def test_onnx_export_matches_pytorch(tiny_ckpt: Path, tmp_path: Path, tiny_net_config: dict) -> None:
    onnx = pytest.importorskip("onnx", reason="ONNX export needs the onnx package (extra: onnx)")
    pytest.importorskip("onnxruntime", reason="ONNX verification needs onnxruntime (extra: onnx)")
    out = tmp_path / "model.onnx"
    assert export_main([str(tiny_ckpt), "-o", str(out)]) == 0

    model = onnx.load(str(out))
    assert max(op.version for op in model.opset_import if op.domain in ("", "ai.onnx")) >= 17
    dims = model.graph.input[0].type.tensor_type.shape.dim
    assert [d.dim_param for d in dims] == ["batch", "", "height", "width"]
    assert read_metadata(out)["model_kwargs"] == tiny_net_config

    net, _ = load_training_checkpoint(tiny_ckpt)
    onnx_stylizer = Stylizer.from_file(out)
    for shape in [(1, 3, 64, 96), (2, 3, 37, 50)]:
        images = torch.rand(*shape)
        with torch.no_grad():
            expected = net(images).clamp(0, 1)
        got = onnx_stylizer.stylize_tensor(images)
        assert got.shape == expected.shape
        assert torch.allclose(got, expected, atol=1e-4), (got - expected).abs().max()


def test_safetensors_converts_to_onnx(tiny_model: Path, tmp_path: Path) -> None:
    pytest.importorskip("onnx", reason="ONNX export needs the onnx package (extra: onnx)")
    pytest.importorskip("onnxruntime", reason="ONNX verification needs onnxruntime (extra: onnx)")
    out = tmp_path / "converted.onnx"
    assert export_main([str(tiny_model), "-o", str(out), "--format", "onnx"]) == 0
    images = torch.rand(1, 3, 48, 40)
    expected = Stylizer.from_file(tiny_model).stylize_tensor(images)
    assert torch.allclose(Stylizer.from_file(out).stylize_tensor(images), expected, atol=1e-4)
    assert read_metadata(out)["style_name"] == "tiny_style"


def test_help_lists_only_the_formats_offered(capsys: pytest.CaptureFixture[str]) -> None:
    assert export_main(["--help"]) == 0
    text = capsys.readouterr().out
    assert "{safetensors,onnx}" in text and "torchscript" not in text.split("TorchScript")[0].lower()


def test_shipped_version_1_files_still_load_and_read_as_the_current_schema() -> None:
    from fast_style.model_file import FORMAT_VERSION

    shipped = sorted((Path(__file__).resolve().parents[1] / "checkpoints").glob("*.safetensors"))
    assert shipped
    for path in shipped:
        meta = read_metadata(path)
        assert meta["format_version"] in ("1", FORMAT_VERSION)
        assert isinstance(meta["multiple"], int) and meta["training"]["loss"]["network"] == "vgg16_bn"
        stylizer = Stylizer.from_file(path, backend="torch")
        assert stylizer.net.config() == meta["model_kwargs"]


def test_a_file_of_a_newer_format_version_is_a_clear_error(tiny_model: Path, tmp_path: Path) -> None:
    from safetensors.torch import save_file

    from fast_style.errors import FastStyleError

    meta = {k: str(v) for k, v in read_metadata(tiny_model).items()}
    meta |= {
        "format_version": "99",
        "model_kwargs": '{"channels": [4, 8, 8], "num_residual": 1}',
        "training": "{}",
    }
    future = tmp_path / "future.safetensors"
    save_file(load_file(tiny_model), str(future), metadata=meta)
    with pytest.raises(FastStyleError, match="format version 99, newer than this fast-style reads"):
        read_metadata(future)


def test_old_and_new_checkpoints_give_one_record(tiny_ckpt: Path, tmp_path: Path) -> None:
    from fast_style.model_file import record_from_checkpoint

    old = torch.load(tiny_ckpt, weights_only=True)
    assert "model" in old["fast_style"]  # the fixture writes the version-1 layout
    net, record = load_training_checkpoint(tiny_ckpt)
    new = dict(old, fast_style=record)
    assert record_from_checkpoint(new) == record_from_checkpoint(old) == record
    assert record["model_kwargs"] == net.config() and record["training"]["global_step"] == 7


def test_inference_imports_neither_export_nor_training_code() -> None:
    """Layering: export uses inference, never the reverse; inference needs no training code."""
    import ast

    package = Path(__file__).resolve().parents[1] / "fast_style"
    forbidden = (
        "fast_style.export",
        "fast_style.training",
        "fast_style.losses",
        "fast_style.cli",
        "fast_style.optimize",
        "pytorch_lightning",
        "lightning",
        "hydra",
    )
    checked = 0
    for path in sorted((package / "inference").glob("*.py")):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            for name in names:
                assert not name.startswith(forbidden), f"{path.name} imports {name}"
            checked += bool(names)
    assert checked > 10
    # and the ONNX graph builder is not part of the inference package
    assert not (package / "inference" / "onnx_graph.py").exists()
    assert "def onnx_graph" not in (package / "inference" / "onnx_runtime.py").read_text()
