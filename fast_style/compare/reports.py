"""A comparison's report: Markdown and CSV tables, a side-by-side figure, TensorBoard logs."""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from fast_style.compare.experiment import COLUMNS, REFINED, CompareReport
from fast_style.files import atomic_path
from fast_style.images import save_image, tensor_to_image

__all__ = [
    "OUTPUT_FILES",
    "figure_for",
    "make_figure",
    "markdown_table",
    "summary",
    "write_csv",
    "write_outputs",
]

OUTPUT_FILES = (
    "compare.png",
    "compare.md",
    "compare.csv",
    "feedforward.png",
    "optimized.png",
    "refined.png",
)


def _fmt(value: float | int | None, digits: int = 4) -> str:
    if value is None:
        return "–"
    if isinstance(value, int):
        return str(value)
    return f"{value:.{digits}g}"


def summary(report: CompareReport) -> str:
    """The steps (and time) optimization needs to reach the feed-forward style loss, and the total that
    feed-forward + N steps reaches, in optimization steps."""
    return _style_summary(report) + _refine_summary(report)


def _style_summary(report: CompareReport) -> str:
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


def _refine_summary(report: CompareReport) -> str:
    """What the last feed-forward + N steps row is worth in optimization steps (by total), if there is one."""
    refined = [r for r in report.rows if r.mode == REFINED]
    if not refined:
        return ""
    last = refined[-1]
    text = f" Feed-forward + {last.steps} steps reaches a total of {_fmt(last.total)} in {_fmt(last.seconds, 3)} s"
    for entry in report.history:
        if entry["total"] <= last.total:
            return text + f"; optimization needs {int(entry['step'])} steps for that total."
    reached = int(report.history[-1]["step"]) if report.history else 0
    return text + f"; optimization does not reach it within {reached} steps."


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
    """The comparison figure: content | style(s) | optimized at each checkpoint | feed-forward |
    feed-forward + N steps for each refine checkpoint."""
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
    for row in report.rows:
        if row.mode == REFINED:
            tiles.append(
                (
                    f"feed-forward + {row.steps} steps",
                    f"style {_fmt(row.style, 3)}, {_fmt(row.seconds, 3)} s",
                    report.images[f"refined_{row.steps}"],
                )
            )
    return make_figure(tiles, tile)


def write_outputs(
    report: CompareReport, out_dir: str | os.PathLike[str], header: str = "", tile: int = 256
) -> dict[str, Path]:
    """Write ``compare.png``, ``compare.md``, ``compare.csv``, the final images (``feedforward.png``,
    ``optimized.png``, ``refined.png``) and TensorBoard logs."""
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
    refined = max((r.steps for r in report.rows if r.mode == REFINED and r.steps), default=None)
    if refined is not None:
        save_image(tensor_to_image(report.images[f"refined_{refined}"]), paths["refined.png"])

    writer = SummaryWriter(log_dir=str(out / "tensorboard"))
    try:
        pixels = torch.from_numpy(np.asarray(figure).copy()).permute(2, 0, 1)
        writer.add_image("compare/figure", pixels, 0)
        writer.add_text("compare/table", text, 0)
        ff = report.row("feed-forward")
        for row in report.rows:
            # "refined": feed-forward + N steps, at step N (a tag cannot hold "+" or spaces)
            tag = {"optimization": "optimization", REFINED: "refined"}.get(row.mode)
            if tag is None:
                continue
            for name in ("content", "style", "tv", "total", "seconds"):
                writer.add_scalar(f"compare/{tag}/{name}", getattr(row, name), row.steps)
                if tag == "optimization":
                    writer.add_scalar(f"compare/feed-forward/{name}", getattr(ff, name), row.steps)
    finally:
        writer.close()
    return {name: path for name, path in paths.items() if path.exists()}
