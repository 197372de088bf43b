"""The onnxruntime backend's machinery: sessions, and a cache of the graphs built for networks.

On CPU, onnxruntime runs the transform networks 1.6 to 2.5 times as fast as eager PyTorch (its
convolutions keep a blocked memory layout from layer to layer), so ``Stylizer`` uses it for whole
images when ``onnx`` and ``onnxruntime`` are installed. Building a graph (``fast_style.onnx_graph``)
means tracing the network (one to three seconds), so built graphs are kept in a cache folder keyed by a hash of the network's
class, weights and this package's version: ``$FAST_STYLE_CACHE``, else ``$XDG_CACHE_HOME/fast_style``,
else ``~/.cache/fast_style``; ``FAST_STYLE_CACHE=off`` turns the cache off. Nothing here imports
training code.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fast_style.errors import FastStyleError
from fast_style.models import TransformNetwork

__all__ = ["available", "build_session", "cache_dir", "run_session", "session_for"]


def available() -> bool:
    """True when both ``onnx`` (to build graphs) and ``onnxruntime`` (to run them) import."""
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


def cache_dir() -> Path | None:
    """The folder that keeps built graphs, or None when ``FAST_STYLE_CACHE=off``."""
    configured = os.environ.get("FAST_STYLE_CACHE", "")
    if configured.lower() in ("off", "0", "none"):
        return None
    if configured:
        return Path(configured).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "fast_style"


def _graph_key(net: TransformNetwork, opset: int) -> str:
    from fast_style import __version__
    from fast_style.onnx_graph import GRAPH_REVISION

    digest = hashlib.sha256(
        f"{type(net).__module__}.{type(net).__qualname__}|{__version__}|{opset}|{GRAPH_REVISION}".encode()
    )
    digest.update(repr(net.config()).encode())
    for name, tensor in net.state_dict().items():
        digest.update(f"{name}:{tuple(tensor.shape)}:{tensor.dtype}".encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:32]


def session_for(net: TransformNetwork, device: str = "cpu") -> Any:
    """An onnxruntime session running ``net``, its graph taken from the cache when built before.

    A cache that cannot be read or written is skipped silently (the graph is then built each
    time), and a cached graph that onnxruntime rejects is replaced.
    """
    from fast_style.files import atomic_path
    from fast_style.onnx_graph import ONNX_OPSET, onnx_graph

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
    source = (
        model
        if isinstance(model, bytes | str)
        else str(model)
        if isinstance(model, Path)
        else model.SerializeToString()
    )
    try:
        return ort.InferenceSession(source, sess_options=options, providers=providers)
    except Exception as exc:
        raise FastStyleError(f"cannot load ONNX model {name}: {str(exc).splitlines()[0][:200]}") from None


def run_session(
    session: Any, images: torch.Tensor, shrink_arena: bool = False, style: torch.Tensor | None = None
) -> torch.Tensor:
    """Run ``session`` on ``(B, 3, H, W)`` float images; the result comes back on ``images``' device.

    onnxruntime keeps the memory of its largest run in an arena for the session's life;
    ``shrink_arena`` hands it back after this run (about 10% slower on CPU; benchmarks/serve_memory.py).
    A multi-style graph needs ``style`` (its second input; ``onnx_graph``).
    """
    graph_inputs = [i.name for i in session.get_inputs()]
    name = graph_inputs[0]
    array = np.ascontiguousarray(images.detach().cpu().numpy(), dtype=np.float32)
    feed = {name: array}
    if len(graph_inputs) > 1:
        if style is None:
            raise FastStyleError("this ONNX model paints several styles: give the style weights")
        feed[graph_inputs[1]] = np.ascontiguousarray(style.detach().cpu().float().numpy())
    if not shrink_arena:
        return torch.from_numpy(session.run(None, feed)[0]).to(images.device)
    import onnxruntime as ort

    options = ort.RunOptions()
    options.add_run_config_entry("memory.enable_memory_arena_shrinkage", "cpu:0")
    # The result goes into a buffer of ours (the networks keep the input's shape): left in the
    # arena, it would keep its region from being handed back.
    result = np.empty(array.shape, dtype=np.float32)
    binding = session.io_binding()
    for key, value in feed.items():
        binding.bind_cpu_input(key, value)
    output = session.get_outputs()[0].name
    binding.bind_output(output, "cpu", 0, np.float32, list(result.shape), result.ctypes.data)
    session.run_with_iobinding(binding, options)
    return torch.from_numpy(result).to(images.device)
