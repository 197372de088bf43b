"""Speed options: per-accelerator defaults, fused Adam across resumes, channels-last and compiled training."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from fast_style.auto_settings import SpeedSettings, resolve_speed_settings, training_device
from fast_style.errors import FastStyleError
from tests.test_training import events, train

pytestmark = pytest.mark.filterwarnings("ignore:loss.weights=none", "ignore::UserWarning")


# -- resolving "auto" ---------------------------------------------------------------------------------
def test_auto_on_a_cpu_without_native_bf16_is_plain_fp32_with_every_option_off():
    assert resolve_speed_settings("cpu", bf16=False) == SpeedSettings(
        precision="32-true", benchmark=False, channels_last=False, fused=False, pin_memory=False
    )


def test_auto_on_a_cpu_with_native_bf16_trains_in_bf16_mixed_precision():
    settings = resolve_speed_settings("cpu", bf16=True)
    assert settings.precision == "bf16-mixed"
    assert not (settings.benchmark or settings.channels_last or settings.fused or settings.pin_memory)


def test_cpu_bf16_detection_reads_the_cpu_flags(monkeypatch, tmp_path):
    import builtins

    from fast_style import auto_settings

    real_open = builtins.open
    for flags, expected in [
        ("fpu sse2 avx512f avx512_bf16", True),
        ("fpu amx_tile amx_bf16", True),
        ("fpu avx2", False),
    ]:
        info = tmp_path / "cpuinfo"
        info.write_text(f"processor\t: 0\nflags\t\t: {flags}\n")
        monkeypatch.setattr(
            builtins,
            "open",
            lambda path, *a, _info=info, **k: real_open(_info if path == "/proc/cpuinfo" else path, *a, **k),
        )
        assert auto_settings.cpu_bf16_native() is expected, flags
        assert (resolve_speed_settings("cpu").precision == "bf16-mixed") is expected


def test_compile_auto_is_on_for_long_cpu_runs_with_a_compiler(monkeypatch):
    from fast_style import auto_settings

    monkeypatch.setattr(auto_settings, "compiler_available", lambda: True)
    assert resolve_speed_settings("cpu", compile="auto", steps=-1).compile  # epoch-bounded: long
    assert resolve_speed_settings("cpu", compile="auto", steps=auto_settings.COMPILE_MIN_STEPS).compile
    assert not resolve_speed_settings(
        "cpu", compile="auto", steps=auto_settings.COMPILE_MIN_STEPS - 1
    ).compile
    assert not resolve_speed_settings("cuda", compile="auto", steps=-1, bf16=True).compile
    assert resolve_speed_settings("cpu", compile=True, steps=3).compile  # explicit wins
    monkeypatch.setattr(auto_settings, "compiler_available", lambda: False)
    assert not resolve_speed_settings("cpu", compile="auto", steps=-1).compile


def test_a_failing_compilation_falls_back_to_eager(caplog):
    from fast_style.training import CompileOrEager

    def broken_compiler(graph, example_inputs):
        raise RuntimeError("no C++ compiler here")

    net = torch.nn.Linear(3, 2)
    call = CompileOrEager(net, backend=broken_compiler, what="test network")
    x = torch.randn(4, 3)
    with caplog.at_level("WARNING", logger="fast_style.training"):
        out = call(x)
    torch.testing.assert_close(out, net(x))
    assert not call.compiled and "torch.compile of the test network failed" in caplog.text


def test_auto_on_cuda_turns_every_option_on():
    assert resolve_speed_settings("cuda", bf16=True) == SpeedSettings(
        precision="bf16-mixed", benchmark=True, channels_last=True, fused=True, pin_memory=True
    )


def test_auto_on_a_cuda_gpu_without_native_bf16_keeps_fp32():
    settings = resolve_speed_settings("cuda", bf16=False)
    assert settings.precision == "32-true"
    assert settings.benchmark and settings.channels_last and settings.fused and settings.pin_memory


def test_a_deterministic_run_keeps_the_cudnn_autotuner_off():
    settings = resolve_speed_settings("cuda", bf16=True, deterministic=True)
    assert settings.benchmark is False and settings.channels_last and settings.precision == "bf16-mixed"
    assert resolve_speed_settings("cuda", benchmark=True, bf16=True, deterministic=True).benchmark is True


def test_explicit_values_win_over_the_device_defaults():
    on_cuda = resolve_speed_settings(
        "cuda",
        precision="16-mixed",
        benchmark=False,
        channels_last=False,
        fused=False,
        pin_memory=False,
        bf16=True,
    )
    assert on_cuda == SpeedSettings("16-mixed", False, False, False, False)
    on_cpu = resolve_speed_settings(
        "cpu", precision="bf16-mixed", channels_last=True, fused=True, pin_memory="AUTO"
    )
    assert on_cpu == SpeedSettings("bf16-mixed", False, True, True, False)
    assert resolve_speed_settings("cpu", precision=None, benchmark=None, bf16=False).precision == "32-true"


def test_a_value_that_is_neither_auto_nor_a_bool_is_a_clear_error():
    with pytest.raises(FastStyleError, match=r"speed\.channels_last must be auto, true or false"):
        resolve_speed_settings("cpu", channels_last="yes")


@pytest.mark.parametrize(
    "accelerator, cuda, expected",
    [
        ("auto", True, "cuda"),
        ("gpu", True, "cuda"),
        ("CUDA", True, "cuda"),
        ("cpu", True, "cpu"),
        ("auto", False, "cpu"),
        ("cpu", False, "cpu"),
        ("mps", False, "mps"),
    ],
)
def test_training_device_follows_lightnings_choice(monkeypatch, accelerator, cuda, expected):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    assert training_device(accelerator) == expected


def test_cli_writes_the_resolved_values_into_the_config():
    from fast_style.auto_settings import resolve_auto_settings
    from fast_style.cli.hydra_app import compose_config

    cfg = compose_config("train", ["style_image=s.jpg", "trainer.accelerator=cpu"])
    assert cfg.trainer.precision == "auto" and cfg.speed.channels_last == "auto"
    assert cfg.optimizer.fused == "auto" and cfg.data.pin_memory == "auto" and cfg.trainer.benchmark == "auto"
    assert cfg.speed.compile == "auto" and cfg.speed.compile_backend == "inductor"

    resolved = resolve_auto_settings(cfg)
    speed = resolve_speed_settings("cpu", compile="auto", steps=-1)
    assert resolved["trainer.precision"] == speed.precision and resolved["speed.compile"] is speed.compile
    assert cfg.trainer.precision == speed.precision and cfg.trainer.benchmark is False
    assert cfg.speed.compile is speed.compile and cfg.speed.compile_loss is speed.compile
    assert cfg.speed.channels_last is False and cfg.data.pin_memory is False
    assert cfg.optimizer.fused is None  # Adam's own default, which keeps its foreach kernels


def _leaves(node: object, prefix: str = "") -> list[tuple[str, object]]:
    if isinstance(node, dict):
        return [leaf for k, v in node.items() for leaf in _leaves(v, f"{prefix}{k}.")]
    return [(prefix.rstrip("."), node)]


# What may still say "auto" after resolving: Lightning's own keys, and the loss's layer weights (computed
# from the style targets, not from the machine).
NOT_MACHINE_SETTINGS = {
    "trainer.accelerator",
    "trainer.devices",
    "loss.content_layer_weights",
    "loss.style_layer_weights",
}


@pytest.mark.parametrize("cuda", [False, True])
def test_every_command_resolves_auto_the_same_way(monkeypatch, cuda):
    from omegaconf import OmegaConf

    from fast_style import auto_settings
    from fast_style.auto_settings import resolve_auto_settings
    from fast_style.cli.hydra_app import compose_config

    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: int(cuda))
    monkeypatch.setattr(auto_settings, "_bf16_native", lambda: True)
    pixels = ["content_image=c.jpg", "style_image=s.jpg", "pixel_optimizer=adam"]
    configs = {
        "train": compose_config("train", ["style_image=s.jpg"]),
        "optimize": compose_config("optimize", [*pixels, "output=o.png"]),
        "compare": compose_config("compare", [*pixels, "model_file=m.safetensors"]),
    }
    for command, cfg in configs.items():
        resolve_auto_settings(cfg)
        leaves = _leaves(OmegaConf.to_container(cfg, resolve=False))
        left = {key for key, value in leaves if isinstance(value, str) and value.lower() == "auto"}
        assert left <= NOT_MACHINE_SETTINGS, (command, left)
        assert resolve_auto_settings(cfg) == {}  # nothing left to resolve
    fused = True if cuda else None  # None: Adam's own default, as in training
    assert configs["train"].optimizer.fused is fused
    assert configs["optimize"].pixel_optimizer.fused is fused
    assert configs["compare"].pixel_optimizer.fused is fused
    assert configs["optimize"].device == configs["compare"].device == ("cuda" if cuda else "cpu")
    assert configs["train"].trainer.precision == (
        "bf16-mixed" if cuda else resolve_speed_settings("cpu").precision
    )


def test_explicit_fused_values_follow_the_training_rule_in_optimize():
    from fast_style.auto_settings import resolve_auto_settings
    from fast_style.cli.hydra_app import compose_config

    base = ["content_image=c.jpg", "style_image=s.jpg", "output=o.png", "pixel_optimizer=adam", "device=cpu"]
    on = compose_config("optimize", [*base, "pixel_optimizer.fused=true"])
    off = compose_config("optimize", [*base, "pixel_optimizer.fused=false"])
    assert resolve_auto_settings(on) == {} and on.pixel_optimizer.fused is True
    resolve_auto_settings(off)
    assert off.pixel_optimizer.fused is None
    bad = compose_config("optimize", [*base, "pixel_optimizer.fused=yes"])
    with pytest.raises(FastStyleError, match=r"pixel_optimizer\.fused must be auto, true or false"):
        resolve_auto_settings(bad)


# -- fused Adam and resuming ----------------------------------------------------------------------------
def _adam_after_steps(fused: bool | None, steps: int, state: dict | None = None) -> torch.optim.Adam:
    from fast_style.training import _keep_implementation_flags

    torch.manual_seed(0)
    weight = torch.nn.Parameter(torch.randn(8, 4))
    adam = torch.optim.Adam([weight], lr=0.1, fused=fused)
    adam.register_load_state_dict_pre_hook(_keep_implementation_flags)
    if state is not None:
        adam.load_state_dict(state)
    for _ in range(steps):
        adam.zero_grad()
        weight.pow(2).sum().backward()
        adam.step()
    return adam


@pytest.mark.parametrize("saved, resumed", [(True, None), (None, True)])
def test_resumed_optimizer_keeps_this_runs_implementation(saved, resumed):
    first = _adam_after_steps(saved, 2)
    assert first.param_groups[0]["fused"] is saved
    second = _adam_after_steps(resumed, 3, state=first.state_dict())
    assert second.param_groups[0]["fused"] is resumed  # not the checkpoint's setting
    assert second.param_groups[0]["lr"] == 0.1
    assert int(second.state[second.param_groups[0]["params"][0]]["step"]) == 5


def test_training_resumes_across_fused_and_unfused_adam(tmp_path, image_folder, style_path):
    run = tmp_path / "run"
    assert train(run, image_folder, style_path, "trainer.max_steps=2", "optimizer.fused=true") == 0
    first = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert first["optimizer_states"][0]["param_groups"][0]["fused"] is True

    assert train(run, image_folder, style_path, "trainer.max_steps=4", "ckpt_path=last") == 0
    second = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert second["global_step"] == 4
    assert second["optimizer_states"][0]["param_groups"][0]["fused"] is None  # auto on CPU
    assert int(second["optimizer_states"][0]["state"][0]["step"]) == 4


# -- channels-last and compiled training ------------------------------------------------------------
def _losses(run: Path) -> list[float]:
    return [e.value for e in events(run).Scalars("train/total")]


def test_channels_last_training_matches_the_default_layout(tmp_path, image_folder, style_path):
    plain, fast = tmp_path / "plain", tmp_path / "fast"
    fp32 = "trainer.precision=32-true"  # the layouts agree to 1e-4 in float32; bf16 rounds differently
    assert train(plain, image_folder, style_path, "trainer.max_steps=3", fp32) == 0
    assert train(fast, image_folder, style_path, "trainer.max_steps=3", "speed.channels_last=true", fp32) == 0
    assert len(_losses(plain)) == 3  # one total a step, so the comparison below is not of two empty lists
    assert _losses(fast) == pytest.approx(_losses(plain), rel=1e-4)

    ckpt = torch.load(fast / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    weight = ckpt["state_dict"]["net.encoder.0.1.weight"]  # the first 9x9 convolution
    assert weight.is_contiguous(memory_format=torch.channels_last) and not weight.is_contiguous()
    assert ckpt["hyper_parameters"]["run_config"]["speed"]["channels_last"] is True


# torch.compile's eager backend traces and wraps the modules as inductor does, in seconds rather than
# minutes; inductor itself (the default) is the slow case. Inductor once failed on the backward of the
# upsample+conv layers' replicate padding: its two steps must match the plain run's losses.
@pytest.mark.parametrize(
    "backend",
    ["eager", pytest.param("inductor", marks=pytest.mark.slow)],
)
def test_compiled_training_saves_plain_checkpoints_that_export(tmp_path, image_folder, style_path, backend):
    from fast_style.cli.main import main
    from fast_style.inference import Stylizer

    plain, compiled = tmp_path / "plain", tmp_path / "compiled"
    # A loss network cut at relu2_2 (the stack stops at the deepest layer used): inductor's compile of
    # the loss, not the two steps, is most of this test's time, and it grows with the layers.
    settings = ("loss.style_layers=[relu1_2,relu2_2]", "trainer.precision=32-true")
    assert train(plain, image_folder, style_path, "trainer.max_steps=2", *settings) == 0
    compile_both = (
        *settings,
        "speed.compile=true",
        "speed.compile_loss=true",
        f"speed.compile_backend={backend}",
    )
    assert train(compiled, image_folder, style_path, "trainer.max_steps=2", *compile_both) == 0
    assert len(_losses(plain)) == 2
    assert _losses(compiled) == pytest.approx(_losses(plain), rel=1e-3)

    ckpt = torch.load(compiled / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    keys = list(ckpt["state_dict"])
    assert keys and all(k.startswith("net.") and "_orig_mod" not in k for k in keys)

    out = tmp_path / "compiled.safetensors"
    assert main(["export", str(compiled / "checkpoints" / "last.ckpt"), "-o", str(out)]) == 0
    stylizer = Stylizer.from_file(out, backend="torch")
    weights = {k[len("net.") :]: v for k, v in ckpt["state_dict"].items()}
    for name, tensor in stylizer.net.state_dict().items():
        torch.testing.assert_close(tensor, weights[name])
