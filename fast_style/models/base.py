"""The interface every transform network implements, and what inference relies on."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from typing import Any, ClassVar

import torch
from torch import nn

from fast_style.models.layers import BandedConv2d, ConvLayer, pad_to_multiple
from fast_style.models.norm import InstanceNorm, NormStatistics

__all__ = ["ResidualTransformNetwork", "TransformNetwork"]


class TransformNetwork(nn.Module):
    """A network mapping ``(B, 3, H, W)`` images in [0, 1] to the same shape in [0, 1], any size.

    Subclasses set ``arch`` and implement ``forward_aligned`` (sides already multiples of
    ``multiple``), ``config`` and ``receptive_radius``; ``forward`` pads, runs and crops. The
    instance-norm methods let tiled inference normalize every tile with one image's statistics.
    """

    arch: ClassVar[str] = ""  # the registry name; set by each network
    multiple: ClassVar[int] = 4
    # Reflection padding needs each side above its pad width: 8 px in, 2 px after two stride-2 convs.
    min_side: ClassVar[int] = 8
    channels: tuple[int, ...]  # widths from the full-resolution layers inwards

    def forward_aligned(self, x: torch.Tensor) -> torch.Tensor:
        """Stylize ``(B, 3, H, W)`` in [0, 1] whose ``H`` and ``W`` are multiples of ``multiple``."""
        raise NotImplementedError

    def config(self) -> dict[str, Any]:
        """Constructor arguments that rebuild this network (stored in checkpoints and exports)."""
        raise NotImplementedError

    def receptive_radius(self) -> int:
        """Pixels of context on each side that one output pixel depends on (tiling margin)."""
        raise NotImplementedError

    def forward(self, x: torch.Tensor, style: torch.Tensor | None = None) -> torch.Tensor:
        """Stylize ``x``; ``style`` ``(B or 1, num_styles)``: each image's style weights (multi-style only)."""
        h, w = x.shape[-2:]
        if style is not None:
            with self.styled(style):
                return self.forward_aligned(pad_to_multiple(x, self.multiple, self.min_side))[..., :h, :w]
        return self.forward_aligned(pad_to_multiple(x, self.multiple, self.min_side))[..., :h, :w]

    @property
    def num_styles(self) -> int:
        """How many styles the network paints (conditional instance norm when more than one)."""
        norms = self.instance_norms()
        return norms[0].num_styles if norms else 1

    def style_weights(self, style: int | Sequence[float], batch: int = 1) -> torch.Tensor:
        """``(batch, num_styles)`` weights: one style by index, or a mix (non-negative, normalised)."""
        n = self.num_styles
        if isinstance(style, int):
            if not 0 <= style < n:
                raise ValueError(f"style index {style} is not within 0..{n - 1}")
            weights = torch.zeros(n)
            weights[style] = 1.0
        else:
            weights = torch.as_tensor([float(w) for w in style])
            if weights.numel() != n or bool((weights < 0).any()) or float(weights.sum()) <= 0:
                raise ValueError(f"style weights must be {n} non-negative numbers, not all 0")
            weights = weights / weights.sum()
        param = next(self.parameters())
        return weights.to(param.device, param.dtype).expand(batch, n).contiguous()

    @contextlib.contextmanager
    def styled(self, weights: torch.Tensor) -> Iterator[None]:
        """Within the block, every conditional instance norm mixes its styles by ``weights``."""
        norms = self.instance_norms()
        for norm in norms:
            norm.style_weights = weights
        try:
            yield
        finally:
            for norm in norms:
                norm.style_weights = None

    def _condition_norms(self, num_styles: int) -> None:
        """Turn every instance norm into a conditional one with ``num_styles`` scales and shifts."""
        if num_styles == 1:
            return
        for norm in self.instance_norms():
            norm.num_styles = num_styles
            channels = norm.num_features
            norm.weight = nn.Parameter(torch.ones(num_styles, channels))
            norm.bias = nn.Parameter(torch.zeros(num_styles, channels))

    def instance_norms(self) -> list[InstanceNorm]:
        """The network's instance-norm layers, in the order a forward pass reaches them."""
        return [m for m in self.modules() if isinstance(m, InstanceNorm)]

    @torch.no_grad()
    def record_norm_statistics(
        self, images: torch.Tensor, band_elements: int = 1 << 22
    ) -> list[NormStatistics]:
        """Run ``images`` (any size) and return every instance norm's statistics, in layer order.

        Convolutions run a band of ``band_elements`` rows' worth at a time, so a large image needs
        little more memory than its activations.
        """
        norms = self.instance_norms()
        convs = [m for m in self.modules() if isinstance(m, BandedConv2d)]
        for norm in norms:
            norm.recording, norm.statistics = True, None
        for conv in convs:
            conv.band_elements = band_elements
        try:
            self(images)
            return [norm.statistics for norm in norms if norm.statistics is not None]
        finally:
            for norm in norms:
                norm.recording, norm.statistics = False, None
            for conv in convs:
                conv.band_elements = None

    @contextlib.contextmanager
    def shared_norm_statistics(self, statistics: Sequence[NormStatistics]) -> Iterator[None]:
        """Within the block, every instance norm uses the given statistics instead of its input's."""
        norms = self.instance_norms()
        if len(statistics) != len(norms):
            raise ValueError(f"{len(statistics)} statistics for {len(norms)} instance norms")
        for norm, stats in zip(norms, statistics, strict=True):
            norm.statistics = stats
        try:
            yield
        finally:
            for norm in norms:
                norm.statistics = None


class ResidualTransformNetwork(TransformNetwork):
    """Johnson's layout, which every shipped network follows, at three widths ``channels``.

    The encoder is a ``first_kernel`` convolution and two stride-2 3x3 convolutions down to a
    quarter of the size; ``num_residual`` blocks (``residual_block(width)``, two 3x3 convolutions
    each) run there; the decoder, built by the subclass, upsamples twice by 2 with a 3x3
    convolution after each and ends in a ``last_kernel`` convolution.

    With ``skip`` the network learns a change of its input rather than a new image: the output is
    ``sigmoid(logit(x) + y)`` for the decoder's output ``y``, and the last convolution starts at zero,
    so an untrained network returns its input and training only has to add the style.

    With ``num_styles`` > 1 every instance norm is conditional: the convolutions are shared and each
    style has its own scales and shifts (``forward(x, style=weights)``). Subclasses call
    ``_condition_norms(num_styles)`` once their last layer exists.
    """

    # Inputs are clamped this far inside (0, 1) before the logit of the global skip.
    skip_epsilon: ClassVar[float] = 1e-3

    def __init__(
        self,
        channels: Sequence[int],
        num_residual: int,
        *,
        first_kernel: int,
        last_kernel: int,
        residual_block: Callable[[int], nn.Module],
        skip: bool = False,
        num_styles: int = 1,
    ) -> None:
        super().__init__()
        if int(num_styles) < 1:
            raise ValueError(f"num_styles must be >= 1, got {num_styles}")
        if len(channels) != 3 or any(int(c) <= 0 for c in channels):
            raise ValueError(f"channels must be three positive widths, got {list(channels)}")
        if num_residual < 0:
            raise ValueError(f"num_residual must be >= 0, got {num_residual}")
        c1, c2, c3 = (int(c) for c in channels)
        self.channels = (c1, c2, c3)
        self.num_residual = int(num_residual)
        self.skip = bool(skip)
        self.first_kernel, self.last_kernel = first_kernel, last_kernel
        self.encoder = nn.Sequential(
            ConvLayer(3, c1, first_kernel),
            ConvLayer(c1, c2, 3, stride=2),
            ConvLayer(c2, c3, 3, stride=2),
        )
        self.residuals = nn.Sequential(*(residual_block(c3) for _ in range(self.num_residual)))

    def config(self) -> dict[str, Any]:
        """Constructor arguments that rebuild this network (stored in checkpoints and exports)."""
        config: dict[str, Any] = {"channels": list(self.channels), "num_residual": self.num_residual}
        if self.skip:  # recorded only when on, so files written before the option read the same
            config["skip"] = True
        if self.num_styles > 1:
            config["num_styles"] = self.num_styles
        return config

    def _zero_last_conv(self, conv: nn.Conv2d) -> None:
        """With ``skip``, start the last convolution at zero: the untrained network is the identity."""
        if self.skip:
            nn.init.zeros_(conv.weight)
            if conv.bias is not None:
                nn.init.zeros_(conv.bias)

    def to_image(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The output image in [0, 1] from the decoder's output ``y`` (and the input ``x`` with ``skip``)."""
        if self.skip:
            # logit written with log, which every exporter knows; a bounded output keeps the perceptual
            # loss in the range VGG was trained on.
            x = x.float().clamp(self.skip_epsilon, 1 - self.skip_epsilon)
            y = y + (torch.log(x) - torch.log1p(-x))
        return torch.sigmoid(y)

    def receptive_radius(self) -> int:
        """Pixels of context on each side that one output pixel depends on (tiling margin)."""
        # A k x k convolution at 1/s of the input resolution reaches (k // 2) * s input pixels:
        # the first conv at 1x, the stride-2 3x3s reading 1x (1) and 2x (2), two 3x3s per residual
        # block at 4x (8), the decoder's 3x3s at 2x (2) and 1x (1), the last conv at 1x. Where a
        # pixel falls on the stride-4 grid adds up to 3 more on one side.
        convs = self.first_kernel // 2 + 1 + 2 + 8 * self.num_residual + 2 + 1 + self.last_kernel // 2
        return convs + self.multiple - 1
