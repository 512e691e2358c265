"""HTTP service for a trained recogniser (FastAPI + uvicorn): ``ptssnn serve MODEL_DIR``."""

from __future__ import annotations

from ptssnn.serve.app import (
    DEFAULT_MAX_DECODED_MB,
    DEFAULT_MAX_REQUESTS,
    DEFAULT_MAX_SECONDS,
    DEFAULT_MAX_UPLOAD_MB,
    DEFAULT_REQUEST_TIMEOUT_S,
    TOKEN_ENV,
    check_port,
    create_app,
    read_token,
    serve,
)
from ptssnn.serve.guard import ERROR_CODES

__all__ = [
    "DEFAULT_MAX_DECODED_MB",
    "DEFAULT_MAX_REQUESTS",
    "DEFAULT_MAX_SECONDS",
    "DEFAULT_MAX_UPLOAD_MB",
    "DEFAULT_REQUEST_TIMEOUT_S",
    "ERROR_CODES",
    "TOKEN_ENV",
    "check_port",
    "create_app",
    "read_token",
    "serve",
]
