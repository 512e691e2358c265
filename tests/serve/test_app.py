"""The HTTP service, tested through a real uvicorn server on 127.0.0.1."""

from __future__ import annotations

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

from ptssnn.inference import EmotionRecognizer
from speechlike import voiced


@pytest.fixture(scope="module")
def recognizer(tiny_model_dir: Path) -> EmotionRecognizer:
    torch.set_num_threads(1)
    return EmotionRecognizer.load(tiny_model_dir, max_seconds=5.0)


@pytest.fixture(scope="module")
def server(recognizer: EmotionRecognizer) -> Iterator[Running]:
    with Running(recognizer) as running:
        yield running


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Good audio files: synthetic ones in three formats/rates, plus real CASIA clips if present."""
    from conftest import shared_data_root

    folder = tmp_path_factory.mktemp("clips")
    out = {}
    for i, (rate, fmt, subtype) in enumerate(
        [(16000, "WAV", "PCM_16"), (44100, "FLAC", "PCM_16"), (48000, "WAV", "FLOAT")]
    ):
        import soxr

        wave = voiced(1.0 + 0.5 * i, seed=i, f0=120 + 60 * i)
        if rate != 16000:
            wave = soxr.resample(wave, 16000, rate).astype(np.float32)
        path = folder / f"synthetic{i}.{fmt.lower()}"
        sf.write(path, wave, rate, format=fmt, subtype=subtype)
        out[path.name] = path
    casia = shared_data_root() / "casia" / "wangzhe"
    if casia.is_dir():
        for emotion in ("angry", "sad"):
            path = casia / emotion / "201.flac"
            if path.is_file():
                out[f"casia-{emotion}.flac"] = path
    return out


def test_health_and_openapi(server: Running) -> None:
    health = httpx.get(f"{server.url}/health", timeout=10).json()
    assert health["status"] == "ok"
    assert health["labels"] == ["angry", "neutral", "sad"]
    assert health["limits"] == {
        "max_upload_mb": 1.0,
        "max_seconds": 5.0,
        "max_decoded_mb": 100.0,
        "max_concurrency": 2,
        "request_timeout_s": 30.0,
        "max_requests": 64,
    }
    schema = httpx.get(f"{server.url}/openapi.json", timeout=10).json()
    assert "/predict" in schema["paths"] and "post" in schema["paths"]["/predict"]
    assert "/health" in schema["paths"]
    # The error shape is documented in the schema.
    errors = schema["paths"]["/predict"]["post"]["responses"]
    assert set(errors) >= {"200", "401", "408", "413", "415", "422", "503"}
    assert "ErrorBody" in schema["components"]["schemas"]


def test_predictions_equal_the_python_api(
    server: Running, recognizer: EmotionRecognizer, clips: dict[str, Path]
) -> None:
    with httpx.Client(timeout=30) as client:
        for name, path in clips.items():
            response = post(client, server.url, name, path.read_bytes())
            assert response.status_code == 200, response.text
            body = response.json()
            expected = recognizer.predict_file(path)
            assert body["source"] == name
            assert body["label"] == expected.label
            assert body["probabilities"] == pytest.approx(expected.probabilities, abs=1e-5)
            assert body["duration_s"] == pytest.approx(expected.duration_s, abs=1e-3)
            assert len(body["segments"]) == len(expected.segments)
            assert set(body["timings"]) >= {"backbone_ms", "head_ms", "total_ms"}
        no_segments = client.post(
            f"{server.url}/predict",
            params={"segments": "false"},
            files={"file": ("a.wav", wav_bytes(voiced(1.0)), "audio/wav")},
        )
        assert no_segments.status_code == 200 and "segments" not in no_segments.json()


BAD_UPLOADS = {
    "junk": (b"this is not audio at all" * 10, 415, "cannot be decoded"),
    "empty": (b"", 422, "empty"),
    "silence": (wav_bytes(np.zeros(16000, np.float32)), 422, "silence"),
    "too-short": (wav_bytes(voiced(0.1)), 422, "shorter"),
    "too-long": (wav_bytes(voiced(6.0)), 413, "longer"),
    "nan": (wav_bytes(np.full(16000, np.nan, np.float32), subtype="FLOAT"), 422, "NaN"),
    "truncated": (wav_bytes(voiced(1.0))[:3000], 415, "truncated"),
    "nine-channels": (wav_bytes(np.tile(voiced(1.0)[:, None], (1, 9))), 415, "channels"),
}


@pytest.mark.parametrize("case", sorted(BAD_UPLOADS))
def test_bad_audio_gets_a_clear_4xx(server: Running, case: str) -> None:
    data, status, words = BAD_UPLOADS[case]
    response = post(httpx.Client(timeout=30), server.url, f"{case}.wav", data)
    assert response.status_code == status, response.text
    detail = error_of(response, status)
    assert words.lower() in detail.lower()
    assert f"{case}.wav" in detail  # the client's name, not the server's temporary file
    assert "/tmp" not in detail and "ptssnn-upload" not in detail
    assert "long_policy" not in detail  # an option HTTP clients cannot set


def test_malformed_requests_are_4xx(server: Running) -> None:
    with httpx.Client(timeout=30) as client:
        too_big = post(client, server.url, "big.wav", b"\0" * 1_500_000)
        assert "1 MB" in error_of(too_big, 413, "upload_too_large")
        assert "file" in error_of(client.post(f"{server.url}/predict"), 422, "invalid_request")
        wrong_field = client.post(f"{server.url}/predict", files={"audio": ("a.wav", b"x")})
        assert "file: Field required" in error_of(wrong_field, 422, "invalid_request")
        error_of(client.post(f"{server.url}/predict", json={"file": "a.wav"}), 422)
        bad_flag = client.post(
            f"{server.url}/predict", params={"segments": "maybe"}, files={"file": ("a", b"x")}
        )
        assert "segments" in error_of(bad_flag, 422, "invalid_request")
        error_of(client.get(f"{server.url}/predict"), 405, "method_not_allowed")
        error_of(client.get(f"{server.url}/nothing"), 404, "not_found")
        broken = client.post(
            f"{server.url}/predict",
            content=b"--x\r\nnot a multipart body",
            headers={"content-type": "multipart/form-data; boundary=x"},
        )
        assert broken.status_code in (400, 422)
        error_of(broken, broken.status_code)


def test_bounded_concurrent_load(
    server: Running, recognizer: EmotionRecognizer, clips: dict[str, Path]
) -> None:
    """200 requests, 8 at a time, good and bad mixed: every answer right, server still up."""
    good = [(name, path.read_bytes()) for name, path in clips.items()]
    expected = {name: recognizer.predict_file(path).label for name, path in clips.items()}
    expected_probs = {n: recognizer.predict_file(p).probabilities for n, p in clips.items()}
    bad = [
        (f"{case}.wav", BAD_UPLOADS[case][0], BAD_UPLOADS[case][1])
        for case in ("junk", "silence", "too-long")
    ]
    jobs = []
    for i in range(200):
        if i % 5 == 4:
            name, data, status = bad[i % len(bad)]
            jobs.append((name, data, status))
        else:
            name, data = good[i % len(good)]
            jobs.append((name, data, 200))

    def send(job: tuple[str, bytes, int]) -> tuple[tuple[str, bytes, int], httpx.Response]:
        with httpx.Client(timeout=120) as client:
            return job, post(client, server.url, job[0], job[1])

    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(send, jobs))
    elapsed = time.perf_counter() - started
    assert len(results) == 200
    for (name, _, status), response in results:
        assert response.status_code == status, (name, response.text)
        if status == 200:
            body = response.json()
            assert body["label"] == expected[name]
            assert body["probabilities"] == pytest.approx(expected_probs[name], abs=1e-5)
    assert httpx.get(f"{server.url}/health", timeout=10).json()["status"] == "ok"
    assert server.thread.is_alive()
    print(f"200 requests, 8 concurrent: {elapsed:.2f} s ({200 / elapsed:.1f} req/s)")
