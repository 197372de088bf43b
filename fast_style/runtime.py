"""ONNX Runtime as an inference backend: a transform network -> an ONNX graph -> a session.

On CPU, onnxruntime runs the transform networks about twice as fast as eager PyTorch (its
convolutions keep a blocked memory layout from layer to layer), so ``Stylizer`` uses it for whole
images when ``onnx`` and ``onnxruntime`` are installed. Building a graph means tracing the network
(one to three seconds), so built graphs are kept in a cache folder keyed by a hash of the network's
class, weights and this package's version: ``$FAST_STYLE_CACHE``, else ``$XDG_CACHE_HOME/fast_style``,
else ``~/.cache/fast_style``; ``FAST_STYLE_CACHE=off`` turns the cache off. Nothing here imports
training code.
"""

from __future__ import annotations

import hashlib
import io
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from fast_style.errors import FastStyleError

__all__ = ["ONNX_OPSET", "available", "build_session", "cache_dir", "onnx_graph", "run_session", "session_for"]

ONNX_OPSET = 17


class _AlignedNetwork(nn.Module):
    """The network without its pad-and-crop: the graph takes sizes that are multiples of 4."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        aligned = getattr(self.net, "forward_aligned", None)
        return aligned(images) if aligned is not None else self.net(images)


def available() -> bool:
    """True when both ``onnx`` (to build graphs) and ``onnxruntime`` (to run them) import."""
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


def onnx_graph(net: nn.Module, opset: int = ONNX_OPSET, metadata: dict[str, str] | None = None) -> Any:
    """``net`` as an ``onnx.ModelProto``: input ``image`` and output ``stylized``, dynamic batch and size.

    The graph expects ``H`` and ``W`` that are multiples of the network's ``multiple`` (4).
    """
    try:
        import onnx
    except ImportError:
        raise FastStyleError("ONNX export needs the onnx package: pip install onnx") from None
    if opset < 17:
        raise FastStyleError(f"ONNX opset must be at least 17, got {opset}")
    was_training = net.training
    wrapper = _AlignedNetwork(net.cpu().eval()).eval()
    axes = {0: "batch", 2: "height", 3: "width"}
    buffer = io.BytesIO()
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                wrapper,
                (torch.rand(1, 3, 64, 64),),
                buffer,
                input_names=["image"],
                output_names=["stylized"],
                dynamic_axes={"image": axes, "stylized": axes},
                opset_version=opset,
                dynamo=False,  # the TorchScript-based exporter needs no onnxscript
            )
    finally:
        net.train(was_training)
    model = onnx.load_from_string(buffer.getvalue())
    for key, value in (metadata or {}).items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.checker.check_model(model)
    return model


def cache_dir() -> Path | None:
    """The folder that keeps built graphs, or None when ``FAST_STYLE_CACHE=off``."""
    configured = os.environ.get("FAST_STYLE_CACHE", "")
    if configured.lower() in ("off", "0", "none"):
        return None
    if configured:
        return Path(configured).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "fast_style"


def _graph_key(net: nn.Module, opset: int) -> str:
    from fast_style import __version__

    digest = hashlib.sha256(f"{type(net).__module__}.{type(net).__qualname__}|{__version__}|{opset}".encode())
    config = getattr(net, "config", None)
    if callable(config):
        digest.update(repr(config()).encode())
    for name, tensor in net.state_dict().items():
        digest.update(f"{name}:{tuple(tensor.shape)}:{tensor.dtype}".encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:32]


def session_for(net: nn.Module, device: str = "cpu") -> Any:
    """An onnxruntime session running ``net``, its graph taken from the cache when built before.

    A cache that cannot be read or written is skipped silently (the graph is then built each
    time), and a cached graph that onnxruntime rejects is replaced.
    """
    from fast_style.files import atomic_path

    folder = cache_dir()
    path = folder / f"{_graph_key(net, ONNX_OPSET)}.onnx" if folder is not None else None
    if path is not None and path.is_file():
        try:
            return build_session(path.read_bytes(), device, name=path.name)
        except (OSError, FastStyleError):
            pass
    data = onnx_graph(net).SerializeToString()
    if path is not None:
        try:
            with atomic_path(path) as tmp:
                tmp.write_bytes(data)
        except OSError:
            pass
    return build_session(data, device)


def build_session(model: Any, device: str = "cpu", name: str = "model") -> Any:
    """An onnxruntime session for a path, serialized bytes or an ``onnx.ModelProto``."""
    try:
        import onnxruntime as ort
    except ImportError:
        raise FastStyleError(f"{name} needs onnxruntime: pip install onnxruntime") from None
    providers = ["CPUExecutionProvider"]
    if device == "cuda" and "CUDAExecutionProvider" in ort.get_available_providers():
        providers.insert(0, "CUDAExecutionProvider")
    options = ort.SessionOptions()
    options.log_severity_level = 3
    source = model if isinstance(model, bytes | str) else str(model) if isinstance(model, Path) else model.SerializeToString()
    try:
        return ort.InferenceSession(source, sess_options=options, providers=providers)
    except Exception as exc:
        raise FastStyleError(f"cannot load ONNX model {name}: {str(exc).splitlines()[0][:200]}") from None


def run_session(session: Any, images: torch.Tensor) -> torch.Tensor:
    """Run ``session`` on ``(B, 3, H, W)`` float images; the result comes back on ``images``' device."""
    name = session.get_inputs()[0].name
    array = np.ascontiguousarray(images.detach().cpu().numpy(), dtype=np.float32)
    return torch.from_numpy(session.run(None, {name: array})[0]).to(images.device)
