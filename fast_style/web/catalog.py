"""The models a web server offers: found once at start-up, looked up by name only, loaded on first use.

A request can name only a model listed here: names are plain file stems and lookups go through a
dictionary, so no request ever builds a path. Nothing here imports training code.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fast_style.errors import FastStyleError
from fast_style.inference import Stylizer, read_metadata

__all__ = ["ModelCatalog", "ModelEntry", "demo_photo", "find_models", "shipped_models_dir"]

_SOURCE_ROOT = Path(__file__).resolve().parents[2]
# Estimates of seconds per megapixel follow recent runs: new = (1 - w) * old + w * measured.
_RATE_WEIGHT = 0.5


def shipped_models_dir() -> Path | None:
    """``checkpoints/`` of the source checkout this package runs from, if there is one."""
    folder = _SOURCE_ROOT / "checkpoints"
    return folder if folder.is_dir() else None


def demo_photo() -> Path | None:
    """The demo photo of the source checkout (``assets/demo/astronaut.jpg``), if there is one."""
    photo = _SOURCE_ROOT / "assets" / "demo" / "astronaut.jpg"
    return photo if photo.is_file() else None


@dataclass(frozen=True)
class ModelEntry:
    """One servable model: its public ``name`` (the file stem) and what the page shows about it."""

    name: str
    path: Path
    arch: str
    style: str
    folder: str
    styles: tuple[str, ...] = ()  # a multi-style model's styles, in order; () for one style

    def public(self) -> dict[str, object]:
        """The fields ``GET /api/models`` shows (no paths)."""
        return {
            "name": self.name,
            "arch": self.arch,
            "style": self.style,
            "folder": self.folder,
            "styles": list(self.styles),
        }


def find_models(folders: Sequence[str | os.PathLike[str]]) -> tuple[list[ModelEntry], list[str]]:
    """The ``.safetensors`` models directly inside ``folders``, and one warning per file skipped.

    Raises ``FastStyleError`` for a folder that does not exist and for two different files that
    would get the same name.
    """
    entries: dict[str, ModelEntry] = {}
    seen: set[Path] = set()
    warnings: list[str] = []
    for folder in map(Path, folders):
        if not folder.is_dir():
            raise FastStyleError(f"models folder not found: {folder}")
        for path in sorted(folder.glob("*.safetensors")):
            resolved = path.resolve()
            if resolved in seen or not path.is_file():
                continue
            seen.add(resolved)
            try:
                meta = read_metadata(path)
            except FastStyleError as exc:
                warnings.append(f"skipped {path.name}: {exc}")
                continue
            name = path.stem
            if name in entries:
                raise FastStyleError(
                    f"two models are named {name!r}: {entries[name].path} and {path}; rename one of them"
                )
            entries[name] = ModelEntry(
                name,
                path,
                str(meta["arch"]),
                str(meta.get("style_name", name)),
                folder.name,
                tuple(str(s) for s in meta.get("styles") or ()),
            )
    return list(entries.values()), warnings


class ModelCatalog:
    """Models by name, each loaded once on first use and kept; measured speeds for the page's estimate.

    The models hand their scratch memory back after each image, and on the CPU tile images of more
    than ``whole_pixels`` (``None``: the ``Stylizer``'s own choice). ``stylizer`` is meant for the one
    inference thread; the speed table is safe from any thread.
    """

    def __init__(
        self, entries: Sequence[ModelEntry], device: str = "auto", whole_pixels: int | None = None
    ) -> None:
        self._entries = {entry.name: entry for entry in entries}
        self._device = device
        self._whole_pixels = whole_pixels
        self._loaded: dict[str, Stylizer] = {}
        self._rates: dict[str, float] = {}
        self._lock = threading.Lock()

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name in self._entries

    def __len__(self) -> int:
        return len(self._entries)

    def names(self) -> list[str]:
        """Model names in listing order."""
        return list(self._entries)

    def path(self, name: str) -> Path:
        """The file of a listed model (never shown to clients)."""
        return self._entries[name].path

    def styles(self, name: str) -> list[str]:
        """A listed multi-style model's style names; ``[]`` for a single-style one."""
        return list(self._entries[name].styles)

    def listing(self) -> list[dict[str, object]]:
        """What ``GET /api/models`` shows for each model, with its current speed estimate."""
        with self._lock:
            rates = dict(self._rates)
        return [{**e.public(), "seconds_per_megapixel": rates.get(e.name)} for e in self._entries.values()]

    def stylizer(self, name: str) -> Stylizer:
        """The loaded ``Stylizer`` for a listed name; the first call loads it and runs it once."""
        if name not in self._entries:
            raise KeyError(name)
        stylizer = self._loaded.get(name)
        if stylizer is None:
            stylizer = Stylizer.from_file(self._entries[name].path, device=self._device, release_memory=True)
            if self._whole_pixels is not None and stylizer.device.type == "cpu":  # RAM, not GPU memory
                stylizer.auto_tile_pixels = self._whole_pixels
            # The first run builds the backend's graph (seconds); do it now so timings measure stylizing.
            stylizer.stylize_array(np.zeros((64, 64, 3), dtype=np.uint8))
            self._loaded[name] = stylizer
        return stylizer

    def record(self, name: str, seconds: float, pixels: int) -> float:
        """Fold one measured run into ``name``'s seconds-per-megapixel estimate; returns the estimate."""
        measured = seconds / max(pixels, 1) * 1e6
        with self._lock:
            old = self._rates.get(name)
            rate = measured if old is None else (1 - _RATE_WEIGHT) * old + _RATE_WEIGHT * measured
            self._rates[name] = rate
        return rate
