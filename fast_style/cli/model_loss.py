"""Measuring on a model's training loss: what ``compare`` and ``optimize init=model`` take from a model file.

A model records the loss it was trained with (``fast_style.trained_loss``). Both commands use it for
every ``loss.*`` key the command line leaves alone, take the style images' size from it unless told
otherwise, and report each setting that still differs from the model's.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from fast_style.errors import FastStyleError

__all__ = ["adopt_model_loss", "model_style_size", "overridden", "style_differences"]


def overridden(prefix: str) -> set[str]:
    """Keys under ``prefix`` (e.g. ``loss``; ``""``: all) that the command line set, from Hydra's overrides."""
    from hydra.core.hydra_config import HydraConfig

    keys = set()
    for item in HydraConfig.get().overrides.task:
        key = item.split("=", 1)[0].lstrip("+~")
        if not prefix:
            keys.add(key)
        elif key.startswith(prefix + "."):
            keys.add(key[len(prefix) + 1 :])
    return keys


def adopt_model_loss(cfg: DictConfig, recorded: Mapping[str, Any], given: set[str]) -> list[str]:
    """Set every ``cfg.loss`` key not in ``given`` (the ones the command line set) to the model's training loss.

    Returns the differences that remain (settings given on the command line that differ from the
    model's), each as ``key X (model) vs Y (here)``.
    """
    from dataclasses import replace

    from omegaconf import OmegaConf, open_dict

    from fast_style.schema import LossConfig
    from fast_style.trained_loss import LOSS_KEYS, differences, weights_mismatch
    from fast_style.validation import config_dict

    adopted = {key: recorded[key] for key in LOSS_KEYS if key in recorded and key not in given}
    kind = str(recorded.get("weights", "")).lower()
    if "weights" not in given and kind in ("imagenet", "none"):
        adopted["weights"] = kind
    with open_dict(cfg):
        current = OmegaConf.to_object(cfg.loss)
        assert isinstance(current, LossConfig)  # the loss group's schema
        cfg.loss = OmegaConf.structured(replace(current, **adopted))
    found = differences(recorded, config_dict(cfg.loss))
    if kind == "file" and "weights" not in given:
        raise FastStyleError(
            f"the model was trained with the loss-network weights file {recorded.get('weights_file', '?')} "
            f"(sha256 {str(recorded.get('weights_sha256', '?'))[:12]}...): pass loss.weights=PATH to it"
        )
    problem = weights_mismatch(recorded, str(cfg.loss.weights))
    if problem:
        found.append(problem)
    return found


def model_style_size(cfg: DictConfig, recorded: Mapping[str, Any], content_long_side: int) -> int:
    """The style images' long side: the config's ``style_size`` if set, else the model's training style
    size unless ``style_scale`` was given, else ``style_scale`` times ``content_long_side``."""
    style_size = cfg.get("style_size")
    if style_size is None and recorded.get("style_size") and "style_scale" not in overridden(""):
        style_size = int(recorded["style_size"])
    if style_size is None:
        style_size = math.ceil(float(cfg.style_scale) * content_long_side)
    return int(style_size)


def style_differences(recorded: Mapping[str, Any], paths: Sequence[str], style_long_side: int) -> list[str]:
    """How the style images differ from the model's: the picture (by SHA-256; by name for files that
    predate the hash) and its long side."""
    from fast_style.files import file_sha256

    found = []
    trained_style = recorded.get("style_image")
    if recorded.get("style_sha256"):  # the same picture under any name is the same style
        same_style = [file_sha256(p) for p in paths] == [recorded["style_sha256"]]
    else:
        same_style = [Path(p).name for p in paths] == [trained_style]
    if trained_style and not same_style:
        found.append(
            f"style image {trained_style} (model) vs {', '.join(Path(p).name for p in paths)} (here)"
        )
    if recorded.get("style_size") and int(recorded["style_size"]) != style_long_side:
        found.append(f"style_size {recorded['style_size']} (model) vs {style_long_side} (here)")
    return found
