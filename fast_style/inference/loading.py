"""Inference files: tell them from pickles, read their metadata, rebuild their network.

Pickles (``.pth``, ``.ckpt``, ...) are refused unread, since loading one could run code.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from fast_style.checkpoints import check_finite_weights
from fast_style.errors import FastStyleError, one_line
from fast_style.inference import onnx_runtime
from fast_style.model_file import decode, looks_like_safetensors, looks_like_torch_file
from fast_style.models import TransformNetwork, build_model, check_model_spec

__all__ = ["PICKLE_SUFFIXES", "build_network", "read_metadata"]

PICKLE_SUFFIXES = (".pth", ".pt", ".ckpt", ".pkl", ".pickle", ".bin")


def _pickle_message(path: Path) -> str:
    target = path.with_suffix(".safetensors")
    if target.name == path.name:  # a pickle named .safetensors: do not suggest writing onto it
        target = path.with_name(f"{path.stem}.exported.safetensors")
    return (
        f"{path.name} is a pickle file, which is never loaded for inference (it could run code); "
        f"export it first: fast-style export {path} -o {target}"
    )


def _check_model_path(path: Path) -> bytes:
    if not path.exists():
        raise FastStyleError(f"model file not found: {path}")
    if path.is_dir():
        raise FastStyleError(f"expected a model file, got a folder: {path}")
    if path.suffix.lower() in PICKLE_SUFFIXES:
        raise FastStyleError(_pickle_message(path))
    with path.open("rb") as fh:
        head = fh.read(16)
    if not head:
        raise FastStyleError(f"model file is empty: {path}")
    return head


def read_metadata(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The record (``fast_style.model_file``) in a fast_style ``.safetensors`` or ``.onnx`` file's header."""
    path = Path(path)
    head = _check_model_path(path)
    if looks_like_torch_file(head) and not looks_like_safetensors(head):
        raise FastStyleError(_pickle_message(path))
    if path.suffix.lower() == ".onnx":
        session = onnx_runtime.build_session(path, "cpu", name=path.name)
        return decode(session.get_modelmeta().custom_metadata_map, path)
    if not looks_like_safetensors(head):
        raise FastStyleError(f"{path} is not a .safetensors model file (corrupt or another format)")
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as fh:
            raw = dict(fh.metadata() or {})
    except Exception as exc:
        raise FastStyleError(f"cannot read model file {path}: {one_line(exc)}") from None
    return decode(raw, path)


def _check_tensors_match(path: Path, meta: dict[str, Any]) -> None:
    """Refuse a file whose metadata describes another network than its tensors, before building it."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as fh:
            shapes = {key: fh.get_slice(key).get_shape() for key in fh.keys()}  # noqa: SIM118 (safe_open is not a dict)
    except Exception as exc:
        raise FastStyleError(f"cannot read model file {path}: {one_line(exc)}") from None
    try:
        check_model_spec(meta["arch"], meta["model_kwargs"], shapes)
    except ValueError as exc:
        raise FastStyleError(f"{path} describes an unknown or invalid architecture ({exc})") from None
    except RuntimeError as exc:
        raise FastStyleError(f"{path} does not match its architecture {meta['arch']!r}: {exc}") from None


def build_network(path: str | os.PathLike[str], meta: dict[str, Any]) -> TransformNetwork:
    """The network of a ``.safetensors`` inference file whose metadata ``read_metadata`` returned."""
    from safetensors.torch import load_file

    path = Path(path)
    _check_tensors_match(path, meta)
    try:
        net = build_model(meta["arch"], **meta["model_kwargs"])
    except (KeyError, TypeError, ValueError) as exc:
        raise FastStyleError(f"{path} describes an unknown or invalid architecture ({exc})") from None
    try:
        state = load_file(str(path))
    except Exception as exc:
        raise FastStyleError(f"cannot read model file {path}: {one_line(exc)}") from None
    try:
        net.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        first = " ".join(str(exc).split())[:300]
        raise FastStyleError(f"{path} does not match its architecture {meta['arch']!r}: {first}") from None
    check_finite_weights(state, str(path), "it cannot be used")
    return net
