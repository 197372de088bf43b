"""Where an image runs: eager PyTorch or onnxruntime, whole (``run``) or in tiles (``run_tiled``)."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from fast_style.errors import FastStyleError
from fast_style.inference import onnx_runtime, tiling
from fast_style.models import TransformNetwork
from fast_style.models.layers import pad_to_multiple

__all__ = ["BACKENDS", "Backend", "OnnxRuntimeBackend", "TorchBackend", "require_tiles", "resolve_backend"]

BACKENDS = ("auto", "torch", "onnxruntime")


class Backend(Protocol):
    """Runs images in [0, 1] of any size through a transform network.

    ``style`` is a multi-style network's ``(1, S)`` style weights for the batch, ``None`` otherwise.
    ``tiles`` says whether ``run_tiled`` works; ``require_tiles`` turns a ``False`` into the error.
    """

    name: str

    @property
    def tiles(self) -> bool:
        """Whether ``run_tiled`` works."""
        ...

    def run(self, images: torch.Tensor, style: torch.Tensor | None = None) -> torch.Tensor:
        """Stylize ``(B, 3, H, W)`` ``images`` in one pass."""
        ...

    def run_tiled(
        self,
        pixels: np.ndarray,
        *,
        tile: int,
        stats_pixels: int,
        finish: tiling.Finish,
        style: torch.Tensor | None = None,
    ) -> np.ndarray:
        """Stylize ``(H, W, 3)`` ``pixels`` in tiles of about ``tile`` pixels that share one set of
        instance-norm statistics, taken from a copy of at most ``stats_pixels`` pixels (uint8 out).
        """
        ...


class _Tiled(Protocol):
    @property
    def tiles(self) -> bool: ...


def require_tiles(backend: _Tiled) -> None:
    """A one-line ``FastStyleError`` when ``backend`` cannot run tiles."""
    if not backend.tiles:
        raise FastStyleError("tiling (--tile) needs a .safetensors model; ONNX models run whole images")


class _TorchTiles:
    """Tiles run in PyTorch on ``net``: each tile's instance norms take the statistics of the whole
    image, which only the network (not an exported graph) can be handed.
    """

    name: str
    net: TransformNetwork | None

    @property
    def tiles(self) -> bool:
        return self.net is not None

    def run_tiled(
        self,
        pixels: np.ndarray,
        *,
        tile: int,
        stats_pixels: int,
        finish: tiling.Finish,
        style: torch.Tensor | None = None,
    ) -> np.ndarray:
        """See ``Backend.run_tiled``."""
        require_tiles(self)
        assert self.net is not None
        with self.net.styled(style) if style is not None else contextlib.nullcontext():
            return tiling.stylize_tiled(self.net, pixels, tile=tile, stats_pixels=stats_pixels, finish=finish)


class TorchBackend(_TorchTiles):
    """The network in eager PyTorch, on the device it lives on."""

    name = "torch"

    def __init__(self, net: TransformNetwork) -> None:
        self.net = net

    def run(self, images: torch.Tensor, style: torch.Tensor | None = None) -> torch.Tensor:
        """Stylize ``images`` of any size (see ``Backend.run``)."""
        assert self.net is not None
        return self.net(images, style=style)


class OnnxRuntimeBackend(_TorchTiles):
    """An onnxruntime session: read from an ``.onnx`` file, or built from a network on first use.

    Tiles run in PyTorch on that network; a session read from a file has none and runs whole images.
    """

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
