"""Peak memory of a block of work: the CUDA allocator's peak, or resident-memory growth on a CPU."""

from __future__ import annotations

import contextlib
import ctypes
import os
import resource
import sys
import threading
import time

import torch

__all__ = ["PeakMemory"]


def _rss_bytes() -> int | None:
    try:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


def _release_free_heap() -> None:
    """Give freed heap pages back to the OS (glibc), so resident memory growth shows new peaks."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL("libc.so.6").malloc_trim(0)


class PeakMemory:
    """Peak memory above the level at entry, while a block runs; also as a timeline.

    On CUDA it is the caching allocator's exact peak of allocated bytes. Elsewhere it is the growth
    of the process's resident memory, sampled every ``interval`` seconds (freed heap pages are
    returned to the OS first so that reused memory does not hide a peak); treat it as approximate.
    """

    def __init__(self, device: torch.device | str, interval: float = 0.002) -> None:
        self.device = torch.device(device)
        self.interval = interval
        self.start = 0.0
        self._baseline = 0
        self._samples: list[tuple[float, int]] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._use_rss = self.device.type != "cuda" and _rss_bytes() is not None

    def _read(self) -> int:
        if self.device.type == "cuda":
            return torch.cuda.max_memory_allocated(self.device)
        if self._use_rss:
            return _rss_bytes() or 0
        scale = 1 if sys.platform == "darwin" else 1024  # ru_maxrss: bytes on macOS, KiB on Linux
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale

    def _run(self) -> None:
        peak = self._read()
        while not self._stop.is_set():
            peak = max(peak, self._read())
            self._samples.append((time.perf_counter(), peak))
            self._stop.wait(self.interval)

    def __enter__(self) -> PeakMemory:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self._baseline = torch.cuda.memory_allocated(self.device)
        else:
            _release_free_heap()
            self._baseline = self._read()
        self.start = time.perf_counter()
        self._samples = [(self.start, self._baseline)]
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="peak-memory", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self._samples.append((time.perf_counter(), max(self._samples[-1][1], self._read())))

    def peak_until(self, moment: float | None = None) -> float:
        """Peak in MiB above the entry level, up to ``moment`` (a ``time.perf_counter()`` value)."""
        peaks = [p for t, p in self._samples if moment is None or t <= moment]
        return max(0, max(peaks, default=self._baseline) - self._baseline) / 2**20

    @property
    def peak_mb(self) -> float:
        """Peak in MiB above the entry level over the whole block."""
        return self.peak_until(None)
