"""How much a feed-forward picture is worth in L-BFGS steps, the yardstick of ``quality`` and ``learning_curve``.

Johnson et al. (2016) compare their networks with L-BFGS started from white noise on the same loss:
a network is "worth" the number of steps optimization needs to reach the network's loss. The
optimization here is ``fast-style optimize``'s own (``optimize_pixels`` with the L-BFGS settings of
``fast_style.optimize.OPTIMIZERS``), on the loss the model was trained with. Its curve does not
depend on the model, so it is computed once per photo, size, start and loss, and kept in a cache
folder as JSON.
"""

from __future__ import annotations

import argparse
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from fast_style.losses import PerceptualLoss
from fast_style.optimize import ModelPicture, initial_image, optimize_pixels

__all__ = ["Curve", "add_photo_arguments", "lbfgs_curve", "recorded_style_loss", "steps_worth"]


@dataclass
class Curve:
    """The totals of an L-BFGS run after 0, 1, 2, ... steps, and its mean time per step."""

    totals: list[float]
    seconds_per_step: float
    image: torch.Tensor | None = None
    """The last image (``None`` when the curve came from the cache)."""

    @property
    def steps(self) -> int:
        return len(self.totals) - 1


def steps_worth(totals: Sequence[float], total: float) -> float | None:
    """The (fractional) number of steps after which the curve ``totals`` first reaches ``total``.

    Linear between the two steps that bracket it; 0 when the start is already at most ``total``;
    ``None`` when the curve never gets there.
    """
    if not totals:
        return None
    if totals[0] <= total:
        return 0.0
    for step in range(1, len(totals)):
        if totals[step] <= total:
            before, after = totals[step - 1], totals[step]
            return step - 1 + (before - total) / (before - after)
    return None


def add_photo_arguments(parser: argparse.ArgumentParser, what: str) -> None:
    """``--content``, ``--styles`` and ``--weights``: what scoring ``what`` (models, runs) needs."""
    parser.add_argument("--content", type=Path, required=True, help="folder of photos the models never saw")
    parser.add_argument(
        "--styles", type=Path, required=True, help=f"folder holding the style images of the {what}"
    )
    parser.add_argument("--weights", default=None, help=f"loss-network weights file used to train the {what}")


def recorded_style_loss(
    model: Path, metadata: dict[str, Any], weights: str | None, styles: Path, style: str | None = None
) -> tuple[dict[str, Any], dict[str, Any], Path]:
    """A model's recorded loss (of ``style``, for a multi-style file), the arguments that rebuild it and
    its style image in ``styles``; a one-line ``FastStyleError`` when any of them is missing."""
    from fast_style.errors import FastStyleError
    from fast_style.trained_loss import loss_arguments, recorded_loss

    recorded = recorded_loss(metadata, style)
    loss_args = loss_arguments(recorded, weights)
    if not recorded.get("style_image") or not recorded.get("style_size"):
        raise FastStyleError(f"{model} records no style image and size; it predates loss metadata")
    style_path = styles / recorded["style_image"]
    if not style_path.is_file():
        raise FastStyleError(f"{model} was trained on {recorded['style_image']}, not found in {styles}")
    return recorded, loss_args, style_path


def _cache_file(cache: Path, key: dict[str, Any]) -> Path:
    digest = hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:24]
    return cache / f"lbfgs_{digest}.json"


def lbfgs_curve(
    loss: PerceptualLoss,
    content: torch.Tensor,
    style: torch.Tensor,
    init: str,
    max_steps: int,
    *,
    stop_at_total: float | None = None,
    min_steps: int = 0,
    cache: Path | None = None,
    cache_key: dict[str, Any] | None = None,
    model: ModelPicture | None = None,
    progress: bool = False,
    description: str = "",
) -> Curve:
    """L-BFGS from ``init`` (``noise``: uniform noise, seed 0; ``content``: the photo; ``model``: the
    picture of ``model``, a feed-forward network) on ``loss``.

    ``loss`` must hold ``content`` and ``style`` as its targets. With ``stop_at_total`` the run ends
    one step after reaching it, but not before ``min_steps``. With ``cache`` and ``cache_key`` (what
    identifies the loss, photo and style image), a finished curve is stored, and a stored one that
    covers the request is reused; curves from a model's picture are not cached.
    """
    key = None
    if cache is not None and cache_key is not None and init != "model":
        key = {**cache_key, "init": init, "size": list(content.shape[-2:]), "torch": torch.__version__}
        path = _cache_file(cache, key)
        if path.is_file():
            stored = json.loads(path.read_text(encoding="utf-8"))
            totals = stored["totals"]
            reached = stop_at_total is not None and min(totals) <= stop_at_total
            if len(totals) - 1 >= max_steps or (reached and len(totals) - 1 >= min_steps):
                return Curve(totals[: max_steps + 1], stored["seconds_per_step"])
    start = initial_image(init, content, style, seed=0, model=model)
    result = optimize_pixels(
        loss,
        start,
        max_steps,
        "lbfgs",
        stop_at_total=stop_at_total,
        min_steps=min_steps,
        progress=progress,
        description=description,
    )
    curve = Curve([h["total"] for h in result.history], result.elapsed / max(result.steps, 1), result.image)
    if key is not None and cache is not None and result.error is None:
        cache.mkdir(parents=True, exist_ok=True)
        path = _cache_file(cache, key)
        # keep the longer of two runs of the same curve
        if path.is_file() and len(json.loads(path.read_text(encoding="utf-8"))["totals"]) > len(curve.totals):
            return curve
        data = {"key": key, "totals": curve.totals, "seconds_per_step": curve.seconds_per_step}
        path.write_text(json.dumps(data), encoding="utf-8")
    return curve
