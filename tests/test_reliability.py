"""Every command against bad input, faults and crafted files: one-line errors, the right exit code, no lost work."""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path

import pytest
import torch
from PIL import Image

from fast_style.cli.main import main
from tests.conftest import random_image, tiny_checkpoint
from tests.test_training import TINY

pytestmark = pytest.mark.filterwarnings("ignore:loss.weights=none", "ignore::UserWarning")

TINY_TRAIN = TINY  # the tiny training settings of test_training


def train(run: Path, photos: Path, style: Path, *extra: str) -> int:
    return main(
        ["train", f"style_image={style}", f"data.root={photos}", f"hydra.run.dir={run}", *TINY_TRAIN, *extra]
    )


def optimize(run: Path, *extra: str) -> int:
    return main(
        [
            "optimize",
            f"hydra.run.dir={run}",
            "loss.weights=none",
            "progress=false",
            "image_size=32",
            "steps=1",
            *extra,
        ]
    )


def compare(run: Path, *extra: str) -> int:
    return main(
        [
            "compare",
            f"hydra.run.dir={run}",
            "loss.weights=none",
            "progress=false",
            "image_size=32",
            "steps=[1]",
            "repeats=1",
            "figure_tile=32",
            *extra,
        ]
    )


def one_error(err: str, command: str) -> str:
    """The single line a command printed on stderr for a refused input; fails on tracebacks."""
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert "Traceback" not in err, err
    errors = [line for line in lines if line.startswith(f"fast-style {command}: error:")]
    assert len(errors) == 1, err
    return errors[0]


@pytest.fixture
def photo(tmp_path: Path) -> Path:
    path = tmp_path / "photo.png"
    random_image((40, 32), 1).save(path)
    return path


@pytest.fixture
def thin_style(tmp_path: Path) -> Path:
    path = tmp_path / "thin.png"
    random_image((300, 3), 2).save(path)  # 3x300: 1 px high at a 64-128 px long side
    return path


# -- 1. tiny and thin images ---------------------------------------------------------------------------
@pytest.mark.parametrize("backend", ["torch", "onnxruntime", "tiled"])
def test_tiny_and_thin_photos_are_stylized_on_every_path(tmp_path, tiny_model, backend, capsys):
    sizes = [(1, 1), (4, 4), (3, 90), (90, 2), (5, 7)]
    inputs = []
    for i, size in enumerate(sizes):
        inputs.append(tmp_path / f"in{i}.png")
        random_image(size, i).save(inputs[-1])
    extra = ["--backend", "torch", "--tile", "64"] if backend == "tiled" else ["--backend", backend]
    code = main(["stylize", *map(str, inputs), "-m", str(tiny_model), "-o", str(tmp_path / "out"), *extra])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert f"stylized {len(sizes)} of {len(sizes)}" in out
    for i, size in enumerate(sizes):
        assert Image.open(tmp_path / "out" / f"in{i}.png").size == size


def test_a_batch_goes_on_after_an_unforeseen_failure(tmp_path, tiny_model, capsys, monkeypatch):
    from fast_style.inference import Stylizer

    real = Stylizer.stylize

    def flaky(self, image, **kwargs):
        if image.size == (13, 13):
            raise RuntimeError("simulated fault\nwith a second line")
        return real(self, image, **kwargs)

    monkeypatch.setattr(Stylizer, "stylize", flaky)
    for name, size in (("a.png", (20, 20)), ("b.png", (13, 13)), ("c.png", (24, 16))):
        random_image(size, 3).save(tmp_path / name)
    code = main(
        [
            "stylize",
            *(str(tmp_path / n) for n in ("a.png", "b.png", "c.png")),
            "-m",
            str(tiny_model),
            "-o",
            str(tmp_path / "out"),
            "--backend",
            "torch",
        ]
    )
    out, err = capsys.readouterr()
    assert code == 1
    assert "b.png: simulated fault with a second line" in one_error(err, "stylize")
    assert (tmp_path / "out" / "a.png").is_file() and (tmp_path / "out" / "c.png").is_file()
    assert "stylized 2 of 3 image(s)" in out and "1 failed" in out


def test_thin_style_image_is_one_line_for_train(tmp_path, image_folder, thin_style, capsys):
    code = train(tmp_path / "run", image_folder, thin_style, "trainer.max_steps=1")
    message = one_error(capsys.readouterr().err, "train")
    assert code == 2 and "thin.png" in message and "at least 8 px" in message and "style_size" in message


def test_thin_style_image_is_one_line_for_optimize_and_compare(
    tmp_path, photo, thin_style, tiny_model, capsys
):
    code = optimize(
        tmp_path / "opt",
        f"content_image={photo}",
        f"style_image={thin_style}",
        f"output={tmp_path / 'o.png'}",
    )
    message = one_error(capsys.readouterr().err, "optimize")
    assert code == 2 and "thin.png" in message and "at least 8 px" in message
    code = compare(
        tmp_path / "cmp", f"content_image={photo}", f"style_image={thin_style}", f"model_file={tiny_model}"
    )
    message = one_error(capsys.readouterr().err, "compare")
    assert code == 2 and "thin.png" in message and "at least 8 px" in message


def test_a_one_pixel_style_image_warns(tmp_path, image_folder, capfd):
    style = tmp_path / "dot.png"
    Image.new("RGB", (1, 1), (200, 30, 30)).save(style)
    assert train(tmp_path / "run", image_folder, style, "trainer.max_steps=1") == 0
    captured = capfd.readouterr()
    assert "dot.png is a flat colour" in captured.out + captured.err


# -- 2. outputs that cannot be written -------------------------------------------------------------------
def test_optimize_checks_its_output_before_the_work(tmp_path, photo, style_path, capsys, monkeypatch):
    import fast_style.optimize

    def never(*args, **kwargs):
        raise AssertionError("the optimization ran")

    monkeypatch.setattr(fast_style.optimize, "optimize_image", never)
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    code = optimize(
        tmp_path / "run",
        f"content_image={photo}",
        f"style_image={style_path}",
        f"output={blocker / 'out.png'}",
    )
    message = one_error(capsys.readouterr().err, "optimize")
    assert code == 2 and "a_file is a file, not a folder" in message


def test_optimize_keeps_the_result_when_saving_fails(tmp_path, photo, style_path, capsys, monkeypatch):
    import fast_style.images

    real = fast_style.images.save_image
    target = tmp_path / "out.png"

    def disk_full(img, path, **kwargs):
        if Path(path) == target:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(img, path, **kwargs)

    monkeypatch.setattr(fast_style.images, "save_image", disk_full)
    code = optimize(
        tmp_path / "run", f"content_image={photo}", f"style_image={style_path}", f"output={target}"
    )
    message = one_error(capsys.readouterr().err, "optimize")
    assert code == 1  # a failure during the work
    assert "No space left on device" in message and "the result was kept in " in message
    rescued = Path(message.split("the result was kept in ")[1].strip())
    try:
        assert Image.open(rescued).size == (32, 26)
    finally:
        rescued.unlink()


def test_export_to_a_path_under_a_file_is_one_line(tmp_path, tiny_ckpt, capsys):
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    code = main(["export", str(tiny_ckpt), "-o", str(blocker / "model.safetensors")])
    message = one_error(capsys.readouterr().err, "export")
    assert code == 2 and "a_file is a file, not a folder" in message


def test_compare_output_dir_under_a_file_is_refused_before_hydra_writes(
    tmp_path, photo, style_path, tiny_model, capsys
):
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    code = compare(
        tmp_path / "run",
        f"content_image={photo}",
        f"style_image={style_path}",
        f"model_file={tiny_model}",
        f"output_dir={blocker / 'results'}",
    )
    message = one_error(capsys.readouterr().err, "compare")
    assert code == 2 and "a_file is a file, not a folder" in message
    assert not (tmp_path / "run").exists()


# -- 3. crafted inference files ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"channels": [4, 8, 8], "num_residual": 10**8}, "num_residual must be an integer from 0 to 64"),
        ({"channels": [4, 8, 200000], "num_residual": 1}, "channels must be three integers from 1 to 1024"),
        ({"channels": [4, 8, 8], "num_residual": 3}, "do not match"),
        ({"channels": [4, 8, 8], "num_residual": 1, "extra": 1}, "unknown johnson setting"),
    ],
)
def test_crafted_metadata_is_refused_before_building(
    tmp_path, tiny_model, photo, capsys, monkeypatch, kwargs, message
):
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    import fast_style.inference.loading

    def never(*args, **kw):
        raise AssertionError("a network was built from unchecked metadata")

    monkeypatch.setattr(fast_style.inference.loading, "build_model", never)
    with safe_open(str(tiny_model), "pt") as fh:
        metadata = dict(fh.metadata())
    crafted = tmp_path / "crafted.safetensors"
    save_file(
        load_file(str(tiny_model)), str(crafted), metadata={**metadata, "model_kwargs": json.dumps(kwargs)}
    )
    code = main(["stylize", str(photo), "-m", str(crafted), "-o", str(tmp_path / "out.png")])
    assert code == 2 and message in one_error(capsys.readouterr().err, "stylize")


def test_crafted_checkpoint_is_refused_before_building(tmp_path, capsys, monkeypatch):
    import fast_style.export

    def never(*args, **kw):
        raise AssertionError("a network was built from unchecked metadata")

    monkeypatch.setattr(fast_style.export, "build_model", never)
    ckpt_path = tiny_checkpoint(tmp_path / "tiny.ckpt")
    ckpt = torch.load(ckpt_path, weights_only=True)
    ckpt["fast_style"]["model"]["kwargs"]["num_residual"] = 10**8
    torch.save(ckpt, ckpt_path)
    code = main(["export", str(ckpt_path), "-o", str(tmp_path / "m.safetensors")])
    assert code == 2 and "num_residual must be an integer" in one_error(capsys.readouterr().err, "export")


# -- 4. run folders -----------------------------------------------------------------------------------------
def test_a_second_train_into_a_run_folder_is_refused(tmp_path, image_folder, style_path, capsys):
    run = tmp_path / "run"
    assert train(run, image_folder, style_path, "trainer.max_steps=2") == 0
    config = (run / ".hydra" / "config.yaml").read_text()
    capsys.readouterr()
    code = train(run, image_folder, style_path, "trainer.max_steps=2", "seed=7")
    message = one_error(capsys.readouterr().err, "train")
    assert code == 2 and "already holds a run" in message and "ckpt_path=last" in message
    assert (run / ".hydra" / "config.yaml").read_text() == config  # untouched

    assert train(run, image_folder, style_path, "trainer.max_steps=2", "seed=7", "overwrite=true") == 0
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["last.ckpt"]  # no last-v1.ckpt
    assert "seed: 7" in (run / ".hydra" / "config.yaml").read_text()


def test_a_refused_run_leaves_no_folder(tmp_path, image_folder, capsys):
    run = tmp_path / "runs" / "train" / "run"  # none of these folders exists yet
    assert train(run, image_folder, tmp_path / "missing.png", "trainer.max_steps=1") == 2
    assert "missing.png" in one_error(capsys.readouterr().err, "train")
    assert not (tmp_path / "runs").exists()


def test_a_refused_optimize_leaves_no_folder_and_keeps_what_was_there(tmp_path, photo, style_path, capsys):
    (tmp_path / "runs" / "keep.txt").parent.mkdir()
    (tmp_path / "runs" / "keep.txt").write_text("mine")
    run = tmp_path / "runs" / "optimize" / "today"
    code = optimize(run, f"content_image={photo}", f"style_image={tmp_path / 'missing.png'}", "output=o.png")
    assert code == 2 and "missing.png" in one_error(capsys.readouterr().err, "optimize")
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == ["keep.txt"]


def test_compare_refuses_a_used_run_folder_without_touching_it(
    tmp_path, photo, style_path, tiny_model, capsys
):
    run = tmp_path / "run"
    (run / ".hydra").mkdir(parents=True)
    (run / ".hydra" / "config.yaml").write_text("earlier run")
    (run / "compare.md").write_text("earlier results")
    code = compare(run, f"content_image={photo}", f"style_image={style_path}", f"model_file={tiny_model}")
    assert code == 2 and "overwrite=true" in one_error(capsys.readouterr().err, "compare")
    assert (run / ".hydra" / "config.yaml").read_text() == "earlier run"
    assert (run / "compare.md").read_text() == "earlier results"


# -- 5. resuming from bad checkpoints ------------------------------------------------------------------------
def _bad_checkpoint(kind: str, folder: Path) -> Path:
    import pickle

    from tests.conftest import PicklePayload

    path = folder / f"{kind}.ckpt"
    good = tiny_checkpoint(folder / "good.ckpt").read_bytes()
    if kind == "empty":
        path.write_bytes(b"")
    elif kind == "truncated":
        path.write_bytes(good[: len(good) // 2])
    elif kind == "jpeg":
        Image.new("RGB", (8, 8)).save(path, format="JPEG")
    elif kind == "random":
        path.write_bytes(os.urandom(512))
    elif kind == "pickle":
        path.write_bytes(pickle.dumps({"state_dict": PicklePayload(folder / "PWNED")}, protocol=2))
    elif kind == "foreign":
        tiny_checkpoint(path, channels=[8, 8, 8])
    return path


@pytest.mark.parametrize(
    "kind, message",
    [
        ("empty", "is empty"),
        ("truncated", "truncated or corrupt"),
        ("jpeg", "looks like a JPEG image"),
        ("random", "is not a PyTorch file"),
        ("pickle", "holds pickled objects other than tensors"),
        ("foreign", "holds another network"),
    ],
)
def test_resume_from_a_bad_checkpoint_is_one_line(tmp_path, image_folder, style_path, capsys, kind, message):
    bad = _bad_checkpoint(kind, tmp_path)
    code = train(tmp_path / "run", image_folder, style_path, "trainer.max_steps=2", f"ckpt_path={bad}")
    assert code == 2 and message in one_error(capsys.readouterr().err, "train")
    assert not (tmp_path / "PWNED").exists()


@pytest.mark.parametrize(
    "kind, message", [("jpeg", "looks like a JPEG image"), ("random", "is not a PyTorch file")]
)
def test_export_names_what_a_non_checkpoint_is(tmp_path, capsys, kind, message):
    bad = _bad_checkpoint(kind, tmp_path)
    code = main(["export", str(bad), "-o", str(tmp_path / "m.safetensors")])
    line = one_error(capsys.readouterr().err, "export")
    assert code == 2 and message in line and "weights_only" not in line


def test_malicious_loss_weights_are_one_clean_line(tmp_path, pickle_payload, photo, style_path, capsys):
    payload, marker = pickle_payload
    code = optimize(
        tmp_path / "run",
        f"content_image={photo}",
        f"style_image={style_path}",
        f"output={tmp_path / 'o.png'}",
        f"loss.weights={payload}",
    )
    line = one_error(capsys.readouterr().err, "optimize")
    assert code == 2 and "holds pickled objects other than tensors" in line
    assert "\x1b" not in line and "two options" not in line and not marker.exists()


def test_resume_last_falls_back_to_the_newest_step_checkpoint(tmp_path, image_folder, style_path):
    run = tmp_path / "run"
    steps = "callbacks.model_checkpoint.every_n_train_steps=2"
    assert train(run, image_folder, style_path, "trainer.max_steps=4", steps) == 0
    (run / "checkpoints" / "last.ckpt").unlink()  # as if killed before last.ckpt was written
    (run / "checkpoints" / "step0000004.ckpt").write_bytes(b"")  # and while writing this one
    assert train(run, image_folder, style_path, "trainer.max_steps=6", steps, "ckpt_path=last") == 0
    assert torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == 6


# -- misleading messages ----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "override, message",
    [
        ("data.image_size=abc", "data.image_size must be an integer >= 16, got 'abc' (str)"),
        ("data.resize_size=big", "data.resize_size must be an integer >= 16 or null, got 'big' (str)"),
        ("loss.style_weight=abc", "loss.style_weight must be a number >= 0, got 'abc' (str)"),
        ("optimizer.lr=abc", "optimizer.lr must be a number > 0, got 'abc' (str)"),
        ("loss.content_weight=nan", "loss.content_weight must be a number >= 0"),
        ("trainer.max_steps=0", "trainer.max_steps must be an integer >= 1 or -1, got 0"),
        ("model.channels=[4,8]", "model.channels must be three positive integers"),
    ],
)
def test_wrong_train_settings_name_the_key(tmp_path, image_folder, style_path, capsys, override, message):
    code = train(tmp_path / "run", image_folder, style_path, override)
    assert code == 2 and message in one_error(capsys.readouterr().err, "train")
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    "override, message",
    [
        ("image_size=-64", "image_size must be an integer >= 16 or null, got -64"),
        ("steps=many", "steps must be an integer >= 0, got 'many' (str)"),
    ],
)
def test_wrong_optimize_settings_name_the_key(tmp_path, photo, style_path, capsys, override, message):
    code = optimize(
        tmp_path / "run",
        f"content_image={photo}",
        f"style_image={style_path}",
        f"output={tmp_path / 'o.png'}",
        override,
    )
    assert code == 2 and message in one_error(capsys.readouterr().err, "optimize")


def test_non_ascii_paths_say_how_to_quote(tmp_path, style_path, capsys):
    photo = tmp_path / "été photo.png"
    random_image((40, 32), 5).save(photo)
    code = optimize(
        tmp_path / "run",
        f"content_image={photo}",
        f"style_image={style_path}",
        f"output={tmp_path / 'o.png'}",
    )
    line = one_error(capsys.readouterr().err, "optimize")
    assert code == 2 and "must be quoted" in line and "été" in line
    quoted = f"content_image='{photo}'"
    assert (
        optimize(tmp_path / "run2", quoted, f"style_image={style_path}", f"output={tmp_path / 'o.png'}") == 0
    )
    assert (tmp_path / "o.png").is_file()


def test_stylize_output_names(tmp_path, tiny_model, photo, capsys):
    code = main(["stylize", str(photo), "-m", str(tiny_model), "-o", str(tmp_path / "newdir") + "/"])
    assert code == 0 and (tmp_path / "newdir" / "photo.png").is_file()
    capsys.readouterr()
    other = tmp_path / "other.png"
    random_image((20, 20), 6).save(other)
    code = main(["stylize", str(photo), str(other), "-m", str(tiny_model), "-o", str(tmp_path / "out.jpg")])
    assert code == 2 and "name a folder" in one_error(capsys.readouterr().err, "stylize")
    assert not (tmp_path / "out.jpg").exists()


def test_a_pickle_named_safetensors_gets_a_working_export_command(tmp_path, photo, capsys):
    fake = tmp_path / "model.safetensors"
    tiny_checkpoint(fake)
    code = main(["stylize", str(photo), "-m", str(fake), "-o", str(tmp_path / "out.png")])
    line = one_error(capsys.readouterr().err, "stylize")
    assert code == 2
    suggested = line.split("fast-style export ")[1].split()
    assert suggested[0] == str(fake) and suggested[2] != str(fake)
    assert main(["export", *suggested]) == 0
    assert main(["stylize", str(photo), "-m", suggested[2], "-o", str(tmp_path / "out.png")]) == 0


# -- a kill at any moment ---------------------------------------------------------------------------------------
def _scalar_steps(run: Path, tag: str) -> list[int]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run / "tensorboard"), size_guidance={"scalars": 0})
    acc.Reload()
    return [event.step for event in acc.Scalars(tag)] if tag in acc.Tags()["scalars"] else []


@pytest.mark.slow
def test_sigkill_loses_at_most_one_interval_and_resumes_without_duplicate_steps(
    tmp_path, image_folder, style_path
):
    import signal
    import subprocess
    import sys
    import time

    from tests.conftest import ROOT

    run, every, total = tmp_path / "run", 4, 40
    args = [
        f"style_image={style_path}",
        f"data.root={image_folder}",
        f"hydra.run.dir={run}",
        *TINY_TRAIN,
        f"trainer.max_steps={total}",
        f"callbacks.model_checkpoint.every_n_train_steps={every}",
    ]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    child = subprocess.Popen(
        [sys.executable, "-m", "fast_style.cli.main", "train", *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    first = run / "checkpoints" / f"step{every:07d}.ckpt"
    deadline = time.monotonic() + 120
    try:
        while not first.exists() and child.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        # Kill once steps past the checkpoint have reached TensorBoard: those are what a resume logs again.
        while child.poll() is None and time.monotonic() < deadline:
            if max(_scalar_steps(run, "train/total"), default=0) > every:
                break
            time.sleep(0.05)
        assert child.poll() is None, "the run ended before it could be killed"
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.wait()
    logged_before = max(_scalar_steps(run, "train/total"))
    saved = {
        p.name: torch.load(p, weights_only=True)["global_step"] for p in (run / "checkpoints").glob("*.ckpt")
    }
    resumed_from = max(saved.values())
    assert logged_before - resumed_from <= every  # at most one checkpoint interval lost

    assert (
        train(
            run,
            image_folder,
            style_path,
            f"trainer.max_steps={total}",
            f"callbacks.model_checkpoint.every_n_train_steps={every}",
            "ckpt_path=last",
        )
        == 0
    )
    assert torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == total
    steps = _scalar_steps(run, "train/total")
    assert len(steps) == len(set(steps)), "a step is in TensorBoard twice"
    assert max(steps) >= total - 1


def test_resuming_removes_the_steps_a_stopped_run_logged_after_its_checkpoint(tmp_path):
    from torch.utils.tensorboard import SummaryWriter

    from fast_style.cli.train import drop_events_from

    writer = SummaryWriter(log_dir=str(tmp_path))
    for step in range(10):
        writer.add_scalar("train/total", float(step), step)
    writer.close()
    assert drop_events_from(tmp_path, 6) == 4
    assert _scalar_steps_in(tmp_path) == [0, 1, 2, 3, 4, 5]
    assert drop_events_from(tmp_path, 6) == 0  # nothing left to drop


def _scalar_steps_in(log_dir: Path) -> list[int]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(log_dir), size_guidance={"scalars": 0})
    acc.Reload()
    return [event.step for event in acc.Scalars("train/total")]
