"""Frozen VGG features, Gram matrices and the perceptual loss."""

from __future__ import annotations

import os
from collections.abc import Sequence

from fast_style.losses.perceptual import (
    AUTO,
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

__all__ = [
    "AUTO",
    "NETWORKS",
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
    network: str = "vgg16",
    weights: str | os.PathLike[str] | None = "imagenet",
    content_layers: Sequence[str] = ("relu2_2",),
    style_layers: Sequence[str] = ("relu1_2", "relu2_2", "relu3_3", "relu4_3"),
    style_layer_weights: LayerWeights = AUTO,
    content_weight: float = 1.0,
    style_weight: float = 1.0,
    tv_weight: float = 0.0,
    content_layer_weights: LayerWeights = AUTO,
) -> PerceptualLoss:
    """A ``PerceptualLoss`` over a frozen torchvision VGG; the ``_target_`` of the ``loss`` configs."""
    encoder = VGGFeatures(list(content_layers) + list(style_layers), network=network, weights=weights)
    return PerceptualLoss(
        encoder,
        content_layers=content_layers,
        style_layers=style_layers,
        style_layer_weights=style_layer_weights,
        content_weight=content_weight,
        style_weight=style_weight,
        tv_weight=tv_weight,
        content_layer_weights=content_layer_weights,
    )
