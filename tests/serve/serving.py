"""Helpers for the HTTP service tests: a real uvicorn server on 127.0.0.1 in a thread."""

from __future__ import annotations

import io
import socket
import threading
import time
from typing import Any

import httpx
import numpy as np
import soundfile as sf
import uvicorn

from ptssnn.inference import EmotionRecognizer
from ptssnn.serve import ERROR_CODES, create_app


def wav_bytes(wave: np.ndarray, rate: int = 16000, subtype: str = "PCM_16") -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, wave, rate, format="WAV", subtype=subtype)
    return buffer.getvalue()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Running:
    """A uvicorn server in a background thread."""

    def __init__(self, recognizer: EmotionRecognizer, **limits: Any) -> None:
        limits = {"max_upload_mb": 1.0, "max_seconds": 5.0, "max_concurrency": 2} | limits
        app = create_app(recognizer, **limits)
        self.recognizer = recognizer
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> Running:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.05)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=15)


def post(client: httpx.Client, url: str, name: str, data: bytes) -> httpx.Response:
    return client.post(f"{url}/predict", files={"file": (name, data, "audio/wav")})


def error_of(response: httpx.Response, status: int, code: str | None = None) -> str:
    """The message of an error response, after checking the one error shape."""
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"}, body
    assert set(body["error"]) == {"code", "message"}, body
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    assert ERROR_CODES[body["error"]["code"]] == status, body
    if code is not None:
        assert body["error"]["code"] == code, body
    return body["error"]["message"]


