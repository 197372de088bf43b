"""The Hydra configs ship inside the package: found from any folder, by an installed copy, and in the wheel."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from fast_style.errors import FastStyleError

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "fast_style" / "configs"

# Prints what the installed package composes, from whatever folder it is started in.
PROBE = (
    "from fast_style.cli.hydra_app import compose_config, config_search_path; "
    "cfg = compose_config('train', ['style_image=s.jpg', 'experiment=smoke']); "
    "print(config_search_path(), cfg.optimizer._target_, cfg.trainer.max_steps, "
    "compose_config('optimize').steps, compose_config('compare').image_size)"
)


def _config_files(folder: Path) -> list[str]:
    return sorted(
        str(p.relative_to(folder)).replace(os.sep, "/")
        for p in folder.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts
    )


def _run_probe(site: Path, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if k not in ("FAST_STYLE_CONFIG_DIR", "PYTHONPATH")}
    return subprocess.run(
        [sys.executable, "-c", PROBE],
        cwd=cwd,
        env={**clean, "PYTHONPATH": str(site), **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture
def package_alone(tmp_path: Path) -> Path:
    """A copy of the ``fast_style`` package by itself, as an install has it: no clone around it."""
    site = tmp_path / "site"
    shutil.copytree(ROOT / "fast_style", site / "fast_style", ignore=shutil.ignore_patterns("__pycache__"))
    return site


def test_the_package_finds_its_configs_from_another_folder(package_alone: Path, tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    result = _run_probe(package_alone, elsewhere)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["pkg://fast_style.configs", "torch.optim.Adam", "30", "300", "256"]


def test_fast_style_config_dir_points_at_another_copy(package_alone: Path, tmp_path: Path) -> None:
    mine = tmp_path / "my_configs"
    shutil.copytree(CONFIGS, mine)
    smoke = mine / "experiment" / "smoke.yaml"
    smoke.write_text(smoke.read_text().replace("max_steps: 30", "max_steps: 7"))
    result = _run_probe(package_alone, tmp_path, FAST_STYLE_CONFIG_DIR=str(mine))
    assert result.returncode == 0, result.stderr
    assert result.stdout.split()[:3] == [str(mine.resolve()), "torch.optim.Adam", "7"]


def test_a_config_dir_without_train_yaml_is_a_clear_error(tmp_path: Path, monkeypatch, capsys) -> None:
    from fast_style.cli.main import main

    monkeypatch.setenv("FAST_STYLE_CONFIG_DIR", str(tmp_path))
    assert main(["optimize", "content_image=a.jpg", "style_image=b.jpg", "output=c.png"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("fast-style optimize: error: FAST_STYLE_CONFIG_DIR=") and "no train.yaml" in err


def _setuptools_is_new_enough() -> bool:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return int(version("setuptools").split(".")[0]) >= 77
    except (PackageNotFoundError, ValueError):
        return False


@pytest.mark.slow
def test_the_wheel_holds_every_config(tmp_path: Path) -> None:
    source = tmp_path / "source"
    ignore = shutil.ignore_patterns(
        ".git", ".venv", "runs", "outputs", "build", "dist", "*.egg-info", "__pycache__", ".pytest_cache"
    )
    shutil.copytree(ROOT, source, ignore=ignore)
    command = [sys.executable, "-m", "pip", "wheel", str(source), "-w", str(tmp_path / "wheels"), "--no-deps"]
    if _setuptools_is_new_enough():
        command.append("--no-build-isolation")  # builds offline with the setuptools installed here
    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    (wheel,) = (tmp_path / "wheels").glob("fast_style-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
    shipped = {f"fast_style/configs/{name}" for name in _config_files(CONFIGS)}
    assert {"fast_style/configs/train.yaml", "fast_style/configs/optimize.yaml"} <= shipped
    assert shipped <= names, sorted(shipped - names)
    assert not any(name.startswith("configs/") for name in names)


# Which command composes each group's options (and the options that set their keys).
_GROUP_COMMANDS = {"loss": "train", "data": "train", "pixel_optimizer": "optimize"}
_REQUIRED = {
    "train": ["style_image=s.jpg"],
    "optimize": ["content_image=c.jpg", "style_image=s.jpg", "output=o.png"],
    "compare": ["content_image=c.jpg", "style_image=s.jpg", "model_file=m.safetensors"],
}


def _options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONFIGS / group).glob("*.yaml"))


def _experiment_commands(name: str) -> list[str]:
    """The commands an experiment is for, from its header line ``# For fast-style a and b.``"""
    header = (CONFIGS / "experiment" / f"{name}.yaml").read_text().splitlines()[1]
    assert header.startswith("# For fast-style "), f"experiment/{name}.yaml does not say its command"
    return header.removeprefix("# For fast-style ").rstrip(".").split(" and ")


@pytest.mark.parametrize("name", _options("experiment"))
def test_an_experiment_of_another_command_is_refused_in_one_line(name: str) -> None:
    from fast_style.cli.hydra_app import _compose

    for command in set(_REQUIRED) - set(_experiment_commands(name)):
        with pytest.raises(FastStyleError) as refused:
            _compose(command, [*_REQUIRED[command], f"experiment={name}"])
        message = str(refused.value)
        assert f"experiment={name} is not an experiment of fast-style {command}" in message
        assert "\n" not in message


def test_the_old_preset_group_points_at_experiment() -> None:
    from fast_style.cli.hydra_app import _compose

    with pytest.raises(FastStyleError, match="did you mean experiment=gatys"):
        _compose("optimize", ["preset=gatys", *_REQUIRED["optimize"]])


@pytest.mark.parametrize(
    ("command", "override"),
    [
        *[(_GROUP_COMMANDS[g], f"{g}={o}") for g in _GROUP_COMMANDS for o in _options(g)],
        *[(c, f"experiment={o}") for o in _options("experiment") for c in _experiment_commands(o)],
    ],
)
def test_every_config_option_composes_against_the_schemas(command: str, override: str) -> None:
    from omegaconf import OmegaConf

    from fast_style.cli.hydra_app import compose_config
    from fast_style.schema import SCHEMAS

    cfg = compose_config(command, [*_REQUIRED[command], override])
    for group, schemas in SCHEMAS.items():
        if group in cfg:
            assert OmegaConf.get_type(cfg[group]) in schemas.values(), (group, override)


@pytest.mark.parametrize(
    ("file", "typo"),
    [
        ("loss/vgg16.yaml", "style_wieght: 3"),
        ("data/folder.yaml", "batchsize: 2"),
        ("pixel_optimizer/lbfgs.yaml", "history: 5"),
        ("experiment/cpu_demo.yaml", "loss:\n  contnet_weight: 2"),
    ],
)
def test_a_misspelt_key_in_any_yaml_fails_to_compose(
    tmp_path: Path, monkeypatch, file: str, typo: str
) -> None:
    from hydra.errors import HydraException

    from fast_style.cli.hydra_app import compose_config

    mine = tmp_path / "configs"
    shutil.copytree(CONFIGS, mine, ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setenv("FAST_STYLE_CONFIG_DIR", str(mine))
    group = file.split("/")[0]
    command = _GROUP_COMMANDS.get(group, "train")
    option = f"{group}={Path(file).stem}"
    compose_config(command, [*_REQUIRED[command], option])  # the copy composes before the typo
    path = mine / file
    text = path.read_text()
    # inside an existing top-level node (experiment files already have one), else at the top level
    path.write_text(
        text.replace("loss:\n", typo + "\n", 1)
        if typo.startswith("loss:") and "loss:\n" in text
        else text + "\n" + typo + "\n"
    )
    with pytest.raises(HydraException):
        compose_config(command, [*_REQUIRED[command], option])


def test_each_shared_setting_has_its_default_in_the_schema_only() -> None:
    import inspect

    import yaml

    from fast_style.data import StyleDataModule
    from fast_style.losses import PerceptualLoss, build_perceptual_loss
    from fast_style.optimize import OPTIMIZERS
    from fast_style.schema import AdamPixelConfig, DataConfig, LBFGSConfig, LossConfig

    def defaults(function) -> dict:
        return {
            name: p.default
            for name, p in inspect.signature(function).parameters.items()
            if p.default is not inspect.Parameter.empty
        }

    loss = LossConfig()
    for name, value in defaults(PerceptualLoss.__init__).items():
        assert getattr(loss, name) == (list(value) if isinstance(value, tuple) else value), name
    assert defaults(build_perceptual_loss) == {
        "network": loss.network,
        "weights": loss.weights,
        "content_layers": tuple(loss.content_layers),
        "style_layers": tuple(loss.style_layers),
    }
    data = DataConfig()
    for name, value in defaults(StyleDataModule.__init__).items():
        assert getattr(data, name) == value, name
    assert OPTIMIZERS["lbfgs"].keywords == {
        k: v for k, v in vars(LBFGSConfig()).items() if not k.startswith("_")
    }
    assert OPTIMIZERS["adam"].keywords == {"lr": AdamPixelConfig().lr}
    # the groups' YAML files set no key of their schema: they only pick it
    for group in ("loss", "data", "pixel_optimizer"):
        for path in (CONFIGS / group).glob("*.yaml"):
            assert set(yaml.safe_load(path.read_text())) == {"defaults"}, path
