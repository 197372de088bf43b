"""Name -> class map, so an inference file can rebuild its network from metadata alone."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch

from fast_style.models.base import TransformNetwork
from fast_style.models.fast import FastTransformerNet
from fast_style.models.transformer import TransformerNet

__all__ = ["MAX_CHANNELS", "MAX_RESIDUAL", "MODELS", "build_model", "check_model_spec", "model_config"]

MODELS: dict[str, type[TransformNetwork]] = {
    TransformerNet.arch: TransformerNet,
    FastTransformerNet.arch: FastTransformerNet,
}


def build_model(arch: str, **kwargs: Any) -> TransformNetwork:
    """Build a transform network by its registered architecture name."""
    try:
        cls = MODELS[arch]
    except KeyError:
        raise ValueError(f"unknown architecture {arch!r}; known: {', '.join(sorted(MODELS))}") from None
    return cls(**kwargs)


def model_config(net: torch.nn.Module) -> dict[str, Any]:
    """``{"arch": name, "kwargs": constructor arguments}`` for a registered network."""
    net = getattr(net, "_orig_mod", net)  # torch.compile wrapper
    if not isinstance(net, TransformNetwork) or not isinstance(net, MODELS.get(net.arch, ())):
        raise ValueError(f"{type(net).__name__} is not a registered transform network")
    return {"arch": net.arch, "kwargs": net.config()}


# Far above any network worth stylizing with, far below one that cannot be allocated.
MAX_CHANNELS = 1024
MAX_RESIDUAL = 64
MAX_STYLES = 256


def _check_kwargs(arch: str, kwargs: Mapping[str, Any]) -> None:
    unknown = sorted(set(kwargs) - {"channels", "num_residual", "skip", "num_styles"})
    if unknown:
        raise ValueError(f"unknown {arch} setting(s) {unknown}")
    channels = kwargs.get("channels", [1, 1, 1])
    if (
        not isinstance(channels, Sequence)
        or len(channels) != 3
        or not all(
            isinstance(c, int) and not isinstance(c, bool) and 1 <= c <= MAX_CHANNELS for c in channels
        )
    ):
        raise ValueError(f"channels must be three integers from 1 to {MAX_CHANNELS}, got {channels!r}")
    blocks = kwargs.get("num_residual", 0)
    if not isinstance(blocks, int) or isinstance(blocks, bool) or not 0 <= blocks <= MAX_RESIDUAL:
        raise ValueError(f"num_residual must be an integer from 0 to {MAX_RESIDUAL}, got {blocks!r}")
    styles = kwargs.get("num_styles", 1)
    if not isinstance(styles, int) or isinstance(styles, bool) or not 1 <= styles <= MAX_STYLES:
        raise ValueError(f"num_styles must be an integer from 1 to {MAX_STYLES}, got {styles!r}")
    if not isinstance(kwargs.get("skip", False), bool):
        raise ValueError(f"skip must be true or false, got {kwargs['skip']!r}")


def check_model_spec(arch: str, kwargs: Mapping[str, Any], shapes: Mapping[str, Sequence[int]]) -> None:
    """Check recorded constructor arguments against the weights' names and shapes before building anything.

    The arguments must be in sane bounds, and the network they describe (built on the meta device,
    so no memory is allocated) must have exactly the tensors in ``shapes``. Raises ``ValueError`` for
    invalid arguments and ``RuntimeError``, as ``load_state_dict`` does, for tensors that do not fit.
    """
    if arch not in MODELS:
        raise ValueError(f"unknown architecture {arch!r}; known: {', '.join(sorted(MODELS))}")
    if not isinstance(kwargs, Mapping):
        raise ValueError(f"model settings must be a mapping, got {type(kwargs).__name__}")
    _check_kwargs(arch, kwargs)
    with torch.device("meta"):
        expected = {k: tuple(v.shape) for k, v in build_model(arch, **kwargs).state_dict().items()}
    missing = [k for k in expected if k not in shapes]
    extra = [k for k in shapes if k not in expected]
    if missing or extra:
        raise RuntimeError(
            f"its {len(shapes)} tensors do not match the {len(expected)} of the recorded {arch} network "
            f"(missing {missing[:3]}, unexpected {extra[:3]})"
        )
    for key, shape in expected.items():
        if tuple(shapes[key]) != shape:
            raise RuntimeError(
                f"tensor {key} has shape {tuple(shapes[key])}, the recorded network needs {shape}"
            )
