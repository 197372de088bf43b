"""The Hydra configs ship inside the package: found from any folder, by an installed copy, and in the wheel."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

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
