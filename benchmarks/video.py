"""Video: how steady each stability option makes a model, and ``fast-style video``'s speed and memory.

    python -m benchmarks.video [--models checkpoints/starry_night_fast.safetensors checkpoints/starry_night.safetensors]
        [--size 640x360] [--frames 24] [--speed-frames 120 30] [--long 600]   (--frames 0, --long 0 skip parts)
    python -m benchmarks.video --compare A.safetensors B.safetensors [--size ...] [--frames ...]

Stability: clips made from the photos in ``--content`` with known motion (a pan of 3 px right and
1 px down per frame, a zoom of 1.2% per frame, a still with sensor noise of sigma 4/255, and the
pan with that noise), so the warping error needs no optical flow: the mean absolute difference
(0-255) between each output frame and the previous output frame moved by the known motion (bilinear,
exact for the whole-pixel pan; a 4 px border and anything moved in from outside masked), averaged
over the frames. The same number for the input frames is the floor a perfect model would reach.
Each stability option runs on the first model's frames; "vs per-frame" is its error over per-frame
stylization's, "off the model" the mean absolute difference from the per-frame output (what the
option changes in the picture), and the cost its milliseconds per frame, network excluded.

Speed: frames/s end to end (decode, network, encode; H.264 + AAC in, H.264 + copied AAC out) of
``VideoJob`` (threads overlapping the three) against a sequential reference loop (the same PyAV
calls and network, one after the other), and the network alone, at ``--size``; with the CPU seconds
each frame took (all threads), which depend less than frames/s on what else the machine runs.

Memory: the resident size (VmRSS) of this process sampled after every frame of a ``--long``-frame
clip through ``VideoJob``: flat means the same at frame 600 as at frame 100.
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import os
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from benchmarks.common import device_line, markdown_table
from fast_style.images import load_image
from fast_style.inference import Stylizer
from fast_style.video.job import VideoJob, frame_stylizer
from fast_style.video.stabilize import TemporalStabilizer

ROOT = Path(__file__).resolve().parents[1]
CONTENT = ROOT.parent / "shared" / "data" / "content"
MODELS = [
    ROOT / "checkpoints" / "starry_night_fast.safetensors",
    ROOT / "checkpoints" / "starry_night.safetensors",
]
FPS = 25
SAMPLE_RATE = 44100
NOISE = 4.0  # sensor noise, sigma in 0-255 units
BORDER = 4  # pixels masked at every edge of the warping error
# (name, stability option or None, strength)
OPTIONS = [
    ("per-frame (reference)", None, 0.0),
    ("blend 0.5", "blend", 0.5),
    ("blend 0.8", "blend", 0.8),
    ("denoise 0.8", "denoise", 0.8),
    ("both 0.8", "both", 0.8),
]


@dataclass(frozen=True)
class Motion:
    """Where each pixel of a frame was in the frame before: ``previous = center + (p - center) / zoom + shift``."""

    shift: tuple[float, float] = (0.0, 0.0)
    zoom: float = 1.0

    def warp(self, previous: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``previous`` (``(H, W, 3)``) moved into the next frame's place, and where that is known."""
        h, w = previous.shape[:2]
        yy, xx = torch.meshgrid(
            torch.arange(h, dtype=torch.float64), torch.arange(w, dtype=torch.float64), indexing="ij"
        )
        cx, cy = (w - 1) / 2, (h - 1) / 2
        px = cx + (xx - cx) / self.zoom + self.shift[0]
        py = cy + (yy - cy) / self.zoom + self.shift[1]
        grid = torch.stack([px / (w - 1) * 2 - 1, py / (h - 1) * 2 - 1], dim=-1)[None].float()
        image = torch.from_numpy(previous.astype(np.float32)).permute(2, 0, 1)[None]
        warped = F.grid_sample(image, grid, mode="bilinear", align_corners=True)[0].permute(1, 2, 0).numpy()
        inside = (px >= BORDER) & (px <= w - 1 - BORDER) & (py >= BORDER) & (py <= h - 1 - BORDER)
        keep = inside.numpy()
        keep[:BORDER], keep[-BORDER:], keep[:, :BORDER], keep[:, -BORDER:] = False, False, False, False
        return warped, keep


def warping_error(frames: Sequence[np.ndarray], motion: Motion) -> float:
    """Mean absolute difference (0-255) between each frame and the one before, moved by ``motion``."""
    errors = []
    for previous, frame in itertools.pairwise(frames):
        warped, keep = motion.warp(previous)
        errors.append(float(np.abs(frame.astype(np.float32) - warped)[keep].mean()))
    return statistics.fmean(errors)


@dataclass
class Clip:
    name: str
    frames: list[np.ndarray]
    motion: Motion


def _crop(photo: Image.Image, center: tuple[float, float], scale: float, size: tuple[int, int]) -> np.ndarray:
    """The ``size`` view of ``photo`` around ``center``, ``scale`` photo pixels per frame pixel."""
    w, h = size
    half_w, half_h = w * scale / 2, h * scale / 2
    box = (center[0] - half_w, center[1] - half_h, center[0] + half_w, center[1] + half_h)
    return np.asarray(photo.resize(size, Image.Resampling.BICUBIC, box=box))


def make_clips(photos: Sequence[Path], size: tuple[int, int], count: int) -> list[Clip]:
    """Four clips of ``count`` frames with known motion, each from one of ``photos`` (in turn)."""
    w, h = size
    rng = np.random.default_rng(0)
    dx, dy, zoom = 3.0, 1.0, 1.012

    def load(i: int) -> Image.Image:
        photo = load_image(photos[i % len(photos)])
        # Big enough for the whole pan at one photo pixel per frame pixel.
        scale = max((w + dx * count + 8) / photo.width, (h + dy * count + 8) / photo.height, 1.0)
        return photo.resize(
            (round(photo.width * scale), round(photo.height * scale)), Image.Resampling.LANCZOS
        )

    def noisy(pixels: np.ndarray) -> np.ndarray:
        return (pixels + rng.normal(0, NOISE, pixels.shape)).clip(0, 255).round().astype(np.uint8)

    clips = []
    photo = load(0)
    start = ((w + 8) / 2, (h + 8) / 2)
    pan = [_crop(photo, (start[0] + dx * t, start[1] + dy * t), 1.0, size) for t in range(count)]
    clips.append(Clip("pan", pan, Motion((dx, dy))))
    photo = load(1)
    middle = (photo.width / 2, photo.height / 2)
    first = min(photo.width / w, photo.height / h) * 0.95
    clips.append(
        Clip("zoom", [_crop(photo, middle, first / zoom**t, size) for t in range(count)], Motion(zoom=zoom))
    )
    photo = load(2)
    still = _crop(photo, (photo.width / 2, photo.height / 2), 1.0, size).astype(np.float32)
    clips.append(Clip("noise", [noisy(still) for _ in range(count)], Motion()))
    photo = load(3)
    pan = [noisy(_crop(photo, (start[0] + dx * t, start[1] + dy * t), 1.0, size)) for t in range(count)]
    clips.append(Clip("pan + noise", pan, Motion((dx, dy))))
    return clips


class CachedNetwork:
    """``stylize_array`` remembered by input, so options that feed the network the same frames share it."""

    def __init__(self, stylizer: Stylizer) -> None:
        self.stylizer = stylizer
        self.cache: dict[bytes, np.ndarray] = {}

    def stylize_array(self, pixels: np.ndarray, **options: object) -> np.ndarray:
        key = hashlib.sha256(pixels.tobytes()).digest()
        if key not in self.cache:
            self.cache[key] = self.stylizer.stylize_array(pixels)
        return self.cache[key]


def stability_table(stylizer: Stylizer, clips: Sequence[Clip]) -> str:
    """Warping error per clip for the input, per-frame stylization and each stability option."""
    header = [
        "frames",
        *[f"{clip.name}" for clip in clips],
        "mean",
        "vs per-frame",
        "off the model",
        "cost ms/frame",
    ]
    rows: list[list[object]] = [
        ["input (the floor)", *[f"{warping_error(c.frames, c.motion):.2f}" for c in clips], "", "", "", ""]
    ]
    network = CachedNetwork(stylizer)
    reference: list[list[np.ndarray]] = []
    reference_mean = 0.0
    for name, method, strength in OPTIONS:
        errors, off, cost = [], [], []
        for index, clip in enumerate(clips):
            stabilizer = TemporalStabilizer(method, strength) if method else None
            step = frame_stylizer(network, stabilizer)  # type: ignore[arg-type]
            outputs = [step(frame) for frame in clip.frames]
            if method is None:
                reference.append(outputs)
            else:
                off.append(
                    statistics.fmean(
                        float(np.abs(a.astype(np.float32) - b).mean())
                        for a, b in zip(outputs, reference[index], strict=True)
                    )
                )
                cost.append(_stabilizer_ms(method, strength, clip.frames))
            errors.append(warping_error(outputs, clip.motion))
        mean = statistics.fmean(errors)
        reference_mean = reference_mean or mean
        rows.append(
            [
                name,
                *[f"{e:.2f}" for e in errors],
                f"{mean:.2f}",
                f"{mean / reference_mean:.2f}×",
                f"{statistics.fmean(off):.2f}" if off else "0",
                f"{statistics.fmean(cost):.1f}" if cost else "0",
            ]
        )
    return markdown_table(header, rows)


def _stabilizer_ms(method: str, strength: float, frames: Sequence[np.ndarray]) -> float:
    """Milliseconds per frame of ``prepare`` + ``finish`` alone (the input stands in for the network)."""
    stabilizer = TemporalStabilizer(method, strength)
    for frame in frames[:2]:  # warm-up
        stabilizer.finish(stabilizer.prepare(frame))
    stabilizer.reset()
    start = time.perf_counter()
    for frame in frames:
        stabilizer.finish(stabilizer.prepare(frame))
    return (time.perf_counter() - start) / len(frames) * 1000


def write_clip(path: Path, frames: Callable[[int], np.ndarray], count: int) -> Path:
    """An H.264 + AAC clip of ``count`` frames at ``FPS`` (a quiet tone), as a camera file would be."""
    with av.open(str(path), "w") as container:
        first = frames(0)
        video = container.add_stream("libx264", rate=FPS)
        video.width, video.height, video.pix_fmt = first.shape[1], first.shape[0], "yuv420p"
        video.options = {"crf": "18", "preset": "veryfast"}
        sound = container.add_stream("aac", rate=SAMPLE_RATE)
        sound.layout = "stereo"
        per_frame = SAMPLE_RATE // FPS
        t = np.arange(per_frame) / SAMPLE_RATE
        for i in range(count):
            frame = av.VideoFrame.from_ndarray(first if i == 0 else frames(i), format="rgb24")
            frame.pts = i
            container.mux(video.encode(frame))
            tone = (0.1 * np.sin(2 * np.pi * 440 * (t + i / FPS))).astype(np.float32)
            chunk = av.AudioFrame.from_ndarray(np.stack([tone, tone]), format="fltp", layout="stereo")
            chunk.sample_rate, chunk.pts = SAMPLE_RATE, i * per_frame
            container.mux(sound.encode(chunk))
        container.mux(video.encode(None))
        container.mux(sound.encode(None))
    return path


def sequential_reference(source: Path, target: Path, stylizer: Stylizer) -> int:
    """Decode, stylize and encode one frame after another in one thread; returns the frame count."""
    frames = 0
    with av.open(str(source)) as inp, av.open(str(target), "w") as out:
        video_in, audio_in = inp.streams.video[0], inp.streams.audio[0]
        video_in.thread_type = "AUTO"
        video = out.add_stream("libx264", rate=video_in.average_rate)
        video.width, video.height, video.pix_fmt = video_in.width, video_in.height, "yuv420p"
        video.time_base = video_in.time_base
        video.options = {"crf": "18", "preset": "medium"}
        audio = out.add_stream_from_template(audio_in)
        for packet in inp.demux(video_in, audio_in):
            if packet.stream is audio_in:
                if packet.dts is not None:
                    packet.stream = audio
                    out.mux(packet)
                continue
            for frame in packet.decode():
                styled = stylizer.stylize_array(frame.to_ndarray(format="rgb24"))
                result = av.VideoFrame.from_ndarray(styled, format="rgb24")
                result.pts, result.time_base = frame.pts, frame.time_base
                out.mux(video.encode(result))
                frames += 1
        out.mux(video.encode(None))
    return frames


def _rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _timed(run: Callable[[], int]) -> tuple[int, float, float]:
    """``run()``'s frame count, wall seconds and this process's CPU seconds (all threads)."""
    wall, cpu = time.perf_counter(), time.process_time()
    frames = run()
    return frames, time.perf_counter() - wall, time.process_time() - cpu


def speed_rows(model: Path, stylizer: Stylizer, clip: Path, folder: Path, count: int) -> list[list[object]]:
    """Frames/s of the sequential reference, ``VideoJob`` with and without stabilization, and the network.

    CPU seconds per frame (every thread of this process) do not depend on how busy the machine is as
    much as frames/s do: on a shared CPU they are the steadier measure of the work a frame takes.
    """
    with av.open(str(clip)) as container:
        decoded = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)][:count]

    def network() -> int:
        for frame in decoded:
            stylizer.stylize_array(frame)
        return len(decoded)

    def job(stabilizer: TemporalStabilizer | None) -> Callable[[], int]:
        return lambda: (
            VideoJob(clip, str(folder / "out.mp4"), overwrite=True)
            .run(frame_stylizer(stylizer, stabilizer))
            .frames
        )

    cases: list[tuple[str, Callable[[], int]]] = [
        (
            "sequential decode -> network -> encode (reference)",
            lambda: sequential_reference(clip, folder / "ref.mp4", stylizer),
        ),
        ("fast-style video", job(None)),
        ("fast-style video --stabilize both", job(TemporalStabilizer("both"))),
        ("network alone (frames decoded beforehand)", network),
    ]
    rows: list[list[object]] = []
    reference = 0.0
    for name, run in cases:
        frames, wall, cpu = _timed(run)
        fps = frames / wall
        reference = reference or fps
        rows.append(
            [model.stem, name, frames, f"{fps:.2f}", f"{fps / reference:.2f}×", f"{cpu / frames:.3f}"]
        )
    return rows


def memory_rows(model: Path, stylizer: Stylizer, clip: Path, folder: Path, long: int) -> list[list[object]]:
    """VmRSS after frame 1, 100 and ``long``, the largest from frame 100 on, and the growth."""
    samples: list[float] = []
    job = VideoJob(clip, str(folder / "long_styled.mp4"), overwrite=True)
    job.run(frame_stylizer(stylizer), on_frame=lambda _: samples.append(_rss_mib()))
    base = samples[min(99, len(samples) - 1)]
    late = samples[99:] or samples
    return [
        [
            model.stem,
            len(samples),
            f"{samples[0]:.0f}",
            f"{base:.0f}",
            f"{samples[-1]:.0f}",
            f"{max(late):.0f}",
            f"{max(late) - base:+.0f}",
        ]
    ]


def models_table(stylizers: dict[Path, Stylizer], clips: Sequence[Clip]) -> str:
    """Warping error of each model's per-frame output per clip, and its mean over the first model's:
    how much steadier a model trained with ``stability.weight`` is than one trained without.
    """
    header = ["model", *[clip.name for clip in clips], "mean", "vs the first"]
    rows: list[list[object]] = [
        ["input (the floor)", *[f"{warping_error(c.frames, c.motion):.2f}" for c in clips], "", ""]
    ]
    first = None
    for model, stylizer in stylizers.items():
        errors = [warping_error([stylizer.stylize_array(f) for f in c.frames], c.motion) for c in clips]
        mean = statistics.fmean(errors)
        first = mean if first is None else first
        rows.append([model.stem, *[f"{e:.2f}" for e in errors], f"{mean:.2f}", f"{mean / first:.2f}x"])
    return markdown_table(header, rows)


def _size(text: str) -> tuple[int, int]:
    w, _, h = text.partition("x")
    return int(w), int(h)


def main(argv: Sequence[str] | None = None) -> None:
    """Parse arguments, run the three parts and print their tables."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--models", type=Path, nargs="+", default=MODELS, help="exported models; stability uses the first"
    )
    parser.add_argument("--content", type=Path, default=CONTENT, help="folder of photos for the clips")
    parser.add_argument("--size", type=_size, default=(640, 360), help="frame size WxH (default 640x360)")
    parser.add_argument("--frames", type=int, default=24, help="frames per stability clip (0: skip)")
    parser.add_argument(
        "--speed-frames", type=int, nargs="+", default=[120, 30], help="frames of the speed clip, per model"
    )
    parser.add_argument("--long", type=int, default=600, help="frames of the memory clip (0: skip)")
    parser.add_argument(
        "--compare",
        type=Path,
        nargs="+",
        help="only this: the warping error of these models side by side (e.g. trained with and without "
        "stability.weight), per-frame",
    )
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    if args.compare:
        photos = sorted(p for p in args.content.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
        w, h = args.size
        print(f"{device_line()}; load average {os.getloadavg()[0]:.1f} at the start")
        print(f"\n## Warping error (0-255) by model, per-frame, {w}x{h}, {args.frames} frames a clip\n")
        compared = {model: Stylizer.from_file(model, device=args.device) for model in args.compare}
        print(models_table(compared, make_clips(photos, args.size, args.frames)))
        return

    photos = sorted(p for p in args.content.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    stylizers = {model: Stylizer.from_file(model, device=args.device) for model in args.models}
    w, h = args.size
    print(f"{device_line()}; load average {os.getloadavg()[0]:.1f} at the start")
    if args.frames:
        title = f"Warping error (0-255, lower is steadier), {args.models[0].stem}, {w}x{h}, {args.frames} frames a clip"
        print(f"\n## {title}\n")
        print(stability_table(stylizers[args.models[0]], make_clips(photos, args.size, args.frames)))

    pan = make_clips(photos, args.size, 2)[0].frames[0]
    photo = Image.fromarray(pan)

    def moving(i: int) -> np.ndarray:  # the first frame, panned back and forth
        offset = 40 - abs(i % 160 - 80)
        return np.asarray(photo.transform(photo.size, Image.Transform.AFFINE, (1, 0, offset / 2, 0, 1, 0)))

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        print(f"\n## End to end frames/s, {w}x{h}, H.264 + AAC in and out\n")
        rows: list[list[object]] = []
        counts = list(args.speed_frames) + [args.speed_frames[-1]] * len(args.models)
        for model, count in zip(args.models, counts, strict=False):
            clip = write_clip(folder / f"speed_{count}.mp4", moving, count)
            rows += speed_rows(model, stylizers[model], clip, folder, count)
        print(markdown_table(["model", "case", "frames", "frames/s", "vs reference", "CPU s/frame"], rows))
        if args.long:
            model = args.models[0]
            clip = write_clip(folder / "long.mp4", moving, args.long)
            print(f"\n## Resident memory (MiB) along a {args.long}-frame clip, {model.stem}, {w}x{h}\n")
            header = [
                "model",
                "frames",
                "after frame 1",
                "after frame 100",
                "at the end",
                "max from 100",
                "growth",
            ]
            print(markdown_table(header, memory_rows(model, stylizers[model], clip, folder, args.long)))
    print(
        f"\nFrame rate of the clips: {Fraction(FPS)} fps; load average {os.getloadavg()[0]:.1f} at the end."
    )


if __name__ == "__main__":
    main()
