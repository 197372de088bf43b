"""Every ``auto`` setting of a ``train``, ``optimize`` or ``compare`` config, resolved in one place.

The device comes first (``trainer.accelerator`` for train, ``device`` for optimize and compare); each
speed option then takes its default on that device. No Lightning here: optimize and compare use it too.
"""

from __future__ import annotations

import logging
import os
import shutil
from dataclasses import dataclass
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from fast_style.devices import resolve_device
from fast_style.errors import FastStyleError

__all__ = [
    "COMPILE_MIN_STEPS",
    "OPTIMIZER_KEYS",
    "SpeedSettings",
    "compiler_available",
    "cpu_bf16_native",
    "resolve_auto_settings",
    "resolve_speed_settings",
    "training_device",
]

log = logging.getLogger("fast_style")


@dataclass(frozen=True)
class SpeedSettings:
    """The speed options of one training run, with every ``auto`` resolved for its device."""

    precision: str | int  # Lightning's ``Trainer(precision=...)``
    benchmark: bool  # ``torch.backends.cudnn.benchmark``
    channels_last: bool  # networks and batches in channels-last memory format
    fused: bool  # ``torch.optim.Adam(fused=True)``
    pin_memory: bool  # page-locked host memory for the DataLoader
    compile: bool = False  # ``torch.compile`` the transform network and the perceptual loss


# Shorter runs do not repay torch.compile's start-up cost (measured by benchmarks/train_step.py,
# whose warm-up step includes compilation; benchmarks/README.md, "Training step").
COMPILE_MIN_STEPS = 500

# The config keys that hold an optimizer: training's (network weights) and optimize/compare's (pixels).
OPTIMIZER_KEYS = ("optimizer", "pixel_optimizer")


def training_device(accelerator: str) -> str:
    """The device type Lightning trains on for ``Trainer(accelerator=...)``: ``cuda``, ``cpu``, ...

    Like Lightning, ``auto``, ``gpu`` and ``cuda`` mean CUDA when ``torch.cuda.is_available()``; on a
    machine without CUDA, ``auto`` is reported as ``cpu`` (Apple's ``mps`` gets CPU defaults too).
    """
    name = str(accelerator).lower()
    if name in ("auto", "gpu", "cuda") and torch.cuda.is_available():
        return "cuda"
    return "cpu" if name == "auto" else name


def _bf16_native() -> bool:
    """True when the current CUDA GPU computes in bfloat16 natively (Ampere, compute capability 8.0, or newer)."""
    return torch.cuda.is_available() and torch.cuda.get_device_capability() >= (8, 0)


def cpu_bf16_native() -> bool:
    """True when this CPU computes bfloat16 natively (AVX512-BF16 or AMX), where bf16 autocast pays off.

    Read from ``/proc/cpuinfo``; elsewhere (macOS, Windows) the answer is ``False`` and training stays
    in float32, which is never slower there.
    """
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    return bool(flags & {"avx512_bf16", "amx_bf16"})
    except OSError:
        pass
    return False


def compiler_available() -> bool:
    """True when a C++ compiler is on ``PATH``: TorchInductor needs one to compile for the CPU."""
    return any(shutil.which(name) for name in (os.environ.get("CXX", ""), "g++", "c++", "clang++") if name)


def _is_auto(value: object) -> bool:
    return value is None or (isinstance(value, str) and value.lower() == "auto")


def _flag(name: str, value: object, default: bool) -> bool:
    if _is_auto(value):
        return default
    if isinstance(value, bool):
        return value
    raise FastStyleError(f"{name} must be auto, true or false, got {value!r}")


def _fused_default(device: str) -> bool:
    """Fused Adam pays off on CUDA; elsewhere Adam's own default (foreach) is kept."""
    return device == "cuda"


def resolve_speed_settings(
    device: str,
    precision: str | int | None = "auto",
    benchmark: bool | str | None = "auto",
    channels_last: bool | str | None = "auto",
    fused: bool | str | None = "auto",
    pin_memory: bool | str | None = "auto",
    bf16: bool | None = None,
    deterministic: bool = False,
    compile: bool | str | None = False,
    steps: int = -1,
) -> SpeedSettings:
    """Replace each ``auto`` (or ``None``) by its default on ``device``; explicit values pass through.

    On ``cuda`` the defaults are bf16 mixed precision (``32-true`` on GPUs without native bfloat16),
    cuDNN autotuning, channels-last, fused Adam and pinned memory. On ``cpu`` precision is
    ``bf16-mixed`` where the CPU computes bfloat16 natively, else ``32-true``, and ``compile`` is on
    for runs of at least ``COMPILE_MIN_STEPS`` steps (``steps``; -1 means an epoch-bounded run) when a
    C++ compiler is available; the other options are off. ``bf16`` says whether the device has native
    bfloat16 (default: ask CUDA, or read the CPU's flags). A ``deterministic`` run keeps cuDNN's
    autotuner off, as Lightning does, since it picks algorithms by timing.
    """
    cuda = device == "cuda"
    if precision is None or str(precision).lower() == "auto":
        if bf16 is None:
            bf16 = _bf16_native() if cuda else device == "cpu" and cpu_bf16_native()
        precision = "bf16-mixed" if bf16 and device in ("cuda", "cpu") else "32-true"
    long_run = steps < 0 or steps >= COMPILE_MIN_STEPS
    return SpeedSettings(
        precision=precision,
        benchmark=_flag("trainer.benchmark", benchmark, cuda and not deterministic),
        channels_last=_flag("speed.channels_last", channels_last, cuda),
        fused=_flag("optimizer.fused", fused, _fused_default(device)),
        pin_memory=_flag("data.pin_memory", pin_memory, cuda),
        compile=_flag("speed.compile", compile, device == "cpu" and long_run and compiler_available()),
    )


_ABSENT = object()


def _select(cfg: DictConfig, key: str) -> Any:
    return OmegaConf.select(cfg, key, default=_ABSENT)


def resolve_auto_settings(cfg: DictConfig) -> dict[str, Any]:
    """Write the value of every machine-dependent ``auto`` (or null) of a composed config into it.

    The same rules for every command: the device is ``training_device(trainer.accelerator)`` for
    train and ``resolve_device(device)`` for optimize and compare; ``trainer.precision``,
    ``trainer.benchmark``, ``speed.*``, ``data.pin_memory`` and the ``fused`` flag of
    ``optimizer`` / ``pixel_optimizer`` then take ``resolve_speed_settings``' value for that device,
    for the keys the config has. A fused flag that is off becomes ``None``, not ``False``:
    ``Adam(fused=False)`` would also switch off its default foreach kernels. Explicit values are
    kept, and a resolved config stays as it is. Not touched: ``trainer.accelerator`` and
    ``trainer.devices``, which Lightning resolves, and the loss's layer weights ``auto``, which come
    from the style targets, not the machine. Returns the keys that were ``auto`` with their new values.
    """
    if "trainer" in cfg:
        device = training_device(cfg.trainer.get("accelerator", "auto"))
        steps = int(cfg.trainer.get("max_steps", -1) or -1)
        deterministic = bool(cfg.trainer.get("deterministic", False))
    else:
        device = str(resolve_device(cfg.get("device", "auto")))
        steps, deterministic = -1, False
    kind = device.split(":")[0]
    fused_key = next((f"{k}.fused" for k in OPTIMIZER_KEYS if _select(cfg, f"{k}.fused") is not _ABSENT), "")

    def value(key: str) -> Any:
        found = _select(cfg, key)
        return "auto" if found is _ABSENT else found

    # Named here, so an error names the key the config has (optimizer.fused or pixel_optimizer.fused).
    fused = _flag(fused_key, value(fused_key), _fused_default(kind)) if fused_key else False
    speed = resolve_speed_settings(
        kind,
        precision=value("trainer.precision"),
        benchmark=value("trainer.benchmark"),
        channels_last=value("speed.channels_last"),
        fused=fused,
        pin_memory=value("data.pin_memory"),
        deterministic=deterministic,
        compile=value("speed.compile"),
        steps=steps,
    )
    compile_loss = value("speed.compile_loss")
    targets: dict[str, Any] = {
        "device": device,
        "trainer.precision": speed.precision,
        "trainer.benchmark": speed.benchmark,
        "speed.channels_last": speed.channels_last,
        "speed.compile": speed.compile,
        "speed.compile_loss": speed.compile if _is_auto(compile_loss) else compile_loss,
        "data.pin_memory": speed.pin_memory,
    }
    if fused_key:
        targets[fused_key] = True if speed.fused else None
    resolved = {}
    for key, new in targets.items():
        old = _select(cfg, key)
        if old is _ABSENT or old == new:
            continue
        if _is_auto(old):
            resolved[key] = new
        OmegaConf.update(cfg, key, new, merge=False)
    if resolved:
        shown = ", ".join(f"{k}={'off' if v is None else v}" for k, v in resolved.items())
        log.info("auto settings on %s: %s", device, shown)
    return resolved
