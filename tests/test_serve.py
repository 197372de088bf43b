"""``fast-style serve``: the HTTP API against a live uvicorn server, limits, the queue, and the command."""

from __future__ import annotations

import io
import os
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("starlette", reason="the web extra is not installed: pip install -e '.[web]'")
pytest.importorskip("uvicorn", reason="the web extra is not installed: pip install -e '.[web]'")
pytest.importorskip("python_multipart", reason="the web extra is not installed: pip install -e '.[web]'")
httpx = pytest.importorskip("httpx", reason="the dev extra is not installed: pip install -e '.[dev]'")

from fast_style.cli import serve as serve_cli  # noqa: E402
from fast_style.web.app import create_app  # noqa: E402
from fast_style.web.limits import Limits  # noqa: E402
from fast_style.web.server import BackgroundServer  # noqa: E402
from tests.conftest import ROOT, random_image, tiny_model_folder  # noqa: E402

HOSTS = ["127.0.0.1", "localhost"]


def jpeg(size: tuple[int, int], seed: int = 0) -> bytes:
    buffer = io.BytesIO()
    random_image(size, seed).save(buffer, format="JPEG", quality=95)
    return buffer.getvalue()


def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header claims ``width x height`` (its pixel data would not fit): a decompression bomb."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\0" * 64))
        + chunk(b"IEND", b"")
    )


def rss_bytes() -> int:
    """This process's resident memory (Linux)."""
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def post(url: str, image: bytes, model: str, name: str = "photo.jpg", **fields: str) -> httpx.Response:
    return httpx.post(
        f"{url}/api/stylize",
        files={"image": (name, image, "image/jpeg")},
        data={"model": model, **fields},
        timeout=120,
    )


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_model_folder(tmp_path_factory.mktemp("web_models"))


@pytest.fixture(scope="module")
def server(model_dir: Path) -> str:
    """A live server on a free port with the two tiny models and the default limits."""
    app = create_app([model_dir], shipped=False, device="cpu", allowed_hosts=HOSTS)
    with BackgroundServer(app) as running:
        yield running.url


def error_of(response: httpx.Response) -> str:
    assert response.headers["content-type"].startswith("application/json")
    message = response.json()["error"]
    assert message and "\n" not in message and "Traceback" not in message
    return message


# -- the listing and the page ------------------------------------------------------------------------
def test_models_lists_names_and_limits_without_paths(server: str, model_dir: Path) -> None:
    response = httpx.get(f"{server}/api/models")
    assert response.status_code == 200
    info = response.json()
    assert [m["name"] for m in info["models"]] == ["tiny_a", "tiny_b"]
    assert info["limits"]["max_upload_bytes"] == 20 * 2**20
    assert info["limits"]["max_pixels"] == 40_000_000
    assert info["limits"]["max_side"] == 2048
    assert str(model_dir) not in response.text


def test_page_and_its_files_are_served_from_here_only(server: str) -> None:
    page = httpx.get(f"{server}/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert "default-src 'self'" in page.headers["content-security-policy"]
    for asset in ("/static/app.js", "/static/style.css"):
        body = httpx.get(server + asset)
        assert body.status_code == 200
        assert "http://" not in body.text and "https://" not in body.text  # no CDN, no beacons
    assert "http://" not in page.text and "https://" not in page.text


def test_unknown_host_header_is_refused(server: str) -> None:
    for host in ("evil.example", "evil.example:80", "127.0.0.1.evil.example"):
        response = httpx.get(f"{server}/api/models", headers={"host": host})
        assert response.status_code == 400
        assert "Host header" in error_of(response)
    port = server.rsplit(":", 1)[1]
    assert httpx.get(f"{server}/api/models", headers={"host": f"localhost:{port}"}).status_code == 200


# -- the five request cases --------------------------------------------------------------------------
def test_good_photo_returns_stylized_png(server: str) -> None:
    photo = jpeg((48, 40), seed=1)
    response = post(server, photo, "tiny_a")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "image/png"
    assert response.headers["x-image-size"] == "48x40"
    result = Image.open(io.BytesIO(response.content))
    assert result.format == "PNG" and result.size == (48, 40)
    source = np.asarray(Image.open(io.BytesIO(photo)).convert("RGB"), dtype=np.int16)
    assert np.abs(np.asarray(result.convert("RGB"), dtype=np.int16) - source).mean() > 5  # it was stylized

    other = post(server, photo, "tiny_b")
    assert other.status_code == 200 and other.content != response.content

    unchanged = post(server, photo, "tiny_a", strength="0")
    assert unchanged.status_code == 200
    back = np.asarray(Image.open(io.BytesIO(unchanged.content)).convert("RGB"), dtype=np.int16)
    assert np.abs(back - source).max() <= 1  # strength 0 is the photo itself

    kept = post(server, photo, "tiny_a", preserve_color="true")
    assert kept.status_code == 200 and kept.content != response.content

    smaller = post(server, photo, "tiny_a", max_size="24")
    assert smaller.status_code == 200 and Image.open(io.BytesIO(smaller.content)).size == (24, 20)


def test_max_size_is_clamped_to_the_cap(server: str) -> None:
    response = post(server, jpeg((48, 40)), "tiny_a", max_size="100000")
    assert response.status_code == 200
    assert response.headers["x-image-size"] == "48x40"  # never scaled up, and no error


def test_text_file_is_refused(server: str) -> None:
    response = post(server, b"just some notes, not a photo\n" * 20, "tiny_a", name="notes.txt")
    assert response.status_code == 415
    assert "notes.txt is not an image" in error_of(response)


def test_damaged_image_is_a_400(server: str) -> None:
    photo = jpeg((48, 40))
    response = post(server, photo[: len(photo) // 3], "tiny_a", name="cut.jpg")
    assert response.status_code in (400, 415)
    assert "cut.jpg" in error_of(response)


def test_oversized_image_is_refused_before_decoding(server: str) -> None:
    response = post(server, png_header_only(8000, 6000), "tiny_a", name="bomb.png")
    assert response.status_code == 413
    assert "8000x6000" in error_of(response) and "40 megapixels" in error_of(response)


def test_oversized_upload_is_refused(server: str) -> None:
    response = post(server, b"\xff\xd8" + os.urandom(21 * 2**20), "tiny_a", name="huge.jpg")
    assert response.status_code == 413
    assert "20 MB" in error_of(response)


def test_unknown_model_is_a_404(server: str) -> None:
    response = post(server, jpeg((32, 32)), "van_gogh")
    assert response.status_code == 404
    assert "unknown model 'van_gogh'" in error_of(response)


@pytest.mark.parametrize(
    "name",
    [
        "../checkpoints/starry_night",
        "/etc/passwd",
        "tiny_a.safetensors",
        "./tiny_a",
        "tiny_a/..",
        "%2e%2e/tiny_a",
    ],
)
def test_path_like_model_names_are_unknown(server: str, name: str) -> None:
    response = post(server, jpeg((32, 32)), name)
    assert response.status_code == 404
    assert "unknown model" in error_of(response)


def test_a_model_file_path_is_an_unknown_name(server: str, model_dir: Path) -> None:
    response = post(server, jpeg((32, 32)), str(model_dir / "tiny_a.safetensors"))
    assert response.status_code == 404
    assert "unknown model" in error_of(response)


@pytest.mark.parametrize(
    ("fields", "needle"),
    [
        ({"strength": "1.5"}, "strength"),
        ({"strength": "nan"}, "strength"),
        ({"max_size": "8"}, "max_size"),
        ({"max_size": "big"}, "max_size"),
        ({"preserve_color": "maybe"}, "preserve_color"),
    ],
)
def test_bad_settings_are_400(server: str, fields: dict[str, str], needle: str) -> None:
    response = post(server, jpeg((32, 32)), "tiny_a", **fields)
    assert response.status_code == 400
    assert needle in error_of(response)


def test_missing_fields_and_wrong_encoding_are_400(server: str) -> None:
    no_image = httpx.post(f"{server}/api/stylize", files={"model": (None, "tiny_a")})
    assert no_image.status_code == 400 and "'image'" in error_of(no_image)
    no_model = httpx.post(f"{server}/api/stylize", files={"image": ("a.jpg", jpeg((32, 32)), "image/jpeg")})
    assert no_model.status_code == 400 and "'model'" in error_of(no_model)
    as_json = httpx.post(f"{server}/api/stylize", json={"model": "tiny_a"})
    assert as_json.status_code == 400 and "multipart/form-data" in error_of(as_json)
    assert httpx.get(f"{server}/api/nothing").status_code == 404
    assert "error" in httpx.get(f"{server}/api/nothing").json()


# -- concurrency, memory, temporary files -------------------------------------------------------------
def test_twenty_concurrent_requests_are_all_answered(server: str) -> None:
    photos = [jpeg((96, 64), seed=i) for i in range(20)]
    assert post(server, photos[0], "tiny_a").status_code == 200  # models loaded before measuring
    assert post(server, photos[0], "tiny_b").status_code == 200
    before = rss_bytes()
    with ThreadPoolExecutor(max_workers=20) as pool:
        responses = list(pool.map(lambda i: post(server, photos[i], ("tiny_a", "tiny_b")[i % 2]), range(20)))
    assert [r.status_code for r in responses] == [200] * 20
    assert all(Image.open(io.BytesIO(r.content)).size == (96, 64) for r in responses)
    assert httpx.get(f"{server}/api/models").status_code == 200  # still alive
    assert rss_bytes() - before < 500 * 2**20


class _SpyStylizer:
    """Stands in for a loaded model: records how many runs overlap, and can be held at a gate."""

    def __init__(self, gate: threading.Event | None = None) -> None:
        self.active = self.most = self.calls = 0
        self.gate = gate
        self.lock = threading.Lock()

    def stylize(self, image: Image.Image, **settings: object) -> Image.Image:
        with self.lock:
            self.active += 1
            self.calls += 1
            self.most = max(self.most, self.active)
        try:
            if self.gate is not None:
                self.gate.wait(30)
            time.sleep(0.02)
            return image.convert("RGB")
        finally:
            with self.lock:
                self.active -= 1


def test_one_inference_at_a_time_while_the_page_stays_responsive(
    model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = create_app([model_dir], shipped=False, device="cpu")
    gate = threading.Event()
    spy = _SpyStylizer(gate)
    monkeypatch.setattr(app.state.web.catalog, "stylizer", lambda name: spy)
    with BackgroundServer(app) as running, ThreadPoolExecutor(max_workers=20) as pool:
        futures = [pool.submit(post, running.url, jpeg((32, 32), i), "tiny_a") for i in range(20)]
        while spy.calls == 0:  # the inference thread is now held inside the first request
            time.sleep(0.01)
        # the listing is answered while inference is blocked and 19 requests wait behind it
        assert httpx.get(f"{running.url}/api/models").status_code == 200
        assert spy.calls == 1
        gate.set()
        codes = [f.result().status_code for f in futures]
    assert codes == [200] * 20
    assert spy.calls == 20 and spy.most == 1


def test_a_full_queue_answers_503(model_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    app = create_app([model_dir], shipped=False, device="cpu", limits=Limits(max_pending=2))
    gate = threading.Event()
    monkeypatch.setattr(app.state.web.catalog, "stylizer", lambda name: _SpyStylizer(gate))
    with BackgroundServer(app) as running, ThreadPoolExecutor(max_workers=2) as pool:
        held = [pool.submit(post, running.url, jpeg((32, 32)), "tiny_a") for _ in range(2)]
        deadline = time.monotonic() + 10
        while app.state.web.pending < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        refused = post(running.url, jpeg((32, 32)), "tiny_a")
        gate.set()
        assert [f.result().status_code for f in held] == [200, 200]
    assert refused.status_code == 503 and "busy" in error_of(refused)


def test_uploads_leave_no_temporary_files(
    server: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import tempfile

    spool = tmp_path / "tmp"
    spool.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(spool))
    big = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (700, 700, 3), dtype=np.uint8)).save(big, "PNG")
    assert len(big.getvalue()) > 1 * 2**20  # larger than the size at which form parsers usually spool to disk
    response = post(server, big.getvalue(), "tiny_a", name="big.png", max_size="64")
    assert response.status_code == 200
    assert list(spool.iterdir()) == []


# -- the command ---------------------------------------------------------------------------------------
def test_serve_is_a_fast_style_command() -> None:
    from fast_style.cli.main import COMMANDS

    assert COMMANDS["serve"][0] == "fast_style.cli.serve"


def test_missing_models_folder_is_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert serve_cli.main(["--models", str(tmp_path / "nowhere")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("fast-style serve: error: models folder not found") and "\n" not in err


def test_no_models_is_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert serve_cli.main(["--no-shipped", "--models", str(tmp_path)]) == 2
    assert "no .safetensors models found" in capsys.readouterr().err


def test_bad_port_is_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert serve_cli.main(["--port", "70000"]) == 2
    assert serve_cli.main(["--port", "web"]) == 2
    assert "--port" in capsys.readouterr().err


def test_busy_port_is_exit_1(model_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        code = serve_cli.main(["--no-shipped", "--models", str(model_dir), "--port", str(port)])
    assert code == 1
    assert f"cannot listen on 127.0.0.1:{port}" in capsys.readouterr().err


def test_command_serves_until_interrupted(model_dir: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "fast_style.cli.main", "serve", "--port", "0", "--no-shipped"]
    command += ["--models", str(model_dir)]
    proc = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT
    )
    try:
        assert proc.stdout is not None
        lines = [proc.stdout.readline() for _ in range(3)]
        assert "2 models (tiny_a, tiny_b)" in lines[0]
        assert "answers requests addressed to" in lines[1] and "localhost" in lines[1]
        url = lines[2].split("open ")[1].split()[0].rstrip("/")
        assert url.startswith("http://127.0.0.1:")
        assert [m["name"] for m in httpx.get(f"{url}/api/models").json()["models"]] == ["tiny_a", "tiny_b"]
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert "Traceback" not in (proc.stderr.read() if proc.stderr else "")


def test_web_code_imports_no_training_code() -> None:
    code = (
        "import sys, fast_style.web.app, fast_style.cli.serve;"
        "bad = [m for m in sys.modules if m.split('.')[0] in ('pytorch_lightning', 'lightning', 'hydra', 'torchvision')"
        " or m in ('fast_style.training', 'fast_style.losses', 'fast_style.data')];"
        "print(bad); sys.exit(1 if bad else 0)"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=ROOT)
    assert result.returncode == 0, result.stdout + result.stderr


def test_background_server_imports_the_anyio_file_helpers_before_its_thread_starts() -> None:
    # In a fresh interpreter, where nothing has imported anyio's file helper yet.
    code = (
        "import sys\n"
        "from fast_style.web.server import BackgroundServer\n"
        "async def app(scope, receive, send):\n"
        "    pass\n"
        "with BackgroundServer(app):\n"
        "    print('anyio._core._fileio' in sys.modules)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "True"
