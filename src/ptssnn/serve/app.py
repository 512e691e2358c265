"""The HTTP service: FastAPI app around one :class:`~ptssnn.inference.EmotionRecognizer`.

Endpoints: ``POST /predict`` (multipart upload, field ``file``) → the prediction JSON of
``ptssnn predict --jsonl``; ``GET /health``; ``GET /openapi.json`` and ``/docs`` (FastAPI).

Bad input never reaches a 500: the request body is capped while it streams in (413, before
it is buffered), the audio is decoded by :func:`ptssnn.audio.load_audio`, whose typed errors
map to 4xx answers with the loader's message (415 undecodable, 413 too long, 422 empty,
silent, non-finite or too short). Inference runs in FastAPI's worker threads, at most
``max_concurrency`` at once, so a burst of requests queues instead of oversubscribing the
CPU.
"""

from __future__ import annotations

import os
import tempfile
import threading
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, File, HTTPException, Request, UploadFile
from fastapi.responses import JSONResponse

import ptssnn
from ptssnn.errors import (
    AudioError,
    PtssnnError,
    TooLongAudioError,
    UnreadableAudioError,
    UnsupportedChannelsError,
)

if TYPE_CHECKING:
    from starlette.types import ASGIApp, Message, Receive, Scope, Send

    from ptssnn.inference import EmotionRecognizer

DEFAULT_MAX_UPLOAD_MB = 20.0
DEFAULT_MAX_SECONDS = 60.0


class BodyTooLarge(Exception):
    """Raised inside the ASGI receive channel when a request body passes the cap."""


class BodySizeLimit:
    """ASGI middleware: refuse request bodies over ``max_bytes`` with 413.

    Checks ``Content-Length`` up front and counts the bytes of chunked bodies as they
    arrive, so an oversized upload is never buffered in full.
    """

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit_mb = self.max_bytes / 1e6
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = -1
                if declared > self.max_bytes:
                    await _too_large(scope, receive, send, limit_mb)
                    return
        received = 0
        started = False

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise BodyTooLarge
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except BodyTooLarge:
            if not started:
                await _too_large(scope, receive, send, limit_mb)


async def _too_large(scope: Scope, receive: Receive, send: Send, limit_mb: float) -> None:
    response = JSONResponse(
        status_code=413,
        content={"detail": f"upload larger than the limit of {limit_mb:g} MB"},
    )
    await response(scope, receive, send)


def _status_for(error: PtssnnError) -> int:
    if isinstance(error, TooLongAudioError):
        return 413
    if isinstance(error, UnreadableAudioError | UnsupportedChannelsError):
        return 415
    return 422


def create_app(
    recognizer: EmotionRecognizer,
    *,
    max_upload_mb: float = DEFAULT_MAX_UPLOAD_MB,
    max_seconds: float = DEFAULT_MAX_SECONDS,
    max_concurrency: int = 1,
) -> FastAPI:
    """Build the FastAPI app.

    Args:
        recognizer: The loaded recogniser (shared by all requests).
        max_upload_mb: Largest accepted request body in megabytes (10⁶ bytes).
        max_seconds: Longest accepted recording in seconds (longer → 413).
        max_concurrency: Predictions running at once; more requests wait their turn.

    Returns:
        The ASGI app (serve it with uvicorn, or see :func:`ptssnn.serve.serve`).
    """
    if max_upload_mb <= 0 or max_seconds <= 0 or max_concurrency < 1:
        raise ValueError("max_upload_mb and max_seconds must be > 0, max_concurrency ≥ 1")
    slots = threading.BoundedSemaphore(max_concurrency)
    app = FastAPI(
        title="ptssnn emotion recogniser",
        version=ptssnn.__version__,
        summary="Speech emotion recognition with a spiking head on a frozen speech encoder.",
    )
    app.state.recognizer = recognizer
    app.state.limits = {"max_upload_mb": max_upload_mb, "max_seconds": max_seconds}

    @app.exception_handler(PtssnnError)
    async def _user_error(request: Request, error: PtssnnError) -> JSONResponse:
        return JSONResponse(status_code=_status_for(error), content={"detail": str(error)})

    @app.get("/health", summary="Liveness and what is loaded")
    def health() -> dict[str, Any]:
        return {
            "status": "ok",
            "version": ptssnn.__version__,
            "labels": list(recognizer.labels),
            "backbone": recognizer.card.backbone,
            "layers": recognizer.card.layers,
            "sample_rate": recognizer.sample_rate,
            "model_dir": str(recognizer.model_dir) if recognizer.model_dir else None,
            "limits": app.state.limits,
        }

    @app.post(
        "/predict",
        summary="Recognise the emotion in an uploaded audio file",
        responses={
            413: {"description": "Upload or recording too large"},
            415: {"description": "Not decodable audio"},
            422: {"description": "Empty, silent, too short or non-finite audio; no file field"},
        },
    )
    def predict(
        file: UploadFile = File(  # noqa: B008 (FastAPI's way to declare a form field)
            ..., description="Audio in any format libsndfile reads (WAV, FLAC, OGG, ...)"
        ),
        segments: bool = True,
    ) -> dict[str, Any]:
        from ptssnn.audio import load_audio

        name = file.filename or "upload"
        # libsndfile reads by content, so a temporary file with any name decodes the same
        # bytes exactly as `ptssnn predict` decodes the original file.
        handle, path = tempfile.mkstemp(prefix="ptssnn-upload-")
        try:
            with os.fdopen(handle, "wb") as out:
                while block := file.file.read(1 << 20):
                    out.write(block)
            if os.path.getsize(path) == 0:
                raise HTTPException(status_code=422, detail=f"{name}: the uploaded file is empty")
            try:
                wave = load_audio(
                    path,
                    sample_rate=recognizer.sample_rate,
                    max_seconds=max_seconds,
                    long_policy="error",
                )
            except AudioError as error:
                # Report the client's file name, not our temporary path.
                raise HTTPException(
                    status_code=_status_for(error), detail=f"{name}: {error.detail}"
                ) from error
        finally:
            os.unlink(path)
        with slots:
            prediction = recognizer.predict(wave, recognizer.sample_rate, source=name)
        return prediction.to_dict(include_segments=segments)

    app.add_middleware(BodySizeLimit, max_bytes=int(max_upload_mb * 1e6))
    return app


def serve(
    recognizer: EmotionRecognizer,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    max_upload_mb: float = DEFAULT_MAX_UPLOAD_MB,
    max_seconds: float = DEFAULT_MAX_SECONDS,
    max_concurrency: int = 1,
    log_level: str = "info",
) -> None:
    """Serve the recogniser over HTTP with uvicorn until interrupted."""
    import uvicorn

    app = create_app(
        recognizer,
        max_upload_mb=max_upload_mb,
        max_seconds=max_seconds,
        max_concurrency=max_concurrency,
    )
    uvicorn.run(app, host=host, port=port, log_level=log_level)
