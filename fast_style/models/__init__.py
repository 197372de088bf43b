"""Image transform networks: plain ``nn.Module``s that map [0, 1] images to [0, 1] images."""

from fast_style.models.base import TransformNetwork
from fast_style.models.fast import FastTransformerNet
from fast_style.models.norm import InstanceNorm, NormStatistics
from fast_style.models.registry import MODELS, build_model, check_model_spec, model_config
from fast_style.models.transformer import TransformerNet

__all__ = [
    "MODELS",
    "FastTransformerNet",
    "InstanceNorm",
    "NormStatistics",
    "TransformNetwork",
    "TransformerNet",
    "build_model",
    "check_model_spec",
    "model_config",
]
