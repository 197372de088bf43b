"""Run a Hydra task from ``fast-style <command> key=value ...`` with one-line user errors."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from omegaconf import DictConfig

from fast_style.errors import FastStyleError

__all__ = ["config_dir", "run_hydra_task", "user_error"]


def config_dir() -> Path:
    """The ``configs/`` folder: ``$FAST_STYLE_CONFIG_DIR``, else the one beside the package."""
    override = os.environ.get("FAST_STYLE_CONFIG_DIR")
    path = Path(override) if override else Path(__file__).resolve().parents[2] / "configs"
    if not (path / "train.yaml").is_file():
        raise FastStyleError(
            f"Hydra configs not found at {path}; install fast_style from its source tree "
            "(pip install -e .) or set FAST_STYLE_CONFIG_DIR"
        )
    return path


def user_error(exc: BaseException) -> str | None:
    """The message of a user-fixable error anywhere in ``exc``'s cause chain, else ``None``."""
    from omegaconf.errors import MissingMandatoryValue

    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, FastStyleError):
            return str(current)
        if isinstance(current, MissingMandatoryValue):
            key = getattr(current, "full_key", None) or "a required value"
            return f"missing {key}: pass {key}=..."
        current = current.__cause__ or current.__context__
    return None


def run_hydra_task(
    command: str, task: Callable[[DictConfig], object], argv: Sequence[str] | None, script: str | None = None
) -> int:
    """Run ``task`` under ``hydra.main`` with ``configs/<command>.yaml``; return an exit code.

    ``script`` is a file that runs the same command as ``python script key=value ...``: Lightning's
    DDP launcher starts the other ranks by re-running ``sys.argv[0]`` with the same overrides.
    """
    import hydra

    try:
        path = config_dir()
    except FastStyleError as exc:
        print(f"fast-style {command}: error: {exc}", file=sys.stderr)
        return 2

    @hydra.main(config_path=str(path), config_name=command, version_base="1.3")
    def entry(cfg: DictConfig) -> None:
        try:
            task(cfg)
        except KeyboardInterrupt:
            print(f"fast-style {command}: interrupted", file=sys.stderr)
            raise SystemExit(130) from None
        except Exception as exc:
            message = user_error(exc)
            if message is None:
                raise
            print(f"fast-style {command}: error: {message}", file=sys.stderr)
            raise SystemExit(2) from None

    saved = sys.argv
    sys.argv = [script or f"fast-style {command}", *(sys.argv[1:] if argv is None else argv)]
    try:
        entry()
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    finally:
        sys.argv = saved
    return 0
