"""Name -> class map, so an inference file can rebuild its network from metadata alone."""

from __future__ import annotations

from typing import Any

from torch import nn

from fast_style.models.fast import FastTransformerNet
from fast_style.models.transformer import TransformerNet

__all__ = ["MODELS", "build_model", "model_config"]

MODELS: dict[str, type[nn.Module]] = {
    TransformerNet.arch: TransformerNet,
    FastTransformerNet.arch: FastTransformerNet,
}


def build_model(arch: str, **kwargs: Any) -> nn.Module:
    """Build a transform network by its registered architecture name."""
    try:
        cls = MODELS[arch]
    except KeyError:
        raise ValueError(f"unknown architecture {arch!r}; known: {', '.join(sorted(MODELS))}") from None
    return cls(**kwargs)


def model_config(net: nn.Module) -> dict[str, Any]:
    """``{"arch": name, "kwargs": constructor arguments}`` for a registered network."""
    net = getattr(net, "_orig_mod", net)  # torch.compile wrapper
    arch = getattr(net, "arch", None)
    if arch not in MODELS or not isinstance(net, MODELS[arch]):
        raise ValueError(f"{type(net).__name__} is not a registered transform network")
    return {"arch": arch, "kwargs": net.config()}
