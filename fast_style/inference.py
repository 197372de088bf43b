"""Load an exported inference file and stylize images; imports nothing from training or VGG."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from safetensors import safe_open

from fast_style.errors import FastStyleError
from fast_style.images import image_to_tensor, tensor_to_image
from fast_style.models import build_model

__all__ = ["Stylizer", "read_metadata"]


def read_metadata(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The header metadata of a fast_style ``.safetensors`` file, with JSON fields decoded."""
    path = Path(path)
    if not path.is_file():
        raise FastStyleError(f"model file not found: {path}")
    if path.suffix.lower() in (".pth", ".pt", ".ckpt", ".pkl", ".bin"):
        raise FastStyleError(
            f"{path.name} is a pickle file and is never loaded for inference; "
            f"convert a training checkpoint with: fast-style export {path} -o model.safetensors"
        )
    try:
        with safe_open(str(path), framework="pt") as fh:
            meta = dict(fh.metadata() or {})
    except Exception as exc:
        raise FastStyleError(f"cannot read model file {path}: {str(exc).splitlines()[0]}") from None
    if meta.get("format") != "fast_style":
        raise FastStyleError(f"{path} is not a fast_style model file (no fast_style metadata)")
    try:
        meta["model_kwargs"] = json.loads(meta["model_kwargs"])
        meta["training"] = json.loads(meta.get("training", "{}"))
    except (KeyError, json.JSONDecodeError) as exc:
        raise FastStyleError(f"{path} has corrupt metadata ({exc})") from None
    return meta


class Stylizer:
    """A transform network ready to stylize: ``Stylizer.from_file(path).stylize(pil_image)``."""

    def __init__(self, net: torch.nn.Module, metadata: dict[str, Any] | None = None, device: str = "cpu") -> None:
        self.device = torch.device(device)
        self.net = net.eval().requires_grad_(False).to(self.device)
        self.metadata = metadata or {}

    @classmethod
    def from_file(cls, path: str | os.PathLike[str], device: str = "cpu") -> Stylizer:
        """Rebuild the network described by an exported ``.safetensors`` file and load its weights."""
        from safetensors.torch import load_file

        meta = read_metadata(path)
        try:
            net = build_model(meta["arch"], **meta["model_kwargs"])
        except (KeyError, TypeError, ValueError) as exc:
            raise FastStyleError(f"{path} describes an unknown or invalid architecture ({exc})") from None
        try:
            state = load_file(str(path))
            net.load_state_dict(state, strict=True)
        except Exception as exc:
            raise FastStyleError(f"{path} does not match its architecture: {str(exc).splitlines()[0]}") from None
        if any(v.is_floating_point() and not torch.isfinite(v).all() for v in state.values()):
            raise FastStyleError(f"{path} contains non-finite weights")
        return cls(net, meta, device)

    @torch.inference_mode()
    def stylize_tensor(self, images: torch.Tensor) -> torch.Tensor:
        """``(B, 3, H, W)`` in [0, 1] -> stylized ``(B, 3, H, W)`` in [0, 1]."""
        return self.net(images.to(self.device)).clamp_(0, 1)

    def stylize(self, image: Image.Image) -> Image.Image:
        """Stylize one RGB PIL image."""
        return tensor_to_image(self.stylize_tensor(image_to_tensor(image)))
