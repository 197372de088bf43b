"""What a stylize request may ask for, and how its form fields are checked before it queues."""

from __future__ import annotations

import io
import math
import warnings
from dataclasses import asdict, dataclass
from typing import Any

from PIL import Image, UnidentifiedImageError

from fast_style.errors import FastStyleError
from fast_style.web.catalog import ModelCatalog
from fast_style.web.form import Form

__all__ = ["FORMATS", "ApiError", "Deadlines", "Limits", "StylizeRequest", "parse_request", "probe_image"]

# The Pillow decoders an upload may use: common photo formats only (no EPS, which runs Ghostscript).
FORMATS = ("JPEG", "PNG", "WEBP", "BMP", "TIFF", "GIF")  # JPEG includes MPO (phone photos)
_TRUE = {"1", "true", "on", "yes"}
_FALSE = {"", "0", "false", "off", "no"}


class ApiError(Exception):
    """A request the server refuses; ``status`` is the HTTP status of the JSON answer."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Limits:
    """Per-request limits; ``GET /api/models`` reports them and the page shows them."""

    max_upload_bytes: int = 20 * 2**20  # the image file as sent
    max_pixels: int = 40_000_000  # the image as decoded (width x height)
    max_side: int = 2048  # the result's longer side: larger requests are scaled down to this
    default_side: int = 1024  # the page's initial max-size setting
    max_pending: int = 32  # uploads held at once (one running, the rest queued); more get 503
    # Larger results run in tiles: a whole 2048 x 2048 image peaks near 3 GB on CPU, tiles near 1.5 GB
    # (benchmarks/serve_memory.py).
    max_whole_pixels: int = 1536 * 1024
    # Refine (feed-forward + N L-BFGS steps) costs seconds a step at 512 px on a CPU: both are capped.
    max_refine_steps: int = 50
    max_refine_side: int = 512

    @property
    def max_upload_mb(self) -> int:
        """``max_upload_bytes`` in whole MiB, for messages."""
        return self.max_upload_bytes // 2**20

    def public(self) -> dict[str, object]:
        """The limits as ``GET /api/models`` reports them."""
        return {**asdict(self), "formats": list(FORMATS)}


@dataclass(frozen=True)
class Deadlines:
    """How long the server waits on a client, in seconds; past them it answers 408 and closes.

    None of them runs while the server itself is busy (queued or stylizing).
    """

    headers: float = 10.0  # from a connection's start (or its last answer) to a complete request head
    body: float = 30.0  # from the request head to the upload's last byte (20 MB at 5.6 Mbit/s)
    idle: float = 5.0  # a kept-alive connection that starts no new request is closed after this

    def __post_init__(self) -> None:
        for name, value in asdict(self).items():
            if not (isinstance(value, int | float) and math.isfinite(value) and value > 0):
                raise ValueError(f"the {name} deadline must be a positive number of seconds, got {value!r}")


@dataclass(frozen=True)
class StylizeRequest:
    """A checked ``POST /api/stylize``: the image bytes and the settings to apply to them."""

    image: bytes
    label: str
    model: str
    strength: float
    preserve_color: bool
    max_size: int
    refine: int = 0  # L-BFGS steps after the network; 0: none
    style: str | None = None  # a multi-style model's style (name or index); None: its first
    mix: dict[str, float] | None = None  # or a blend of its styles


def _printable(text: str, limit: int = 60) -> str:
    clean = "".join(ch if ch.isprintable() else "?" for ch in text)
    return clean if len(clean) <= limit else clean[: limit - 3] + "..."


def _strength(raw: str | None) -> float:
    if raw is None or raw == "":
        return 1.0
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or not 0.0 <= value <= 1.0:
        raise ApiError(f"strength must be a number within [0, 1], got {_printable(raw)!r}")
    return value


def _flag(raw: str | None) -> bool:
    value = (raw or "").lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ApiError(f"preserve_color must be true or false, got {_printable(value)!r}")


def _max_size(raw: str | None, limits: Limits) -> int:
    if raw is None or raw == "":
        return limits.max_side
    try:
        value = int(raw)
    except ValueError:
        raise ApiError(f"max_size must be a whole number of pixels, got {_printable(raw)!r}") from None
    if value < 16:
        raise ApiError(f"max_size must be at least 16, got {value}")
    return min(value, limits.max_side)


def _style_choice(style: str | None, mix: str | None, styles: list[str]) -> dict[str, Any]:
    """``style`` and ``mix`` of a stylize form, checked against the model's styles."""
    from fast_style.inference.stylizer import parse_mix, style_weights_for

    chosen_mix = None
    try:
        if mix:
            chosen_mix = parse_mix(mix)
        style_weights_for(styles, style or None, chosen_mix)
    except FastStyleError as exc:
        message = (
            str(exc)
            .replace("--style and --mix need", "style and mix need")
            .replace("--mix takes", "mix takes")
        )
        raise ApiError(_printable(message, 200)) from None
    return {"style": style or None, "mix": chosen_mix}


def _refine(raw: str | None, limits: Limits, unavailable: str | None) -> int:
    if raw is None or raw == "" or raw == "0":
        return 0
    try:
        value = int(raw)
    except ValueError:
        value = -1
    if not 0 <= value <= limits.max_refine_steps:
        raise ApiError(
            f"refine must be a number of steps within 0-{limits.max_refine_steps}, got {_printable(raw)!r}"
        )
    if value and unavailable:
        raise ApiError(f"this server does not refine: {unavailable}")
    return value


def parse_request(
    form: Form, catalog: ModelCatalog, limits: Limits, refine_unavailable: str | None = None
) -> StylizeRequest:
    """Check a stylize form: a listed model name, an image within the upload limit, valid settings.

    ``refine_unavailable``: why this server cannot refine (a request for it is refused), else ``None``.
    """
    model = form.text("model")
    if not model:
        raise ApiError("the form has no 'model' field; GET /api/models lists the model names")
    if model not in catalog:
        # Only names from the listing are accepted, so a path or '..' is simply an unknown name.
        raise ApiError(f"unknown model {_printable(model)!r}; GET /api/models lists the model names", 404)
    image = form.values.get("image")
    if image is None:
        raise ApiError("the form has no 'image' file field")
    if not image:
        raise ApiError("the uploaded image is empty")
    if len(image) > limits.max_upload_bytes:
        raise ApiError(f"the upload is larger than the {limits.max_upload_mb} MB limit", 413)
    return StylizeRequest(
        image=image,
        label=_printable(form.filenames.get("image") or "the upload"),
        model=model,
        strength=_strength(form.text("strength")),
        preserve_color=_flag(form.text("preserve_color")),
        max_size=_max_size(form.text("max_size"), limits),
        refine=_refine(form.text("refine"), limits, refine_unavailable),
        **_style_choice(form.text("style"), form.text("mix"), catalog.styles(model)),
    )


def probe_image(req: StylizeRequest, limits: Limits) -> tuple[str, int, int]:
    """Format, width and height from the image's header alone; 415 for non-images, 413 when too large."""
    kinds = ", ".join(FORMATS)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(req.image), formats=FORMATS) as img:
                fmt, width, height = str(img.format), img.width, img.height
    except Image.DecompressionBombError:
        raise ApiError(f"{req.label} has more than the {limits.max_pixels:,}-pixel limit", 413) from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, EOFError):
        raise ApiError(
            f"{req.label} is not an image this server reads ({kinds}), or it is damaged", 415
        ) from None
    if width * height > limits.max_pixels:
        raise ApiError(
            f"{req.label} is {width}x{height} ({width * height / 1e6:.1f} megapixels); "
            f"the limit is {limits.max_pixels / 1e6:g} megapixels",
            413,
        )
    return fmt, width, height
