"""bf16 inference on CPU: is it faster than the default path, and does the picture stay the same?

    python -m benchmarks.bf16 [--models checkpoints/starry_night.safetensors checkpoints/starry_night_fast.safetensors]
        [--sizes 640x360 1024x1024] [--repeats 5]

For each shipped model and frame size, on the demo photo: the default path of ``fast-style stylize``
and ``video`` on CPU (fp32, the network as an ONNX graph in onnxruntime), fp32 in eager PyTorch,
and eager PyTorch under bfloat16 autocast in channels-last memory format (with and without
``torch.compile``). Medians of ``--repeats`` runs after a warm-up, interleaved, and the mean
absolute difference (0-255) of each picture from the fp32 one. bf16 would become the default only
where the CPU computes bfloat16 natively, the picture stays within 2/255 of fp32, and it is faster
than the default path.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from benchmarks.common import device_line, markdown_table
from fast_style.auto_settings import cpu_bf16_native
from fast_style.images import load_image
from fast_style.inference import Stylizer

ROOT = Path(__file__).resolve().parents[1]
MODELS = [
    ROOT / "checkpoints" / "starry_night.safetensors",
    ROOT / "checkpoints" / "starry_night_fast.safetensors",
]


def _size(text: str) -> tuple[int, int]:
    w, _, h = text.partition("x")
    return int(w), int(h)


def _median_seconds(fn: Callable[[], torch.Tensor], repeats: int) -> tuple[float, torch.Tensor]:
    out = fn()  # warm-up (graph building, compilation)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - start)
    return float(np.median(times)), out


def cases(model: Path) -> dict[str, Callable[[torch.Tensor], torch.Tensor]]:
    """The ways to run ``model`` on a ``(1, 3, H, W)`` batch in [0, 1]."""
    default = Stylizer.from_file(model)  # onnxruntime on CPU when installed
    eager = Stylizer.from_file(model, backend="torch")
    net = eager.net
    assert net is not None
    channels_last = net.to(memory_format=torch.channels_last)
    compiled = torch.compile(channels_last)

    def bf16(run: Callable[[torch.Tensor], torch.Tensor]) -> Callable[[torch.Tensor], torch.Tensor]:
        def go(x: torch.Tensor) -> torch.Tensor:
            with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
                return run(x.contiguous(memory_format=torch.channels_last)).float().clamp(0, 1)

        return go

    return {
        f"default ({default.backend}, fp32)": default.stylize_tensor,
        "torch fp32": eager.stylize_tensor,
        "torch bf16, channels-last": bf16(channels_last),
        "torch bf16, channels-last, compiled": bf16(compiled),
    }


def main(argv: Sequence[str] | None = None) -> None:
    """Parse arguments and print one table of every model, size and case."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--models", type=Path, nargs="+", default=MODELS)
    parser.add_argument("--sizes", type=_size, nargs="+", default=[(640, 360), (1024, 1024)])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    print(f"{device_line()}; bfloat16 native on this CPU: {cpu_bf16_native()}\n")
    photo = load_image(ROOT / "assets" / "demo" / "astronaut.jpg")
    rows: list[list[object]] = []
    for model in args.models:
        runs = cases(model)
        for w, h in args.sizes:
            pixels = np.asarray(photo.resize((w, h), Image.Resampling.BICUBIC))
            x = torch.from_numpy(pixels.copy()).permute(2, 0, 1)[None].float() / 255
            results = {
                name: _median_seconds(lambda run=run, x=x: run(x), args.repeats) for name, run in runs.items()
            }
            fp32 = results["torch fp32"][1]
            first = next(iter(results.values()))[0]
            for name, (seconds, out) in results.items():
                diff = (out.float() - fp32).abs().mean().item() * 255
                rows.append(
                    [model.stem, f"{w}x{h}", name, f"{seconds:.3f}", f"{first / seconds:.2f}×", f"{diff:.2f}"]
                )
    header = ["model", "size", "case", "median s", "vs default", "mean abs diff from fp32 (0-255)"]
    print(markdown_table(header, rows))


if __name__ == "__main__":
    main()
