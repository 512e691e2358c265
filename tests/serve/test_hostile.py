"""The HTTP service against hostile clients (issue 14, items 1-2), on a real uvicorn server."""

from __future__ import annotations

import io
import resource
import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pytest
import soundfile as sf
import torch
from serving import Running, error_of, post, wav_bytes

import ptssnn.audio.loading as loading
import ptssnn.serve.app as serve_app
from ptssnn.inference import EmotionRecognizer
from speechlike import voiced


@pytest.fixture(scope="module")
def recognizer(tiny_model_dir: Path) -> EmotionRecognizer:
    torch.set_num_threads(1)
    return EmotionRecognizer.load(tiny_model_dir, max_seconds=5.0)


@pytest.fixture(scope="module")
def server(recognizer: EmotionRecognizer) -> Iterator[Running]:
    with Running(recognizer, max_decoded_mb=20.0, max_concurrency=1) as running:
        yield running


def flac_bomb(rate: int, seconds: int, channels: int = 8) -> bytes:
    """A constant signal: FLAC stores it in almost nothing, the header declares it all."""
    buffer = io.BytesIO()
    block = np.full((rate, channels), 0.25, np.float32)
    with sf.SoundFile(buffer, "w", rate, channels, format="FLAC", subtype="PCM_16") as out:
        for _ in range(seconds):
            out.write(block)
    return buffer.getvalue()


@pytest.fixture
def decode_calls(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every call of the sample decoder (the server runs in this process, in a thread)."""
    calls: list[str] = []
    real_read = loading.sf.read

    def counting_read(path: str, *args: object, **kwargs: object) -> object:
        calls.append(path)
        return real_read(path, *args, **kwargs)

    monkeypatch.setattr(loading.sf, "read", counting_read)
    return calls


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# --- decompression bombs ----------------------------------------------------------------------


def test_bomb_at_an_absurd_rate_is_refused_without_decoding(
    server: Running, decode_calls: list[str]
) -> None:
    # Issue 14's bomb, shortened: 8 channels at 655 kHz (4 s would decode to 84 MB).
    data = flac_bomb(655350, 4)
    assert len(data) < 50_000
    before = peak_rss_mb()
    with httpx.Client(timeout=60) as client:
        answers = [post(client, server.url, "bomb.flac", data) for _ in range(3)]
    for answer in answers:
        message = error_of(answer, 415, "unsupported_sample_rate")
        assert "655350 Hz" in message and "bomb.flac" in message
    assert decode_calls == []
    assert peak_rss_mb() - before < 40


def test_bomb_at_an_allowed_rate_is_refused_from_its_header(
    server: Running, decode_calls: list[str]
) -> None:
    # 8 channels x 384 kHz x 4 s: within the rate and duration limits, 49 MB decoded.
    data = flac_bomb(384000, 4)
    before = peak_rss_mb()
    response = post(httpx.Client(timeout=60), server.url, "bomb.flac", data)
    message = error_of(response, 413, "audio_too_large")
    assert "49 MB" in message and "20 MB" in message
    assert decode_calls == []
    assert peak_rss_mb() - before < 40
    # An ordinary upload is still decoded (the spy does see decoding).
    assert post(httpx.Client(timeout=60), server.url, "ok.wav", wav_bytes(voiced(1.0)))
    assert len(decode_calls) == 1


def test_decoding_runs_inside_the_concurrency_limit(
    server: Running, monkeypatch: pytest.MonkeyPatch
) -> None:
    running = 0
    most = 0
    lock = threading.Lock()
    real_decode = serve_app._decode

    def slow_decode(*args: object, **kwargs: object) -> object:
        nonlocal running, most
        with lock:
            running += 1
            most = max(most, running)
        time.sleep(0.2)
        try:
            return real_decode(*args, **kwargs)
        finally:
            with lock:
                running -= 1

    monkeypatch.setattr(serve_app, "_decode", slow_decode)
    data = wav_bytes(voiced(1.0))

    def send(_: int) -> int:
        return post(httpx.Client(timeout=60), server.url, "a.wav", data).status_code

    with ThreadPoolExecutor(4) as pool:
        assert list(pool.map(send, range(4))) == [200] * 4
    assert most == 1  # the server's max_concurrency


# --- tiny, chunked, slow ------------------------------------------------------------------------


def test_two_samples_at_one_hertz_get_a_clear_4xx(server: Running) -> None:
    buffer = io.BytesIO()
    sf.write(buffer, np.array([0.5, -0.5], np.float32), 1, format="WAV")
    response = post(httpx.Client(timeout=30), server.url, "tiny.wav", buffer.getvalue())
    assert "1 Hz" in error_of(response, 415, "unsupported_sample_rate")
    two = post(httpx.Client(timeout=30), server.url, "two.wav", wav_bytes(voiced(1.0)[:2]))
    assert "shorter" in error_of(two, 422, "audio_too_short")


def test_chunked_upload_over_the_limit_is_413(server: Running) -> None:
    boundary = "ptssnnboundary"

    def body() -> Iterator[bytes]:
        yield (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="a.wav"\r\n'
            "Content-Type: audio/wav\r\n\r\n"
        ).encode()
        for _ in range(30):  # 1.5 MB in 50 kB chunks, no Content-Length
            yield b"\0" * 50_000
        yield f"\r\n--{boundary}--\r\n".encode()

    response = httpx.post(
        f"{server.url}/predict",
        content=body(),
        headers={"content-type": f"multipart/form-data; boundary={boundary}"},
        timeout=30,
    )
    assert response.request.headers.get("transfer-encoding") == "chunked"
    assert "1 MB" in error_of(response, 413, "upload_too_large")


def slow_upload(port: int, hold_s: float) -> tuple[bytes, float]:
    """Declare a 100 kB body, send 10 bytes, then wait: what does the server answer, when?"""
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=hold_s + 10) as sock:
        sock.sendall(
            b"POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Content-Type: multipart/form-data; boundary=x\r\nContent-Length: 100000\r\n\r\n"
            b"--x\r\nabcde"
        )
        answer = b""
        while chunk := sock.recv(65536):  # until the server closes the connection
            answer += chunk
    return answer, time.monotonic() - started


def test_slow_clients_get_408_and_lose_the_connection(recognizer: EmotionRecognizer) -> None:
    with Running(recognizer, request_timeout_s=1.0) as running:
        with ThreadPoolExecutor(20) as pool:
            results = list(pool.map(lambda _: slow_upload(running.port, 10), range(20)))
        for answer, elapsed in results:
            head, _, body = answer.partition(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 408"), answer[:200]
            assert b'"code":"request_timeout"' in body
            assert elapsed < 5  # 1 s deadline, not the client's 10 s
        # Still serving.
        ok = post(httpx.Client(timeout=30), running.url, "a.wav", wav_bytes(voiced(1.0)))
        assert ok.status_code == 200


def test_requests_beyond_the_limit_get_503_in_the_same_shape(
    recognizer: EmotionRecognizer,
) -> None:
    with Running(recognizer, request_timeout_s=3.0, max_requests=2) as running:
        with ThreadPoolExecutor(2) as pool:
            holders = [pool.submit(slow_upload, running.port, 10) for _ in range(2)]
            time.sleep(1.0)  # both slow uploads are in progress now
            busy = post(httpx.Client(timeout=30), running.url, "a.wav", wav_bytes(voiced(1.0)))
            assert "2 requests are in progress" in error_of(busy, 503, "server_busy")
            assert all(h.result()[0].startswith(b"HTTP/1.1 408") for h in holders)
        ok = post(httpx.Client(timeout=30), running.url, "a.wav", wav_bytes(voiced(1.0)))
        assert ok.status_code == 200  # the slots are free again


# --- token, docs, internal errors -----------------------------------------------------------


def test_bearer_token_is_required_when_set(recognizer: EmotionRecognizer) -> None:
    with Running(recognizer, token="s3cret-token") as running:
        data = wav_bytes(voiced(1.0))
        with httpx.Client(timeout=30) as client:
            for authorization in (None, "Bearer wrong", "s3cret-token", "Basic s3cret-token"):
                headers = {"Authorization": authorization} if authorization else {}
                response = client.post(
                    f"{running.url}/predict", files={"file": ("a.wav", data)}, headers=headers
                )
                error_of(response, 401, "unauthorized")
                assert response.headers["www-authenticate"] == "Bearer"
            error_of(client.get(f"{running.url}/health"), 401, "unauthorized")
            error_of(client.get(f"{running.url}/openapi.json"), 401, "unauthorized")
            good = {"Authorization": "Bearer s3cret-token"}
            response = client.post(
                f"{running.url}/predict", files={"file": ("a.wav", data)}, headers=good
            )
            assert response.status_code == 200, response.text
            assert client.get(f"{running.url}/health", headers=good).status_code == 200


def test_no_docs_page_loads_javascript_from_a_cdn(server: Running) -> None:
    with httpx.Client(timeout=30) as client:
        for page in ("/docs", "/redoc", "/docs/oauth2-redirect"):
            error_of(client.get(f"{server.url}{page}"), 404, "not_found")
        schema = client.get(f"{server.url}/openapi.json")
        assert schema.status_code == 200 and "cdn" not in schema.text.lower()


def test_an_internal_error_has_the_same_shape_and_no_internals(
    server: Running, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: object, **kwargs: object) -> object:
        raise RuntimeError("secret internal path /srv/model")

    monkeypatch.setattr(server.recognizer, "predict", broken)
    response = post(httpx.Client(timeout=30), server.url, "a.wav", wav_bytes(voiced(1.0)))
    message = error_of(response, 500, "internal_error")
    assert "secret" not in message
