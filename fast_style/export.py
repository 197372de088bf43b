"""Training checkpoint -> small, safe inference file (transform-network weights + metadata)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

from fast_style.errors import FastStyleError
from fast_style.files import atomic_path
from fast_style.models import build_model

__all__ = ["FORMAT_VERSION", "export_safetensors", "load_training_checkpoint"]

FORMAT_VERSION = "1"
_NET_PREFIX = "net."


def load_training_checkpoint(path: str | os.PathLike[str]) -> tuple[torch.nn.Module, dict[str, Any]]:
    """Rebuild the transform network from a ``fast-style train`` checkpoint; also return its metadata.

    Loaded with ``weights_only=True``: a checkpoint that needs arbitrary pickled objects is refused.
    """
    path = Path(path)
    if not path.is_file():
        raise FastStyleError(f"checkpoint not found: {path}")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise FastStyleError(f"cannot read checkpoint {path}: {str(exc).splitlines()[0]}") from None
    if not isinstance(ckpt, dict) or "fast_style" not in ckpt or "state_dict" not in ckpt:
        raise FastStyleError(f"{path} is not a fast-style training checkpoint")
    meta = ckpt["fast_style"]
    state = {k[len(_NET_PREFIX):]: v for k, v in ckpt["state_dict"].items() if k.startswith(_NET_PREFIX)}
    # torch.compile wraps the network; its keys carry an extra prefix.
    state = {k.replace("_orig_mod.", "", 1) if k.startswith("_orig_mod.") else k: v for k, v in state.items()}
    net = build_model(meta["model"]["arch"], **meta["model"]["kwargs"])
    net.load_state_dict(state, strict=True)
    info = {
        "model": meta["model"],
        "style_name": meta.get("style_name", ""),
        "loss": meta.get("loss", {}),
        "global_step": int(ckpt.get("global_step", 0)),
        "epoch": int(ckpt.get("epoch", 0)),
    }
    return net.eval(), info


def export_safetensors(ckpt_path: str | os.PathLike[str], out_path: str | os.PathLike[str]) -> Path:
    """Write the network of ``ckpt_path`` as a ``.safetensors`` file, atomically."""
    net, info = load_training_checkpoint(ckpt_path)
    tensors = {k: v.detach().contiguous().cpu() for k, v in net.state_dict().items()}
    bad = [k for k, v in tensors.items() if v.is_floating_point() and not torch.isfinite(v).all()]
    if bad:
        raise FastStyleError(f"{ckpt_path} has non-finite weights ({bad[0]} ...); refusing to export")
    metadata = {
        "format": "fast_style",
        "format_version": FORMAT_VERSION,
        "arch": info["model"]["arch"],
        "model_kwargs": json.dumps(info["model"]["kwargs"]),
        "style_name": str(info["style_name"]),
        "training": json.dumps(
            {"global_step": info["global_step"], "epoch": info["epoch"], "loss": info["loss"]}
        ),
    }
    with atomic_path(out_path) as tmp:
        save_file(tensors, str(tmp), metadata=metadata)
    return Path(out_path)
