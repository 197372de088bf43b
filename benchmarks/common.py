"""Timing and memory helpers shared by the benchmarks: interleaved runs, medians, peak RSS."""

from __future__ import annotations

import os
import platform
import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

__all__ = ["Case", "device_line", "interleaved", "markdown_table", "peak_rss_mib", "reset_peak_rss"]


def reset_peak_rss() -> bool:
    """Reset the kernel's high-water mark of this process's RSS (Linux); False where unsupported."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def peak_rss_mib() -> float:
    """Peak resident set size since the last reset, in MiB."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class Case:
    """One benchmarked callable and its measurements.

    A callable that times only part of its work (training steps, not the set-up around them)
    returns those seconds as a float; otherwise its whole wall time is recorded.
    """

    def __init__(self, name: str, fn: Callable[[], object], warmup: int = 1) -> None:
        self.name, self.fn, self.warmup = name, fn, warmup
        self.times: list[float] = []
        self.peak_mib = 0.0

    def run_once(self) -> None:
        reset_peak_rss()
        start = time.perf_counter()
        result = self.fn()
        elapsed = time.perf_counter() - start
        self.times.append(result if isinstance(result, float) else elapsed)
        self.peak_mib = max(self.peak_mib, peak_rss_mib())

    @property
    def median(self) -> float:
        return statistics.median(self.times)


def interleaved(cases: Sequence[Case], repeats: int) -> None:
    """Warm every case up, then time them round-robin so machine noise hits all of them alike."""
    for case in cases:
        for _ in range(case.warmup):
            case.fn()
    for _ in range(repeats):
        for case in cases:
            case.run_once()


def device_line() -> str:
    """Where the numbers come from: CPU model or GPU, thread count, torch version."""
    if torch.cuda.is_available():
        where = torch.cuda.get_device_name(0)
    else:
        where = platform.processor() or platform.machine()
        try:
            for line in Path("/proc/cpuinfo").read_text().splitlines():
                if line.startswith("model name"):
                    where = line.split(":", 1)[1].strip()
                    break
        except OSError:
            pass
    return f"device: {where}; torch {torch.__version__}; threads {torch.get_num_threads()}; cpus {os.cpu_count()}"


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A GitHub-flavoured Markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)
