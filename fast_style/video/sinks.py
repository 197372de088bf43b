"""Where stylized frames go: a video file that PyAV (FFmpeg) encodes, with the input's sound, or a
folder of numbered PNGs.

``plan_output`` checks OUTPUT before any work: a folder, or a file whose extension names a format
with a video encoder, that replaces an existing file only with ``overwrite``. The sinks write into
a temporary path that the caller renames to OUTPUT at the end (``fast_style.files``).
"""

from __future__ import annotations

import contextlib
import io
import os
import re
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import cast

import av
from av.audio.stream import AudioStream
from av.video.stream import VideoStream
from PIL import Image

from fast_style.errors import FastStyleError, one_line
from fast_style.files import check_writable
from fast_style.images import IMAGE_EXTENSIONS
from fast_style.video.pipeline import Audio, Frame
from fast_style.video.sources import AV_ERRORS

__all__ = ["FRAME_NAME", "FileSink", "FolderSink", "OutputPlan", "frame_name", "plan_output"]

_EXAMPLES = "e.g. .mp4, .mkv, .mov or .webm"
FRAME_NAME = re.compile(r"frame_\d{6,}\.png")
# Quality settings for the usual encoders (visually near-lossless); others get _BITS_PER_PIXEL.
_ENCODER_OPTIONS: dict[str, dict[str, str]] = {
    "libx264": {"crf": "18", "preset": "medium"},
    "libx265": {"crf": "20", "preset": "medium"},
    "libvpx-vp9": {"crf": "30", "b": "0", "deadline": "good", "cpu-used": "4", "row-mt": "1"},
    "libvpx": {"crf": "8", "b": "8M", "deadline": "good", "cpu-used": "4"},
    "libaom-av1": {"crf": "30", "cpu-used": "6", "row-mt": "1"},
}
_BITS_PER_PIXEL = 0.3  # per pixel and frame, for bit-rate encoders (mpeg4, mpeg2video, flv1...)
_BT709 = 1  # the colour matrix, primaries and transfer of HD video (ITU-R BT.709)
_LIMITED_RANGE = 1
_VARIABLE_FPS = cast(int, av.format.Flags.variable_fps.value)  # the format stores each frame's time


def frame_name(index: int) -> str:
    """The file name of frame ``index`` (0-based) in a folder of frames: ``frame_000001.png`` for 0."""
    return f"frame_{index + 1:06d}.png"


class _Named(io.BytesIO):
    """An in-memory file with a name, from which FFmpeg guesses the output format."""

    def __init__(self, name: str) -> None:
        super().__init__()
        self.name = name


@dataclass(frozen=True)
class OutputPlan:
    """Where the result goes: a ``folder`` of frames, or a file in FFmpeg ``format`` with ``codec``."""

    path: Path
    folder: bool
    format: str | None = None
    codec: str | None = None
    pix_fmt: str | None = None

    def frame_size(self, width: int, height: int, max_size: int | None) -> tuple[int, int]:
        """The output size: the input's, scaled so the long side is at most ``max_size``, and even
        where the encoder stores colour at half resolution (4:2:0)."""
        if max_size is not None and max(width, height) > max_size:
            scale = max_size / max(width, height)
            width, height = max(1, round(width * scale)), max(1, round(height * scale))
        if self.pix_fmt is not None and re.search(r"420|422|411|nv1", self.pix_fmt):
            width, height = max(2, width - width % 2), max(2, height - height % 2)
        return width, height


def _pixel_format(codec: av.codec.Codec) -> str:
    formats = [f.name for f in codec.video_formats or []]
    for preferred in ("yuv420p", "rgb24"):
        if preferred in formats or not formats:
            return preferred
    return formats[0]


def plan_output(output: str, source: Path, overwrite: bool = False) -> OutputPlan:
    """Check OUTPUT before any work: a folder (an existing one, or a name ending in ``/``) gets
    numbered PNGs; a file needs an extension whose format FFmpeg writes with a video encoder.
    """
    path = Path(output)
    if path.is_dir() or output.endswith(("/", os.sep)):
        if path.exists() and path.resolve() == source.resolve():
            raise FastStyleError(f"output folder {path} is the input; choose another OUTPUT")
        if path.is_dir() and any(path.iterdir()) and not overwrite:
            raise FastStyleError(f"output folder {path} is not empty; pass --overwrite to replace its frames")
        check_writable(path, folder=True, what="output folder")
        return OutputPlan(path, folder=True)
    suffix = path.suffix.lower()
    if suffix in IMAGE_EXTENSIONS:
        raise FastStyleError(
            f"OUTPUT {path} names an image; name a video file ({_EXAMPLES}) or a folder for frames ({path.stem}/)"
        )
    try:
        with av.open(_Named(path.name), "w") as probe:
            fmt, codec_name = probe.format.name, probe.default_video_codec
    except ValueError:
        raise FastStyleError(
            f"no video format writes {suffix or 'files without an extension'} ({path}); use {_EXAMPLES}, "
            "or end OUTPUT with / for a folder of frames"
        ) from None
    if codec_name == "none":
        raise FastStyleError(f"{suffix} files ({fmt}) hold no video; use {_EXAMPLES}")
    try:
        codec = av.codec.Codec(codec_name, "w")
    except AV_ERRORS:
        raise FastStyleError(
            f"no {codec_name} encoder, which {suffix} files need, in this FFmpeg build; use {_EXAMPLES}"
        ) from None
    if path.exists() and path.resolve() == source.resolve():
        raise FastStyleError(f"output {path} is the input; choose another OUTPUT")
    if path.exists() and not overwrite:
        raise FastStyleError(f"{path} exists; pass --overwrite to replace it")
    check_writable(path, what="output file")
    return OutputPlan(path, folder=False, format=fmt, codec=codec.name, pix_fmt=_pixel_format(codec))


class FileSink:
    """Encode frames into ``tmp`` as ``plan`` says, with the input's sound: copied where the format
    takes its codec, else re-encoded with the format's default, else left out (``self.audio`` says which).

    Opening writes the header, so a format, encoder or size the encoder refuses fails here, before
    any frame; the encoder's time base is the input's where the format allows variable frame rates.
    """

    def __init__(
        self,
        plan: OutputPlan,
        tmp: Path,
        *,
        size: tuple[int, int],
        rate: Fraction,
        time_base: Fraction | None,
        rotation: int = 0,
        audio_streams: list[AudioStream] | tuple[()] = (),
    ) -> None:
        assert plan.format is not None and plan.codec is not None and plan.pix_fmt is not None
        self.plan, self.rate, self._codec, self._pix_fmt = plan, rate, plan.codec, plan.pix_fmt
        self._last_pts: int | None = None
        self._start: Fraction | None = None
        for sound in ("copy", "encode", "none") if audio_streams else ("none",):
            try:
                self._open(tmp, size, time_base, rotation, list(audio_streams), sound)
                break
            except AV_ERRORS as exc:
                self.abort()
                if sound == "none":
                    what = f"{plan.path.suffix} video ({plan.format}, {plan.codec}, {size[0]}x{size[1]})"
                    raise FastStyleError(f"cannot write {what}: {one_line(exc)}") from None

    def _open(
        self,
        tmp: Path,
        size: tuple[int, int],
        time_base: Fraction | None,
        rotation: int,
        audio_streams: list[AudioStream],
        sound: str,
    ) -> None:
        plan = self.plan
        self._container = container = av.open(str(tmp), "w", format=plan.format)
        video = cast(VideoStream, container.add_stream(self._codec, rate=self.rate))
        video.width, video.height = size
        video.pix_fmt = self._pix_fmt
        self._variable = bool(container.format.flags & _VARIABLE_FPS) and time_base is not None
        # The muxer may change the stream's time base; frames are stamped in the encoder's, this one.
        self._time_base: Fraction = time_base if self._variable and time_base else 1 / self.rate
        video.time_base = self._time_base
        if plan.codec in _ENCODER_OPTIONS:
            video.options = dict(_ENCODER_OPTIONS[plan.codec])
        else:
            video.bit_rate = max(1_000_000, int(size[0] * size[1] * self.rate * _BITS_PER_PIXEL))
        self._yuv = self._pix_fmt.startswith("yuv")
        if self._yuv:  # tag what ``write`` converts with, so players convert back alike
            context = video.codec_context
            context.colorspace = context.color_primaries = context.color_trc = _BT709
            context.color_range = _LIMITED_RANGE
        if rotation:
            video.set_display_rotation(rotation)
        self._video = video
        self.audio_route: dict[int, tuple[str, int]] = {}
        self._encoded_audio: list[AudioStream] = []
        for stream in audio_streams:
            out: AudioStream
            if sound == "copy":
                out = container.add_stream_from_template(stream)
            elif sound == "encode" and container.default_audio_codec != "none" and stream.codec_context:
                out = cast(
                    AudioStream,
                    container.add_stream(
                        container.default_audio_codec, rate=stream.codec_context.sample_rate
                    ),
                )
                out.layout = stream.codec_context.layout
                self._encoded_audio.append(out)
            else:
                continue
            self.audio_route[stream.index] = (sound, out.index)
        container.start_encoding()
        self.audio = self._describe_audio(audio_streams, sound)

    def _describe_audio(self, audio_streams: list[AudioStream], sound: str) -> str:
        if not audio_streams:
            return "no sound in the input"
        names = ", ".join(
            sorted({s.codec_context.name if s.codec_context else "unknown" for s in audio_streams})
        )
        if sound == "copy":
            return f"sound copied ({names})"
        if self.audio_route:
            return f"sound re-encoded ({names} -> {self._container.default_audio_codec})"
        return f"sound left out ({self.plan.format} files cannot hold {names})"

    def _pts(self, frame: Frame) -> int:
        """The frame's time in the encoder's time base; strictly increasing, as muxers require."""
        time_base = self._time_base
        if frame.pts is not None and frame.time_base is not None:
            seconds = frame.pts * frame.time_base
            if not self._variable:  # constant-rate formats (AVI) count frames from the first
                self._start = seconds if self._start is None else self._start
                seconds -= self._start
        else:
            seconds = frame.index / self.rate
        pts = round(seconds / time_base)
        if self._last_pts is not None and pts <= self._last_pts:
            pts = self._last_pts + 1
        self._last_pts = pts
        return pts

    def write(self, item: Frame | Audio) -> None:
        """Encode a frame, or copy or encode a piece of sound; packets go to the muxer at once."""
        container = self._container
        if isinstance(item, Frame):
            frame = av.VideoFrame.from_ndarray(item.pixels, format="rgb24")
            if self._yuv:
                frame = frame.reformat(format=self._pix_fmt, dst_colorspace="ITU709")
            frame.pts = self._pts(item)
            frame.time_base = self._time_base
            container.mux(self._video.encode(frame))
            return
        out = cast(AudioStream, container.streams[item.stream])
        if isinstance(item.payload, av.Packet):
            item.payload.stream = out
            container.mux(item.payload)
        else:
            container.mux(out.encode(cast(av.AudioFrame, item.payload)))

    def finish(self) -> None:
        """Flush the encoders and close the file (the caller then renames it)."""
        self._container.mux(self._video.encode(None))
        for stream in self._encoded_audio:
            self._container.mux(stream.encode(None))
        self._container.close()

    def abort(self) -> None:
        """Close the file without finishing it (the caller deletes it)."""
        container = getattr(self, "_container", None)
        if container is not None:
            with contextlib.suppress(
                *AV_ERRORS
            ):  # a file that failed to open may fail to close; it is deleted
                container.close()


class FolderSink:
    """Frames as numbered PNGs (``frame_name``) in ``folder``; sound is left out."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.audio = "sound left out (a folder of frames)"
        self.written: set[str] = set()

    def write(self, item: Frame | Audio) -> None:
        """Save a frame; ignore sound."""
        if isinstance(item, Frame):
            name = frame_name(item.index)
            Image.fromarray(item.pixels).save(self.folder / name, compress_level=3)
            self.written.add(name)

    def finish(self) -> None:
        """Nothing to flush: every frame is a finished file."""

    def abort(self) -> None:
        """Nothing to close."""
