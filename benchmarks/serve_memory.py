"""The web server's memory: resident size idle, under 40 large uploads, under 20 mixed stylize
requests up to 2048 px, two seconds after each burst and after a quiet minute.

Each configuration is its own server process (the app ``fast-style serve`` runs, with the shipped
models on the CPU), measured from outside through ``/proc/<pid>/status``: VmRSS for the resident
size, VmHWM (reset before each phase) for the peak. The requests come from this process, all at
once, as a busy page would send them; their photos are generated (a smooth pattern plus noise).

    python -m benchmarks.serve_memory                      # this checkout, tiled and whole-image
    python -m benchmarks.serve_memory --baseline ../before # also another checkout's server

``--baseline DIR`` runs the server of another checkout (e.g. ``git worktree add ../before <commit>``)
with the same load, for a before/after table. Linux only (``/proc``).
"""

from __future__ import annotations

import argparse
import io
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
from PIL import Image

from benchmarks.common import device_line, markdown_table

ROOT = Path(__file__).resolve().parents[1]
# The server process: the app of the checkout on PYTHONPATH, on a free port it prints first.
# Limits(max_whole_pixels=...) only when asked, so an older checkout's server runs it unchanged.
_SERVER = """
import contextlib, sys
from fast_style.web.app import create_app
from fast_style.web.limits import Limits
from fast_style.web.server import bind, serve
whole = int(sys.argv[1])
app = create_app(device="cpu", limits=Limits(max_whole_pixels=whole) if whole else None)
sock = bind("127.0.0.1", 0)
print(sock.getsockname()[1], flush=True)
with contextlib.suppress(KeyboardInterrupt):
    serve(app, sock)
"""
_SETTLE = 2.0  # seconds between a burst's last answer and the "after" reading
# (photo width, height, max_size): phone photos, screenshots, squares and small ones.
_SHAPES = [
    (4032, 3024, 2048),
    (1024, 768, 1024),
    (2048, 2048, 2048),
    (1920, 1080, 1024),
    (3024, 4032, 2048),
    (640, 480, 640),
    (2560, 1440, 2048),
    (1200, 900, 512),
    (2048, 1365, 2048),
    (1500, 1000, 1500),
]


@dataclass
class Result:
    """What one server configuration measured, in MiB and seconds."""

    name: str
    idle: float
    uploads_peak: float
    uploads_after: float
    stylize_peak: float
    after: float
    quiet: float
    seconds: float
    statuses: str


def photo(width: int, height: int, seed: int) -> bytes:
    """A JPEG of a smooth pattern plus noise, ``width x height``."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    base = np.stack([np.sin(xx / 40), np.cos(yy / 55), np.sin((xx + yy) / 90)], axis=-1)
    pixels = (base * 0.3 + 0.5 + rng.normal(0, 0.05, (height, width, 3))).clip(0, 1)
    buffer = io.BytesIO()
    Image.fromarray((pixels * 255).astype(np.uint8)).save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def memory_mib(pid: int) -> dict[str, float]:
    """VmRSS and VmHWM of process ``pid``, in MiB."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            fields[key] = int(value.split()[0]) / 1024
    return fields


def reset_peak(pid: int) -> None:
    Path(f"/proc/{pid}/clear_refs").write_text("5")


def _post(url: str, image: bytes, model: str, max_size: int) -> int:
    files = {"image": ("photo.jpg", image, "image/jpeg")}
    data = {"model": model, "max_size": str(max_size)}
    return httpx.post(f"{url}/api/stylize", files=files, data=data, timeout=1800).status_code


def _all_at_once(jobs: Sequence[tuple[bytes, str, int]], url: str) -> list[int]:
    with ThreadPoolExecutor(max_workers=len(jobs)) as pool:
        return list(pool.map(lambda job: _post(url, *job), jobs))


def _statuses(codes: Sequence[int]) -> str:
    return " ".join(f"{n}x{code}" for code, n in sorted({c: codes.count(c) for c in codes}.items()))


def measure(name: str, pythonpath: Path, whole: int, requests: int, uploads: int, quiet: float) -> Result:
    """Start a server from ``pythonpath``, put the load on it, and read its memory at each step."""
    env = {**os.environ, "PYTHONPATH": str(pythonpath)}
    proc = subprocess.Popen(
        [sys.executable, "-c", _SERVER, str(whole)],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
        cwd=pythonpath,
    )
    try:
        assert proc.stdout is not None
        url = f"http://127.0.0.1:{int(proc.stdout.readline())}"
        models = [m["name"] for m in httpx.get(f"{url}/api/models", timeout=60).json()["models"]]
        for model in models:  # load every model once, so "idle" holds them all
            assert _post(url, photo(64, 48, 0), model, 64) == 200
        time.sleep(5)
        idle = memory_mib(proc.pid)["VmRSS"]

        reset_peak(proc.pid)
        junk = os.urandom(20 * 2**20 - 4096)  # within the 20 MB limit; not an image, so refused once read
        _all_at_once([(junk, models[0], 512)] * uploads, url)
        uploads_peak = memory_mib(proc.pid)["VmHWM"]
        del junk
        time.sleep(_SETTLE)
        uploads_after = memory_mib(proc.pid)["VmRSS"]

        jobs = [
            (photo(w, h, i), models[i % len(models)], side)
            for i, (w, h, side) in enumerate(_SHAPES[i % len(_SHAPES)] for i in range(requests))
        ]
        reset_peak(proc.pid)
        start = time.perf_counter()
        codes = _all_at_once(jobs, url)
        seconds = time.perf_counter() - start
        time.sleep(_SETTLE)
        after = memory_mib(proc.pid)
        time.sleep(max(0.0, quiet - _SETTLE))
        return Result(
            name,
            idle,
            uploads_peak,
            uploads_after,
            after["VmHWM"],
            after["VmRSS"],
            memory_mib(proc.pid)["VmRSS"],
            seconds,
            _statuses(codes),
        )
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def main(argv: Sequence[str] | None = None) -> int:
    """Measure each configuration and print one table."""
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.serve_memory", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument(
        "--requests", type=int, default=20, help="stylize requests sent at once (default: 20)"
    )
    parser.add_argument("--uploads", type=int, default=40, help="20 MB uploads sent at once (default: 40)")
    parser.add_argument("--quiet", type=float, default=60, help="seconds of quiet before the last reading")
    parser.add_argument("--baseline", type=Path, help="another checkout whose server to measure the same way")
    parser.add_argument("--no-whole", action="store_true", help="skip the whole-image configuration")
    args = parser.parse_args(argv)

    configs = [("this checkout (tiles over 1.5 MP)", ROOT, 0)]
    if not args.no_whole:
        configs.append(("this checkout, whole images (no tiles)", ROOT, 10**9))
    if args.baseline is not None:
        configs.insert(0, (f"{args.baseline.name} (baseline)", args.baseline.resolve(), 0))
    results = []
    for name, path, whole in configs:
        print(f"measuring: {name}", file=sys.stderr, flush=True)
        results.append(measure(name, path, whole, args.requests, args.uploads, args.quiet))

    print(device_line())
    print(
        f"{args.requests} stylize requests at once ({len(_SHAPES)} shapes from 640 x 480 to 4032 x 3024, "
        f"max_size 512-2048, every shipped model); {args.uploads} uploads of 20 MB at once; RSS in MiB\n"
    )
    header = [
        "server",
        "idle",
        f"peak, {args.uploads} uploads",
        f"{_SETTLE:g} s after them",
        f"peak, {args.requests} requests",
        f"{_SETTLE:g} s after them",
        f"after {args.quiet:g} s quiet",
        f"{args.requests} requests took s",
        "answers",
    ]
    rows = [
        [
            r.name,
            f"{r.idle:.0f}",
            f"{r.uploads_peak:.0f}",
            f"{r.uploads_after:.0f}",
            f"{r.stylize_peak:.0f}",
            f"{r.after:.0f}",
            f"{r.quiet:.0f}",
            f"{r.seconds:.0f}",
            r.statuses,
        ]
        for r in results
    ]
    print(markdown_table(header, rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
