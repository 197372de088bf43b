"""Hand memory the process has freed back to the system, where the C library can.

glibc keeps freed blocks smaller than its mmap threshold (up to 32 MiB) in its heaps, so after a
large image a server would keep its peak size for good; ``malloc_trim`` returns those pages.
Elsewhere (macOS, Windows, musl) only the garbage collection step does anything.
"""

from __future__ import annotations

import ctypes
import gc
import sys
from collections.abc import Callable

__all__ = ["release_freed_memory"]


def _find_malloc_trim() -> Callable[[int], int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None)  # the C library this process already runs on
    except OSError:
        return None
    trim = getattr(libc, "malloc_trim", None)  # glibc only
    if trim is None:
        return None
    trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
    return trim


_MALLOC_TRIM = _find_malloc_trim()


def release_freed_memory(collect: bool = False) -> bool:
    """Return freed heap pages to the system; ``False`` where there is no ``malloc_trim``.

    ``collect`` first frees what only reference cycles hold (a refused upload stays reachable
    from its exception's traceback until the collector runs).
    """
    if collect:
        gc.collect()
    if _MALLOC_TRIM is None:
        return False
    _MALLOC_TRIM(0)
    return True
