"""Training checkpoint -> small, safe inference file (transform-network weights + metadata), or ONNX.

TorchScript is deliberately not offered: the ``.safetensors`` file covers PyTorch users without
any pickled code, ONNX covers runtimes outside Python, and TorchScript is in maintenance mode.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from fast_style import __version__, model_file
from fast_style.checkpoints import check_finite_weights, read_training_checkpoint
from fast_style.errors import FastStyleError
from fast_style.files import atomic_path
from fast_style.inference import loading, onnx_runtime
from fast_style.model_file import looks_like_safetensors, looks_like_torch_file, record_from_checkpoint
from fast_style.models import TransformNetwork, build_model, check_model_spec, model_config
from fast_style.onnx_graph import ONNX_OPSET, onnx_graph

__all__ = [
    "EXPORT_FORMATS",
    "ONNX_OPSET",
    "export_model",
    "export_onnx",
    "export_safetensors",
    "load_training_checkpoint",
    "model_metadata",
    "read_model",
]

EXPORT_FORMATS = ("safetensors", "onnx")
_NET_PREFIX = "net."
_COMPILED_PREFIX = "_orig_mod."


def load_training_checkpoint(path: str | os.PathLike[str]) -> tuple[TransformNetwork, dict[str, Any]]:
    """Rebuild the transform network from a ``fast-style train`` checkpoint; also return its record.

    Loaded with ``weights_only=True``: a checkpoint that needs arbitrary pickled objects is refused
    before any of its code can run.
    """
    path = Path(path)
    ckpt = read_training_checkpoint(path)
    record = record_from_checkpoint(ckpt, path)
    state = {k[len(_NET_PREFIX) :]: v for k, v in ckpt["state_dict"].items() if k.startswith(_NET_PREFIX)}
    # A torch.compile'd network saves its weights under an extra prefix; export the plain module.
    state = {k[len(_COMPILED_PREFIX) :] if k.startswith(_COMPILED_PREFIX) else k: v for k, v in state.items()}
    try:
        check_model_spec(
            record["arch"], record["model_kwargs"], {k: getattr(v, "shape", ()) for k, v in state.items()}
        )
        net = build_model(record["arch"], **record["model_kwargs"])
        net.load_state_dict(state, strict=True)
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:
        detail = " ".join(str(exc).split())[:200]
        raise FastStyleError(
            f"{path}: the network does not match its recorded architecture ({detail})"
        ) from None
    return net.eval(), record


def read_model(path: str | os.PathLike[str]) -> tuple[TransformNetwork, dict[str, Any]]:
    """The network and record of a training checkpoint, or of an exported ``.safetensors`` file."""
    path = Path(path)
    if path.suffix.lower() == ".safetensors" and _starts_like_safetensors(path):
        record = loading.read_metadata(path)
        return loading.build_network(path, record).eval(), record
    return load_training_checkpoint(path)


def _starts_like_safetensors(path: Path) -> bool:
    # A training checkpoint renamed to .safetensors is read as the checkpoint it is.
    try:
        with path.open("rb") as fh:
            head = fh.read(16)
    except OSError:
        return True  # let the loader report it
    return looks_like_safetensors(head) or not looks_like_torch_file(head)


def model_metadata(net: TransformNetwork, record: dict[str, Any]) -> dict[str, str]:
    """String metadata stored in every inference file: enough to rebuild ``net`` without training code."""
    config = model_config(net)
    current = {**record, "arch": config["arch"], "model_kwargs": config["kwargs"], "multiple": net.multiple}
    return model_file.encode(current, exporter=f"fast_style {__version__}")


def _check_finite(net: TransformNetwork, source: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    tensors = {k: v.detach().contiguous().cpu() for k, v in net.state_dict().items()}
    check_finite_weights(tensors, str(source), "refusing to export")
    return tensors


def export_safetensors(ckpt_path: str | os.PathLike[str], out_path: str | os.PathLike[str]) -> Path:
    """Write the network of ``ckpt_path`` as a ``.safetensors`` file, atomically."""
    from safetensors.torch import save_file

    net, record = read_model(ckpt_path)
    tensors = _check_finite(net, ckpt_path)
    with atomic_path(out_path) as tmp:
        save_file(tensors, str(tmp), metadata=model_metadata(net, record))
    return Path(out_path)


def export_onnx(
    ckpt_path: str | os.PathLike[str], out_path: str | os.PathLike[str], opset: int = ONNX_OPSET
) -> Path:
    """Write the network as ONNX with dynamic batch, height and width, atomically.

    The graph takes ``image`` ``(B, 3, H, W)`` in [0, 1] with ``H`` and ``W`` multiples of the
    ``multiple`` metadata entry (4); callers reflect-pad and crop, as ``fast-style stylize`` does.
    """
    if not onnx_runtime.available():
        raise FastStyleError("ONNX export needs onnx and onnxruntime: pip install onnx onnxruntime")
    net, record = read_model(ckpt_path)
    _check_finite(net, ckpt_path)
    model = onnx_graph(net, opset=opset, metadata=model_metadata(net, record))
    with atomic_path(out_path) as tmp:
        Path(tmp).write_bytes(model.SerializeToString())
    return Path(out_path)


def export_model(
    ckpt_path: str | os.PathLike[str], out_path: str | os.PathLike[str], fmt: str | None = None
) -> Path:
    """Export in ``fmt`` (``safetensors`` or ``onnx``; default: from ``out_path``'s extension)."""
    out = Path(out_path)
    fmt = fmt or {".onnx": "onnx"}.get(out.suffix.lower(), "safetensors")
    if fmt == "torchscript":
        raise FastStyleError(
            "TorchScript export is not offered: use safetensors for PyTorch or onnx for other runtimes"
        )
    if fmt not in EXPORT_FORMATS:
        raise FastStyleError(f"unknown export format {fmt!r}; choose one of {', '.join(EXPORT_FORMATS)}")
    expected = ".onnx" if fmt == "onnx" else ".safetensors"
    if out.suffix.lower() != expected:
        raise FastStyleError(f"a {fmt} export must be written to a {expected} file, got {out.name}")
    if fmt == "onnx":
        return export_onnx(ckpt_path, out)
    return export_safetensors(ckpt_path, out)
