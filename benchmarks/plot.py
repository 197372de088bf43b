"""Line charts drawn with Pillow (the benchmarks need no plotting library)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from PIL import Image, ImageDraw, ImageFont

__all__ = ["PALETTE", "chart_grid", "line_chart"]

PALETTE = [
    (31, 119, 180),
    (214, 39, 40),
    (44, 160, 44),
    (255, 127, 14),
    (148, 103, 189),
    (140, 86, 75),
    (227, 119, 194),
    (23, 190, 207),
    (127, 127, 127),
    (188, 189, 34),
]

Series = Mapping[str, Sequence[tuple[float, float]]]


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1 has one bitmap size
        return ImageFont.load_default()


def _ticks(low: float, high: float, count: int = 5) -> list[float]:
    if high <= low:
        high = low + 1.0
    raw = (high - low) / count
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    first = math.ceil(low / step) * step
    return [first + i * step for i in range(int((high - first) / step + 1e-9) + 1)]


def _label(value: float) -> str:
    if abs(value - round(value)) < 1e-9 and abs(value) < 1e6:
        return str(round(value))
    return f"{value:.3g}"


def line_chart(
    series: Series,
    title: str,
    xlabel: str,
    size: tuple[int, int] = (420, 300),
    legend: bool = True,
) -> Image.Image:
    """One chart: each named series of ``(x, y)`` points as a line with dots, axes from the data."""
    width, height = size
    image = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(image)
    font, small = _font(14), _font(11)
    left, right, top, bottom = 52, 24, 26, 40
    points = [p for pts in series.values() for p in pts if math.isfinite(p[1])]
    draw.text((left, 5), title, fill="black", font=font)
    if not points:
        draw.text((left, height // 2), "no data", fill="gray", font=font)
        return image
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    x0, x1 = min(0.0, min(xs)), max(xs) or 1.0
    y0, y1 = min(ys), max(ys)
    pad = (y1 - y0) * 0.05 or abs(y1) * 0.05 or 1.0
    y0, y1 = y0 - pad, y1 + pad

    def at(x: float, y: float) -> tuple[float, float]:
        px = left + (x - x0) / (x1 - x0 or 1.0) * (width - left - right)
        py = height - bottom - (y - y0) / (y1 - y0) * (height - top - bottom)
        return px, py

    for tick in _ticks(y0, y1):
        _, py = at(x0, tick)
        draw.line([(left, py), (width - right, py)], fill=(230, 230, 230))
        draw.text((4, py - 6), _label(tick), fill="black", font=small)
    for tick in _ticks(x0, x1):
        px, _ = at(tick, y0)
        draw.line([(px, top), (px, height - bottom)], fill=(240, 240, 240))
        draw.text((px - 8, height - bottom + 3), _label(tick), fill="black", font=small)
    draw.rectangle([left, top, width - right, height - bottom], outline="black")
    draw.text((left + (width - left - right) // 2 - 30, height - 18), xlabel, fill="black", font=small)
    for i, (name, pts) in enumerate(series.items()):
        colour = PALETTE[i % len(PALETTE)]
        line = [at(x, y) for x, y in pts if math.isfinite(y)]
        if len(line) > 1:
            draw.line(line, fill=colour, width=2)
        for px, py in line:
            draw.ellipse([px - 2, py - 2, px + 2, py + 2], fill=colour)
        if legend:
            draw.text((left + 6, top + 4 + 13 * i), name, fill=colour, font=small)
    return image


def chart_grid(charts: Sequence[Image.Image], columns: int) -> Image.Image:
    """Charts of one size laid out in rows of ``columns``."""
    w, h = charts[0].size
    rows = math.ceil(len(charts) / columns)
    grid = Image.new("RGB", (w * columns, h * rows), "white")
    for i, chart in enumerate(charts):
        grid.paste(chart, ((i % columns) * w, (i // columns) * h))
    return grid
