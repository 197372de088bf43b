"""Per-image optimization against a feed-forward model on the same photo, measured one way.

Both modes stylize the same content at the same size on the same device; every image is then scored
by ``evaluate_image`` with one ``PerceptualLoss`` (same network, weights and targets), never by a
mode's own numbers. Optimization is checkpointed along the way, so the table answers the question
users ask: how many optimization steps buy the style loss a trained network gives in one pass?
"""

from __future__ import annotations

import contextlib
import csv
import ctypes
import io
import os
import resource
import statistics
import sys
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from fast_style.errors import FastStyleError
from fast_style.files import atomic_path
from fast_style.images import save_image, tensor_to_image
from fast_style.losses import PerceptualLoss
from fast_style.optimize import OptimizerFactory, initial_image, optimize_pixels, resize_to

__all__ = [
    "COLUMNS",
    "OUTPUT_FILES",
    "CompareReport",
    "PeakMemory",
    "Row",
    "evaluate_image",
    "figure_for",
    "make_figure",
    "markdown_table",
    "run_compare",
    "steps_to_match",
    "summary",
    "write_csv",
    "write_outputs",
]

COLUMNS = ("mode", "steps", "seconds", "peak_memory_mb", "content", "style", "tv", "total")
OUTPUT_FILES = ("compare.png", "compare.md", "compare.csv", "feedforward.png", "optimized.png")


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
    """``content``, ``style``, ``optimized_<steps>`` for each checkpoint, ``feed-forward``."""
    history: list[dict[str, float]]
    """The optimization's per-step loss terms (same loss object, so the same numbers)."""
    match_step: int | None
    """First optimization step whose style loss is at most the feed-forward one; ``None`` if never."""
    device: str
    error: str | None = None
    notes: list[str] = field(default_factory=list)

    def row(self, mode: str, steps: int | None = None) -> Row:
        """The row of ``mode`` (and ``steps``, for optimization)."""
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


def _rss_bytes() -> int | None:
    try:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


def _release_free_heap() -> None:
    """Give freed heap pages back to the OS (glibc), so resident memory growth shows new peaks."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL("libc.so.6").malloc_trim(0)


class PeakMemory:
    """Peak memory above the level at entry, while a block runs; also as a timeline.

    On CUDA it is the caching allocator's exact peak of allocated bytes. Elsewhere it is the growth
    of the process's resident memory, sampled every ``interval`` seconds (freed heap pages are
    returned to the OS first so that reused memory does not hide a peak); treat it as approximate.
    """

    def __init__(self, device: torch.device | str, interval: float = 0.002) -> None:
        self.device = torch.device(device)
        self.interval = interval
        self.start = 0.0
        self._baseline = 0
        self._samples: list[tuple[float, int]] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._use_rss = self.device.type != "cuda" and _rss_bytes() is not None

    def _read(self) -> int:
        if self.device.type == "cuda":
            return torch.cuda.max_memory_allocated(self.device)
        if self._use_rss:
            return _rss_bytes() or 0
        scale = 1 if sys.platform == "darwin" else 1024  # ru_maxrss: bytes on macOS, KiB on Linux
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale

    def _run(self) -> None:
        peak = self._read()
        while not self._stop.is_set():
            peak = max(peak, self._read())
            self._samples.append((time.perf_counter(), peak))
            self._stop.wait(self.interval)

    def __enter__(self) -> PeakMemory:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self._baseline = torch.cuda.memory_allocated(self.device)
        else:
            _release_free_heap()
            self._baseline = self._read()
        self.start = time.perf_counter()
        self._samples = [(self.start, self._baseline)]
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="peak-memory", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self._samples.append((time.perf_counter(), max(self._samples[-1][1], self._read())))

    def peak_until(self, moment: float | None = None) -> float:
        """Peak in MiB above the entry level, up to ``moment`` (a ``time.perf_counter()`` value)."""
        peaks = [p for t, p in self._samples if moment is None or t <= moment]
        return max(0, max(peaks, default=self._baseline) - self._baseline) / 2**20

    @property
    def peak_mb(self) -> float:
        """Peak in MiB above the entry level over the whole block."""
        return self.peak_until(None)


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
    blend: Sequence[float] | None = None,
    optimizer: str | OptimizerFactory = "lbfgs",
    lr_decay_every: int | None = None,
    lr_decay_gamma: float = 0.5,
    init: str = "content",
    seed: int | None = 0,
    repeats: int = 3,
    progress: bool = False,
) -> CompareReport:
    """Stylize ``content`` with ``stylizer`` and by optimization, and score both with ``evaluate_image``.

    ``stylizer`` needs ``stylize_tensor`` (a ``fast_style.inference.Stylizer``). ``styles`` must
    already be at the size the style targets should come from. The feed-forward time is the median
    of ``repeats`` passes after one warm-up pass; optimization time runs from its first step to each
    checkpoint. Targets are computed once, before either mode is timed.
    """
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
    stylized = resize_to(stylized.to(device).float(), tuple(content.shape[-2:]))
    times = []
    for _ in range(max(1, repeats)):
        start = time.perf_counter()
        stylizer.stylize_tensor(content)
        _sync(device)
        times.append(time.perf_counter() - start)
    ff_scores = evaluate_image(loss, stylized)
    ff_row = Row("feed-forward", None, statistics.median(times), memory.peak_mb, **ff_scores)

    # Optimization, checkpointed; the images are scored afterwards so scoring costs no step time.
    start_image = initial_image(init, content, styles[0], seed)
    with PeakMemory(device) as memory:
        result = optimize_pixels(
            loss,
            start_image,
            checkpoints[-1],
            optimizer,
            lr_decay_every=lr_decay_every,
            lr_decay_gamma=lr_decay_gamma,
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

    match = steps_to_match(result.history, ff_scores["style"])
    report = CompareReport(rows, images, result.history, match, str(device), error=result.error)
    if result.error:
        report.notes.append(f"optimization stopped early: {result.error}")
    return report


def _fmt(value: float | int | None, digits: int = 4) -> str:
    if value is None:
        return "–"
    if isinstance(value, int):
        return str(value)
    return f"{value:.{digits}g}"


def summary(report: CompareReport) -> str:
    """One sentence: the steps (and time) optimization needs to reach the feed-forward style loss."""
    ff = report.row("feed-forward")
    opt_rows = [r for r in report.rows if r.mode == "optimization"]
    if report.match_step is None:
        last = report.history[-1]["step"] if report.history else 0
        return (
            f"Optimization did not reach the feed-forward style loss ({_fmt(ff.style)}) within {int(last)} "
            f"steps."
        )
    if report.match_step == 0:
        return (
            f"The starting image already has a style loss at most the feed-forward one ({_fmt(ff.style)}): "
            f"this model does not beat zero optimization steps."
        )
    per_step = None
    if opt_rows and opt_rows[-1].steps and opt_rows[-1].seconds is not None:
        per_step = opt_rows[-1].seconds / opt_rows[-1].steps
    text = (
        f"Optimization reaches the feed-forward style loss ({_fmt(ff.style)}) after {report.match_step} steps"
    )
    if per_step is not None and ff.seconds:
        seconds = per_step * report.match_step
        text += f", about {seconds:.3g} s, {seconds / ff.seconds:.3g}x the feed-forward time"
    return text + "."


def markdown_table(report: CompareReport, header: str = "") -> str:
    """The report as Markdown: a table, then the steps-to-match sentence and notes."""
    titles = ["mode", "steps", "seconds", "peak memory (MiB)", "content", "style", "tv (unweighted)", "total"]
    lines = [header, ""] if header else []
    lines.append("| " + " | ".join(titles) + " |")
    lines.append("|" + "|".join(["---"] + ["---:"] * (len(titles) - 1)) + "|")
    for row in report.rows:
        cells = [row.mode, _fmt(row.steps), _fmt(row.seconds, 3), _fmt(row.peak_memory_mb, 3)]
        cells += [_fmt(v) for v in (row.content, row.style, row.tv, row.total)]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", summary(report)]
    lines += [f"- {note}" for note in report.notes]
    return "\n".join(lines) + "\n"


def write_csv(report: CompareReport, path: str | os.PathLike[str]) -> Path:
    """The table as CSV (full float precision; empty cells where a value does not apply), atomically."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(COLUMNS)
    for row in report.rows:
        writer.writerow(["" if v is None else (repr(v) if isinstance(v, float) else v) for v in row.values()])
    with atomic_path(path) as tmp:
        tmp.write_text(buffer.getvalue(), encoding="utf-8")
    return Path(path)


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1 has one fixed-size bitmap font
        return ImageFont.load_default()


def _tile(image: torch.Tensor, size: tuple[int, int]) -> Image.Image:
    """``image`` scaled to cover ``size = (w, h)`` and centre-cropped to it."""
    pil = tensor_to_image(image)
    w, h = size
    scale = max(w / pil.width, h / pil.height)
    pil = pil.resize(
        (max(w, round(pil.width * scale)), max(h, round(pil.height * scale))), Image.Resampling.LANCZOS
    )
    left, top = (pil.width - w) // 2, (pil.height - h) // 2
    return pil.crop((left, top, left + w, top + h))


def make_figure(tiles: Sequence[tuple[str, str, torch.Tensor]], tile: int = 256) -> Image.Image:
    """Images side by side, each with a title and a detail line beneath; the first sets the aspect."""
    if not tiles:
        raise ValueError("no images to show")
    h, w = tiles[0][2].shape[-2:]
    scale = tile / max(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    font_size = max(10, tile // 18)
    font = _font(font_size)
    pad, band = 4, 2 * font_size + 12
    figure = Image.new("RGB", (pad + len(tiles) * (size[0] + pad), pad + size[1] + band), "white")
    draw = ImageDraw.Draw(figure)
    for i, (title, detail, image) in enumerate(tiles):
        x = pad + i * (size[0] + pad)
        figure.paste(_tile(image, size), (x, pad))
        draw.text((x + 2, pad + size[1] + 3), title, fill="black", font=font)
        draw.text((x + 2, pad + size[1] + 5 + font_size), detail, fill=(80, 80, 80), font=font)
    return figure


def figure_for(report: CompareReport, tile: int = 256) -> Image.Image:
    """The comparison figure: content | style(s) | optimized at each checkpoint | feed-forward."""
    tiles: list[tuple[str, str, torch.Tensor]] = []
    content_row = report.row("content image")
    tiles.append(("content", f"style {_fmt(content_row.style, 3)}", report.images["content"]))
    for name, image in report.images.items():
        if name.startswith("style"):
            tiles.append((name, "", image))
    for row in report.rows:
        if row.mode == "optimization":
            tiles.append(
                (
                    f"optimized, {row.steps} steps",
                    f"style {_fmt(row.style, 3)}, {_fmt(row.seconds, 3)} s",
                    report.images[f"optimized_{row.steps}"],
                )
            )
    ff = report.row("feed-forward")
    tiles.append(
        ("feed-forward", f"style {_fmt(ff.style, 3)}, {_fmt(ff.seconds, 3)} s", report.images["feed-forward"])
    )
    return make_figure(tiles, tile)


def write_outputs(
    report: CompareReport, out_dir: str | os.PathLike[str], header: str = "", tile: int = 256
) -> dict[str, Path]:
    """Write ``compare.png``, ``compare.md``, ``compare.csv``, the final images and TensorBoard logs."""
    from torch.utils.tensorboard import SummaryWriter

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {name: out / name for name in OUTPUT_FILES}
    figure = figure_for(report, tile)
    save_image(figure, paths["compare.png"])
    text = markdown_table(report, header)
    with atomic_path(paths["compare.md"]) as tmp:
        tmp.write_text(text, encoding="utf-8")
    write_csv(report, paths["compare.csv"])
    save_image(tensor_to_image(report.images["feed-forward"]), paths["feedforward.png"])
    last = max((r.steps for r in report.rows if r.mode == "optimization" and r.steps), default=None)
    if last is not None:
        save_image(tensor_to_image(report.images[f"optimized_{last}"]), paths["optimized.png"])

    writer = SummaryWriter(log_dir=str(out / "tensorboard"))
    try:
        pixels = torch.from_numpy(np.asarray(figure).copy()).permute(2, 0, 1)
        writer.add_image("compare/figure", pixels, 0)
        writer.add_text("compare/table", text, 0)
        ff = report.row("feed-forward")
        for row in report.rows:
            if row.mode != "optimization":
                continue
            for name in ("content", "style", "tv", "total", "seconds"):
                writer.add_scalar(f"compare/optimization/{name}", getattr(row, name), row.steps)
                writer.add_scalar(f"compare/feed-forward/{name}", getattr(ff, name), row.steps)
    finally:
        writer.close()
    return {name: path for name, path in paths.items() if path.exists()}
