"""Per-image optimization against a feed-forward model on the same photo, measured one way.

The modes stylize the same content at the same size on the same device; every image is then scored
by ``evaluate_image`` with one ``PerceptualLoss`` (same network, weights and targets), never by a
mode's own numbers. Optimization is checkpointed along the way, so the table answers the question
users ask: how many optimization steps buy the style loss a trained network gives in one pass? The
third mode, feed-forward + N steps, starts the same optimization from the network's picture.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from fast_style.compare.memory import PeakMemory
from fast_style.errors import FastStyleError
from fast_style.losses import PerceptualLoss
from fast_style.optimize import PixelSettings, optimize_pixels, resize_to

__all__ = [
    "COLUMNS",
    "REFINED",
    "CompareReport",
    "Row",
    "evaluate_image",
    "run_compare",
    "steps_to_match",
]

COLUMNS = ("mode", "steps", "seconds", "peak_memory_mb", "content", "style", "tv", "total")
# The mode of the rows "feed-forward + N steps": optimization started from the network's picture.
REFINED = "feed-forward + steps"


@torch.no_grad()
def evaluate_image(loss: PerceptualLoss, image: torch.Tensor) -> dict[str, float]:
    """The one measurement every mode goes through, for ``(1, 3, H, W)`` in [0, 1].

    ``content``, ``style`` and ``total`` are the weighted terms the loss minimises (as in training
    and optimization); ``tv`` is the unweighted total variation, reported even when its weight is 0.
    Content targets are the ones set by ``loss.set_content_image``.
    """
    device = next(iter([*loss.buffers(), *loss.parameters()]), image).device
    raw = loss.raw_terms(image.to(device), tv=True)
    weighted = loss.weigh(raw)
    values = torch.stack([weighted["content"], weighted["style"], raw["tv"], weighted["total"]])
    return dict(zip(("content", "style", "tv", "total"), values.double().tolist(), strict=False))


@dataclass
class Row:
    """One line of the comparison table."""

    mode: str
    steps: int | None
    seconds: float | None
    peak_memory_mb: float | None
    content: float
    style: float
    tv: float
    total: float

    def values(self) -> list[Any]:
        """The row in ``COLUMNS`` order."""
        return [getattr(self, name) for name in COLUMNS]


@dataclass
class CompareReport:
    """Everything ``run_compare`` measured, and the images it scored."""

    rows: list[Row]
    images: dict[str, torch.Tensor]
    """``content``, ``style``, ``optimized_<steps>`` for each checkpoint, ``feed-forward``, and
    ``refined_<steps>`` for each refine checkpoint."""
    history: list[dict[str, float]]
    """The optimization's per-step loss terms (same loss object, so the same numbers)."""
    match_step: int | None
    """First optimization step whose style loss is at most the feed-forward one; ``None`` if never."""
    device: str
    error: str | None = None
    notes: list[str] = field(default_factory=list)

    def row(self, mode: str, steps: int | None = None) -> Row:
        """The row of ``mode`` (and ``steps``, for optimization and ``REFINED``)."""
        for r in self.rows:
            if r.mode == mode and (steps is None or r.steps == steps):
                return r
        raise KeyError((mode, steps))


def steps_to_match(history: Sequence[dict[str, float]], style_loss: float) -> int | None:
    """The first ``step`` whose style loss is at most ``style_loss``, else ``None``."""
    for entry in history:
        if entry["style"] <= style_loss:
            return int(entry["step"])
    return None


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def run_compare(
    loss: PerceptualLoss,
    stylizer: Any,
    content: torch.Tensor,
    styles: torch.Tensor | Sequence[torch.Tensor],
    *,
    checkpoints: Iterable[int] = (10, 50, 100, 300),
    refine_steps: Iterable[int] = (),
    blend: Sequence[float] | None = None,
    settings: PixelSettings | None = None,
    repeats: int = 3,
    progress: bool = False,
) -> CompareReport:
    """Stylize ``content`` with ``stylizer`` and by optimization, and score both with ``evaluate_image``.

    ``stylizer`` needs ``stylize_tensor`` (a ``fast_style.inference.Stylizer``). ``styles`` must
    already be at the size the style targets should come from. The feed-forward time is the median
    of ``repeats`` passes after one warm-up pass; optimization time runs from its first step to each
    checkpoint. Targets are computed once, before any mode is timed. ``settings``: how the
    pixels are optimized (``PixelSettings()`` unless given). ``refine_steps``: checkpoints of the same
    optimization started from the network's picture (rows ``REFINED``); their time includes the
    network's.
    """
    settings = settings or PixelSettings()
    if isinstance(styles, torch.Tensor):
        styles = [styles]
    checkpoints = sorted({int(c) for c in checkpoints})
    if not checkpoints or checkpoints[0] < 1:
        raise FastStyleError(f"steps must list positive step counts, got {checkpoints}")
    device = next(iter([*loss.buffers(), *loss.parameters()]), content).device
    content = content.to(device)
    styles = [s.to(device) for s in styles]
    loss.set_style_image(styles, blend)
    loss.set_content_image(content)
    rows = [Row("content image", 0, None, None, **evaluate_image(loss, content))]
    images: dict[str, torch.Tensor] = {"content": content.cpu()}
    for i, style in enumerate(styles):
        images[f"style{i}" if len(styles) > 1 else "style"] = style.cpu()

    # Feed-forward: memory on the first pass (before its buffers are cached), time on the rest.
    with PeakMemory(device) as memory:
        stylized = stylizer.stylize_tensor(content)
        _sync(device)
    stylized = resize_to(stylized.to(device).float(), content.shape[-2:])
    times = []
    for _ in range(max(1, repeats)):
        start = time.perf_counter()
        stylizer.stylize_tensor(content)
        _sync(device)
        times.append(time.perf_counter() - start)
    ff_scores = evaluate_image(loss, stylized)
    ff_row = Row("feed-forward", None, statistics.median(times), memory.peak_mb, **ff_scores)

    # Optimization, checkpointed; the images are scored afterwards so scoring costs no step time.
    start_image = settings.start(content, styles[0])
    with PeakMemory(device) as memory:
        result = optimize_pixels(
            loss,
            start_image,
            checkpoints[-1],
            settings.optimizer,
            lr_decay_every=settings.lr_decay_every,
            lr_decay_gamma=settings.lr_decay_gamma,
            snapshot_at=checkpoints,
            progress=progress,
            description="optimize",
        )
    for steps in checkpoints:
        if steps not in result.snapshots:
            continue
        snapshot = result.snapshots[steps]
        images[f"optimized_{steps}"] = snapshot.cpu()
        peak = memory.peak_until(memory.start + result.seconds[steps])
        rows.append(Row("optimization", steps, result.seconds[steps], peak, **evaluate_image(loss, snapshot)))
    rows.append(ff_row)
    images["feed-forward"] = stylized.cpu()

    refine_steps = sorted({int(c) for c in refine_steps})
    refine_error = None
    if refine_steps:
        if refine_steps[0] < 1:
            raise FastStyleError(f"refine steps must be positive, got {refine_steps}")
        with PeakMemory(device) as memory:
            refined = optimize_pixels(
                loss,
                stylized,
                refine_steps[-1],
                settings.optimizer,
                lr_decay_every=settings.lr_decay_every,
                lr_decay_gamma=settings.lr_decay_gamma,
                snapshot_at=refine_steps,
                progress=progress,
                description="feed-forward + steps",
            )
        refine_error = refined.error
        for steps in refine_steps:
            if steps not in refined.snapshots:
                continue
            snapshot = refined.snapshots[steps]
            images[f"refined_{steps}"] = snapshot.cpu()
            peak = max(ff_row.peak_memory_mb or 0.0, memory.peak_until(memory.start + refined.seconds[steps]))
            seconds = ff_row.seconds + refined.seconds[steps] if ff_row.seconds is not None else None
            rows.append(Row(REFINED, steps, seconds, peak, **evaluate_image(loss, snapshot)))

    match = steps_to_match(result.history, ff_scores["style"])
    report = CompareReport(rows, images, result.history, match, str(device), error=result.error)
    if result.error:
        report.notes.append(f"optimization stopped early: {result.error}")
    if refine_error:
        report.error = report.error or refine_error
        report.notes.append(f"feed-forward + steps stopped early: {refine_error}")
    return report
