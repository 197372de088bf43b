"""Inference speed and memory on CPU: our stylize path vs an eager reference.

    python -m benchmarks.inference [--sizes 512 1024] [--repeats 5] [--big 4096]

Cases: the eager reference (pytorch-examples architecture, ``reference.py``); fast_style's default
network (johnson 32-64-128) and ``model=fast``, each on the default path (``--backend auto``: an
ONNX graph of the network in onnxruntime on CPU) and on ``--backend torch``; the default network
with four styles (conditional instance norm, one style picked); and the default network exported with ``fast-style export --onnx`` and loaded from the ``.onnx`` file. Every case
runs in this one process, interleaved round-robin; the table gives medians, the speed-up over the
reference, and the process's peak RSS during each case's runs (it holds every model). The big case
runs ``fast-style stylize`` on a ``--big``-pixel square PNG in a fresh process (tiled, since it is
over 2048 x 2048) and reports that process's peak RSS. The networks have random weights: speed does
not depend on them.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from benchmarks.common import Case, device_line, interleaved, markdown_table
from benchmarks.reference import ReferenceTransformerNet
from fast_style.inference import AUTO_TILE_PIXELS, Stylizer
from fast_style.models import FastTransformerNet, TransformerNet

ROOT = Path(__file__).resolve().parents[1]


def _save(net: TransformerNet | FastTransformerNet, folder: Path) -> Path:
    """Write ``net`` as an inference file, as ``fast-style export`` would."""
    from safetensors.torch import save_file

    from fast_style.export import model_metadata

    styles = net.num_styles
    record = {"styles": [f"style{i}" for i in range(styles)]} if styles > 1 else {}
    path = folder / f"{net.arch}{f'_{styles}styles' if styles > 1 else ''}.safetensors"
    save_file(
        {k: v.contiguous() for k, v in net.state_dict().items()},
        str(path),
        metadata=model_metadata(net, record),
    )
    return path


def _onnx_file_stylizer(model: Path, folder: Path) -> Stylizer:
    """The model exported to a ``.onnx`` file, as ``fast-style export --onnx`` writes it, and loaded back."""
    from fast_style.export import export_onnx

    return Stylizer.from_file(export_onnx(model, folder / f"{model.stem}.onnx"))


def _big_image(path: Path, side: int) -> None:
    """A smooth photo-like test image (gradients plus mild noise) so the PNG is not incompressible."""
    from PIL import Image

    ramp = np.linspace(0, 255, side, dtype=np.float32)
    rgb = np.stack(
        [ramp[None, :].repeat(side, 0), ramp[:, None].repeat(side, 1), 255 - ramp[None, :].repeat(side, 0)],
        -1,
    )
    rgb += np.random.default_rng(0).normal(0, 8, rgb.shape).astype(np.float32)
    Image.fromarray(rgb.clip(0, 255).astype(np.uint8)).save(path)


_CHILD = """
import sys
from pathlib import Path
from fast_style.cli.main import main
code = main(sys.argv[1:])
for line in Path("/proc/self/status").read_text().splitlines():
    if line.startswith("VmHWM:"):
        print("peak_kib", line.split()[1], file=sys.stderr)
sys.exit(code)
"""


def _cli_run(image: Path, model: Path, out: Path) -> tuple[float, float]:
    """``fast-style stylize`` in a fresh process: (wall seconds, peak RSS MiB of that process).

    The child reads its own high-water mark: the kernel's ``ru_maxrss`` of a child would also count
    the memory of this process, which it is forked from.
    """
    cmd = [sys.executable, "-c", _CHILD, "stylize", str(image), "-m", str(model), "-o", str(out)]
    cmd += ["--device", "cpu", "--overwrite"]
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    seconds = time.perf_counter() - start
    peaks = [line.split()[1] for line in proc.stderr.splitlines() if line.startswith("peak_kib ")]
    if proc.returncode != 0 or not peaks:
        raise SystemExit(f"fast-style stylize failed on {image}: {proc.stderr.strip()[-500:]}")
    return seconds, int(peaks[0]) / 1024


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", type=int, nargs="+", default=[512, 1024])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--big", type=int, default=4096, help="side of the tiled memory case (0: skip)")
    args = parser.parse_args()
    torch.manual_seed(0)

    reference = ReferenceTransformerNet().eval().requires_grad_(False)
    tmp = Path(tempfile.mkdtemp())
    models = {"default": _save(TransformerNet().eval(), tmp), "fast": _save(FastTransformerNet().eval(), tmp)}
    multi = _save(TransformerNet(num_styles=4).eval(), tmp)  # conditional instance norm, 4 styles
    stylizers = {
        "fast_style default (johnson)": Stylizer.from_file(models["default"]),
        "fast_style default, --backend torch": Stylizer.from_file(models["default"], backend="torch"),
        "johnson exported .onnx file": _onnx_file_stylizer(models["default"], tmp),
        "johnson, 4 styles (one picked)": Stylizer.from_file(multi),
        "fast_style model=fast": Stylizer.from_file(models["fast"]),
        "fast_style model=fast, --backend torch": Stylizer.from_file(models["fast"], backend="torch"),
    }

    print(device_line())
    print(f"default backend on CPU: {stylizers['fast_style default (johnson)'].backend}")
    rows = []
    for size in args.sizes:
        rng = np.random.default_rng(size)
        pixels = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
        x255 = torch.from_numpy(pixels).permute(2, 0, 1)[None].float()

        def run_reference(x255: torch.Tensor = x255) -> None:
            with torch.inference_mode():
                out = reference(x255).clamp(0, 255)
                out.round().to(torch.uint8).permute(0, 2, 3, 1).numpy()

        cases = [Case("reference (eager, pytorch-examples architecture)", run_reference)]
        cases += [
            Case(name, lambda s=stylizer, p=pixels: s.stylize_array(p))
            for name, stylizer in stylizers.items()
        ]
        interleaved(cases, args.repeats)
        base = cases[0].median
        for case in cases:
            rows.append(
                [
                    f"{size}²",
                    case.name,
                    f"{case.median:.3f}",
                    f"{base / case.median:.2f}×",
                    f"{case.peak_mib:.0f}",
                ]
            )

    print(markdown_table(["size", "case", "median s", "vs reference", "peak RSS MiB"], rows))

    if args.big:
        image = tmp / f"big_{args.big}.png"
        _big_image(image, args.big)
        big_rows = []
        mode = "tiled" if args.big**2 > AUTO_TILE_PIXELS else "whole image"
        for name, model in models.items():
            seconds, peak = _cli_run(image, model, tmp / f"out_{name}.png")
            big_rows.append(
                [
                    f"{args.big}²",
                    f"fast-style stylize, {name} network ({mode})",
                    f"{seconds:.1f}",
                    f"{peak:.0f}",
                ]
            )
        print()
        print(
            markdown_table(
                ["size", "case", "seconds (with start-up and PNG i/o)", "peak RSS MiB (that process)"],
                big_rows,
            )
        )


if __name__ == "__main__":
    main()
