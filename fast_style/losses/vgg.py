"""A frozen VGG feature extractor with named ReLU layers and explicit weight sources."""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterable, Mapping
from pathlib import Path

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval
from torchvision import models
from torchvision.models.vgg import cfgs, make_layers

from fast_style.errors import FastStyleError
from fast_style.files import file_sha256

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "NETWORKS",
    "VGGFeatures",
    "fold_batch_norms",
    "layer_index_map",
    "load_vgg_features",
]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# On the CPU, images of at least this many pixels go through the VGG channels-last. oneDNN's
# convolutions gain from it on large images and lose on small ones; the measurements behind this
# threshold are in benchmarks/README.md, "Optimization step vs reference".
CHANNELS_LAST_MIN_PIXELS = 2**17

# name -> (torchvision layer config, batch norm, ImageNet weights enum entry)
NETWORKS: dict[str, tuple[str, bool, models.WeightsEnum]] = {
    "vgg16": ("D", False, models.VGG16_Weights.IMAGENET1K_V1),
    "vgg16_bn": ("D", True, models.VGG16_BN_Weights.IMAGENET1K_V1),
    "vgg19": ("E", False, models.VGG19_Weights.IMAGENET1K_V1),
}


def _build_features(network: str) -> nn.Sequential:
    """torchvision's ``vgg*().features`` stack, randomly initialised, without the classifier."""
    cfg, batch_norm, _ = NETWORKS[network]
    return make_layers(cfgs[cfg], batch_norm=batch_norm)


def _check_network(network: str) -> None:
    if network not in NETWORKS:
        raise FastStyleError(f"unknown loss network {network!r}; choose one of {', '.join(NETWORKS)}")


def _name_layers(features: nn.Sequential) -> dict[str, int]:
    """Name every ReLU of a VGG ``features`` stack ``relu{block}_{conv}``, 1-based like the papers."""
    names: dict[str, int] = {}
    block, conv = 1, 0
    for index, module in enumerate(features):
        if isinstance(module, nn.Conv2d):
            conv += 1
        elif isinstance(module, nn.ReLU):
            names[f"relu{block}_{conv}"] = index
        elif isinstance(module, nn.MaxPool2d):
            block, conv = block + 1, 0
    return names


def layer_index_map(network: str) -> dict[str, int]:
    """``{"relu1_1": 1, "relu1_2": 3, ...}``: layer names to indices in torchvision's ``features``."""
    _check_network(network)
    with torch.device("meta"):
        features = _build_features(network)
    return _name_layers(features)


def _imagenet_state_dict(network: str) -> dict[str, torch.Tensor]:
    """The ``features`` part of torchvision's ImageNet checkpoint, from the torch hub cache or the web."""
    weights = NETWORKS[network][2]
    cached = Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(weights.url)
    try:
        full = weights.get_state_dict(progress=False, check_hash=False)
    except Exception as exc:  # URLError, HTTPError, timeouts: all mean "not here, not reachable"
        raise FastStyleError(
            f"ImageNet weights for {network} are not in the torch hub cache and could not be downloaded "
            f"({type(exc).__name__}). Put {weights.url} at {cached}, or pass loss.weights=<path to a "
            f"state dict of torchvision's {network}().features>"
        ) from None
    return {k[len("features.") :]: v for k, v in full.items() if k.startswith("features.")}


def _file_state_dict(path: Path) -> dict[str, torch.Tensor]:
    from fast_style.checkpoints import read_torch_file

    state = read_torch_file(path, "loss weights file")
    if isinstance(state, Mapping) and "state_dict" in state and isinstance(state["state_dict"], Mapping):
        state = state["state_dict"]
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise FastStyleError(f"loss weights {path} is not a state dict of tensors")
    keys = list(state)
    if keys and all(k.startswith("features.") for k in keys):
        state = {k[len("features.") :]: v for k, v in state.items()}
    return dict(state)


def _load_strict(
    features: nn.Sequential, state: Mapping[str, torch.Tensor], network: str, source: str
) -> None:
    """Load every tensor ``features`` needs; a missing key or a wrong shape is a clear error.

    Keys of deeper layers than ``features`` keeps are allowed (the file may hold the whole stack);
    keys that fit no layer of the full network mean the file is for another network.
    """
    expected = features.state_dict()
    with torch.device("meta"):
        known = set(_build_features(network).state_dict())
    unknown = sorted(set(state) - known, key=str)
    if unknown:
        raise FastStyleError(
            f"{source} does not fit {network}.features: unexpected keys {unknown[:4]}"
            f"{' ...' if len(unknown) > 4 else ''}"
        )
    missing = [k for k in expected if k not in state]
    if missing:
        raise FastStyleError(
            f"{source} does not fit {network}.features: missing keys {missing[:4]}"
            f"{' ...' if len(missing) > 4 else ''} (does it end before the layers this loss needs?)"
        )
    for key, ref in expected.items():
        if tuple(state[key].shape) != tuple(ref.shape):
            raise FastStyleError(
                f"{source} does not fit {network}.features: {key} has shape {tuple(state[key].shape)}, "
                f"expected {tuple(ref.shape)}"
            )
    features.load_state_dict({k: state[k].to(ref.dtype) for k, ref in expected.items()}, strict=True)


def fold_batch_norms(features: nn.Sequential) -> nn.Sequential:
    """Fold every batch norm that follows a convolution into it, in eval mode; the norm becomes Identity.

    An eval-mode batch norm is a per-channel affine map, so the folded convolution computes the same
    function (up to float rounding) in one pass instead of two, forward and backward. Layer
    indices do not change.
    """
    features.eval()
    for index in range(1, len(features)):
        conv, norm = features[index - 1], features[index]
        if isinstance(conv, nn.Conv2d) and isinstance(norm, nn.BatchNorm2d):
            features[index - 1] = fuse_conv_bn_eval(conv, norm)
            features[index] = nn.Identity()
    return features


def load_vgg_features(network: str, weights: str | os.PathLike[str] | None, last_index: int) -> nn.Sequential:
    """``features[: last_index + 1]`` of a torchvision VGG, with weights from ``imagenet``, a file or ``none``."""
    _check_network(network)
    features = _build_features(network)[: last_index + 1]
    source = "none" if weights is None else str(weights)
    if source.lower() == "none":
        warnings.warn(
            "loss.weights=none: the loss network is RANDOMLY INITIALISED. Its features mean nothing; "
            "use this only for tests. Pass loss.weights=imagenet or loss.weights=<path> for real results.",
            stacklevel=2,
        )
    elif source.lower() == "imagenet":
        _load_strict(features, _imagenet_state_dict(network), network, f"ImageNet {network} checkpoint")
    else:
        path = Path(source).expanduser()
        _load_strict(features, _file_state_dict(path), network, str(path))
    return features


def weights_file_identity(weights: str) -> dict[str, str]:
    """``weights_file`` (the name) and ``weights_sha256`` of a weights path; empty for imagenet/none."""
    if weights.lower() in ("imagenet", "none", ""):
        return {}
    path = Path(weights).expanduser()
    try:
        digest = file_sha256(path)
    except OSError:
        return {"weights_file": path.name}
    return {"weights_file": path.name, "weights_sha256": digest}


class VGGFeatures(nn.Module):
    """Frozen VGG that maps [0, 1] RGB images to a dict of named ReLU activations.

    ImageNet normalisation happens inside, the stack stops at the deepest requested layer, and the
    module stays in eval mode with ``requires_grad=False`` whatever its parent does. Batch norms are
    folded into their convolutions (``fold_batch_norms``); large images on the CPU run channels-last
    (``CHANNELS_LAST_MIN_PIXELS``).
    """

    mean: torch.Tensor
    std: torch.Tensor

    def __init__(
        self,
        layers: Iterable[str],
        network: str = "vgg16",
        weights: str | os.PathLike[str] | None = "imagenet",
    ) -> None:
        super().__init__()
        index_map = layer_index_map(network)
        self.layers = list(dict.fromkeys(layers))
        if not self.layers:
            raise FastStyleError("the loss network needs at least one layer")
        bad = [name for name in self.layers if name not in index_map]
        if bad:
            raise FastStyleError(f"unknown {network} layer(s) {bad}; available: {', '.join(index_map)}")
        self.network = network
        self.weights = "none" if weights is None else str(weights)
        self.indices = {name: index_map[name] for name in self.layers}
        self.features = fold_batch_norms(load_vgg_features(network, weights, max(self.indices.values())))
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        for module in self.features:
            if isinstance(module, nn.ReLU):
                # In-place ReLUs would overwrite activations we hand out.
                module.inplace = False
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> VGGFeatures:
        # Batch-norm statistics and dropout must never change: always eval.
        return super().train(False)

    def forward(self, images: torch.Tensor, layers: Iterable[str] | None = None) -> dict[str, torch.Tensor]:
        """Activations for ``layers`` (default: all configured), running only as deep as needed."""
        wanted = self.layers if layers is None else list(layers)
        targets = {self.indices[name]: name for name in wanted}
        last = max(targets)
        x = (images - self.mean) / self.std
        if x.device.type == "cpu" and x.shape[-2] * x.shape[-1] >= CHANNELS_LAST_MIN_PIXELS:
            x = x.contiguous(memory_format=torch.channels_last)
        out: dict[str, torch.Tensor] = {}
        for index, module in enumerate(self.features):
            x = module(x)
            if index in targets:
                out[targets[index]] = x
            if index == last:
                break
        return out
