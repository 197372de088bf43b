"""``fast-style serve`` under hostile and careless clients, over real sockets on 127.0.0.1.

Stalled and lying uploads, idle connections, foreign Host names on any listening address, other
sites' pages, memory held by uploads and results, and clients that hang up. The servers here use
deadlines of a second so the file stays fast; the behaviour is the same at the defaults.
"""

from __future__ import annotations

import io
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
import tracemalloc
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

pytest.importorskip("starlette", reason="the web extra is not installed: pip install -e '.[web]'")
pytest.importorskip("uvicorn", reason="the web extra is not installed: pip install -e '.[web]'")
pytest.importorskip("python_multipart", reason="the web extra is not installed: pip install -e '.[web]'")
httpx = pytest.importorskip("httpx", reason="the dev extra is not installed: pip install -e '.[dev]'")

from fast_style.web.app import create_app  # noqa: E402
from fast_style.web.limits import Deadlines, Limits  # noqa: E402
from fast_style.web.memory import release_freed_memory  # noqa: E402
from fast_style.web.server import BackgroundServer  # noqa: E402
from tests.conftest import ROOT, random_image, tiny_model_folder  # noqa: E402

SHORT = Deadlines(headers=1.0, body=1.0, idle=1.0)
BOUNDARY = "hostileboundary"


def jpeg(size: tuple[int, int] = (48, 40), seed: int = 0) -> bytes:
    buffer = io.BytesIO()
    random_image(size, seed).save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def form_body(image: bytes, model: str = "tiny_a") -> bytes:
    """A ``multipart/form-data`` body with the fields ``model`` and ``image``."""
    return (
        (
            f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="model"\r\n\r\n{model}\r\n'
            f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="image"; filename="p.jpg"\r\n'
            "Content-Type: image/jpeg\r\n\r\n"
        ).encode()
        + image
        + f"\r\n--{BOUNDARY}--\r\n".encode()
    )


def error_of(response: httpx.Response) -> str:
    return Answer(response.status_code, dict(response.headers), response.content).error()


def upload_head(port: int, length: int, host: str = "127.0.0.1") -> bytes:
    return (
        f"POST /api/stylize HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Length: {length}\r\n"
        f"Content-Type: multipart/form-data; boundary={BOUNDARY}\r\n\r\n"
    ).encode()


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes

    def error(self) -> str:
        assert self.headers["content-type"].startswith("application/json")
        message = json.loads(self.body)["error"]
        assert message and "\n" not in message and "Traceback" not in message
        return str(message)


def read_answer(sock: socket.socket) -> Answer:
    """One HTTP answer from ``sock`` (whose timeout bounds the wait)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"closed without a whole answer: {data!r}")
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    while len(body) < int(headers.get("content-length", 0)):
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return Answer(int(lines[0].split()[1]), headers, body)


def closed_by_server(sock: socket.socket) -> bool:
    """True once the server has closed ``sock`` (it reads end-of-file; the socket's timeout bounds the wait)."""
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True


def connect(port: int, timeout: float = 10) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    sock.settimeout(timeout)
    return sock


def port_of(url: str) -> int:
    return int(url.rsplit(":", 1)[1])


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_model_folder(tmp_path_factory.mktemp("hostile_models"))


@pytest.fixture(scope="module")
def server(model_dir: Path) -> Iterator[str]:
    """A live server with the tiny models and deadlines of one second."""
    app = create_app([model_dir], shipped=False, device="cpu", deadlines=SHORT)
    with BackgroundServer(app, deadlines=SHORT) as running:
        yield running.url


# -- 1. stalled uploads, lying Content-Length, idle connections -----------------------------------------
def test_stalled_uploads_leave_the_queue_to_complete_ones(model_dir: Path) -> None:
    app = create_app([model_dir], shipped=False, device="cpu")  # the default 32 places, 30 s deadline
    body = form_body(jpeg((200, 150)))
    with BackgroundServer(app) as running:
        port = port_of(running.url)
        stalled = [connect(port) for _ in range(40)]
        try:
            for sock in stalled:
                sock.sendall(upload_head(port, len(body)) + body[: len(body) // 2])
            time.sleep(0.5)  # every stalled request is with the app, waiting for its body
            start = time.monotonic()
            response = httpx.post(
                f"{running.url}/api/stylize",
                files={"image": ("photo.jpg", jpeg(), "image/jpeg")},
                data={"model": "tiny_a"},
                timeout=30,
            )
            seconds = time.monotonic() - start
            assert response.status_code == 200, response.text
            assert seconds < 2
            assert httpx.get(f"{running.url}/api/models").status_code == 200
        finally:
            for sock in stalled:
                sock.close()


def test_a_body_shorter_than_its_content_length_gets_408_and_a_close(server: str) -> None:
    port = port_of(server)
    body = form_body(jpeg())
    with connect(port) as sock:
        start = time.monotonic()
        sock.sendall(upload_head(port, len(body) + 5000) + body)  # 5000 bytes promised, never sent
        answer = read_answer(sock)
        seconds = time.monotonic() - start
        assert answer.status == 408
        assert "did not arrive within 1 s" in answer.error()
        assert answer.headers["connection"] == "close"
        assert closed_by_server(sock)
    assert seconds < 5  # the 1 s deadline, not the 10 s the socket would wait


def test_a_request_head_that_stalls_gets_408_and_a_close(server: str) -> None:
    with connect(port_of(server)) as sock:
        sock.sendall(b"POST /api/stylize HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Le")
        answer = read_answer(sock)
        assert answer.status == 408 and "headers did not arrive" in answer.error()
        assert "default-src 'self'" in answer.headers["content-security-policy"]
        assert closed_by_server(sock)


def test_idle_connections_are_closed(server: str) -> None:
    with connect(port_of(server)) as sock:  # opened, nothing ever sent
        assert closed_by_server(sock)
    with connect(port_of(server)) as sock:  # one request, then nothing
        sock.sendall(f"GET /api/models HTTP/1.1\r\nHost: 127.0.0.1:{port_of(server)}\r\n\r\n".encode())
        assert read_answer(sock).status == 200
        assert closed_by_server(sock)


def test_a_body_dribbled_after_the_answer_is_cut_off(server: str) -> None:
    port = port_of(server)
    with connect(port, timeout=2) as sock:
        sock.sendall(
            f"GET /api/models HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: 1000\r\n\r\n".encode()
        )
        assert read_answer(sock).status == 200
        sock.settimeout(0.2)
        cut_off = False
        for _ in range(40):  # one byte every 0.2 s for up to 8 s
            try:
                sock.sendall(b"x")
                if closed_by_server(sock):
                    cut_off = True
                    break
            except TimeoutError:
                continue
            except OSError:  # reset or broken pipe: closed
                cut_off = True
                break
        assert cut_off


# -- 2. Host names on any listening address ---------------------------------------------------------------
def test_foreign_host_is_refused_when_listening_on_every_address(model_dir: Path) -> None:
    app = create_app([model_dir], shipped=False, device="cpu", deadlines=SHORT)
    with BackgroundServer(app, host="0.0.0.0", deadlines=SHORT) as running:
        url = f"http://127.0.0.1:{port_of(running.url)}"
        refused = httpx.get(f"{url}/api/models", headers={"host": "evil.example"})
        assert refused.status_code == 400 and "Host header" in error_of(refused)
        for host in ("localhost", f"127.0.0.1:{port_of(url)}", socket.gethostname()):
            assert httpx.get(f"{url}/api/models", headers={"host": host}).status_code == 200, host


def test_command_on_every_address_keeps_the_host_check(model_dir: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "fast_style.cli.main", "serve", "--host", "0.0.0.0", "--port", "0"]
    command += ["--no-shipped", "--models", str(model_dir), "--allow-host", "styles.example"]
    command += ["--whole-megapixels", "4.2"]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        assert proc.stdout is not None
        lines = [proc.stdout.readline() for _ in range(3)]
        assert "answers requests addressed to" in lines[1] and "styles.example" in lines[1]
        assert "localhost" in lines[1] and "--allow-host" in lines[1]
        port = int(lines[2].split("open ")[1].split()[0].rstrip("/").rsplit(":", 1)[1])
        url = f"http://127.0.0.1:{port}/api/models"
        assert httpx.get(url, headers={"host": "evil.example"}).status_code == 400
        assert httpx.get(url, headers={"host": f"evil.example:{port}"}).status_code == 400
        assert httpx.get(url, headers={"host": f"styles.example:{port}"}).status_code == 200
        assert httpx.get(url, headers={"host": f"localhost:{port}"}).status_code == 200
        assert httpx.get(url).status_code == 200  # addressed to 127.0.0.1, where it is reached
        assert httpx.get(url).json()["limits"]["max_whole_pixels"] == 4_200_000
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert "anyone who can reach this machine" in (proc.stderr.read() if proc.stderr else "")


def test_bad_serve_options_are_usage_errors(capsys: pytest.CaptureFixture[str], model_dir: Path) -> None:
    from fast_style.cli import serve as serve_cli

    assert serve_cli.main(["--no-shipped", "--models", str(model_dir), "--allow-host", "http://x/"]) == 2
    assert "--allow-host takes a host name" in capsys.readouterr().err
    for option in ("--body-timeout", "--whole-megapixels"):
        assert serve_cli.main([option, "0"]) == 2
        assert "expected a positive number" in capsys.readouterr().err


# -- 3. other sites' pages ----------------------------------------------------------------------------------
def post_from(url: str, headers: dict[str, str]) -> httpx.Response:
    return httpx.post(
        f"{url}/api/stylize",
        files={"image": ("photo.jpg", jpeg(), "image/jpeg")},
        data={"model": "tiny_a"},
        headers=headers,
        timeout=30,
    )


@pytest.mark.parametrize(
    "headers",
    [
        {"origin": "http://evil.example"},
        {"origin": "null"},
        {"origin": "http://127.0.0.1:1"},  # this machine, another port: another origin
        {"origin": "https://127.0.0.1:{port}"},
        {"sec-fetch-site": "cross-site"},
    ],
)
def test_cross_site_posts_are_refused(server: str, headers: dict[str, str]) -> None:
    headers = {k: v.format(port=port_of(server)) for k, v in headers.items()}
    response = post_from(server, headers)
    assert response.status_code == 403
    assert "another site" in error_of(response)


@pytest.mark.parametrize(
    "headers",
    [
        {},  # curl and scripts send no Origin
        {"origin": "http://127.0.0.1:{port}", "sec-fetch-site": "same-origin"},
        {"origin": "http://localhost:{port}", "host": "localhost:{port}"},
        {"sec-fetch-site": "same-origin"},
        {"sec-fetch-site": "none"},
    ],
)
def test_own_page_and_scripts_are_served(server: str, headers: dict[str, str]) -> None:
    headers = {k: v.format(port=port_of(server)) for k, v in headers.items()}
    response = post_from(server, headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "image/png"


# -- 4. memory -----------------------------------------------------------------------------------------------
def test_an_upload_is_held_once_while_parsed_and_let_go_after(server: str) -> None:
    port = port_of(server)
    size = 8 * 2**20
    body = form_body(os.urandom(size))  # not an image: 415 once parsed
    request = upload_head(port, len(body)) + body
    tracemalloc.start()
    try:
        with connect(port) as sock:
            sock.sendall(request)
            answer = read_answer(sock)
        peak = tracemalloc.get_traced_memory()[1]
        deadline = time.monotonic() + 10
        while tracemalloc.get_traced_memory()[0] > size / 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        held_after = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    assert answer.status == 415
    assert peak < 1.6 * size  # the old reader held the body, a copy of it and the parsed part at once
    assert held_after < size / 2  # a refused upload's traceback no longer keeps it until a full collection


def test_large_results_run_in_tiles(model_dir: Path) -> None:
    app = create_app([model_dir], shipped=False, device="cpu", limits=Limits(max_whole_pixels=64 * 64))
    with BackgroundServer(app) as running:
        for width, height in ((60, 40), (120, 90)):
            response = httpx.post(
                f"{running.url}/api/stylize",
                files={"image": ("photo.jpg", jpeg((width, height)), "image/jpeg")},
                data={"model": "tiny_a"},
                timeout=30,
            )
            assert response.status_code == 200 and response.headers["x-image-size"] == f"{width}x{height}"
    used = app.state.web.catalog.stylizer("tiny_a").paths_used
    assert used["tiled in torch"] == 1  # the 120 x 90 image; the warm-up run and the 60 x 40 one ran whole


def test_handing_memory_back_changes_no_pixel(model_dir: Path) -> None:
    import numpy as np

    from fast_style.inference import Stylizer

    pixels = np.asarray(random_image((70, 50), 3))
    for name in ("tiny_a", "tiny_b"):
        keeping = Stylizer.from_file(model_dir / f"{name}.safetensors", backend="onnxruntime")
        giving = Stylizer.from_file(
            model_dir / f"{name}.safetensors", backend="onnxruntime", release_memory=True
        )
        for options in ({}, {"strength": 0.5, "preserve_color": True}):
            assert np.array_equal(
                keeping.stylize_array(pixels, **options), giving.stylize_array(pixels, **options)
            )


@pytest.mark.skipif(not release_freed_memory(), reason="no malloc_trim in this C library")
def test_freed_heap_memory_goes_back_to_the_system() -> None:
    def rss() -> int:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    blocks = [bytearray(4000) for _ in range(50_000)]  # 200 MB in blocks glibc keeps in its heap
    keep = blocks[::50]  # a few survivors pin the heap, so free() alone gives little back
    del blocks
    before = rss()
    assert release_freed_memory()
    assert before - rss() > 100 * 2**20
    del keep


# -- 5. hang-ups and malformed requests -----------------------------------------------------------------------
class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def test_a_hang_up_during_an_upload_logs_one_line(server: str) -> None:
    records = _Records()
    loggers = [logging.getLogger(name) for name in ("uvicorn.error", "fast_style.web")]
    for logger in loggers:
        logger.addHandler(records)
    try:
        port = port_of(server)
        body = form_body(jpeg((200, 150)))
        with connect(port) as sock:
            client = f"127.0.0.1:{sock.getsockname()[1]} "
            sock.sendall(upload_head(port, len(body)) + body[:1000])
            time.sleep(0.2)
        deadline = time.monotonic() + 5
        while not records.records and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.2)  # room for a second record, which there should not be
    finally:
        for logger in loggers:
            logger.removeHandler(records)
    # This client's lines, and any traceback at all (uvicorn's carries no address).
    lines = [r for r in records.records if client in r.getMessage() or r.exc_info]
    assert len(lines) == 1, [r.getMessage() for r in lines]
    assert lines[0].exc_info is None and "closed the connection during its upload" in lines[0].getMessage()


def test_http11_without_host_gets_a_json_400(server: str) -> None:
    with connect(port_of(server)) as sock:
        sock.sendall(b"GET /api/models HTTP/1.1\r\n\r\n")
        answer = read_answer(sock)
        assert answer.status == 400 and "Host header" in answer.error()
        assert answer.headers["x-content-type-options"] == "nosniff"
        assert closed_by_server(sock)
