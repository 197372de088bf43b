"""The typed schema of the config groups that several commands share: each setting's one default and range.

Hydra's ConfigStore holds each dataclass as ``<group>/base``; the YAML files of the group start from it
(``defaults: [base, _self_]``) and only override, so a misspelt key in any YAML or on the command line,
or a value of the wrong type, fails when the config is composed. Ranges a type cannot say live in the
field's ``metadata`` (``min``, ``above``, ``max``, ``nullable``) and are checked by ``check_ranges``
(``fast_style.validation`` before a command starts, the classes that take the values when called from
Python).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "CONTENT_LAYERS",
    "SCHEMAS",
    "STYLE_LAYERS",
    "AdamPixelConfig",
    "DataConfig",
    "LBFGSConfig",
    "LossConfig",
    "check_ranges",
    "range_rules",
    "register_schemas",
]

# The layers of Johnson et al. and pytorch/examples: content at relu2_2, style at four depths.
CONTENT_LAYERS = ("relu2_2",)
STYLE_LAYERS = ("relu1_2", "relu2_2", "relu3_3", "relu4_3")


def _at_least(low: float, **more: Any) -> dict[str, Any]:
    return {"min": low, **more}


@dataclass
class LossConfig:
    """The perceptual loss of training, optimization and compare (``loss`` group, ``PerceptualLoss``).

    Layer weights ``"auto"`` divide each layer's error by its target's energy (README: "Loss weights");
    ``None`` weighs every layer 1 on the raw errors; or one number per layer.
    """

    _target_: str = "fast_style.losses.build_perceptual_loss"
    network: str = "vgg16"  # vgg16 | vgg16_bn | vgg19
    weights: str = "imagenet"  # imagenet | none | a path to a features state dict
    content_layers: list[str] = field(default_factory=lambda: list(CONTENT_LAYERS))
    style_layers: list[str] = field(default_factory=lambda: list(STYLE_LAYERS))
    content_layer_weights: Any = "auto"
    style_layer_weights: Any = "auto"
    content_weight: float = field(default=1.0, metadata=_at_least(0))
    style_weight: float = field(default=10.0, metadata=_at_least(0))
    tv_weight: float = field(default=0.0, metadata=_at_least(0))

    @classmethod
    def recorded_keys(cls) -> tuple[str, ...]:
        """The settings a trained model records of its loss (all but the target and the weights path)."""
        return tuple(f.name for f in dataclasses.fields(cls) if f.name not in ("_target_", "weights"))


@dataclass
class DataConfig:
    """Training photos (``data`` group, ``StyleDataModule``)."""

    _target_: str = "fast_style.data.StyleDataModule"
    root: str = "data/coco/train2014"  # any folder of images; searched recursively
    image_size: int = field(default=256, metadata=_at_least(16))  # side of the square training crops
    # short side photos are scaled to before cropping; None: image_size
    resize_size: int | None = field(default=None, metadata=_at_least(16, nullable=True))
    batch_size: int = field(default=4, metadata=_at_least(1))
    num_workers: int = field(default=2, metadata=_at_least(0))
    # fixed photos whose stylizations are logged to TensorBoard
    num_sample_images: int = field(default=4, metadata=_at_least(1))
    # stop when more than this share of the files is unreadable
    max_bad_fraction: float = field(default=0.01, metadata=_at_least(0, max=1))
    pin_memory: Any = "auto"  # page-locked batches; auto: true on CUDA
    persistent_workers: bool = True


@dataclass
class LBFGSConfig:
    """L-BFGS over the pixels of one image (``pixel_optimizer=lbfgs``), the default of optimize and compare.

    One step is one L-BFGS iteration; the strong-Wolfe line search accepts only a step that lowers the
    loss. Tolerances 0: never stop early, run exactly the requested steps.
    """

    _target_: str = "torch.optim.LBFGS"
    _partial_: bool = True
    lr: float = field(default=1.0, metadata={"above": 0})
    max_iter: int = field(default=1, metadata=_at_least(1))
    history_size: int = field(default=100, metadata=_at_least(1))
    line_search_fn: str | None = "strong_wolfe"  # None: take every step blindly (can diverge)
    tolerance_grad: float = field(default=0.0, metadata=_at_least(0))
    tolerance_change: float = field(default=0.0, metadata=_at_least(0))


@dataclass
class AdamPixelConfig:
    """Adam over the pixels of one image (``pixel_optimizer=adam``).

    The rate is for pixels in [0, 1]; training's 1e-3 for network weights would barely move them.
    """

    _target_: str = "torch.optim.Adam"
    _partial_: bool = True
    lr: float = field(default=0.02, metadata={"above": 0})
    fused: Any = "auto"  # fused Adam kernel; auto: on for CUDA, off elsewhere


# group -> {option name in the group's YAML defaults: schema}
SCHEMAS: dict[str, dict[str, type]] = {
    "loss": {"base": LossConfig},
    "data": {"base": DataConfig},
    "pixel_optimizer": {"base_lbfgs": LBFGSConfig, "base_adam": AdamPixelConfig},
}


def register_schemas() -> None:
    """Store every schema in Hydra's ConfigStore (idempotent); called before any config is composed."""
    from hydra.core.config_store import ConfigStore

    store = ConfigStore.instance()
    for group, schemas in SCHEMAS.items():
        for name, schema in schemas.items():
            store.store(group=group, name=name, node=schema)


def _describe(meta: Mapping[str, Any], is_int: bool) -> str:
    kind = "an integer" if is_int else "a number"
    parts = []
    if "min" in meta:
        parts.append(f">= {meta['min']:g}")
    if "above" in meta:
        parts.append(f"> {meta['above']:g}")
    if "max" in meta:
        parts.append(f"<= {meta['max']:g}")
    return f"{kind} {' and '.join(parts)}" + (" or null" if meta.get("nullable") else "")


def _in_range(value: Any, meta: Mapping[str, Any], is_int: bool) -> bool:
    if value is None:
        return bool(meta.get("nullable"))
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value:  # NaN
        return False
    if is_int and not isinstance(value, int):
        return False
    return (
        value >= meta.get("min", float("-inf"))
        and value > meta.get("above", float("-inf"))
        and value <= meta.get("max", float("inf"))
    )


def range_rules(schema: type) -> list[tuple[str, str, Any]]:
    """``(field, expected, test)`` for every field of ``schema`` with a range in its metadata."""
    rules = []
    for f in dataclasses.fields(schema):
        meta = dict(f.metadata)
        if not meta:
            continue
        is_int = "int" in str(f.type) and "float" not in str(f.type)
        rules.append((f.name, _describe(meta, is_int), lambda v, m=meta, i=is_int: _in_range(v, m, i)))
    return rules


def check_ranges(schema: type, values: Mapping[str, Any], prefix: str) -> None:
    """Raise ``FastStyleError`` naming ``prefix.key`` for the first value outside its schema range."""
    from fast_style.errors import FastStyleError

    for name, expected, test in range_rules(schema):
        if name in values and not test(values[name]):
            raise FastStyleError(f"{prefix}.{name} must be {expected}, got {values[name]!r}")
