"""Run a Hydra task from ``fast-style <command> key=value ...`` with one-line user errors."""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from omegaconf import DictConfig

from fast_style.errors import FastStyleError, one_line

__all__ = [
    "CONFIG_PACKAGE",
    "compose_config",
    "config_search_path",
    "refuse_existing_run",
    "run_hydra_task",
    "user_error",
]


# Hydra's search path for the configs shipped inside the package (package data, see configs/README.md).
CONFIG_PACKAGE = "pkg://fast_style.configs"


def config_search_path() -> str:
    """Where Hydra reads the configs: the folder ``$FAST_STYLE_CONFIG_DIR``, else the package's own."""
    override = os.environ.get("FAST_STYLE_CONFIG_DIR")
    if not override:
        return CONFIG_PACKAGE
    path = Path(override).expanduser().resolve()
    if not (path / "train.yaml").is_file():
        raise FastStyleError(
            f"FAST_STYLE_CONFIG_DIR={override} holds no train.yaml; point it at a copy of fast_style/configs/"
        )
    return str(path)


def compose_config(
    command: str, overrides: Sequence[str] = (), *, return_hydra_config: bool = False
) -> DictConfig:
    """The config ``fast-style <command>`` would run with ``overrides``, composed without running anything."""
    from hydra import compose, initialize_config_dir, initialize_config_module

    from fast_style.schema import register_schemas

    register_schemas()
    source = config_search_path()
    context: initialize_config_dir | initialize_config_module
    if source.startswith("pkg://"):
        context = initialize_config_module(source[len("pkg://") :], version_base="1.3", job_name=command)
    else:
        context = initialize_config_dir(source, version_base="1.3", job_name=command)
    with context:
        return compose(
            config_name=command, overrides=list(overrides), return_hydra_config=return_hydra_config
        )


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


_QUOTING = (
    "values with spaces, non-ASCII letters or any of ()[]{}=,:'\" must be quoted for Hydra inside the "
    "shell's quotes, e.g. 'style_image=\"my photos/été (1).jpg\"' (README: Quoting paths)"
)


# Keys that another command's config has, and what this command calls the same thing.
_KEY_ELSEWHERE = {
    "optimize": {"optimizer": "pixel_optimizer", "preset": "experiment"},
    "compare": {"optimizer": "pixel_optimizer", "model": "model_file", "preset": "experiment"},
}


def _other_commands_key(command: str, overrides: Sequence[str]) -> str | None:
    """A hint for an override of a key that ``command`` does not have but calls otherwise."""
    for arg in overrides:
        key = arg.split("=", 1)[0].lstrip("+~")
        for theirs, ours in _KEY_ELSEWHERE.get(command, {}).items():
            if key == theirs or key.startswith(theirs + "."):
                return f"{command} has no {key!r}: did you mean {ours}{arg.lstrip('+~')[len(theirs) :]}?"
    return None


def _compose(command: str, overrides: Sequence[str]) -> DictConfig:
    """``compose_config`` with the ``hydra`` node; Hydra's errors become one-line user errors."""
    from hydra.errors import HydraException, OverrideParseException

    try:
        cfg = compose_config(command, overrides, return_hydra_config=True)
    except OverrideParseException:
        bad = next((arg for arg in overrides if not _parses(arg)), " ".join(overrides))
        raise FastStyleError(f"cannot read the override {bad!r}: {_QUOTING}") from None
    except HydraException as exc:
        from fast_style.validation import explain_override

        hint = _other_commands_key(command, overrides)
        text = str(exc).split("Config search path")[0]
        # A value the schema's type refuses: say what the key takes, as validate_config does.
        refused = next((arg for arg in overrides if f"override {arg}" in text), None)
        if hint is None and refused is not None:
            hint = explain_override(command, refused)
        if hint is None and "In 'experiment/" in text:
            name = text.split("In 'experiment/", 1)[1].split("'", 1)[0]
            hint = _foreign_experiment(command, name)
        raise FastStyleError(hint or one_line(text)) from None
    _refuse_foreign_experiment(command, overrides, cfg)
    return cfg


def _foreign_experiment(command: str, name: str, keys: Sequence[str] = ()) -> str:
    lacks = f": {command} has none of {', '.join(keys)}" if keys else ""
    return (
        f"experiment={name} is not an experiment of fast-style {command}{lacks} "
        f"(the first lines of experiment/{name}.yaml say which command it is for)"
    )


def _refuse_foreign_experiment(command: str, overrides: Sequence[str], cfg: DictConfig) -> None:
    """The experiment group is shared by all commands; refuse one that adds top-level settings this
    command does not have (a training experiment given to optimize), which would be ignored silently.
    """
    chosen = [arg.split("=", 1)[1] for arg in overrides if arg.lstrip("+").startswith("experiment=")]
    if not chosen:
        return
    plain = compose_config(command, [arg for arg in overrides if "experiment" not in arg.split("=", 1)[0]])
    added = [str(key) for key in cfg if key != "hydra" and key not in plain]
    if added:
        raise FastStyleError(_foreign_experiment(command, chosen[-1], added))


def _parses(arg: str) -> bool:
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    try:
        OverridesParser.create().parse_override(arg)
    except HydraException:
        return False
    return True


def refuse_existing_run(run_dir: Path, markers: Sequence[str], allowed: bool, how: str) -> None:
    """Refuse to start in ``run_dir`` if it holds any of ``markers`` (an earlier run) and not ``allowed``.

    Also refuses a run folder that cannot be written, before Hydra tries to create it.
    """
    from fast_style.files import check_writable

    check_writable(run_dir, folder=True, what="run folder")
    found = [name for name in markers if (run_dir / name).exists()]
    if found and not allowed:
        raise FastStyleError(f"{run_dir} already holds a run ({', '.join(found)}); {how}")


def _is_rank_zero() -> bool:
    # Lightning's DDP launcher re-runs this command for the other ranks with LOCAL_RANK set.
    return os.environ.get("LOCAL_RANK", "0") == "0" and os.environ.get("NODE_RANK", "0") == "0"


def _first_missing_folder(run_dir: Path) -> Path | None:
    """The outermost folder on the way to ``run_dir`` that does not exist yet (``None``: it exists)."""
    if run_dir.exists():
        return None
    missing = run_dir.absolute()
    while not missing.parent.exists():
        missing = missing.parent
    return missing


def _only_hydra_files(created: Path, run_dir: Path, command: str) -> bool:
    """Whether ``created`` holds nothing but the folders down to ``run_dir`` and Hydra's files in it."""
    run_dir = run_dir.absolute()
    for path in created.rglob("*"):
        inside_run = path.is_relative_to(run_dir) and path != run_dir
        # .hydra/, the log and resolved.yaml (the settings) record the attempt, not work done
        if inside_run and path.relative_to(run_dir).parts[0] in (".hydra", f"{command}.log", "resolved.yaml"):
            continue
        if not (path.is_dir() and run_dir.is_relative_to(path)):  # a folder on the way down
            return False
    return created.is_dir()


def run_hydra_task(
    command: str,
    task: Callable[[DictConfig], object],
    argv: Sequence[str] | None,
    script: str | None = None,
    preflight: Callable[[DictConfig, Path], None] | None = None,
) -> int:
    """Run ``task`` under ``hydra.main`` with ``<command>.yaml`` of the configs; return an exit code.

    Before Hydra writes anything, the config is composed once and checked (``validate_config``, then
    ``preflight(cfg, run_dir)``, e.g. the run-folder policy); the run folder is pinned so the checked
    folder is the one used. A refused run leaves no folder behind. Exit codes: 2 for bad input, 1 for
    a failure during the work, 130 for Ctrl-C.

    ``script`` is a file that runs the same command as ``python script key=value ...``: Lightning's
    DDP launcher starts the other ranks by re-running ``sys.argv[0]`` with the same overrides.
    """
    import hydra

    from fast_style.schema import register_schemas
    from fast_style.validation import validate_config

    register_schemas()
    args = list(sys.argv[1:] if argv is None else argv)
    created: Path | None = None
    try:
        search_path = config_search_path()
        if _is_rank_zero() and not any(arg.startswith("-") for arg in args):
            cfg = _compose(command, args)
            validate_config(cfg, command)
            run_dir = Path(str(cfg.hydra.run.dir)).expanduser()
            if preflight is not None:
                preflight(cfg, run_dir)
            pin = f"hydra.run.dir={run_dir}"
            if not any(arg.startswith("hydra.run.dir=") for arg in args) and _parses(pin):
                args.append(pin)  # the timestamp of the checked folder
            created = _first_missing_folder(run_dir)
    except FastStyleError as exc:
        print(f"fast-style {command}: error: {exc}", file=sys.stderr)
        return exc.exit_code

    @hydra.main(config_path=search_path, config_name=command, version_base="1.3")
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
            raise SystemExit(_exit_code(exc)) from None

    # hydra.main reads overrides only from sys.argv (it takes no argv), and it is what makes the run
    # folder, its .hydra/ files and logs; Lightning's DDP launcher starts the other ranks by re-running
    # sys.argv. So both get this command line through sys.argv, restored afterwards.
    saved = sys.argv
    sys.argv = [script or f"fast-style {command}", *args]
    code = 0
    try:
        entry()
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    finally:
        sys.argv = saved
    if code == 2 and created is not None and _only_hydra_files(created, run_dir, command):
        shutil.rmtree(created, ignore_errors=True)  # refused before any work: leave nothing behind
    return code


def _exit_code(exc: BaseException) -> int:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, FastStyleError):
            return current.exit_code
        current = current.__cause__ or current.__context__
    return 2
