"""The web page and its HTTP API as an ASGI app: ``create_app(model_dirs)``.

Routes: ``GET /`` the page, ``GET /static/...`` its script and styles, ``GET /api/models`` the
models and limits, ``GET /api/demo`` the demo photo, ``POST /api/stylize`` a stylized PNG. Every
error is JSON ``{"error": "one line"}`` with a 4xx status (5xx only for the server's own faults).
One inference runs at a time, in a worker thread, so the event loop keeps answering; requests
whose upload is complete wait for it in a queue of bounded length. An upload has ``Deadlines.body``
seconds to arrive. Every request passes ``guard.Guard`` first (Host and Origin checks). A server
started with the loss network's weights also refines (``refine=N`` steps of ``fast_style.refine``,
which loads VGG; nothing else here does).
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import os
import time
from collections.abc import AsyncIterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import ClientDisconnect, Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from fast_style import __version__
from fast_style.devices import resolve_device
from fast_style.errors import FastStyleError
from fast_style.images import decode_image
from fast_style.web.catalog import ModelCatalog, demo_photo, find_models, shipped_models_dir
from fast_style.web.form import FormError, read_form
from fast_style.web.guard import Guard, error_response, machine_host_names
from fast_style.web.limits import (
    FORMATS,
    ApiError,
    Deadlines,
    Limits,
    StylizeRequest,
    parse_request,
    probe_image,
)
from fast_style.web.memory import release_freed_memory

if TYPE_CHECKING:
    from PIL import Image

    from fast_style.refine import Refiner

__all__ = ["WebState", "create_app"]

STATIC = Path(__file__).resolve().parent / "static"
_FORM_OVERHEAD = 64 * 1024  # room for the boundaries and the small fields beside the image
_QUIET_SECONDS = 1.0  # after the last stylize request, wait this long before handing memory back
log = logging.getLogger("fast_style.web")


class WebState:
    """What the routes share: the models, the limits, the inference thread and the queue length."""

    def __init__(
        self,
        catalog: ModelCatalog,
        limits: Limits,
        skipped: list[str],
        deadlines: Deadlines | None = None,
        loss_weights: str | None = None,
    ) -> None:
        self.catalog = catalog
        self.limits = limits
        self.deadlines = deadlines or Deadlines()
        self.skipped = skipped  # one line per model file that could not be offered
        self.pending = 0  # complete uploads between queueing and answer; changed only on the event loop
        self.active = 0  # stylize requests being answered, uploads included; also only on the event loop
        self.loss_weights = loss_weights  # the loss network's weights for refine; None: no refine
        self._refiners: dict[str, Refiner] = {}
        self._executor: ThreadPoolExecutor | None = None
        self._release: asyncio.TimerHandle | None = None

    def request_finished(self) -> None:
        """Count one stylize request out; once none has come for a moment, hand memory back."""
        self.active -= 1
        if self.active == 0:
            if self._release is not None:
                self._release.cancel()
            self._release = asyncio.get_running_loop().call_later(_QUIET_SECONDS, self._release_if_quiet)

    def _release_if_quiet(self) -> None:
        self._release = None
        if self.active == 0:
            release_freed_memory(collect=True)

    @property
    def refine_unavailable(self) -> str | None:
        """Why this server does not refine, or ``None`` when it does."""
        if self.loss_weights is None:
            return "it was started without the loss network's weights (fast-style serve --loss-weights PATH)"
        return None

    def refiner(self, name: str) -> Refiner:
        """The refine step for a listed model, built on first use (on the inference thread)."""
        refiner = self._refiners.get(name)
        if refiner is None:
            from fast_style.refine import Refiner

            stylizer = self.catalog.stylizer(name)
            refiner = Refiner.for_model(stylizer, self.catalog.path(name), 1, weights=self.loss_weights)
            self._refiners[name] = refiner
        return refiner

    def executor(self) -> ThreadPoolExecutor:
        """The single inference thread (created on first use); its queue is the request queue."""
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="fast-style-inference")
        return self._executor

    def close(self) -> None:
        """Stop the inference thread after its current job; queued jobs are dropped."""
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=True)
            self._executor = None


def _stylize_now(state: WebState, req: StylizeRequest) -> tuple[bytes, dict[str, str]]:
    """Decode, stylize and encode one request; runs on the inference thread."""
    try:
        image = decode_image(req.image, state.limits.max_pixels, FORMATS, name=req.label)
    except FastStyleError as exc:
        raise ApiError(str(exc), 400) from None
    try:
        stylizer = state.catalog.stylizer(req.model)
    except FastStyleError as exc:
        raise ApiError(f"cannot load model {req.model!r}: {exc}", 500) from None
    start = time.perf_counter()
    if req.refine:
        result = _refine(state, req, image)
    else:
        result = stylizer.stylize(
            image,
            strength=req.strength,
            preserve_color=req.preserve_color,
            max_size=req.max_size,
            style=req.style,
            mix=req.mix,
        )
    seconds = time.perf_counter() - start
    rate = state.catalog.record(req.model, seconds, result.width * result.height)
    del image
    buffer = io.BytesIO()
    result.save(buffer, format="PNG", compress_level=3)
    headers = {
        "x-refine-steps": str(req.refine),
        "x-image-size": f"{result.width}x{result.height}",
        "x-stylize-seconds": f"{seconds:.3f}",
        "x-seconds-per-megapixel": f"{rate:.4f}",
    }
    return buffer.getvalue(), headers


def _refine(state: WebState, req: StylizeRequest, image: Image.Image) -> Image.Image:
    """The network's picture and ``req.refine`` L-BFGS steps, at most ``max_refine_side`` px."""
    from fast_style.refine import TooLargeToRefine

    try:
        refiner = state.refiner(req.model)
    except FastStyleError as exc:
        raise ApiError(f"cannot refine with model {req.model!r}: {exc}", 400) from None
    try:
        return refiner.stylize(
            state.catalog.stylizer(req.model),
            image,
            max_size=min(req.max_size, state.limits.max_refine_side),
            strength=req.strength,
            preserve_color=req.preserve_color,
            style=req.style,
            mix=req.mix,
            steps=req.refine,
        )
    except TooLargeToRefine as exc:
        raise ApiError(f"{exc}: choose a longest side of at most {exc.largest} px", 413) from None


def _stylize_and_release(state: WebState, req: StylizeRequest) -> tuple[bytes, dict[str, str]]:
    """``_stylize_now``, then hand what it freed back to the system (the request's images are gone by then)."""
    try:
        return _stylize_now(state, req)
    finally:
        release_freed_memory()


def _client(request: Request) -> str:
    return f"{request.client.host}:{request.client.port}" if request.client else "a client"


async def _read_upload(request: Request) -> StylizeRequest:
    """The checked form of a stylize request, read within the body deadline; raises ``FormError``/``ApiError``."""
    state: WebState = request.app.state.web
    limits = state.limits
    body_limit = limits.max_upload_bytes + _FORM_OVERHEAD
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > body_limit:
        raise FormError(f"the upload is larger than the {limits.max_upload_mb} MB limit", status=413)
    form = await read_form(request.stream(), request.headers.get("content-type", ""), body_limit)
    req = parse_request(form, state.catalog, limits, state.refine_unavailable)
    probe_image(req, limits)  # refuse non-images and oversized images before they queue
    return req


async def _stylize(request: Request) -> Response:
    state: WebState = request.app.state.web
    state.active += 1
    try:
        return await _answer_stylize(request, state)
    finally:
        state.request_finished()


async def _answer_stylize(request: Request, state: WebState) -> Response:
    arrived = time.perf_counter()
    seconds = state.deadlines.body
    try:
        req = await asyncio.wait_for(_read_upload(request), seconds)
    except (FormError, ApiError) as exc:
        return error_response(str(exc), exc.status)
    except asyncio.TimeoutError:
        log.warning("%s: upload not complete after %g s; answered 408", _client(request), seconds)
        return error_response(f"the upload did not arrive within {seconds:g} s", 408, close=True)
    except ClientDisconnect:
        log.warning("%s closed the connection during its upload", _client(request))
        return Response(status_code=400)  # nobody is left to read it
    # Only a complete upload takes a place in the queue, so stalled uploads cannot fill it.
    if state.pending >= state.limits.max_pending:
        return error_response(
            f"the server is busy ({state.pending} requests waiting); try again shortly", 503
        )
    state.pending += 1
    try:
        loop = asyncio.get_running_loop()
        png, headers = await loop.run_in_executor(state.executor(), _stylize_and_release, state, req)
    except ApiError as exc:
        return error_response(str(exc), exc.status)
    except FastStyleError as exc:  # raised while stylizing: the server's problem, not the request's
        return error_response(str(exc), 500)
    finally:
        state.pending -= 1
    headers["x-total-seconds"] = f"{time.perf_counter() - arrived:.3f}"
    headers["cache-control"] = "no-store"
    return Response(png, media_type="image/png", headers=headers)


async def _models(request: Request) -> Response:
    state: WebState = request.app.state.web
    return JSONResponse(
        {
            "models": state.catalog.listing(),
            "limits": state.limits.public(),
            "refine": {"available": state.refine_unavailable is None, "reason": state.refine_unavailable},
            "demo": "/api/demo" if demo_photo() else None,
            "version": __version__,
        },
        headers={"cache-control": "no-store"},
    )


async def _demo(request: Request) -> Response:
    photo = demo_photo()
    if photo is None:
        return error_response("no demo photo in this installation", 404)
    return FileResponse(photo, media_type="image/jpeg")


async def _index(request: Request) -> Response:
    return FileResponse(STATIC / "index.html", media_type="text/html")


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    return error_response(str(exc.detail), exc.status_code)


async def _server_error(request: Request, exc: Exception) -> Response:
    log.exception("error while answering %s %s", request.method, request.url.path)
    return error_response(f"internal error: {type(exc).__name__}", 500)


def create_app(
    model_dirs: Sequence[str | os.PathLike[str]] = (),
    *,
    shipped: bool = True,
    device: str = "auto",
    limits: Limits | None = None,
    allowed_hosts: Sequence[str] | None = None,
    deadlines: Deadlines | None = None,
    loss_weights: str | None = None,
) -> Starlette:
    """The ASGI app serving the shipped models (when ``shipped`` and present) and those in ``model_dirs``.

    ``allowed_hosts`` are the names the ``Host`` header may carry besides the address a request
    arrives at (``None``: ``machine_host_names()``); ``deadlines.body`` bounds each upload. With
    ``loss_weights`` (``imagenet`` or a path) the page also offers refine. Raises ``FastStyleError``
    for a missing folder, an unknown device, or when no model is found.
    """
    resolve_device(device)
    if loss_weights is not None and loss_weights != "imagenet" and not Path(loss_weights).is_file():
        raise FastStyleError(f"loss-network weights file not found: {loss_weights}")
    shipped_dir = shipped_models_dir() if shipped else None
    folders = [*([shipped_dir] if shipped_dir else []), *map(Path, model_dirs)]
    entries, skipped = find_models(folders)
    if not entries:
        where = ", ".join(str(f) for f in folders) or "no folder (pass --models DIR)"
        raise FastStyleError(f"no .safetensors models found in {where}")
    limits = limits or Limits()
    state = WebState(
        ModelCatalog(entries, device, limits.max_whole_pixels), limits, skipped, deadlines, loss_weights
    )
    hosts = machine_host_names() if allowed_hosts is None else list(allowed_hosts)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        state.close()

    app = Starlette(
        routes=[
            Route("/", _index),
            Route("/api/models", _models),
            Route("/api/demo", _demo),
            Route("/api/stylize", _stylize, methods=["POST"]),
            Mount("/static", StaticFiles(directory=STATIC), name="static"),
        ],
        middleware=[Middleware(Guard, allowed_hosts=hosts)],
        exception_handlers={HTTPException: _http_error, Exception: _server_error},
        lifespan=lifespan,
    )
    app.state.web = state
    return app
