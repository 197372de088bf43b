"""Checks that run before any work: the composed config's types and ranges, and image sizes the loss can take."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import InterpolationResolutionError

from fast_style.errors import FastStyleError
from fast_style.schema import DataConfig, LBFGSConfig, LossConfig, range_rules

__all__ = [
    "Rule",
    "check_image_sides",
    "config_dict",
    "explain_override",
    "loss_min_side",
    "validate_config",
    "warn_if_poor_style",
]

log = logging.getLogger("fast_style")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def config_dict(cfg: DictConfig) -> dict[str, Any]:
    """``cfg`` resolved into plain Python values: a dict with string keys, lists and scalars inside."""
    container = OmegaConf.to_container(cfg, resolve=True)
    if not isinstance(container, dict):
        raise TypeError(f"expected a mapping config, got {type(container).__name__}")
    return {str(key): value for key, value in container.items()}


@dataclass(frozen=True)
class Rule:
    """One config key: what its value must be (``expected``, as said to the user) and the test for it."""

    key: str
    expected: str
    test: Callable[[Any], bool]


def _int(low: int, *, nullable: bool = False, also: Sequence[int] = ()) -> tuple[str, Callable[[Any], bool]]:
    text = f"an integer >= {low}" + "".join(f" or {v}" for v in also) + (" or null" if nullable else "")
    return text, lambda v: (nullable and v is None) or (_is_int(v) and (v >= low or v in also))


def _number(
    low: float, *, strict: bool = False, high: float | None = None
) -> tuple[str, Callable[[Any], bool]]:
    bound = f"> {low:g}" if strict else f">= {low:g}"
    text = f"a number {bound}" + (f" and <= {high:g}" if high is not None else "")

    def test(v: Any) -> bool:
        if not _is_number(v) or v != v:  # NaN
            return False
        return (v > low if strict else v >= low) and (high is None or v <= high)

    return text, test


_BOOL = ("true or false", lambda v: isinstance(v, bool))
_OPTIONAL_TEXT = ("a path or null", lambda v: v is None or isinstance(v, str))


def _channels(value: Any) -> bool:
    return (
        isinstance(value, (list, tuple, ListConfig))
        and len(value) == 3
        and all(_is_int(c) and c > 0 for c in value)
    )


def _schema_rules(prefix: str, schema: type) -> list[Rule]:
    """The range rules of a schema's fields (``fast_style.schema``), under ``prefix.``."""
    return [Rule(f"{prefix}.{name}", expected, test) for name, expected, test in range_rules(schema)]


_LOSS = [
    *_schema_rules("loss", LossConfig),
    Rule("optimizer.lr", *_number(0, strict=True)),
    # Adam's one range (lr) is L-BFGS's; keys the chosen optimizer lacks are skipped
    *_schema_rules("pixel_optimizer", LBFGSConfig),
]
_PIXELS = [
    Rule("image_size", *_int(16, nullable=True)),
    Rule("style_scale", *_number(0, strict=True)),
    Rule("seed", *_int(0, nullable=True)),
    Rule("overwrite", *_BOOL),
]
RULES: dict[str, list[Rule]] = {
    "train": [
        Rule("style_size", *_int(16, nullable=True)),
        Rule("seed", *_int(0, nullable=True)),
        Rule("ckpt_path", *_OPTIONAL_TEXT),
        Rule("init_from", *_OPTIONAL_TEXT),
        Rule("init_train", "styles or decoder", lambda v: v in ("styles", "decoder")),
        Rule("init_keep_styles", *_BOOL),
        Rule("overwrite", *_BOOL),
        Rule("log_images_every_n_steps", *_int(0)),
        Rule("stability.weight", *_number(0)),
        Rule("stability.noise", *_number(0, strict=True, high=1)),
        Rule("stability.shift", *_int(0)),
        *_schema_rules("data", DataConfig),
        Rule("model.channels", "three positive integers, e.g. [32,64,128]", _channels),
        Rule("model.num_residual", *_int(0)),
        Rule("model.skip", *_BOOL),
        Rule("trainer.max_steps", *_int(1, also=(-1,))),
        Rule("trainer.max_epochs", *_int(1, also=(-1,))),
        Rule("trainer.log_every_n_steps", *_int(1)),
        *_LOSS,
    ],
    "optimize": [
        *_PIXELS,
        Rule("steps", *_int(0)),
        Rule("scales", *_int(1)),
        Rule("log_images_every_n_steps", *_int(0)),
        *_LOSS,
    ],
    "compare": [
        *_PIXELS,
        Rule("style_size", *_int(16, nullable=True)),
        Rule("repeats", *_int(1)),
        Rule("figure_tile", *_int(16)),
        *_LOSS,
    ],
}


def validate_config(cfg: DictConfig, command: str) -> None:
    """Check every known key of a composed ``command`` config; the first bad one is an error naming it.

    Missing required values (``???``) are named too. Keys a config does not have are skipped.
    """
    for name in map(str, cfg):
        if name != "hydra" and OmegaConf.is_missing(cfg, name):
            raise FastStyleError(f"missing {name}: pass {name}=...")
    for rule in RULES.get(command, []):
        try:
            value = OmegaConf.select(cfg, rule.key, default=_ABSENT, throw_on_missing=False)
        except InterpolationResolutionError:  # e.g. ${hydra:...}, which resolves only inside the run
            continue
        if value is _ABSENT:
            continue
        if isinstance(value, (DictConfig, ListConfig)):
            value = OmegaConf.to_container(value, resolve=True)
        if not rule.test(value):
            raise FastStyleError(_complaint(rule, value))


def _complaint(rule: Rule, value: Any) -> str:
    shown = repr(value) if isinstance(value, str) else str(value)
    kind = (
        "" if value is None or _is_number(value) or isinstance(value, bool) else f" ({type(value).__name__})"
    )
    return f"{rule.key} must be {rule.expected}, got {shown}{kind}"


def explain_override(command: str, override: str) -> str | None:
    """What is wrong with ``key=value`` for a key with a rule, when composing the config refused it."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    try:
        parsed = OverridesParser.create().parse_override(override)
        key, value = parsed.key_or_group, parsed.value()
    except HydraException:
        return None
    rule = next((rule for rule in RULES.get(command, []) if rule.key == key), None)
    if rule is None or not isinstance(value, (str, int, float, bool, type(None))) or rule.test(value):
        return None
    return _complaint(rule, value)


_ABSENT = object()
_LAYER = re.compile(r"relu(\d+)_\d+$")


def loss_min_side(layers: Sequence[str]) -> int:
    """The smallest image side the VGG loss can take for ``layers``: every 2x2 max pool before them needs 2 px."""
    blocks = [int(m.group(1)) for m in (_LAYER.match(str(name)) for name in layers) if m]
    return 2 ** (max(blocks) - 1) if blocks else 1


def check_image_sides(image: Any, min_side: int, what: str, hint: str) -> None:
    """Refuse a ``(1, 3, H, W)`` image with a side under ``min_side`` pixels, naming ``what`` and a fix."""
    h, w = image.shape[-2:]
    if min(h, w) < min_side:
        raise FastStyleError(
            f"{what} is {w}x{h} px, but the loss network needs at least {min_side} px on each side; {hint}"
        )


def warn_if_poor_style(path: str | Path, image: Any) -> None:
    """Warn when a style image is tiny or a flat colour: training then learns little or nothing."""
    from PIL import Image

    try:
        with Image.open(path) as img:
            size = img.size
    except OSError:  # read once already; a file replaced since then is reported where it is read again
        return
    if float(image.flatten(-2).std(-1).max()) < 1.0 / 255:  # per channel: a red image is flat too
        log.warning("style image %s is a flat colour (%dx%d px): there is no style to learn", path, *size)
    elif min(size) < 16:
        log.warning("style image %s is only %dx%d px: upscaled, it holds little texture", path, *size)
