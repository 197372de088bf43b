"""Stream frames through a function in constant memory: decode, process and encode overlap in threads.

A reader thread pulls items (frames and sound) from the source, the calling thread runs the network
on the frames, and a writer thread encodes; bounded queues between them hold at most ``depth`` items
each, so memory does not grow with the clip's length, and a slow stage makes the others wait rather
than pile up. Sound passes through the middle stage in order, which keeps it interleaved with the
frames it belongs to.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from fractions import Fraction
from typing import Protocol

import numpy as np

__all__ = ["Audio", "Frame", "Sink", "run_pipeline"]

_POLL_S = 0.1  # how often a waiting stage checks whether another one failed


@dataclass
class Frame:
    """One picture: ``(H, W, 3)`` uint8 RGB pixels, and when it is shown (``pts`` in ``time_base`` seconds)."""

    pixels: np.ndarray
    index: int
    pts: int | None = None
    time_base: Fraction | None = None


@dataclass
class Audio:
    """Sound for output stream ``stream``: an encoded packet to copy, or a decoded frame to encode."""

    payload: object
    stream: int


class Sink(Protocol):
    """Where the processed items go (written by the writer thread, in order)."""

    def write(self, item: Frame | Audio) -> None: ...


class _Stop(Exception):
    """Another stage failed or the run was interrupted."""


class _Stages:
    """The queues and the shared stop signal of one run."""

    def __init__(self, depth: int) -> None:
        self.decoded: queue.Queue[Frame | Audio | None] = queue.Queue(depth)
        self.processed: queue.Queue[Frame | Audio | None] = queue.Queue(depth)
        self.stop = threading.Event()
        self.errors: list[BaseException] = []

    def put(self, q: queue.Queue[Frame | Audio | None], item: Frame | Audio | None) -> None:
        while not self.stop.is_set():
            try:
                q.put(item, timeout=_POLL_S)
                return
            except queue.Full:
                continue
        raise _Stop

    def get(self, q: queue.Queue[Frame | Audio | None]) -> Frame | Audio | None:
        while not self.stop.is_set():
            try:
                return q.get(timeout=_POLL_S)
            except queue.Empty:
                continue
        raise _Stop

    def fail(self, exc: BaseException) -> None:
        self.errors.append(exc)
        self.stop.set()


def run_pipeline(
    items: Iterable[Frame | Audio],
    process: Callable[[Frame], Frame],
    sink: Sink,
    on_frame: Callable[[Frame], None] | None = None,
    depth: int = 4,
) -> int:
    """Feed ``items`` through ``process`` (frames only) into ``sink``; return the number of frames.

    ``items`` is iterated in a reader thread and ``sink.write`` called in a writer thread; ``process``
    and ``on_frame`` run in the calling thread (the network keeps its thread pool there). The first
    error of any stage stops all three and is raised here; so is ``KeyboardInterrupt``.
    """
    stages = _Stages(depth)

    def read() -> None:
        iterator = iter(items)
        try:
            for item in iterator:
                stages.put(stages.decoded, item)
            stages.put(stages.decoded, None)  # the end
        except _Stop:
            pass
        except BaseException as exc:
            stages.fail(exc)
        finally:
            close = getattr(iterator, "close", None)
            if close is not None:
                close()  # a generator's clean-up (its container) runs in the thread that used it

    def write() -> None:
        try:
            while (item := stages.get(stages.processed)) is not None:
                sink.write(item)
        except _Stop:
            pass
        except BaseException as exc:
            stages.fail(exc)

    reader = threading.Thread(target=read, name="video-read", daemon=True)
    writer = threading.Thread(target=write, name="video-write", daemon=True)
    reader.start()
    writer.start()
    frames = 0
    try:
        while (item := stages.get(stages.decoded)) is not None:
            if isinstance(item, Frame):
                item = process(item)
                frames += 1
                if on_frame is not None:
                    on_frame(item)
            stages.put(stages.processed, item)
        stages.put(stages.processed, None)
        while writer.is_alive():  # joined in slices: Ctrl+C reaches the main thread meanwhile
            writer.join(_POLL_S)
    except _Stop:
        pass
    except BaseException as exc:
        stages.fail(exc)
    finally:
        stages.stop.set()
        for thread in (reader, writer):
            while thread.is_alive():
                thread.join(_POLL_S)
    if stages.errors:
        raise stages.errors[0]
    return frames
