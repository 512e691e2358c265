"""HTTP service for a trained recogniser (FastAPI + uvicorn): ``ptssnn serve MODEL_DIR``."""

from __future__ import annotations

from ptssnn.serve.app import DEFAULT_MAX_SECONDS, DEFAULT_MAX_UPLOAD_MB, create_app, serve

__all__ = ["DEFAULT_MAX_SECONDS", "DEFAULT_MAX_UPLOAD_MB", "create_app", "serve"]
