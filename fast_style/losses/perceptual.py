"""Gram matrices, total variation, and the perceptual loss shared by training and optimization."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import nn
from torch.autograd.function import once_differentiable
from torch.nn import functional as F

from fast_style.errors import FastStyleError
from fast_style.losses.vgg import weights_file_identity
from fast_style.schema import CONTENT_LAYERS, STYLE_LAYERS, LossConfig

__all__ = [
    "AUTO",
    "CONTENT_LAYERS",
    "STYLE_LAYERS",
    "LayerWeights",
    "PerceptualLoss",
    "energy",
    "gram_matrix",
    "total_variation",
]


AUTO = "auto"
LayerWeights = Sequence[float] | Mapping[str, float] | str | None

# Keeps an all-zero target (a flat black style image) from dividing by zero.
_ENERGY_FLOOR = 1e-30


def _is_auto(weights: LayerWeights) -> bool:
    if isinstance(weights, str):
        if weights.lower() != AUTO:
            raise FastStyleError(
                f"layer weights must be 'auto', null or one number per layer, got {weights!r}"
            )
        return True
    return False


def _layer_weights(what: str, weights: LayerWeights, layers: Sequence[str]) -> dict[str, float]:
    """Explicit per-layer weights as a dict; ``None`` means 1 for every layer."""
    if weights is None:
        return {name: 1.0 for name in layers}
    if isinstance(weights, Mapping):
        unknown = set(weights) - set(layers)
        if unknown:
            raise FastStyleError(f"{what} names layers that are not among them: {sorted(unknown)}")
        return {name: float(weights.get(name, 1.0)) for name in layers}
    values = [float(w) for w in weights]
    if len(values) != len(layers):
        raise FastStyleError(f"{what} has {len(values)} values for {len(layers)} layers")
    return dict(zip(layers, values, strict=False))


def energy(tensor: torch.Tensor) -> torch.Tensor:
    """Mean square of a target (a Gram matrix or feature map): the scale its error is measured against."""
    return tensor.detach().float().pow(2).mean().clamp_min(_ENERGY_FLOOR)


class _Gram(torch.autograd.Function):
    """``X Xᵀ / n`` for ``X`` of shape ``(B, C, N)``, with a backward of one batched product, not two.

    Autograd's generic backward of ``bmm(X, Xᵀ)`` computes ``dG X`` and ``(Xᵀ dG)ᵀ`` separately;
    both operands are ``X``, so the gradient is ``(dG + dGᵀ) X / n`` in one product.
    """

    @staticmethod
    def forward(ctx: Any, flat: torch.Tensor, n: int) -> torch.Tensor:
        ctx.save_for_backward(flat)
        ctx.n = n
        return torch.bmm(flat, flat.transpose(1, 2)) / n

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        (flat,) = ctx.saved_tensors
        # Under autocast the forward product may be in lower precision; the gradient follows X's dtype.
        symmetric = (grad + grad.transpose(1, 2)).to(flat.dtype)
        if flat.stride(1) == 1:  # channels-last activations: give the gradient their layout
            return torch.bmm(flat.transpose(1, 2), symmetric).transpose(1, 2) / ctx.n, None
        return torch.bmm(symmetric, flat) / ctx.n, None


def gram_matrix(features: torch.Tensor) -> torch.Tensor:
    """``(B, C, H, W) -> (B, C, C)`` feature correlations, divided by ``C * H * W``.

    Half-precision features are multiplied in float32, also under mixed precision: a bfloat16 Gram
    matrix keeps about three significant digits, too few for the small differences the style term
    measures late in training. Channels-last activations need no copy (the reshape is a view).
    """
    b, c, h, w = features.shape
    flat = features.reshape(b, c, h * w)
    if flat.dtype in (torch.float16, torch.bfloat16):
        flat = flat.float()
    with torch.autocast(flat.device.type, enabled=False):
        return _Gram.apply(flat, c * h * w)


def total_variation(images: torch.Tensor) -> torch.Tensor:
    """Mean squared difference between vertically and horizontally adjacent pixels (summed)."""
    dy = images[..., 1:, :] - images[..., :-1, :]
    dx = images[..., :, 1:] - images[..., :, :-1]
    return dy.pow(2).mean() + dx.pow(2).mean()


class PerceptualLoss(nn.Module):
    """Content + Gram style + total-variation loss over a frozen feature encoder.

    ``encoder(images, layers)`` must return a dict of activations for [0, 1] images (``VGGFeatures``
    does). Style targets are Gram matrices of batch size 1, computed once by ``set_style_image`` and
    broadcast over any batch. Content targets come either from the ``content`` argument of ``forward``
    (feed-forward training) or from ``set_content_image`` (per-image optimization).

    Layer weights ``"auto"`` (the default) make every layer count whatever the encoder's activation
    scales: a style layer's Gram error is divided by the energy (mean square) of its target Gram
    matrix, a content layer's feature error by the energy of its target features, and each sum by its
    number of layers. Each term is then a relative squared error, about 0.1 to 1 for a photo against
    a painting at every layer, so ``style_weight`` and ``content_weight`` mean the same for VGG16,
    VGG16-BN or VGG19. Explicit weights (or ``None``, all 1) multiply the raw errors instead.
    """

    def __init__(
        self,
        encoder: nn.Module,
        content_layers: Sequence[str] = CONTENT_LAYERS,
        style_layers: Sequence[str] = STYLE_LAYERS,
        style_layer_weights: LayerWeights = LossConfig.style_layer_weights,
        content_weight: float = LossConfig.content_weight,
        style_weight: float = LossConfig.style_weight,
        tv_weight: float = LossConfig.tv_weight,
        content_layer_weights: LayerWeights = LossConfig.content_layer_weights,
    ) -> None:
        super().__init__()
        self.encoder = encoder
        self.content_layers = list(content_layers)
        self.style_layers = list(style_layers)
        if not self.content_layers and not self.style_layers:
            raise FastStyleError("the perceptual loss needs at least one content or style layer")
        self.style_auto = _is_auto(style_layer_weights)
        self.content_auto = _is_auto(content_layer_weights)
        self.style_layer_weights = _layer_weights(
            "style_layer_weights", None if self.style_auto else style_layer_weights, self.style_layers
        )
        self.content_layer_weights = _layer_weights(
            "content_layer_weights", None if self.content_auto else content_layer_weights, self.content_layers
        )
        self.content_weight = float(content_weight)
        self.style_weight = float(style_weight)
        self.tv_weight = float(tv_weight)
        self._content_targets: dict[str, torch.Tensor] = {}

    @property
    def has_style(self) -> bool:
        return all(hasattr(self, f"style_gram_{name}") for name in self.style_layers)

    @torch.no_grad()
    def set_style_image(
        self, images: torch.Tensor | Sequence[torch.Tensor], blend: Sequence[float] | None = None
    ) -> None:
        """Compute the Gram targets from one style image ``(1, 3, H, W)``, or blend several."""
        if isinstance(images, torch.Tensor):
            images = [images]
        if not images:
            raise FastStyleError("at least one style image is needed")
        blend = [1.0] * len(images) if blend is None else [float(b) for b in blend]
        if len(blend) != len(images) or sum(blend) <= 0 or min(blend) < 0:
            raise FastStyleError(
                f"style blend weights {blend} must be {len(images)} non-negative numbers, not all 0"
            )
        total = sum(blend)
        grams: dict[str, torch.Tensor] = {}
        for image, weight in zip(images, blend, strict=False):
            if image.dim() == 3:
                image = image.unsqueeze(0)
            if image.shape[0] != 1:
                raise FastStyleError(f"a style image must have batch size 1, got {image.shape[0]}")
            feats = self.encoder(image, self.style_layers)
            for name in self.style_layers:
                g = gram_matrix(feats[name]) * (weight / total)
                grams[name] = grams[name] + g if name in grams else g
        for name, g in grams.items():
            self.register_buffer(f"style_gram_{name}", g.detach(), persistent=False)
        if self.style_auto:
            n = len(self.style_layers)
            self.style_layer_weights = {
                name: 1.0 / (n * energy(grams[name]).item()) for name in self.style_layers
            }

    @torch.no_grad()
    def set_style_targets(self, images: Sequence[torch.Tensor]) -> None:
        """One Gram target per style image ``(1, 3, H, W)``, for training a multi-style network.

        ``forward(..., style_index=idx)`` then compares image ``b`` with style ``idx[b]``; with auto
        layer weights each style's layers are weighed by that style's own target energies, so every
        style's term means what it would mean alone.
        """
        if len(images) < 2:
            raise FastStyleError(
                "set_style_targets takes two or more style images; use set_style_image for one"
            )
        per_style: list[dict[str, torch.Tensor]] = []
        for image in images:
            self.set_style_image(image)
            per_style.append({name: getattr(self, f"style_gram_{name}") for name in self.style_layers})
        for name in self.style_layers:
            stacked = torch.cat([grams[name] for grams in per_style])  # (S, C, C)
            self.register_buffer(f"style_grams_{name}", stacked, persistent=False)
        n = len(self.style_layers)
        table = [
            [
                1.0 / (n * energy(grams[name]).item()) if self.style_auto else self.style_layer_weights[name]
                for name in self.style_layers
            ]
            for grams in per_style
        ]
        self.register_buffer("style_weight_table", torch.tensor(table), persistent=False)
        self.set_style_image(images[0])  # keeps the single-target API meaningful: the first style

    @property
    def num_style_targets(self) -> int:
        """How many styles ``set_style_targets`` gave (1 after ``set_style_image``)."""
        table = getattr(self, "style_weight_table", None)
        return 1 if table is None else int(table.shape[0])

    @torch.no_grad()
    def set_content_image(self, image: torch.Tensor) -> None:
        """Fix the content targets, for optimizing one image against one content photo."""
        feats = self.encoder(image, self.content_layers) if self.content_layers else {}
        self._content_targets = {name: f.detach() for name, f in feats.items()}

    def _apply(self, fn: Callable[[torch.Tensor], torch.Tensor], recurse: bool = True) -> PerceptualLoss:
        super()._apply(fn, recurse)
        self._content_targets = {k: fn(v) for k, v in self._content_targets.items()}
        return self

    def raw_terms(
        self,
        images: torch.Tensor,
        content: torch.Tensor | None = None,
        tv: bool = True,
        style_index: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        """Unweighted ``content``, ``style`` and ``tv`` terms for ``images`` in [0, 1].

        ``content`` and ``style`` already include the per-layer weights; ``tv`` is zero unless ``tv``
        is true. ``style_index`` ``(B,)`` (after ``set_style_targets``): image ``b`` is compared with
        style ``style_index[b]``, and ``style_each`` holds each image's own style term.
        """
        if self.style_layers and not self.has_style:
            raise RuntimeError("call set_style_image before computing the loss")
        feats = self.encoder(images, list(dict.fromkeys(self.content_layers + self.style_layers)))
        zero = images.new_zeros(())

        content_loss = zero
        if self.content_layers:
            if content is not None:
                with torch.no_grad():
                    targets = self.encoder(content, self.content_layers)
            elif self._content_targets:
                targets = self._content_targets
            else:
                raise RuntimeError("pass content images or call set_content_image first")
            for name in self.content_layers:
                target = targets[name]
                weight: float | torch.Tensor = self.content_layer_weights[name]
                if self.content_auto:
                    weight = 1.0 / (len(self.content_layers) * energy(target))
                if target.shape[0] != feats[name].shape[0]:
                    target = target.expand_as(feats[name])
                content_loss = content_loss + weight * F.mse_loss(feats[name], target)

        tv_loss = total_variation(images) if tv else zero
        if style_index is not None:
            style_each = self._style_each(feats, style_index)
            return {
                "content": content_loss,
                "style": style_each.mean(),
                "tv": tv_loss,
                "style_each": style_each,
            }

        style_loss = zero
        for name in self.style_layers:
            gram = gram_matrix(feats[name])
            target = getattr(self, f"style_gram_{name}").expand_as(gram)
            style_loss = style_loss + self.style_layer_weights[name] * F.mse_loss(gram, target)
        return {"content": content_loss, "style": style_loss, "tv": tv_loss}

    def _style_each(self, feats: Mapping[str, torch.Tensor], style_index: torch.Tensor) -> torch.Tensor:
        """Each image's weighted style error against its own style's targets, ``(B,)``."""
        table = getattr(self, "style_weight_table", None)
        if table is None:
            raise RuntimeError("call set_style_targets before passing style_index")
        weights = table[style_index]  # (B, layers)
        each = weights.new_zeros(style_index.shape[0])
        for i, name in enumerate(self.style_layers):
            gram = gram_matrix(feats[name])
            target = getattr(self, f"style_grams_{name}")[style_index]
            each = each + weights[:, i] * (gram - target).pow(2).mean((1, 2))
        return each

    def settings(self) -> dict[str, Any]:
        """What defines this loss, as plain JSON-able values: recorded with models trained on it.

        Layer weights are ``"auto"`` or the explicit numbers; ``resolved_style_layer_weights`` holds
        the numbers auto weighting computed from the current style targets.
        """
        encoder_weights = str(getattr(self.encoder, "weights", ""))
        kind = encoder_weights.lower() if encoder_weights.lower() in ("imagenet", "none", "") else "file"
        config = LossConfig(
            network=getattr(self.encoder, "network", None),  # type: ignore[arg-type]  # None: not a VGG
            weights=kind,
            content_layers=list(self.content_layers),
            style_layers=list(self.style_layers),
            content_layer_weights=AUTO if self.content_auto else list(self.content_layer_weights.values()),
            style_layer_weights=AUTO if self.style_auto else list(self.style_layer_weights.values()),
            content_weight=self.content_weight,
            style_weight=self.style_weight,
            tv_weight=self.tv_weight,
        )
        info = {key: value for key, value in dataclasses.asdict(config).items() if key != "_target_"}
        info["resolved_style_layer_weights"] = list(self.style_layer_weights.values())
        info.update(weights_file_identity(encoder_weights))
        return info

    def weigh(self, raw: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Apply the content, style and TV weights to ``raw_terms`` output and add their ``total``."""
        terms = {
            "content": self.content_weight * raw["content"],
            "style": self.style_weight * raw["style"],
            "tv": self.tv_weight * raw["tv"],
        }
        terms["total"] = terms["content"] + terms["style"] + terms["tv"]
        return terms

    def forward(
        self,
        images: torch.Tensor,
        content: torch.Tensor | None = None,
        style_index: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        """Weighted ``content``, ``style`` and ``tv`` terms and their ``total`` for ``images`` in [0, 1].

        With ``style_index`` (multi-style training) also ``style_each``, each image's weighted style term.
        """
        raw = self.raw_terms(images, content, tv=bool(self.tv_weight), style_index=style_index)
        terms = self.weigh(raw)
        if "style_each" in raw:
            terms["style_each"] = self.style_weight * raw["style_each"]
        return terms
