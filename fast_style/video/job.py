"""One video stylized end to end: both ends checked before any work, then the frames streamed through."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import numpy as np

from fast_style.errors import RunFailed, one_line
from fast_style.files import atomic_folder, atomic_path
from fast_style.video.pipeline import Frame, run_pipeline
from fast_style.video.sinks import FRAME_NAME, FileSink, FolderSink, plan_output
from fast_style.video.sources import open_source
from fast_style.video.stabilize import TemporalStabilizer

if TYPE_CHECKING:
    from typing_extensions import Unpack

    from fast_style.inference import Stylizer
    from fast_style.inference.stylizer import StylizeOptions

__all__ = ["VideoJob", "VideoResult", "frame_stylizer"]

FrameStep = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class VideoResult:
    """What a run did: frames written, seconds spent streaming, what became of the sound."""

    frames: int
    seconds: float
    audio: str
    skipped: int = 0  # input packets that failed to decode

    @property
    def fps(self) -> float:
        """Frames per second end to end (decoding, network and encoding together)."""
        return self.frames / self.seconds if self.seconds > 0 else 0.0


def frame_stylizer(
    stylizer: Stylizer, stabilizer: TemporalStabilizer | None = None, **options: Unpack[StylizeOptions]
) -> FrameStep:
    """The step each frame goes through: ``stabilizer.prepare``, the network, ``stabilizer.finish``.

    ``options`` are those of ``Stylizer.stylize_array`` (strength, preserve_color, style, mix).
    """

    def step(pixels: np.ndarray) -> np.ndarray:
        if stabilizer is None:
            return stylizer.stylize_array(pixels, **options)
        stylized = stylizer.stylize_array(stabilizer.prepare(pixels), **options)
        return stabilizer.finish(stylized)

    return step


class VideoJob:
    """``VideoJob(input, output)`` opens the input and checks the output (one-line ``FastStyleError``s,
    nothing written); ``run(step)`` streams every frame through ``step`` into OUTPUT.

    ``max_size`` caps the long side of the frames; ``fps`` is the rate of a folder of frames.
    """

    def __init__(
        self,
        input: str | os.PathLike[str],
        output: str,
        *,
        max_size: int | None = None,
        fps: float | None = None,
        overwrite: bool = False,
    ) -> None:
        self.source = open_source(input, fps)
        try:
            self.plan = plan_output(output, self.source.path, overwrite)
        except BaseException:
            self.source.close()
            raise
        self.size = self.plan.frame_size(self.source.width, self.source.height, max_size)
        self.overwrite = overwrite
        self.frames_done = 0  # frames through the network so far, in the current run

    @property
    def frame_count(self) -> int | None:
        """How many frames the input declares (an estimate for some formats; for progress only)."""
        return self.source.frame_count

    def run(self, step: FrameStep, on_frame: Callable[[Frame], None] | None = None) -> VideoResult:
        """Stylize every frame into a temporary file (or folder) beside OUTPUT, renamed at the end.

        A problem opening the output raises ``FastStyleError`` before any frame; a failure while
        streaming raises ``RunFailed`` naming the frame. Either way, and on Ctrl+C, nothing is left
        under OUTPUT's name and an existing OUTPUT is kept.
        """
        try:
            if self.plan.folder:
                return self._run_folder(step, on_frame)
            return self._run_file(step, on_frame)
        except FileExistsError:
            raise RunFailed(f"{self.plan.path} appeared while the video was stylized; it was kept") from None
        finally:
            self.source.close()

    def _run_file(self, step: FrameStep, on_frame: Callable[[Frame], None] | None) -> VideoResult:
        source = self.source
        with atomic_path(self.plan.path, overwrite=self.overwrite) as tmp:
            sink = FileSink(
                self.plan,
                tmp,
                size=self.size,
                rate=source.rate,
                time_base=source.time_base,
                rotation=source.rotation,
                audio_streams=source.audio_streams,
            )
            try:
                result = self._stream(sink, sink.audio_route, step, on_frame, sink.audio)
                sink.finish()
            except BaseException:
                sink.abort()
                raise
        return result

    def _run_folder(self, step: FrameStep, on_frame: Callable[[Frame], None] | None) -> VideoResult:
        with atomic_folder(self.plan.path, overwrite=self.overwrite) as tmp:
            sink = FolderSink(tmp)
            audio = sink.audio if self.source.audio_streams else "no sound in the input"
            result = self._stream(sink, {}, step, on_frame, audio)
        for old in self.plan.path.iterdir():  # frames of an earlier, longer run
            if FRAME_NAME.fullmatch(old.name) and old.name not in sink.written:
                old.unlink()
        return result

    def _stream(
        self,
        sink: FileSink | FolderSink,
        audio_route: dict[int, tuple[str, int]],
        step: FrameStep,
        on_frame: Callable[[Frame], None] | None,
        audio: str,
    ) -> VideoResult:
        def process(frame: Frame) -> Frame:
            return replace(frame, pixels=step(frame.pixels))

        def count(frame: Frame) -> None:
            self.frames_done += 1
            if on_frame is not None:
                on_frame(frame)

        self.frames_done = 0
        start = time.perf_counter()
        try:
            frames = run_pipeline(self.source.items(self.size, audio_route), process, sink, count)
        except (RunFailed, KeyboardInterrupt):
            raise
        except Exception as exc:
            raise RunFailed(f"stopped at frame {self.frames_done + 1}: {one_line(exc)}") from exc
        if frames == 0:
            raise RunFailed(f"no frame of {self.source.path} could be decoded")
        seconds = time.perf_counter() - start
        return VideoResult(frames, seconds, audio, self.source.skipped)
