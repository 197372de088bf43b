"""Load an exported inference file and stylize images of any size; imports nothing from training or VGG.

``Stylizer.from_file(path).stylize(pil_image)`` is the entry point. ``loading`` reads and checks
inference files, ``backends`` runs whole images (PyTorch or ``onnx_runtime``), ``tiling`` runs large
images in tiles that share one set of instance-norm statistics.
"""

from fast_style.devices import resolve_device
from fast_style.inference.backends import BACKENDS, resolve_backend
from fast_style.inference.loading import PICKLE_SUFFIXES, build_network, read_metadata
from fast_style.inference.stylizer import AUTO_TILE_PIXELS, Stylizer, finish_stylized
from fast_style.inference.tiling import DEFAULT_TILE

__all__ = [
    "AUTO_TILE_PIXELS",
    "BACKENDS",
    "DEFAULT_TILE",
    "PICKLE_SUFFIXES",
    "Stylizer",
    "build_network",
    "finish_stylized",
    "read_metadata",
    "resolve_backend",
    "resolve_device",
]
