"""Where a whole image runs: eager PyTorch or onnxruntime, each behind one ``run()``."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

import torch

from fast_style.errors import FastStyleError
from fast_style.inference import onnx_runtime
from fast_style.models import TransformNetwork
from fast_style.models.layers import pad_to_multiple

__all__ = ["BACKENDS", "Backend", "OnnxRuntimeBackend", "TorchBackend", "resolve_backend"]

BACKENDS = ("auto", "torch", "onnxruntime")


class Backend(Protocol):
    """Runs ``(B, 3, H, W)`` images in [0, 1] of any size through a transform network."""

    name: str

    def run(self, images: torch.Tensor, style: torch.Tensor | None = None) -> torch.Tensor:
        """Stylize ``images``; ``style`` ``(1, S)``: a multi-style network's style weights for the batch."""
        ...


class TorchBackend:
    """The network in eager PyTorch, on the device it lives on."""

    name = "torch"

    def __init__(self, net: TransformNetwork) -> None:
        self.net = net

    def run(self, images: torch.Tensor, style: torch.Tensor | None = None) -> torch.Tensor:
        """Stylize ``images`` of any size (``style``: see ``Backend.run``)."""
        return self.net(images, style=style)


class OnnxRuntimeBackend:
    """An onnxruntime session: read from an ``.onnx`` file, or built from a network on first use."""

    name = "onnxruntime"

    def __init__(
        self,
        session: Any = None,
        *,
        net: TransformNetwork | None = None,
        multiple: int = 4,
        device: torch.device,
        release_memory: bool = False,
    ) -> None:
        if session is None and net is None:
            raise ValueError("OnnxRuntimeBackend needs a session or a network")
        self._session = session
        self.release_memory = release_memory  # hand the session's scratch memory back after each run
        self.net = net
        self.multiple = net.multiple if net is not None else multiple
        self.device = device

    @classmethod
    def from_file(
        cls, path: Path, multiple: int, device: torch.device, release_memory: bool = False
    ) -> OnnxRuntimeBackend:
        """A backend running the exported ``.onnx`` graph at ``path``."""
        return cls(
            onnx_runtime.build_session(path, device.type, name=path.name),
            multiple=multiple,
            device=device,
            release_memory=release_memory,
        )

    def run(self, images: torch.Tensor, style: torch.Tensor | None = None) -> torch.Tensor:
        """Stylize ``images`` of any size: the graph takes multiples of ``multiple``, so pad and crop.

        A multi-style graph takes ``style`` as its second input (``Backend.run``).
        """
        if self._session is None:
            assert self.net is not None
            self._session = onnx_runtime.session_for(self.net, self.device.type)
            self.net.to(self.device)  # building a graph moves the network to the CPU
        h, w = images.shape[-2:]
        padded = pad_to_multiple(images, self.multiple)
        return onnx_runtime.run_session(self._session, padded, shrink_arena=self.release_memory, style=style)[
            ..., :h, :w
        ]


def resolve_backend(backend: str, device: torch.device) -> str:
    """``auto`` -> onnxruntime on CPU when installed, else torch; an error for a missing runtime."""
    if backend not in BACKENDS:
        raise FastStyleError(f"unknown backend {backend!r}; use one of {', '.join(BACKENDS)}")
    if backend == "auto":
        return "onnxruntime" if device.type == "cpu" and onnx_runtime.available() else "torch"
    if backend == "onnxruntime" and not onnx_runtime.available():
        raise FastStyleError(
            "the onnxruntime backend needs onnx and onnxruntime: pip install onnx onnxruntime"
        )
    return backend
