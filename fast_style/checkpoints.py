"""Read PyTorch files without running pickled code, with one-line messages; find the checkpoint to resume."""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fast_style.errors import FastStyleError, one_line
from fast_style.model_file import looks_like_safetensors, looks_like_torch_file

if TYPE_CHECKING:
    import torch

__all__ = [
    "check_finite_weights",
    "describe_content",
    "newest_valid_checkpoint",
    "read_torch_file",
    "read_training_checkpoint",
]

log = logging.getLogger("fast_style")

_MAGIC = {
    b"\xff\xd8\xff": "a JPEG image",
    b"\x89PNG": "a PNG image",
    b"GIF8": "a GIF image",
    b"RIFF": "a RIFF file (WebP image or audio)",
    b"%PDF": "a PDF document",
    b"\x1f\x8b": "a gzip archive",
    b"ONNX": "an ONNX model",
}


def describe_content(head: bytes) -> str | None:
    """What the first bytes of a file say it is, when they are not a ``torch.save`` file; ``None`` if they are."""
    if looks_like_torch_file(head):
        return None
    for magic, name in _MAGIC.items():
        if head.startswith(magic):
            return name
    if looks_like_safetensors(head):
        return "a .safetensors file"
    return "unrecognised bytes"


def read_torch_file(path: str | os.PathLike[str], what: str = "checkpoint") -> Any:
    """``torch.load(path, weights_only=True)`` on the CPU, every failure as one ``FastStyleError`` line.

    Files that hold pickled objects other than tensors and plain containers are refused before any of
    their code runs.
    """
    import pickle

    import torch

    path = Path(path).expanduser()
    if not path.exists():
        raise FastStyleError(f"{what} not found: {path}")
    if not path.is_file():
        raise FastStyleError(f"{what} {path} is not a file")
    with path.open("rb") as fh:
        head = fh.read(16)
    if not head:
        raise FastStyleError(f"{what} {path} is empty (0 bytes); was its writing interrupted?")
    kind = describe_content(head)
    if kind is not None:
        raise FastStyleError(f"{what} {path} is not a PyTorch file: it looks like {kind}")
    try:
        with path.open("rb") as fh:  # a file object: torch.load picks no loader by the file's extension
            return torch.load(fh, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        found = re.search(r"GLOBAL ([\w.]+)", str(exc))
        detail = f" ({found.group(1)})" if found else ""
        raise FastStyleError(
            f"{what} {path} holds pickled objects other than tensors{detail}; it is refused unread, "
            "since loading it could run code"
        ) from None
    except Exception as exc:  # truncated zip, bad records, ...
        raise FastStyleError(f"{what} {path} is truncated or corrupt ({one_line(exc, 160)})") from None


def check_finite_weights(tensors: Mapping[str, torch.Tensor], source: str, consequence: str) -> None:
    """Refuse weights that hold NaN or infinity, naming the first such tensor and ``consequence``."""
    import torch

    bad = [k for k, v in tensors.items() if v.is_floating_point() and not torch.isfinite(v).all()]
    if bad:
        raise FastStyleError(f"{source} contains non-finite weights ({bad[0]}); {consequence}")


def read_training_checkpoint(path: str | os.PathLike[str]) -> dict[str, Any]:
    """A ``fast-style train`` checkpoint as a dict, checked to hold the network and fast_style metadata."""
    ckpt = read_torch_file(path, "checkpoint")
    if not isinstance(ckpt, dict) or "fast_style" not in ckpt or "state_dict" not in ckpt:
        raise FastStyleError(f"{path} is not a fast-style training checkpoint")
    return ckpt


def newest_valid_checkpoint(folder: Path) -> tuple[Path, dict[str, Any]] | None:
    """The most recently written readable checkpoint in ``folder``, read, or ``None`` if there is none.

    A run killed while saving may leave a step checkpoint without ``last.ckpt``, or an unreadable
    file; unreadable files are skipped with a warning.
    """
    files = (
        sorted(folder.glob("*.ckpt"), key=lambda p: p.stat().st_mtime, reverse=True)
        if folder.is_dir()
        else []
    )
    for path in files:
        try:
            return path, read_training_checkpoint(path)
        except FastStyleError as exc:
            log.warning("skipping %s", exc)
    return None
