"""Frozen VGG features, Gram matrices and the perceptual loss."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from fast_style.losses.perceptual import (
    AUTO,
    CONTENT_LAYERS,
    STYLE_LAYERS,
    LayerWeights,
    PerceptualLoss,
    energy,
    gram_matrix,
    total_variation,
)
from fast_style.losses.vgg import (
    NETWORKS,
    VGGFeatures,
    layer_index_map,
    load_vgg_features,
    weights_file_identity,
)
from fast_style.schema import LossConfig

__all__ = [
    "AUTO",
    "CONTENT_LAYERS",
    "NETWORKS",
    "STYLE_LAYERS",
    "LayerWeights",
    "PerceptualLoss",
    "VGGFeatures",
    "build_perceptual_loss",
    "energy",
    "gram_matrix",
    "layer_index_map",
    "load_vgg_features",
    "total_variation",
    "weights_file_identity",
]


def build_perceptual_loss(
    network: str = LossConfig.network,
    weights: str | os.PathLike[str] | None = LossConfig.weights,
    content_layers: Sequence[str] = CONTENT_LAYERS,
    style_layers: Sequence[str] = STYLE_LAYERS,
    **weighting: Any,
) -> PerceptualLoss:
    """A ``PerceptualLoss`` over a frozen torchvision VGG; the ``_target_`` of the ``loss`` configs.

    ``weighting``: the term and layer weights of ``PerceptualLoss`` (``style_weight``,
    ``style_layer_weights``, ...); every default is ``LossConfig``'s.
    """
    encoder = VGGFeatures([*content_layers, *style_layers], network=network, weights=weights)
    return PerceptualLoss(encoder, content_layers, style_layers, **weighting)
