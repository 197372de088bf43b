"""Adding styles to a trained network: ``fast-style train init_from=FILE style_image=[new.jpg]``.

The network of ``FILE`` (single- or multi-style) is rebuilt with a scale and shift per style in every
instance norm (Dumoulin et al. 2017); its convolutions are kept, and by default frozen, so a new
style costs only its own scales and shifts, which start at the mean of the file's.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from fast_style.errors import FastStyleError
from fast_style.models import TransformNetwork, build_model

__all__ = ["TRAINABLE", "StartingPoint", "extend_network"]

# What a run that adds styles trains: the new styles' scales and shifts only, or the decoder too.
TRAINABLE = ("styles", "decoder")


@dataclass
class StartingPoint:
    """A network ready to learn new styles, and what it knows already."""

    net: TransformNetwork
    names: list[str]
    """Every style of ``net``, in order (the file's kept styles first)."""
    slots: list[int]
    """The indices of the new styles in ``names``."""
    loss: dict[str, Any]
    """The loss the file's network was trained with (``training.loss`` of its record)."""


def extend_network(
    path: str | os.PathLike[str], new_names: list[str], *, keep_styles: bool = True, train: str = "styles"
) -> StartingPoint:
    """The network of the inference file ``path`` with ``new_names`` added (or alone without ``keep_styles``).

    ``train`` = ``styles`` leaves only the instance norms trainable; ``decoder`` also the layers after
    the residual blocks, and needs ``keep_styles=False`` (the kept styles would change). Rows of kept
    styles are held still by the training module.
    """
    from fast_style.inference import build_network, read_metadata

    if train not in TRAINABLE:
        raise FastStyleError(f"init_train must be one of {', '.join(TRAINABLE)}, got {train!r}")
    if train == "decoder" and keep_styles:
        # The decoder is shared by every style: retraining it for the new ones repaints the old ones
        # (Starry Night of the shipped four-style file lost about three quarters of its worth in 50 steps).
        raise FastStyleError(
            "init_train=decoder retrains layers every style shares, so the file's styles would no longer "
            "paint as they did; add init_keep_styles=false to write the new styles alone"
        )
    meta = read_metadata(path)
    if Path(path).suffix.lower() == ".onnx":
        raise FastStyleError("init_from needs a .safetensors model (an ONNX file holds no trainable weights)")
    base = build_network(path, meta)
    old = [str(n) for n in meta.get("styles") or [meta.get("style_name") or Path(path).stem]]
    clash = sorted(set(old) & set(new_names)) if keep_styles else []
    if clash:
        raise FastStyleError(
            f"{Path(path).name} already paints {', '.join(clash)}; rename the new style image or pass "
            "init_keep_styles=false"
        )
    names = [*old, *new_names] if keep_styles else list(new_names)
    kwargs = {k: v for k, v in meta["model_kwargs"].items() if k != "num_styles"}
    if len(names) > 1:
        kwargs["num_styles"] = len(names)
    net = build_model(meta["arch"], **kwargs)
    target = net.state_dict()
    with torch.no_grad():
        for key, value in base.state_dict().items():
            if value.shape == target[key].shape and not _is_norm_parameter(net, key):
                target[key].copy_(value)
                continue
            rows = value if value.dim() == 2 else value[None]  # a norm's scales or shifts, per style
            start = rows.mean(0)
            if target[key].dim() == 1:
                target[key].copy_(start)
            else:
                target[key][:] = start
                if keep_styles:
                    target[key][: len(old)] = rows
    net.load_state_dict(target)
    for name, param in net.named_parameters():
        decoder = not name.startswith(("encoder.", "residuals."))
        param.requires_grad_(_is_norm_parameter(net, name) or (train == "decoder" and decoder))
    slots = list(range(len(names) - len(new_names), len(names)))
    return StartingPoint(net, names, slots, dict(meta.get("training", {}).get("loss") or {}))


def _is_norm_parameter(net: TransformNetwork, key: str) -> bool:
    norms = {id(n) for n in net.instance_norms()}
    owner, _, _ = key.rpartition(".")
    return id(net.get_submodule(owner)) in norms if owner else False
