"""The HTTP service: FastAPI app around one :class:`~ptssnn.inference.EmotionRecognizer`.

Endpoints: ``POST /predict`` (multipart upload, field ``file``) → the prediction JSON of
``ptssnn predict --jsonl``; ``GET /health``; ``GET /openapi.json`` (the schema; no ``/docs``
page, whose JavaScript would come from a CDN).

Every error, whatever raised it, has one JSON shape, ``{"error": {"code": ..., "message":
...}}`` (:data:`ERROR_CODES` lists the codes). Hostile input is bounded before it costs
anything:

* :class:`~ptssnn.serve.guard.RequestGuard` (outermost ASGI layer) checks the optional
  bearer token before the body is read (401), refuses a body over ``max_upload_mb`` from
  ``Content-Length`` or, for chunked uploads, as the bytes arrive (413), and gives the
  whole body ``request_timeout_s`` to arrive (408), so slow clients cannot hold connections open.
* The upload's header is read first (:func:`ptssnn.audio.check_header`): sample rate
  (4-384 kHz), channels, duration (``max_seconds``) and the decoded size (frames × channels
  as float32, ``max_decoded_mb``) are checked before a single sample is decoded, so a small
  file that declares gigabytes of samples (a decompression bomb) costs nothing.
* Decoding and inference both run inside the concurrency limit (``max_concurrency`` at
  once), so memory is bounded by ``max_concurrency × max_decoded_mb`` plus the model.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, File, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

import ptssnn
from ptssnn.errors import (
    AudioError,
    PtssnnError,
)
from ptssnn.serve.guard import (
    ApiError,
    ErrorBody,
    RequestGuard,
    audio_error,
    error_response,
)
from ptssnn.serve.profiles import (
    DEFAULT_MAX_ENROL_FILES,
    DEFAULT_MAX_PROFILES,
    ProfileStore,
    ProfileStoreError,
    profile_router,
)

if TYPE_CHECKING:

    from ptssnn.inference import EmotionRecognizer

DEFAULT_MAX_UPLOAD_MB = 20.0
DEFAULT_MAX_SECONDS = 60.0
#: 100 MB of float32 = 25 M samples: 60 s at 48 kHz × 8 channels, or at 384 kHz mono.
DEFAULT_MAX_DECODED_MB = 100.0
DEFAULT_REQUEST_TIMEOUT_S = 30.0
DEFAULT_MAX_REQUESTS = 64
#: Environment variable holding the bearer token (``ptssnn serve`` reads it).
TOKEN_ENV = "PTSSNN_TOKEN"



def _validation_message(error: RequestValidationError) -> str:
    """FastAPI's list of validation problems as one line."""
    parts = []
    for problem in error.errors():
        where = ".".join(str(p) for p in problem.get("loc", ()) if p != "body")
        parts.append(f"{where or 'request'}: {problem.get('msg', 'invalid')}")
    return "; ".join(parts) or "invalid request"


_HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    404: "not_found",
    405: "method_not_allowed",
    413: "upload_too_large",
}


def create_app(
    recognizer: EmotionRecognizer,
    *,
    max_upload_mb: float = DEFAULT_MAX_UPLOAD_MB,
    max_seconds: float = DEFAULT_MAX_SECONDS,
    max_concurrency: int = 1,
    max_decoded_mb: float = DEFAULT_MAX_DECODED_MB,
    request_timeout_s: float = DEFAULT_REQUEST_TIMEOUT_S,
    max_requests: int = DEFAULT_MAX_REQUESTS,
    token: str | None = None,
    profiles_dir: str | os.PathLike[str] | None = None,
    max_profiles: int = DEFAULT_MAX_PROFILES,
    max_enrol_files: int = DEFAULT_MAX_ENROL_FILES,
) -> FastAPI:
    """Build the FastAPI app.

    Args:
        recognizer: The loaded recogniser (shared by all requests).
        max_upload_mb: Largest accepted request body in megabytes (10⁶ bytes).
        max_seconds: Longest accepted recording in seconds (longer → 413).
        max_concurrency: Decodes + predictions running at once; more requests wait.
        max_decoded_mb: Largest decoded upload (frames × channels × 4 bytes, from the
            header, before decoding; larger → 413).
        request_timeout_s: Time a request body has to arrive (slower → 408).
        max_requests: Requests in progress at once, uploads included (more → 503).
        token: Bearer token every request must carry (``None``: open service).
        profiles_dir: Folder of speaker profiles; enables ``/profiles`` (create, add clips,
            show, delete) and ``/predict?profile=ID`` (``None``: no profiles).
        max_profiles: Most profiles the folder may hold (more → 507).
        max_enrol_files: Most files per enrolment request (more → 413).

    Returns:
        The ASGI app (serve it with uvicorn, or see :func:`ptssnn.serve.serve`).

    Raises:
        PtssnnError: A limit that is not positive, or an empty token.
    """
    for name, value in (
        ("max_upload_mb", max_upload_mb),
        ("max_seconds", max_seconds),
        ("max_decoded_mb", max_decoded_mb),
        ("request_timeout_s", request_timeout_s),
    ):
        if not value > 0:
            raise PtssnnError(f"{name} must be > 0, got {value}")
    if max_concurrency < 1 or max_requests < 1:
        raise PtssnnError(
            f"max_concurrency and max_requests must be ≥ 1, got {max_concurrency}, {max_requests}"
        )
    if token is not None and not token.strip():
        raise PtssnnError("the bearer token is empty")
    slots = threading.BoundedSemaphore(max_concurrency)
    store = None
    if profiles_dir is not None:
        if recognizer.speaker_prior is None:
            raise PtssnnError(
                "this model directory has no speaker prior (speaker_prior.safetensors), so it "
                "cannot keep speaker profiles; train it again with this ptssnn version")
        store = ProfileStore(profiles_dir, max_profiles=max_profiles,
                             check=recognizer.moments_for)
    app = FastAPI(
        title="ptssnn emotion recogniser",
        version=ptssnn.__version__,
        summary="Speech emotion recognition with a spiking head on a frozen speech encoder.",
        # The docs pages load their JavaScript from a CDN: blank offline, and third-party
        # code in front of the service. The schema stays at /openapi.json.
        docs_url=None,
        redoc_url=None,
    )
    app.state.recognizer = recognizer
    app.state.limits = {
        "max_upload_mb": max_upload_mb,
        "max_seconds": max_seconds,
        "max_decoded_mb": max_decoded_mb,
        "max_concurrency": max_concurrency,
        "request_timeout_s": request_timeout_s,
        "max_requests": max_requests,
    }
    if store is not None:
        app.state.limits |= {"max_profiles": max_profiles, "max_enrol_files": max_enrol_files}

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, error: ApiError) -> JSONResponse:
        return error_response(error.status, error.code, error.message)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, error: StarletteHTTPException) -> JSONResponse:
        code = _HTTP_CODES.get(error.status_code, "http_error")
        message = error.detail if isinstance(error.detail, str) else str(error.detail)
        return error_response(error.status_code, code, message, headers=error.headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, error: RequestValidationError) -> JSONResponse:
        return error_response(422, "invalid_request", _validation_message(error))

    @app.exception_handler(ProfileStoreError)
    async def _profile_error(request: Request, error: ProfileStoreError) -> JSONResponse:
        return error_response(error.status, error.code, error.message)

    @app.exception_handler(AudioError)
    async def _audio(request: Request, error: AudioError) -> JSONResponse:
        api = audio_error(error, "upload")
        return error_response(api.status, api.code, api.message)

    @app.exception_handler(Exception)
    async def _internal(request: Request, error: Exception) -> JSONResponse:
        # No internals (paths, traces) to the client; uvicorn logs the traceback.
        return error_response(500, "internal_error", "internal server error")

    errors = {
        401: {"model": ErrorBody, "description": "Missing or wrong bearer token"},
        408: {"model": ErrorBody, "description": "The upload did not arrive in time"},
        413: {"model": ErrorBody, "description": "Upload, recording or decoded size too large"},
        415: {
            "model": ErrorBody,
            "description": "Not decodable audio, or a sample rate (4-384 kHz) or channel "
            "count (1-8) that is not supported",
        },
        422: {
            "model": ErrorBody,
            "description": "Empty, silent, too short or non-finite audio; no file field",
        },
        503: {"model": ErrorBody, "description": "Too many requests in progress"},
        404: {"model": ErrorBody, "description": "Unknown speaker profile"},
        409: {"model": ErrorBody, "description": "Profile id taken, or a profile made for "
              "another model"},
        507: {"model": ErrorBody, "description": "The profile folder is full"},
    }

    @app.get("/health", summary="Liveness and what is loaded", responses={401: errors[401]})
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
            "profiles": store is not None,
            "trained_for": (recognizer.speaker_prior.trained_for
                            if recognizer.speaker_prior is not None else None),
        }

    @contextlib.contextmanager
    def decoded_upload(file: UploadFile) -> Iterator[tuple[Any, str]]:
        """One upload spooled to a temporary file and decoded inside the concurrency limit;
        the caller's work on ``(waveform, name)`` runs inside the limit too.

        libsndfile reads by content, so a temporary file with any name decodes the same
        bytes exactly as ``ptssnn predict`` decodes the original file.
        """
        name = (file.filename or "upload")[:200]
        handle, path = tempfile.mkstemp(prefix="ptssnn-upload-")
        try:
            with os.fdopen(handle, "wb") as out:
                while block := file.file.read(1 << 20):
                    out.write(block)
            if os.path.getsize(path) == 0:
                raise ApiError(422, "empty_audio", f"{name}: the uploaded file is empty")
            # Decoding inside the limit too: it is what costs memory.
            with slots:
                try:
                    wave = _decode(path, recognizer.sample_rate, max_seconds, max_decoded_mb)
                except AudioError as error:
                    raise audio_error(error, name) from error
                yield wave, name
        finally:
            os.unlink(path)

    @app.post(
        "/predict",
        summary="Recognise the emotion in an uploaded audio file",
        responses=errors,  # type: ignore[arg-type]
    )
    def predict(
        file: UploadFile = File(  # noqa: B008 (FastAPI's way to declare a form field)
            ..., description="Audio in any format libsndfile reads (WAV, FLAC, OGG, ...)"
        ),
        segments: bool = True,
        profile: str | None = None,
    ) -> dict[str, Any]:
        speaker = None
        if profile is not None:
            if store is None:
                raise ApiError(404, "profiles_disabled",
                               "this service keeps no speaker profiles (serve --profiles DIR)")
            speaker = store.get(profile)
        with decoded_upload(file) as (wave, name):
            prediction = recognizer.predict(wave, recognizer.sample_rate, source=name,
                                            profile=speaker)
        return prediction.to_dict(include_segments=segments)

    if store is not None:

        def enrol_uploads(files: list[UploadFile], target: Any) -> None:
            # One bad file fails the request with /predict's error; nothing is stored then.
            for file in files:
                with decoded_upload(file) as (wave, _):
                    recognizer.enrol([wave], recognizer.sample_rate, profile=target)

        app.include_router(profile_router(store, recognizer.new_profile, enrol_uploads,
                                          max_files=max_enrol_files, responses=errors))

    app.add_middleware(
        RequestGuard,
        max_bytes=int(max_upload_mb * 1e6),
        timeout_s=request_timeout_s,
        max_requests=max_requests,
        token=token.strip() if token else None,
    )
    return app


def _decode(path: str, sample_rate: int, max_seconds: float, max_decoded_mb: float) -> Any:
    """The upload's samples: header checks (size budget included) first, then decoding."""
    from ptssnn.audio import load_audio
    from ptssnn.inference.recognizer import MIN_SECONDS

    return load_audio(
        path,
        sample_rate=sample_rate,
        max_seconds=max_seconds,
        min_seconds=MIN_SECONDS,
        long_policy="error",
        max_decoded_mb=max_decoded_mb,
    )


def read_token(token_file: str | os.PathLike[str] | None = None) -> str | None:
    """The bearer token: the file's content (stripped) if given, else ``$PTSSNN_TOKEN``.

    Raises:
        PtssnnError: The file cannot be read or is empty.
    """
    if token_file is not None:
        try:
            with open(token_file, encoding="utf-8") as handle:
                token = handle.read().strip()
        except OSError as error:
            raise PtssnnError(
                f"{token_file}: cannot read the token file ({error.strerror or error})"
            ) from error
        if not token:
            raise PtssnnError(f"{token_file}: the token file is empty")
        return token
    token = os.environ.get(TOKEN_ENV, "").strip()
    return token or None


def check_port(host: str, port: int) -> None:
    """Fail with one line, before loading anything heavy, if ``host:port`` cannot be bound.

    Raises:
        PtssnnError: A port outside 1-65535, or one already in use (or not permitted).
    """
    import socket

    if not 1 <= port <= 65535:
        raise PtssnnError(f"port must be between 1 and 65535, got {port}")
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as error:
        raise PtssnnError(f"cannot listen on {host!r}: {error.strerror or error}") from error
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as error:
            raise PtssnnError(
                f"cannot listen on {host}:{port}: {error.strerror or error}"
            ) from error


def serve(
    recognizer: EmotionRecognizer,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    max_upload_mb: float = DEFAULT_MAX_UPLOAD_MB,
    max_seconds: float = DEFAULT_MAX_SECONDS,
    max_concurrency: int = 1,
    max_decoded_mb: float = DEFAULT_MAX_DECODED_MB,
    request_timeout_s: float = DEFAULT_REQUEST_TIMEOUT_S,
    max_requests: int = DEFAULT_MAX_REQUESTS,
    token: str | None = None,
    log_level: str = "info",
    profiles_dir: str | os.PathLike[str] | None = None,
    max_profiles: int = DEFAULT_MAX_PROFILES,
) -> None:
    """Serve the recogniser over HTTP with uvicorn until interrupted.

    Idle keep-alive connections close after 5 s; the arguments are :func:`create_app`'s.
    """
    import uvicorn

    app = create_app(
        recognizer,
        max_upload_mb=max_upload_mb,
        max_seconds=max_seconds,
        max_concurrency=max_concurrency,
        max_decoded_mb=max_decoded_mb,
        request_timeout_s=request_timeout_s,
        max_requests=max_requests,
        token=token,
        profiles_dir=profiles_dir,
        max_profiles=max_profiles,
    )
    check_port(host, port)
    uvicorn.run(app, host=host, port=port, log_level=log_level, timeout_keep_alive=5)
