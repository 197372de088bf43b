"""Inference speed and memory on CPU: our stylize path vs an eager reference and ONNX Runtime.

    python benchmarks/inference.py [--sizes 512 1024] [--repeats 5] [--big 4096]

Every case runs in this one process, interleaved round-robin, and the table gives medians, the
speed-up over the eager reference, and the peak RSS of each case's runs. The networks have random
weights: speed does not depend on them.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.common import Case, device_line, interleaved, markdown_table, peak_rss_mib, reset_peak_rss  # noqa: E402
from benchmarks.reference import ReferenceTransformerNet  # noqa: E402
from fast_style.inference import Stylizer  # noqa: E402
from fast_style.models import FastTransformerNet, TransformerNet  # noqa: E402


def _save(net: torch.nn.Module, folder: Path) -> Path:
    """Write ``net`` as an inference file, as ``fast-style export`` would."""
    from safetensors.torch import save_file

    from fast_style.export import model_metadata

    path = folder / f"{net.arch}.safetensors"
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(path), metadata=model_metadata(net, {}))
    return path


def _onnx_stylizer(net: torch.nn.Module, folder: Path) -> Stylizer | None:
    """The same network exported to ONNX and run by onnxruntime (None when not installed)."""
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError:
        return None
    from fast_style.export import export_onnx

    return Stylizer.from_file(export_onnx(_save(net, folder), folder / f"{net.arch}.onnx"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[512, 1024])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--big", type=int, default=4096, help="side of the tiled memory case (0: skip)")
    args = parser.parse_args()
    torch.manual_seed(0)

    reference = ReferenceTransformerNet().eval().requires_grad_(False)
    tmp = Path(tempfile.mkdtemp())
    default_net, fast_net = TransformerNet().eval(), FastTransformerNet().eval()
    default = Stylizer.from_file(_save(default_net, tmp))
    fast = Stylizer.from_file(_save(fast_net, tmp))
    onnx_default = _onnx_stylizer(default_net, tmp)
    onnx_fast = _onnx_stylizer(fast_net, tmp)

    print(device_line())
    rows = []
    for size in args.sizes:
        rng = np.random.default_rng(size)
        pixels = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
        x255 = torch.from_numpy(pixels).permute(2, 0, 1)[None].float()

        def run_reference() -> None:
            with torch.inference_mode():
                out = reference(x255).clamp(0, 255)
                out.round().to(torch.uint8).permute(0, 2, 3, 1).numpy()

        cases = [
            Case("reference (eager, pytorch-examples architecture)", run_reference),
            Case("fast_style default (johnson)", lambda: default.stylize_array(pixels)),
            Case("fast_style model=fast", lambda: fast.stylize_array(pixels)),
        ]
        if onnx_default is not None:
            cases.append(Case("onnxruntime, johnson export", lambda: onnx_default.stylize_array(pixels)))
            cases.append(Case("onnxruntime, fast export", lambda: onnx_fast.stylize_array(pixels)))
        interleaved(cases, args.repeats)
        base = cases[0].median
        for case in cases:
            rows.append([f"{size}²", case.name, f"{case.median:.3f}", f"{base / case.median:.2f}×", f"{case.peak_mib:.0f}"])

    print(markdown_table(["size", "case", "median s", "vs reference", "peak RSS MiB"], rows))

    if args.big:
        big_rows = []
        pixels = np.random.default_rng(1).integers(0, 256, (args.big, args.big, 3), dtype=np.uint8)
        for name, stylizer in (("fast_style default (johnson), tiled", default), ("fast_style model=fast, tiled", fast)):
            reset_peak_rss()
            start = time.perf_counter()
            stylizer.stylize_array(pixels)
            big_rows.append([f"{args.big}²", name, f"{time.perf_counter() - start:.1f}", f"{peak_rss_mib():.0f}"])
        print()
        print(markdown_table(["size", "case", "seconds", "peak RSS MiB (process)"], big_rows))


if __name__ == "__main__":
    main()
