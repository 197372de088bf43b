"""Where frames come from: a video file that PyAV (FFmpeg) reads, or a folder of numbered images.

``open_source`` checks the input before any work (a video stream that decodes to at least one
frame) and learns its size, frame rate, rotation and sound; ``items`` then reads it frame by frame.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from fractions import Fraction
from pathlib import Path
from typing import cast

import av
import numpy as np
from PIL import Image

from fast_style.errors import FastStyleError, one_line
from fast_style.images import IMAGE_EXTENSIONS, folder_images, load_image
from fast_style.video.pipeline import Audio, Frame

__all__ = ["AV_ERRORS", "AudioRoute", "FileSource", "FolderSource", "Source", "open_source"]

DEFAULT_FOLDER_FPS = Fraction(25)
# What PyAV raises for files and settings FFmpeg refuses.
AV_ERRORS = (av.FFmpegError, OSError, ValueError)

# input stream index -> ("copy" | "encode", output stream index)
AudioRoute = Mapping[int, tuple[str, int]]


def _open(path: Path) -> av.container.InputContainer:
    try:
        return av.open(str(path), metadata_errors="replace")
    except AV_ERRORS as exc:
        reason = getattr(exc, "strerror", None) or one_line(exc)
        raise FastStyleError(f"not a video (or a format FFmpeg cannot read): {path} ({reason})") from None


def _video_stream(container: av.container.InputContainer, path: Path) -> av.video.stream.VideoStream:
    """The first video stream that is not cover art."""
    for stream in container.streams.video:
        if not stream.disposition & av.stream.Disposition.attached_pic:
            return stream
    kinds: list[str] = sorted({s.type for s in container.streams}) or ["no streams"]
    raise FastStyleError(f"no video stream in {path} (it holds: {', '.join(kinds)})")


class FileSource:
    """A video file, probed on opening (its first frame decoded); ``items`` reads it frame by frame."""

    def __init__(self, path: Path) -> None:
        self.path = path
        probe = _open(path)
        try:
            stream = _video_stream(probe, path)
            if stream.codec_context is None:
                raise FastStyleError(f"cannot decode the video in {path}: no decoder for its codec")
            first = self._first_frame(probe, stream)
            self.width, self.height = first.width, first.height
            self.rotation = int(first.rotation or 0) % 360
            self.rate = Fraction(stream.average_rate or stream.guessed_rate or DEFAULT_FOLDER_FPS)
            self.time_base: Fraction | None = stream.time_base
            self.codec = stream.codec_context.name
            self.frame_count = self._frame_count(probe, stream)
        finally:
            probe.close()
        self._container = _open(path)  # the one ``items`` reads; its audio streams serve as templates
        self.audio_streams = list(self._container.streams.audio)
        self.skipped = 0  # packets that failed to decode

    def _first_frame(
        self, container: av.container.InputContainer, stream: av.video.stream.VideoStream
    ) -> av.VideoFrame:
        try:
            for frame in container.decode(stream):
                return frame
        except AV_ERRORS as exc:
            raise FastStyleError(f"cannot decode the video in {self.path}: {one_line(exc)}") from None
        raise FastStyleError(f"no frames in the video stream of {self.path}")

    def _frame_count(
        self, container: av.container.InputContainer, stream: av.video.stream.VideoStream
    ) -> int | None:
        """The number of frames the file declares, else one estimated from its duration (for progress)."""
        if stream.frames:
            return int(stream.frames)
        if stream.duration and stream.time_base:
            return max(1, round(stream.duration * stream.time_base * self.rate))
        if container.duration:
            return max(1, round(Fraction(container.duration, av.time_base) * self.rate))
        return None

    def items(self, size: tuple[int, int], audio: AudioRoute) -> Iterator[Frame | Audio]:
        """Frames as ``size`` (width, height) RGB arrays, and the sound ``audio`` routes, in file order.

        Packets that fail to decode are skipped and counted in ``self.skipped``, as players do.
        """
        container = self._container
        video = _video_stream(container, self.path)
        video.thread_type = "AUTO"  # frame and slice threads in the decoder
        width, height = size
        interpolation = None if (width, height) == (self.width, self.height) else "AREA"
        index = 0
        try:
            for packet in container.demux([video, *(container.streams[i] for i in audio)]):
                if packet.stream.index == video.index:
                    for frame in self._decode(packet):
                        pixels = cast(av.VideoFrame, frame).to_ndarray(
                            format="rgb24", width=width, height=height, interpolation=interpolation
                        )
                        yield Frame(pixels, index, frame.pts, frame.time_base)
                        index += 1
                    continue
                mode, target = audio[packet.stream.index]
                if mode == "copy":
                    if packet.dts is not None and packet.size:
                        yield Audio(packet, target)
                else:
                    for sound in self._decode(packet):
                        yield Audio(sound, target)
        finally:
            container.close()

    def _decode(self, packet: av.Packet) -> list[av.VideoFrame | av.AudioFrame]:
        try:
            return packet.decode()  # type: ignore[return-value]
        except av.InvalidDataError:
            self.skipped += 1
            return []

    def close(self) -> None:
        """Release the file (``items`` does so when it ends)."""
        self._container.close()


class FolderSource:
    """A folder of frames (``IMAGE_EXTENSIONS``, sorted by name, searched recursively) shown at ``rate``."""

    def __init__(self, folder: Path, rate: Fraction = DEFAULT_FOLDER_FPS) -> None:
        self.path = folder
        self.files = folder_images(folder)
        if not self.files:
            raise FastStyleError(f"no frames ({', '.join(IMAGE_EXTENSIONS)}) in folder {folder}")
        self.width, self.height = load_image(self.files[0]).size
        self.rate = rate
        self.time_base: Fraction | None = 1 / rate
        self.rotation = 0
        self.codec = "images"
        self.frame_count: int | None = len(self.files)
        self.audio_streams: list[av.audio.stream.AudioStream] = []
        self.skipped = 0

    def items(self, size: tuple[int, int], audio: AudioRoute) -> Iterator[Frame | Audio]:
        """Each image as a ``size`` (width, height) RGB frame; a frame of another size is scaled to it."""
        for index, path in enumerate(self.files):
            image = load_image(path)
            if image.size != size:
                image = image.resize(size, Image.Resampling.LANCZOS)
            yield Frame(np.asarray(image), index, index, self.time_base)

    def close(self) -> None:
        """Nothing to release."""


Source = FileSource | FolderSource


def open_source(path: str | os.PathLike[str], fps: float | None = None) -> Source:
    """Open ``path`` (a video file or a folder of frames) and check it; a one-line error for bad input.

    ``fps`` is the frame rate of a folder of frames (default 25); a video file has its own.
    """
    path = Path(path)
    if not path.exists():
        raise FastStyleError(f"input not found: {path}")
    if path.is_dir():
        return FolderSource(path, Fraction(fps).limit_denominator(1001) if fps else DEFAULT_FOLDER_FPS)
    if fps:
        raise FastStyleError("--fps is for a folder of frames; a video file keeps its own frame rate")
    if path.suffix.lower() in IMAGE_EXTENSIONS:
        raise FastStyleError(f"{path} is an image, not a video: stylize it with fast-style stylize")
    if path.stat().st_size == 0:
        raise FastStyleError(f"input file is empty: {path}")
    return FileSource(path)
