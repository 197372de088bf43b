"""Choose the torch device that a command runs on."""

from __future__ import annotations

import torch

from fast_style.errors import FastStyleError

__all__ = ["resolve_device"]


def _mps_available() -> bool:
    return getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """``auto`` picks CUDA, then Apple MPS, then the CPU; anything else must name an available device."""
    if device is None or str(device) in ("", "auto"):
        if torch.cuda.is_available():
            return torch.device("cuda")
        return torch.device("mps" if _mps_available() else "cpu")
    name = str(device)
    try:
        resolved = torch.device(name)
    except RuntimeError:
        raise FastStyleError(f"unknown device {name!r}; use auto, cpu, cuda or mps") from None
    if resolved.type not in ("cpu", "cuda", "mps"):
        raise FastStyleError(f"unsupported device {name!r}; use auto, cpu, cuda or mps")
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise FastStyleError(f"CUDA was requested but is not available here (device {name}); use cpu or auto")
    if resolved.type == "cuda" and (resolved.index or 0) >= torch.cuda.device_count():
        raise FastStyleError(
            f"device {name} asked for, but this machine has {torch.cuda.device_count()} CUDA device(s)"
        )
    if resolved.type == "mps" and not _mps_available():
        raise FastStyleError(f"MPS was requested but is not available here (device {name}); use cpu or auto")
    return resolved
