"""``fast-style video`` on tiny clips written with PyAV: what comes out, what bad input gets, what is left behind."""

from __future__ import annotations

import itertools
import sys
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

av = pytest.importorskip("av")

from fast_style.cli.main import main  # noqa: E402
from fast_style.video.pipeline import Frame, run_pipeline  # noqa: E402
from fast_style.video.stabilize import TemporalStabilizer  # noqa: E402

W, H, FPS, FRAMES = 48, 32, 12, 6
SAMPLE_RATE = 16000


def _picture(i: int, size: tuple[int, int] = (W, H)) -> np.ndarray:
    """A smooth moving pattern, so frames differ and the codec has structure to keep."""
    w, h = size
    yy, xx = np.mgrid[0:h, 0:w]
    rgb = np.stack([np.sin((xx + 2 * i) / 5), np.cos(yy / 4 + i / 3), np.sin((xx + yy) / 7)], axis=-1)
    return ((rgb * 0.4 + 0.5) * 255).astype(np.uint8)


def write_clip(
    path: Path,
    frames: int = FRAMES,
    *,
    audio: bool = True,
    rotation: int = 0,
    codec: str = "libx264",
    fmt: str | None = None,
) -> Path:
    """A ``frames``-frame clip at ``FPS`` (and a sine tone as long as it, in AAC), written with PyAV."""
    with av.open(str(path), "w", format=fmt) as container:
        video = container.add_stream(codec, rate=FPS)
        video.width, video.height, video.pix_fmt = W, H, "yuv420p"
        if rotation:
            video.set_display_rotation(rotation)
        sound = None
        if audio:
            sound = container.add_stream("aac", rate=SAMPLE_RATE)
            sound.layout = "mono"
        container.start_encoding()  # the header, even for a clip of no frames
        for i in range(frames):
            frame = av.VideoFrame.from_ndarray(_picture(i), format="rgb24")
            frame.pts = i
            container.mux(video.encode(frame))
        if sound is not None:
            samples = SAMPLE_RATE * frames // FPS
            tone = (0.3 * np.sin(2 * np.pi * 440 * np.arange(samples) / SAMPLE_RATE)).astype(np.float32)
            chunk = av.AudioFrame.from_ndarray(tone[None], format="fltp", layout="mono")
            chunk.sample_rate, chunk.pts = SAMPLE_RATE, 0
            container.mux(sound.encode(chunk))
            container.mux(sound.encode(None))
        container.mux(video.encode(None))
    return path


def probe(path: Path) -> dict[str, object]:
    """What a player sees: frames, rate, size, rotation, audio codec and packet count."""
    with av.open(str(path)) as container:
        video = container.streams.video[0]
        rate = video.average_rate
        frames = list(container.decode(video))
    with av.open(str(path)) as container:
        audio = container.streams.audio
        packets = sum(1 for p in container.demux(audio[0]) if p.size) if audio else 0
        codec = audio[0].codec_context.name if audio else None
    return {
        "frames": len(frames),
        "rate": rate,
        "size": (frames[0].width, frames[0].height),
        "rotation": frames[0].rotation,
        "audio": codec,
        "audio_packets": packets,
    }


def run(*args: object) -> int:
    return main(["video", *(str(a) for a in args)])


def leftovers(folder: Path) -> list[str]:
    """Temporary files or folders that a run left beside its output."""
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


@pytest.fixture
def clip(tmp_path: Path) -> Path:
    return write_clip(tmp_path / "clip.mp4", rotation=90)


# -- what comes out ------------------------------------------------------------------------------------


def test_round_trip_keeps_frames_rate_size_rotation_and_copies_the_sound(clip, tiny_model, tmp_path, capsys):
    out = tmp_path / "out" / "styled.mp4"
    assert run(clip, "-m", tiny_model, "-o", out) == 0
    got, source = probe(out), probe(clip)
    assert got == {**source, "audio": "aac"}  # the same frames, rate, size, rotation and sound packets
    assert got["frames"] == FRAMES and got["rate"] == FPS and got["size"] == (W, H) and got["rotation"] == 90
    assert "sound copied (aac)" in capsys.readouterr().out
    assert leftovers(out.parent) == []


def test_sound_is_reencoded_where_the_format_cannot_hold_its_codec(clip, tiny_model, tmp_path, capsys):
    out = tmp_path / "styled.webm"  # WebM takes Opus or Vorbis, not AAC
    assert run(clip, "-m", tiny_model, "-o", out) == 0
    got = probe(out)
    assert (got["frames"], got["size"], got["audio"]) == (FRAMES, (W, H), "opus")
    assert "sound re-encoded (aac -> opus)" in capsys.readouterr().out


def test_max_size_and_stabilize_options(clip, tiny_model, tmp_path):
    out = tmp_path / "small.mkv"
    assert (
        run(clip, "-m", tiny_model, "-o", out, "--max-size", "24", "--stabilize", "both", "--strength", "0.5")
        == 0
    )
    assert probe(out)["size"] == (24, 16)


def test_folder_of_frames_in_and_out(clip, tiny_model, tmp_path):
    frames = tmp_path / "frames"
    assert run(clip, "-m", tiny_model, "-o", f"{frames}/") == 0
    assert sorted(p.name for p in frames.iterdir()) == [f"frame_{i:06d}.png" for i in range(1, FRAMES + 1)]
    back = tmp_path / "back.mp4"
    assert run(frames, "-m", tiny_model, "-o", back, "--fps", "8") == 0
    got = probe(back)
    assert (got["frames"], got["rate"], got["size"], got["audio"]) == (FRAMES, 8, (W, H), None)
    # Into the existing folder again: only with --overwrite, and frames of a longer run are removed.
    (frames / "frame_000099.png").write_bytes((frames / "frame_000001.png").read_bytes())
    (frames / "notes.txt").write_text("mine")
    assert run(clip, "-m", tiny_model, "-o", frames) == 2
    assert run(clip, "-m", tiny_model, "-o", frames, "--overwrite") == 0
    assert sorted(p.name for p in frames.iterdir())[-2:] == [f"frame_{FRAMES:06d}.png", "notes.txt"]
    assert leftovers(tmp_path) == []


# -- bad input: one line, exit 2, nothing written ---------------------------------------------------------


def _not_a_video(folder: Path) -> Path:
    path = folder / "notes.mp4"
    path.write_text("these are not frames\n")
    return path


def _sound_only(folder: Path) -> Path:
    path = folder / "tone.wav"
    with av.open(str(path), "w") as container:
        sound = container.add_stream("pcm_s16le", rate=8000)
        sound.layout = "mono"
        chunk = av.AudioFrame.from_ndarray(np.zeros((1, 800), np.int16), format="s16", layout="mono")
        chunk.sample_rate, chunk.pts = 8000, 0
        container.mux(sound.encode(chunk))
        container.mux(sound.encode(None))
    return path


def _zero_frames(folder: Path) -> Path:
    return write_clip(folder / "empty.avi", 0, audio=False, codec="mpeg4")


def _unknown_codec(folder: Path) -> Path:
    """An AVI whose video codec tag names no codec FFmpeg knows."""
    path = write_clip(folder / "odd.avi", 3, audio=False, codec="mpeg4")
    data = path.read_bytes()
    assert b"FMP4" in data
    path.write_bytes(data.replace(b"FMP4", b"QQQQ"))
    return path


def _undecodable(folder: Path) -> Path:
    """An MKV whose H.264 packets are noise."""
    path = folder / "noise.mkv"
    with av.open(str(path), "w") as container:
        video = container.add_stream("libx264", rate=FPS)
        video.width, video.height, video.pix_fmt = W, H, "yuv420p"
        container.start_encoding()
        for i in range(3):
            packet = av.Packet(bytes([0, 0, 0, 1, 0x65]) + bytes(range(60)))
            packet.stream, packet.pts, packet.dts, packet.time_base = video, i, i, Fraction(1, FPS)
            container.mux(packet)
    return path


BAD_INPUTS = {
    "not a video": (_not_a_video, "not a video"),
    "sound only": (_sound_only, "no video stream"),
    "zero frames": (_zero_frames, "no frames"),
    "unknown codec": (_unknown_codec, "no decoder"),
    "undecodable": (_undecodable, "cannot decode"),
}


@pytest.mark.parametrize("case", BAD_INPUTS)
def test_bad_input_is_one_line_and_exit_2_before_any_work(case, tiny_model, tmp_path, capsys):
    make, expected = BAD_INPUTS[case]
    source = make(tmp_path)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    assert run(source, "-m", tiny_model, "-o", out_dir / "styled.mp4") == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("fast-style video: error: ") and expected in err
    assert list(out_dir.iterdir()) == []


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("styled.txt", "no video format writes .txt"),
        ("styled.wav", "hold no video"),
        ("styled", "no video format writes files without an extension"),
        ("styled.png", "names an image"),
    ],
)
def test_an_output_no_encoder_takes_is_one_line_and_exit_2(
    name, expected, clip, tiny_model, tmp_path, capsys
):
    assert run(clip, "-m", tiny_model, "-o", tmp_path / name) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and expected in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.mp4", "tiny.ckpt", "tiny.safetensors"]


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--strength", "2"], "--strength must be within [0, 1]"),
        (["--stability", "1"], "--stability must be within [0, 1)"),
        (["--style", "starry"], "this model paints one style"),
        (["--mix", "a=x"], "--mix takes NAME=WEIGHT pairs"),
        (["--fps", "10"], "--fps is for a folder of frames"),
    ],
)
def test_bad_options_are_one_line_and_exit_2(args, expected, clip, tiny_model, tmp_path, capsys):
    assert run(clip, "-m", tiny_model, "-o", tmp_path / "x.mp4", *args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and expected in err
    assert not (tmp_path / "x.mp4").exists()


def test_an_existing_output_is_kept_without_overwrite(clip, tiny_model, tmp_path, capsys):
    out = tmp_path / "styled.mp4"
    out.write_bytes(b"keep me")
    assert run(clip, "-m", tiny_model, "-o", out) == 2
    assert "exists; pass --overwrite" in capsys.readouterr().err
    assert out.read_bytes() == b"keep me"
    assert run(clip, "-m", tiny_model, "-o", out, "--overwrite") == 0
    assert probe(out)["frames"] == FRAMES


def test_missing_pyav_is_one_line_with_the_install_command(monkeypatch, clip, tiny_model, tmp_path, capsys):
    for name in [m for m in sys.modules if m == "av" or m.startswith("fast_style.video.")]:
        if name != "fast_style.video.stabilize":
            monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "av", None)  # import av raises ImportError(name="av")
    assert run(clip, "-m", tiny_model, "-o", tmp_path / "x.mp4") == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and 'pip install -e ".[video]"' in err


# -- a temporary file, renamed at the end ------------------------------------------------------------------


def test_the_output_is_a_temporary_file_until_the_end(clip, tiny_model, tmp_path):
    from fast_style.video.job import VideoJob

    out_dir = tmp_path / "out"
    seen: list[list[str]] = []

    def step(pixels: np.ndarray) -> np.ndarray:
        seen.append(sorted(p.name for p in out_dir.iterdir()))
        return pixels

    job = VideoJob(clip, str(out_dir / "styled.mp4"))
    assert job.run(step).frames == FRAMES
    assert all(len(names) == 1 and names[0].startswith(".styled.mp4.") for names in seen)
    assert sorted(p.name for p in out_dir.iterdir()) == ["styled.mp4"]


@pytest.mark.parametrize(
    ("fault", "code", "message"),
    [(KeyboardInterrupt, 130, "interrupted after 2 frame(s)"), (RuntimeError, 1, "stopped at frame 3")],
)
def test_a_run_stopped_midway_leaves_nothing_behind(
    fault, code, message, monkeypatch, clip, tiny_model, tmp_path, capsys
):
    from fast_style.inference import Stylizer

    calls = []
    original = Stylizer.stylize_array

    def flaky(self, pixels, **options):
        calls.append(1)
        if len(calls) == 3:
            raise fault("disk on fire")
        return original(self, pixels, **options)

    monkeypatch.setattr(Stylizer, "stylize_array", flaky)
    for output in (tmp_path / "out" / "styled.mp4", tmp_path / "out" / "frames"):
        calls.clear()
        assert run(clip, "-m", tiny_model, "-o", f"{output}/" if output.suffix == "" else output) == code
        err = capsys.readouterr().err
        assert message in err and "nothing was written" in err and "Traceback" not in err
        assert list((tmp_path / "out").iterdir()) == []


# -- stabilization ----------------------------------------------------------------------------------------


def _noisy_still_frames(folder: Path, count: int = 8, sigma: float = 8.0) -> Path:
    """PNG frames of one picture with fresh sensor noise each (lossless, so the noise is all that changes)."""
    from PIL import Image

    folder.mkdir()
    rng = np.random.default_rng(0)
    still = _picture(0, (64, 48)).astype(np.float32)
    for i in range(count):
        noisy = (still + rng.normal(0, sigma, still.shape)).clip(0, 255).astype(np.uint8)
        Image.fromarray(noisy).save(folder / f"{i:03d}.png")
    return folder


def _frame_to_frame_change(folder: Path) -> float:
    from PIL import Image

    frames = [np.asarray(Image.open(p), dtype=np.float32) for p in sorted(folder.iterdir())]
    return float(np.mean([np.abs(b - a).mean() for a, b in itertools.pairwise(frames[2:])]))


def test_stabilize_reduces_frame_to_frame_change_on_a_still_noisy_clip(tiny_model, tmp_path):
    source = _noisy_still_frames(tmp_path / "noisy")
    change = {}
    for method in ("none", "blend", "denoise", "both"):
        out = tmp_path / method
        assert run(source, "-m", tiny_model, "-o", f"{out}/", "--stabilize", method) == 0
        change[method] = _frame_to_frame_change(out)
    assert change["none"] > 0.5  # the network passes the noise on
    for method in ("blend", "denoise", "both"):
        assert change[method] < 0.6 * change["none"], change


def test_stabilizer_leaves_changed_pixels_alone():
    """Where the input changed (a cut), the frame is the network's own picture, not a blend."""
    stabilizer = TemporalStabilizer("both", strength=0.9)
    first, cut = np.full((32, 32, 3), 20, np.uint8), np.full((32, 32, 3), 230, np.uint8)
    stabilizer.finish(stabilizer.prepare(first) // 2)
    assert np.array_equal(stabilizer.prepare(cut), cut)
    stylized = cut // 3
    assert np.array_equal(stabilizer.finish(stylized), stylized)
    # The same frame again: the past weighs `strength` everywhere.
    again = stabilizer.prepare(cut)
    assert np.array_equal(again, cut)
    out = stabilizer.finish(np.zeros_like(cut)).astype(np.float32)
    np.testing.assert_allclose(out, 0.9 * stylized, atol=1)


# -- streaming --------------------------------------------------------------------------------------------


def test_pipeline_holds_a_bounded_number_of_frames():
    """The reader runs at most a few frames ahead of the network: memory does not grow with length."""
    read: list[int] = []
    processed: list[int] = []
    ahead: list[int] = []

    def frames():
        for i in range(60):
            read.append(i)
            yield Frame(np.zeros((4, 4, 3), np.uint8), i)

    def process(frame: Frame) -> Frame:
        ahead.append(len(read) - len(processed))
        processed.append(frame.index)
        return frame

    class Sink:
        def __init__(self):
            self.written: list[int] = []

        def write(self, item):
            self.written.append(item.index)

    sink = Sink()
    assert run_pipeline(frames(), process, sink, depth=3) == 60
    assert sink.written == list(range(60))
    assert max(ahead) <= 3 + 2


def test_pipeline_raises_the_first_error_of_any_stage():
    def frames():
        yield Frame(np.zeros((4, 4, 3), np.uint8), 0)
        raise ValueError("bad packet")

    class Sink:
        def write(self, item):
            pass

    with pytest.raises(ValueError, match="bad packet"):
        run_pipeline(frames(), lambda f: f, Sink())


def test_video_benchmark_runs_on_tiny_settings(tiny_model, tmp_path, capsys):
    """``benchmarks/video.py`` end to end on a tiny model and clip (its numbers are not checked)."""
    from benchmarks.video import main as benchmark
    from tests.conftest import random_image

    photos = tmp_path / "photos"
    photos.mkdir()
    for seed in range(2):
        random_image((80, 60), seed).save(photos / f"{seed}.png")
    tiny = ["--size", "48x32", "--frames", "3", "--speed-frames", "3", "--long", "4"]
    benchmark(["--models", str(tiny_model), "--content", str(photos), *tiny])
    out = capsys.readouterr().out
    for row in ("| input (the floor) |", "| both 0.8 |", "| fast-style video |", "| network alone"):
        assert row in out
    assert "| tiny | 4 |" in out  # the memory table


def test_video_imports_no_training_code(clip, tiny_model, tmp_path):
    import subprocess

    script = (
        "import sys\n"
        "from fast_style.cli.main import main\n"
        f"code = main(['video', {str(clip)!r}, '-m', {str(tiny_model)!r}, '-o', {str(tmp_path / 'o.mp4')!r},"
        " '--stabilize', 'both'])\n"
        "assert code == 0, code\n"
        "banned = ('pytorch_lightning', 'lightning', 'hydra', 'omegaconf', 'torchvision', 'tensorboard',\n"
        "          'fast_style.training', 'fast_style.losses', 'fast_style.data', 'fast_style.refine')\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in banned or m.startswith(banned)))\n"
    )
    root = Path(__file__).resolve().parents[1]
    result = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        cwd=root,
        timeout=120,
        env={**__import__("os").environ, "PYTHONPATH": str(root)},
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "[]"
