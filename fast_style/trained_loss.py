"""The loss a model was trained with, read from its inference file, and how a measuring loss differs.

``fast-style train`` records the perceptual loss in every checkpoint and ``export`` carries it into
the inference file (``training.loss`` in the metadata): network, weights file name and SHA-256,
layers, layer and term weights, style image name and size. ``compare`` and the quality benchmark
measure a model with that loss unless told otherwise, so their numbers are those the model was
trained to minimise.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from fast_style.errors import FastStyleError
from fast_style.losses import weights_file_identity
from fast_style.schema import LossConfig

__all__ = ["LOSS_KEYS", "differences", "loss_arguments", "recorded_loss", "weights_mismatch"]

# The loss settings a model records, in the order of the loss config.
LOSS_KEYS = LossConfig.recorded_keys()


def recorded_loss(metadata: Mapping[str, Any], style: str | None = None) -> dict[str, Any]:
    """The training loss recorded in an inference file's metadata (``Stylizer.metadata``); ``{}`` if none.

    Files exported before layer weights were recorded used raw errors with all layer weights 1,
    which is what ``null`` layer weights mean; they are filled in as such. A multi-style file records
    each style's image (``styles``); ``style`` (default: the first) puts that one's ``style_image``,
    ``style_size`` and ``style_sha256`` where a single-style file has them.
    """
    training = metadata.get("training") or {}
    loss = dict(training.get("loss") or {}) if isinstance(training, Mapping) else {}
    if loss and "network" in loss:
        loss.setdefault("content_layer_weights", None)
        loss.setdefault("style_layer_weights", None)
    styles = loss.pop("styles", None)
    if styles:
        names = [s.get("name") for s in styles]
        if style is not None and style not in names:
            raise FastStyleError(
                f"the model records no style {style!r}; its styles: {', '.join(map(str, names))}"
            )
        chosen = styles[names.index(style) if style is not None else 0]
        loss.update({k: v for k, v in chosen.items() if k != "name"})
    return loss


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool):
        return math.isclose(float(a), float(b), rel_tol=1e-6)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=False))
    return a == b


def differences(recorded: Mapping[str, Any], settings: Mapping[str, Any]) -> list[str]:
    """``key X (model) vs Y (here)`` for each loss setting where ``settings`` differs from ``recorded``."""
    out = []
    for key in LOSS_KEYS:
        if key not in recorded or key not in settings:
            continue
        theirs, ours = recorded[key], settings[key]
        ours = list(ours) if isinstance(ours, (list, tuple)) or type(ours).__name__ == "ListConfig" else ours
        if isinstance(theirs, str) and isinstance(ours, str):
            theirs, ours = theirs.lower(), ours.lower()
        if not _same(theirs, ours):
            out.append(f"{key} {recorded[key]} (model) vs {ours} (here)")
    return out


def weights_mismatch(recorded: Mapping[str, Any], weights: str) -> str | None:
    """Why ``weights`` (``loss.weights``) are not the loss-network weights the model was trained with, or ``None``."""
    kind = str(recorded.get("weights", "")).lower()
    given = str(weights)
    if not kind:
        return None
    if kind in ("imagenet", "none"):
        return None if given.lower() == kind else f"weights {kind} (model) vs {given} (here)"
    identity = weights_file_identity(given)
    expected = recorded.get("weights_sha256")
    if given.lower() in ("imagenet", "none") or not identity:
        return f"weights file {recorded.get('weights_file', '?')} (model) vs {given} (here)"
    if expected and identity.get("weights_sha256") != expected:
        return (
            f"weights file {recorded.get('weights_file', '?')} sha256 {str(expected)[:12]}... (model) vs "
            f"{identity['weights_file']} sha256 {str(identity.get('weights_sha256', '?'))[:12]}... (here)"
        )
    return None


def loss_arguments(recorded: Mapping[str, Any], weights: str | None = None) -> dict[str, Any]:
    """Keyword arguments of ``build_perceptual_loss`` that rebuild the recorded loss.

    ``weights`` is the loss network's weights (``imagenet``, ``none`` or a path); a model trained with
    a weights file needs its path, since only the file's name and hash are recorded.
    """
    if not recorded:
        raise FastStyleError("the model records no training loss; pass the loss settings explicitly")
    kind = str(recorded.get("weights", "imagenet")).lower()
    if weights is None:
        if kind == "file":
            raise FastStyleError(
                f"the model was trained with the loss-network weights file {recorded.get('weights_file', '?')}; "
                "pass its path"
            )
        weights = kind
    problem = weights_mismatch(recorded, weights)
    if problem:
        raise FastStyleError(f"not the model's loss-network weights: {problem}")
    return {key: recorded[key] for key in LOSS_KEYS if key in recorded} | {"weights": weights}
