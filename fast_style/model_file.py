"""What a model records about itself: one versioned schema for training checkpoints and inference files.

A *record* is a plain dict::

    {"format": "fast_style", "format_version": "2", "arch": "johnson", "model_kwargs": {...},
     "multiple": 4, "style_name": "starry_night", "styles": [...],  # styles: multi-style only
     "training": {"global_step": 2000, "epoch": 62, "loss": {...}, "training_time": {...}},
     "exporter": "fast_style 0.x"}

A training checkpoint holds it under ``"fast_style"``; an inference file holds it as string metadata
(``encode``: the dicts as JSON), in the ``.safetensors`` header or the ONNX model's metadata.
Version 1 (inference files before this module) has the same keys; its checkpoints said
``{"model": {"arch", "kwargs"}, "style_name", "loss", "training_time"}``. Both still read.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from fast_style.errors import FastStyleError

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "decode",
    "encode",
    "looks_like_safetensors",
    "looks_like_torch_file",
    "new_record",
    "record_from_checkpoint",
]

FORMAT = "fast_style"
FORMAT_VERSION = "2"
_READABLE_VERSIONS = ("1", "2")


def looks_like_torch_file(head: bytes) -> bool:
    """Whether a file's first bytes are ``torch.save``'s zip container or a plain pickle (PROTO opcode)."""
    return head.startswith(b"PK\x03\x04") or (len(head) >= 2 and head[0] == 0x80 and head[1] <= 5)


def looks_like_safetensors(head: bytes) -> bool:
    """Whether a file's first bytes are a ``.safetensors`` header: an 8-byte length, then a JSON object."""
    return len(head) > 8 and 2 <= int.from_bytes(head[:8], "little") < 100_000_000 and head[8:9] == b"{"


def new_record(
    arch: str,
    model_kwargs: Mapping[str, Any],
    *,
    multiple: int,
    style_name: str = "",
    styles: Sequence[str] | None = None,
    loss: Mapping[str, Any] | None = None,
    global_step: int = 0,
    epoch: int = 0,
    training_time: Mapping[str, float] | None = None,
) -> dict[str, Any]:
    """A record of the current version; ``styles``: the style names of a multi-style network, in order."""
    record = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "arch": str(arch),
        "model_kwargs": dict(model_kwargs),
        "multiple": int(multiple),
        "style_name": str(style_name),
        "training": {
            "global_step": int(global_step),
            "epoch": int(epoch),
            "loss": dict(loss or {}),
            "training_time": dict(training_time or {}),
        },
    }
    if styles:
        record["styles"] = [str(name) for name in styles]
    return record


def record_from_checkpoint(ckpt: Mapping[str, Any], path: str | Path = "checkpoint") -> dict[str, Any]:
    """The record of a ``fast-style train`` checkpoint (any version), with its step and epoch."""
    meta = ckpt.get("fast_style")
    if not isinstance(meta, Mapping):
        raise FastStyleError(f"{path} is not a fast-style training checkpoint")
    step, epoch = int(ckpt.get("global_step", 0)), int(ckpt.get("epoch", 0))
    if "arch" in meta:
        record = {**meta, "training": dict(meta.get("training") or {})}
    else:  # version 1: {"model": {"arch", "kwargs"}, "style_name", "loss", "training_time"}
        model = meta.get("model") or {}
        record = new_record(
            model.get("arch", ""),
            model.get("kwargs") or {},
            multiple=4,
            style_name=meta.get("style_name", ""),
            loss=meta.get("loss"),
            training_time=meta.get("training_time"),
        )
    record["training"].update(global_step=step, epoch=epoch)
    _check(record, path)
    return record


def encode(record: Mapping[str, Any], exporter: str) -> dict[str, str]:
    """The record as string metadata for an inference file, written by ``exporter``."""
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "arch": str(record["arch"]),
        "model_kwargs": json.dumps(record["model_kwargs"]),
        "multiple": str(record["multiple"]),
        "style_name": str(record.get("style_name", "")),
        "training": json.dumps(record.get("training") or {}),
        "exporter": exporter,
    } | ({"styles": json.dumps(list(record["styles"]))} if record.get("styles") else {})


def decode(raw: Mapping[str, str], path: str | Path) -> dict[str, Any]:
    """The record of an inference file from its string metadata; a clear error for anything else."""
    if raw.get("format") != FORMAT:
        raise FastStyleError(f"{path} is not a fast_style model file (no fast_style metadata)")
    version = str(raw.get("format_version", "1"))
    if version not in _READABLE_VERSIONS:
        raise FastStyleError(
            f"{path} is a fast_style model file of format version {version}, newer than this fast-style "
            f"reads ({', '.join(_READABLE_VERSIONS)}); upgrade fast-style"
        )
    record: dict[str, Any] = dict(raw)
    try:
        record["model_kwargs"] = json.loads(raw["model_kwargs"])
        record["training"] = json.loads(raw.get("training", "{}"))
        if "styles" in raw:
            record["styles"] = json.loads(raw["styles"])
    except (KeyError, json.JSONDecodeError) as exc:
        raise FastStyleError(f"{path} has corrupt metadata ({exc})") from None
    multiple = str(raw.get("multiple", "4"))
    if not multiple.isdigit() or not 1 <= int(multiple) <= 64:
        raise FastStyleError(f"{path} has corrupt metadata (multiple={multiple!r}, expected 1 to 64)")
    record["multiple"] = int(multiple)
    _check(record, path)
    return record


def _check(record: Mapping[str, Any], path: str | Path) -> None:
    if (
        not isinstance(record.get("model_kwargs"), dict)
        or not isinstance(record.get("arch"), str)
        or not record["arch"]
    ):
        raise FastStyleError(f"{path} has corrupt metadata (no architecture)")
    if not isinstance(record.get("training"), dict):
        raise FastStyleError(f"{path} has corrupt metadata (training is not a mapping)")
    styles = record.get("styles")
    count = record["model_kwargs"].get("num_styles", 1)
    if styles is not None and (
        not isinstance(styles, list)
        or not all(isinstance(n, str) and n for n in styles)
        or len(set(styles)) != len(styles)
    ):
        raise FastStyleError(f"{path} has corrupt metadata (styles must be distinct names)")
    if count != 1 and (styles is None or len(styles) != count):
        raise FastStyleError(f"{path} has corrupt metadata ({count} styles, names {styles})")
