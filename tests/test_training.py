"""Training through the real ``fast-style train`` entry point on tiny generated images."""

from __future__ import annotations

import contextlib
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from omegaconf import OmegaConf
from PIL import Image
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from fast_style.cli.main import main

pytestmark = pytest.mark.filterwarnings("ignore:loss.weights=none", "ignore::UserWarning")

TINY = [
    "loss.network=vgg16",
    "loss.weights=none",
    "data.image_size=32",
    "data.batch_size=2",
    "data.num_workers=0",
    "data.num_sample_images=2",
    "model.channels=[4,8,8]",
    "model.num_residual=1",
    "style_size=32",
    "trainer.accelerator=cpu",
    "trainer.enable_progress_bar=false",
    "trainer.enable_model_summary=false",
    "trainer.log_every_n_steps=1",
    "trainer.max_epochs=-1",
]


def train(run_dir: Path, image_folder: Path, style_path: Path, *extra: str) -> int:
    return main(
        [
            "train",
            f"style_image={style_path}",
            f"data.root={image_folder}",
            f"hydra.run.dir={run_dir}",
            *TINY,
            *extra,
        ]
    )


def events(run_dir: Path) -> EventAccumulator:
    acc = EventAccumulator(str(run_dir / "tensorboard"), size_guidance={"scalars": 0, "images": 0})
    acc.Reload()
    return acc


def test_the_eval_mode_warning_is_silenced_only_while_fitting(tmp_path, image_folder, style_path, recwarn):
    import warnings

    import fast_style.training  # noqa: F401  (importing it must not change the process's filters)

    assert not any(f[1] is not None and "eval mode" in f[1].pattern for f in warnings.filters)
    assert train(tmp_path / "run", image_folder, style_path, "trainer.max_steps=1") == 0
    assert not [w for w in recwarn if "in eval mode" in str(w.message) or "LeafSpec" in str(w.message)]
    assert not any(f[1] is not None and "eval mode" in f[1].pattern for f in warnings.filters)


def test_train_prints_no_advertising_and_ends_with_how_to_score_the_run(
    tmp_path, image_folder, style_path, capfd
):
    assert train(tmp_path / "run", image_folder, style_path, "trainer.max_steps=1") == 0
    printed = "".join(capfd.readouterr())
    assert "Tip:" not in printed and "litlogger" not in printed.lower()
    assert f"python -m benchmarks.learning_curve {tmp_path / 'run'} --content PHOTOS/" in printed
    assert (
        f"fast-style export {tmp_path / 'run' / 'checkpoints' / 'last.ckpt'} -o style.safetensors" in printed
    )


def test_train_writes_checkpoint_scalars_and_images(tmp_path, image_folder, style_path):
    run = tmp_path / "run"
    assert train(run, image_folder, style_path, "trainer.max_steps=3", "log_images_every_n_steps=2") == 0

    ckpt = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert ckpt["global_step"] == 3
    keys = list(ckpt["state_dict"])
    assert keys and all(k.startswith("net.") for k in keys)  # no VGG, no style targets
    record = ckpt["fast_style"]  # the record of fast_style.model_file, as inference files hold it
    assert (record["format_version"], record["arch"], record["model_kwargs"]) == (
        "2",
        "johnson",
        {"channels": [4, 8, 8], "num_residual": 1},
    )
    assert record["style_name"] == "style" and record["training"]["global_step"] == 3
    assert ckpt.get("optimizer_states")

    acc = events(run)
    tags = acc.Tags()
    for term in ("content", "style", "tv", "total"):
        assert f"train/{term}" in tags["scalars"]
    assert [e.step for e in acc.Scalars("train/total")] == [0, 1, 2]
    images = acc.Images("samples/content_stylized")
    assert [e.step for e in images][:2] == [0, 2]
    assert images[0].width == 2 * 32 + 3 * 2 and images[0].height == 2 * 32 + 3 * 2  # 2x2 grid, padding 2
    assert (run / ".hydra" / "config.yaml").is_file()


def test_resume_from_last_continues_step_count_and_logging(tmp_path, image_folder, style_path):
    run = tmp_path / "run"
    assert train(run, image_folder, style_path, "trainer.max_steps=2") == 0
    first = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert first["global_step"] == 2

    assert train(run, image_folder, style_path, "trainer.max_steps=4", "ckpt_path=last") == 0
    second = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert second["global_step"] == 4
    # Adam's step counter went on from the restored state instead of restarting at zero.
    adam_state = second["optimizer_states"][0]["state"][0]
    assert int(adam_state["step"]) == 4
    steps = [e.step for e in events(run).Scalars("train/total")]
    assert steps[:2] == [0, 1] and steps[-2:] == [2, 3]


def test_resume_without_a_last_checkpoint_is_a_clear_error(tmp_path, image_folder, style_path, capsys):
    code = train(tmp_path / "fresh", image_folder, style_path, "trainer.max_steps=2", "ckpt_path=last")
    assert code == 2
    err = capsys.readouterr().err
    assert "ckpt_path=last but there is no" in err and "Traceback" not in err


@pytest.mark.parametrize(
    "setup, expected",
    [
        ("missing", "data folder not found"),
        ("empty", "no images"),
    ],
)
def test_bad_data_folder_is_a_clear_error_before_training(tmp_path, style_path, capsys, setup, expected):
    folder = tmp_path / "data"
    if setup == "empty":
        folder.mkdir()
        (folder / "notes.txt").write_text("not an image")
    code = train(tmp_path / "run", folder, style_path, "trainer.max_steps=2")
    assert code == 2
    err = capsys.readouterr().err
    assert expected in err and "Traceback" not in err
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_missing_style_image_is_a_clear_error(tmp_path, image_folder, capsys):
    code = train(tmp_path / "run", image_folder, tmp_path / "nope.jpg", "trainer.max_steps=2")
    assert code == 2
    assert "image not found" in capsys.readouterr().err


def test_style_image_is_required(tmp_path, image_folder, capsys):
    code = main(["train", f"data.root={image_folder}", f"hydra.run.dir={tmp_path}", *TINY])
    assert code == 2
    assert "missing style_image" in capsys.readouterr().err


def test_corrupt_images_are_skipped_and_counted(tmp_path, image_folder, style_path, capfd):
    (image_folder / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated jpeg")
    run = tmp_path / "run"
    code = train(run, image_folder, style_path, "trainer.max_steps=6", "data.max_bad_fraction=0.5")
    assert code == 0
    out = capfd.readouterr().out
    assert "skipping unreadable image" in out and "broken.jpg" in out
    assert "1 unreadable training image(s) skipped so far" in out
    assert torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == 6


def test_too_many_corrupt_images_stop_training(tmp_path, image_folder, style_path, capsys):
    for i in range(4):
        (image_folder / f"broken{i}.png").write_bytes(b"not a png")
    code = train(
        tmp_path / "run", image_folder, style_path, "trainer.max_steps=20", "data.max_bad_fraction=0.2"
    )
    assert code == 1  # found during the work
    err = capsys.readouterr().err
    assert "training images are unreadable" in err and "data.max_bad_fraction=0.2" in err


def test_sixteen_bit_training_photos_are_scaled_not_clipped(tmp_path):
    from fast_style.data import ImageFolderDataset, find_images

    ramp = np.tile(np.linspace(0, 65535, 64), (48, 1)).astype(np.uint16)
    Image.fromarray(ramp).save(tmp_path / "deep.tif")
    Image.fromarray(ramp).save(tmp_path / "deeper.TIFF")
    with Image.open(tmp_path / "deep.tif") as check:
        assert check.mode == "I;16"
    assert find_images(tmp_path) == [tmp_path / "deep.tif", tmp_path / "deeper.TIFF"]  # as documented
    image = ImageFolderDataset([tmp_path / "deep.tif"], 48, random_crop=False)[0]
    assert isinstance(image, torch.Tensor) and image.shape == (3, 48, 48)
    # Pillow's own conversion to RGB saturates 16-bit values at 255: a mean near 1.
    assert abs(image.mean().item() - 0.5) < 0.05


def test_non_finite_loss_stops_with_a_clear_error(tmp_path, image_folder, style_path, capsys):
    code = train(tmp_path / "run", image_folder, style_path, "trainer.max_steps=3", "loss.style_weight=inf")
    assert code == 1  # found during the work
    err = capsys.readouterr().err
    assert "non-finite loss at step 0" in err and "Traceback" not in err


def _readme_training_table() -> list[tuple[str, str]]:
    """``(key, default)`` for each key in the README's training table (``a / b`` cells split)."""
    text = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    section = text.split("\n## Training\n", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| `")]
    pairs = []
    for row in rows:
        key_cell, default_cell = (cell.strip() for cell in row.strip("|").split("|")[:2])
        keys = [k.strip().strip("`") for k in key_cell.split(" / ")]
        defaults = [d.strip() for d in default_cell.split(" / ")]
        assert len(keys) == len(defaults), row
        pairs += list(zip(keys, defaults, strict=True))
    return pairs


def _documented_value(text: str) -> object:
    value = yaml.safe_load(text.strip("`"))
    if isinstance(value, str):
        with contextlib.suppress(ValueError):
            return float(value)  # YAML 1.1 reads 1e-3 as a string
    return value


def test_readme_training_table_matches_the_config():
    from fast_style.cli.hydra_app import compose_config

    documented = _readme_training_table()
    assert len(documented) > 20, documented
    cfg = compose_config("train", return_hydra_config=True)
    choices = cfg.hydra.runtime.choices
    for key, default in documented:
        if key in choices or key == "experiment":  # a config group: the default is its choice
            assert str(choices.get(key)) == ("None" if default == "none" else default.strip("`")), key
        elif default == "required":
            assert OmegaConf.is_missing(cfg, key), key
        elif key == "hydra.run.dir":
            assert cfg.hydra.run.dir.startswith(default.strip("`").split("<")[0]), key
        else:
            value = OmegaConf.select(cfg, key, default=KeyError)
            assert value is not KeyError, f"{key} is documented but not in the config"
            value = OmegaConf.to_object(value) if OmegaConf.is_config(value) else value
            assert value == pytest.approx(_documented_value(default)), key


def test_override_keys_compose_with_each_experiment():
    from fast_style.cli.hydra_app import compose_config

    overrides = [
        "style_image=s.jpg",
        "data.root=d",
        "data.image_size=64",
        "data.batch_size=2",
        "loss.network=vgg19",
        "loss.weights=none",
        "trainer.max_steps=5",
        "trainer.accelerator=cpu",
        "ckpt_path=last",
    ]
    for experiment in ("smoke", "coco"):
        cfg = compose_config("train", [*overrides, f"experiment={experiment}"], return_hydra_config=True)
        assert cfg.loss.network == "vgg19" and cfg.data.image_size == 64 and cfg.trainer.max_steps == 5
    default = compose_config("train", ["style_image=s.jpg"])
    assert default.loss.content_layers == ["relu2_2"]
    assert default.loss.style_layers == ["relu1_2", "relu2_2", "relu3_3", "relu4_3"]
    assert default.loss.network == "vgg16" and default.loss.weights == "imagenet"
    assert default.optimizer.lr == 1e-3 and default.data.batch_size == 4 and default.data.image_size == 256
    assert default.trainer.max_epochs == 2


def test_resize_size_crops_from_larger_photos(tmp_path):
    """Crops taken after scaling to ``resize_size`` show a zoomed-in part of the photo."""
    from PIL import Image

    from fast_style.data import StyleDataModule

    folder = tmp_path / "photos"
    folder.mkdir()
    # left half black, right half white: a crop of the whole photo holds both, a zoomed one may not
    pixels = torch.zeros(3, 64, 128, dtype=torch.uint8)
    pixels[:, :, 64:] = 255
    Image.fromarray(pixels.permute(1, 2, 0).numpy()).save(folder / "half.png")

    torch.manual_seed(0)
    whole = StyleDataModule(str(folder), image_size=32, num_workers=0)
    crops = [whole.train_set[0] for _ in range(20)]
    assert all(c.shape == (3, 32, 32) for c in crops)
    # 32x64 photo: nearly every 32 px crop spans both halves
    assert sum(bool(c.min() < 0.1 and c.max() > 0.9) for c in crops) >= 15

    zoomed = StyleDataModule(str(folder), image_size=32, resize_size=128, num_workers=0)
    crops = [zoomed.train_set[0] for _ in range(20)]
    assert all(c.shape == (3, 32, 32) for c in crops)
    # 128x256 photo: most 32 px crops lie inside one half
    assert sum(bool((c.max() - c.min()) < 0.1) for c in crops) >= 10


def test_resize_size_below_crop_is_a_clear_error(tmp_path, image_folder):
    from fast_style.data import StyleDataModule
    from fast_style.errors import FastStyleError

    with pytest.raises(FastStyleError, match="resize_size must be at least"):
        StyleDataModule(str(image_folder), image_size=64, resize_size=32, num_workers=0)


@pytest.mark.parametrize("schedule", ["cosine", "onecycle"])
def test_schedules_without_a_length_last_the_run(tmp_path, image_folder, style_path, schedule):
    run = tmp_path / "run"
    assert train(run, image_folder, style_path, f"scheduler={schedule}", "trainer.max_steps=4") == 0
    acc = events(run)
    tag = next(t for t in acc.Tags()["scalars"] if t.startswith("lr-"))
    lrs = {e.step: e.value for e in acc.Scalars(tag)}
    if schedule == "cosine":  # lr 1e-3 to eta_min 1e-5 over T_max = 4 steps: halfway after 2
        assert lrs[2] == pytest.approx((1e-3 + 1e-5) / 2, rel=1e-3)
    else:  # up towards max_lr 4e-3, then down below its start (max_lr / 10) by the 4th step
        assert max(lrs.values()) > 3e-3 and lrs[max(lrs)] < 4e-4


def test_a_schedule_without_a_length_needs_a_run_with_an_end(tmp_path, image_folder, style_path, capsys):
    run = tmp_path / "run"
    code = train(
        run,
        image_folder,
        style_path,
        "scheduler=cosine",
        "trainer.max_steps=-1",
        "+trainer.max_time=00:00:00:30",
    )
    err = capsys.readouterr().err
    assert code != 0 and "scheduler.T_max=null takes the run's length" in err


def test_the_run_folder_records_the_resolved_settings_the_checkpoint_records(
    tmp_path, image_folder, style_path
):
    run = tmp_path / "run"
    assert train(run, image_folder, style_path, "trainer.max_steps=1") == 0
    given = yaml.safe_load((run / ".hydra" / "config.yaml").read_text())
    resolved = yaml.safe_load((run / "resolved.yaml").read_text())
    ckpt = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert resolved == ckpt["hyper_parameters"]["run_config"]
    logged = yaml.safe_load((run / "tensorboard" / "hparams.yaml").read_text())  # TensorBoard's hparams
    assert logged["run_config"] == resolved
    assert given["trainer"]["precision"] == "auto" and resolved["trainer"]["precision"] != "auto"
    for key in ("precision", "benchmark"):
        assert resolved["trainer"][key] != "auto"
    assert "auto" not in (resolved["speed"]["compile"], resolved["data"]["pin_memory"])


def _style_images(folder: Path, names: list[str]) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    paths = []
    for i, name in enumerate(names):
        pixels = rng.integers(0, 255, (40, 40, 3), dtype=np.uint8) // (i + 1)
        path = folder / f"{name}.png"
        Image.fromarray(pixels).save(path)
        paths.append(path)
    return paths


@pytest.mark.parametrize("arch", ["johnson", "fast"])
def test_several_style_images_train_one_conditional_network(tmp_path, image_folder, style_path, arch):
    from fast_style.export import export_safetensors
    from fast_style.inference import Stylizer

    a, b, c = _style_images(tmp_path / "styles", ["wave", "night", "cubes"])
    run = tmp_path / "run"
    code = train(
        run,
        image_folder,
        style_path,
        f"style_image=[{a},{b},{c}]",
        f"model={arch}",
        "model.channels=[4,8,8]",
        "model.num_residual=1",
        "data.batch_size=3",
        "trainer.max_steps=2",
    )
    assert code == 0
    ckpt = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    record = ckpt["fast_style"]
    assert record["styles"] == ["wave", "night", "cubes"] and record["model_kwargs"]["num_styles"] == 3
    assert [s["name"] for s in record["training"]["loss"]["styles"]] == ["wave", "night", "cubes"]
    norm_weights = [v for k, v in ckpt["state_dict"].items() if k.endswith("weight") and v.dim() == 2]
    assert norm_weights and all(v.shape[0] == 3 for v in norm_weights)  # a scale per style and channel
    tags = events(run).Tags()["scalars"]
    assert {"train/style/wave", "train/style/night", "train/style/cubes"} <= set(tags)

    model = export_safetensors(run / "checkpoints" / "last.ckpt", tmp_path / "multi.safetensors")
    stylizer = Stylizer.from_file(model, backend="torch")
    assert stylizer.styles == ["wave", "night", "cubes"]


def test_style_images_need_distinct_names(tmp_path, image_folder, style_path, capsys):
    a = _style_images(tmp_path / "one", ["same"])[0]
    b = _style_images(tmp_path / "two", ["same"])[0]
    assert train(tmp_path / "run", image_folder, style_path, f"style_image=[{a},{b}]") == 2
    assert "style images must have distinct names" in capsys.readouterr().err


def test_a_new_style_learns_only_its_scales_and_shifts_and_keeps_the_old_ones(
    tmp_path, image_folder, style_path
):
    from safetensors.torch import load_file

    from fast_style.export import export_safetensors
    from fast_style.inference import Stylizer

    a, b, c = _style_images(tmp_path / "styles", ["wave", "night", "cubes"])
    first = tmp_path / "first"
    assert train(first, image_folder, style_path, f"style_image=[{a},{b}]", "trainer.max_steps=2") == 0
    multi = export_safetensors(first / "checkpoints" / "last.ckpt", tmp_path / "multi.safetensors")

    added = tmp_path / "added"
    code = train(
        added,
        image_folder,
        style_path,
        f"style_image={c}",
        f"init_from={multi}",
        "trainer.max_steps=3",
        "optimizer.lr=0.05",
    )
    assert code == 0
    bigger = export_safetensors(added / "checkpoints" / "last.ckpt", tmp_path / "bigger.safetensors")
    assert Stylizer.from_file(bigger).styles == ["wave", "night", "cubes"]
    before, after = load_file(multi), load_file(bigger)
    moved = False
    for key, value in after.items():
        if (
            value.dim() == 2 and key.endswith((".weight", ".bias")) and value.shape[0] == 3
        ):  # a norm, per style
            assert torch.equal(value[:2], before[key])  # the old styles are untouched
            moved |= not torch.allclose(value[2], before[key].mean(0))  # the new one learned
        else:
            assert torch.equal(value, before[key])  # shared convolutions frozen
    assert moved
    record = torch.load(added / "checkpoints" / "last.ckpt", weights_only=True)["fast_style"]
    assert [s["name"] for s in record["training"]["loss"]["styles"]] == ["wave", "night", "cubes"]

    alone = tmp_path / "alone"
    code = train(
        alone,
        image_folder,
        style_path,
        f"style_image={c}",
        f"init_from={multi}",
        "trainer.max_steps=1",
        "init_keep_styles=false",
    )
    assert code == 0
    alone_record = torch.load(alone / "checkpoints" / "last.ckpt", weights_only=True)["fast_style"]
    assert alone_record["style_name"] == "cubes" and "styles" not in alone_record  # a single-style network
    assert "num_styles" not in alone_record["model_kwargs"]


def _one_step_model(tmp_path: Path, image_folder: Path, style_path: Path, styles: str) -> Path:
    """An inference file of a one-step run on ``style_image=styles``."""
    from fast_style.export import export_safetensors

    first = tmp_path / "first"
    assert train(first, image_folder, style_path, f"style_image={styles}", "trainer.max_steps=1") == 0
    return export_safetensors(first / "checkpoints" / "last.ckpt", tmp_path / "first.safetensors")


def test_adding_a_style_the_file_already_paints_is_refused(tmp_path, image_folder, style_path, capsys):
    a, b = _style_images(tmp_path / "styles", ["wave", "night"])
    multi = _one_step_model(tmp_path, image_folder, style_path, f"[{a},{b}]")
    capsys.readouterr()
    assert train(tmp_path / "again", image_folder, style_path, f"style_image={a}", f"init_from={multi}") == 2
    assert "already paints wave" in capsys.readouterr().err


def test_training_the_decoder_for_a_new_style_writes_it_alone(tmp_path, image_folder, style_path, capsys):
    from safetensors.torch import load_file

    from fast_style.export import export_safetensors
    from fast_style.inference import Stylizer

    a, b = _style_images(tmp_path / "styles", ["wave", "night"])
    base = _one_step_model(tmp_path, image_folder, style_path, str(a))
    capsys.readouterr()
    kept = tmp_path / "kept"
    assert (
        train(kept, image_folder, style_path, f"style_image={b}", f"init_from={base}", "init_train=decoder")
        == 2
    )
    err = capsys.readouterr().err
    assert "init_keep_styles=false" in err and len(err.strip().splitlines()) == 1
    assert not kept.exists()

    alone = tmp_path / "alone"
    extra = (f"style_image={b}", f"init_from={base}", "init_train=decoder", "init_keep_styles=false")
    assert train(alone, image_folder, style_path, *extra, "trainer.max_steps=2") == 0
    new = export_safetensors(alone / "checkpoints" / "last.ckpt", tmp_path / "night.safetensors")
    before, after = load_file(base), load_file(new)
    stylizer = Stylizer.from_file(new, backend="torch")
    assert stylizer.metadata["style_name"] == "night" and stylizer.styles == []
    net = stylizer.net
    norms = {id(m) for m in net.instance_norms()}
    norm_prefixes = tuple(f"{name}." for name, m in net.named_modules() if id(m) in norms)
    changed = {key for key in before if not torch.equal(before[key], after[key])}
    convolutions = {key for key in changed if not key.startswith(norm_prefixes)}
    assert convolutions and all(key.startswith("decoder.") for key in convolutions)  # encoder frozen


def test_the_stability_term_is_logged_added_to_the_total_and_trained(tmp_path, image_folder, style_path):
    run = tmp_path / "run"
    extra = (
        "trainer.max_steps=2",
        "stability.weight=0.5",
        "stability.noise=0.05",
        "stability.shift=2",
        "seed=1",
    )
    assert train(run, image_folder, style_path, *extra) == 0
    acc = events(run)
    parts = {
        t: [e.value for e in acc.Scalars(f"train/{t}")]
        for t in ("content", "style", "tv", "stability", "total")
    }
    assert len(parts["stability"]) == 2 and all(v > 0 for v in parts["stability"])
    for step in range(2):
        summed = sum(parts[t][step] for t in ("content", "style", "tv", "stability"))
        assert parts["total"][step] == pytest.approx(summed, rel=1e-4)
    ckpt = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert ckpt["hyper_parameters"]["run_config"]["stability"] == {"weight": 0.5, "noise": 0.05, "shift": 2}


@pytest.mark.parametrize(
    ("override", "expected"), [("stability.weight=-1", ">= 0"), ("stability.noise=0", "> 0")]
)
def test_bad_stability_settings_are_one_line_errors(
    tmp_path, image_folder, style_path, capsys, override, expected
):
    assert train(tmp_path / "run", image_folder, style_path, override) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and override.split("=")[0] in err[0] and expected in err[0]


def test_a_value_the_trainer_refuses_is_one_line_and_leaves_no_run_folder(
    tmp_path, image_folder, style_path, capsys
):
    run = tmp_path / "run"
    assert train(run, image_folder, style_path, "+trainer.max_time=00:00:110:00") == 2
    err = [line for line in capsys.readouterr().err.splitlines() if "error" in line]
    assert len(err) == 1 and "trainer: " in err[0] and "DD:HH:MM:SS" in err[0]
    assert not run.exists()
