"""``ptssnn train / predict / export / serve``: smoke tests and Python = CLI = HTTP agreement."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
import soundfile as sf
from typer.testing import CliRunner

from ptssnn.cli import app
from ptssnn.errors import PtssnnError
from ptssnn.inference import EmotionRecognizer
from speechlike import voiced

runner = CliRunner()


@pytest.fixture(scope="module")
def audio_tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three good clips (one nested, one at 44.1 kHz FLAC), a junk .wav and a text file."""
    root = tmp_path_factory.mktemp("audio")
    (root / "nested" / "deeper").mkdir(parents=True)
    sf.write(root / "a.wav", voiced(1.0, seed=1), 16000)
    sf.write(root / "nested" / "b.WAV", voiced(1.5, seed=2, f0=220), 16000)
    import soxr

    c = soxr.resample(voiced(2.0, seed=3, f0=90), 16000, 44100).astype(np.float32)
    sf.write(root / "nested" / "deeper" / "c.flac", c, 44100)
    (root / "nested" / "broken.wav").write_bytes(b"RIFF....WAVEfmt garbage")
    (root / "notes.txt").write_text("not audio, not picked up from a directory")
    return root


def jsonl(output: str) -> list[dict]:
    return [json.loads(line) for line in output.splitlines() if line.startswith("{")]


def test_predict_jsonl_on_a_directory_skips_bad_files(
    tiny_model_dir: Path, audio_tree: Path
) -> None:
    result = runner.invoke(app, ["predict", str(tiny_model_dir), str(audio_tree), "--jsonl"])
    assert result.exit_code == 1  # one file failed, the rest went on
    records = jsonl(result.stdout)
    assert [Path(r["source"]).name for r in records] == ["a.wav", "b.WAV", "broken.wav", "c.flac"]
    broken = records[2]
    assert "error" in broken and "broken.wav" in broken["error"]
    recognizer = EmotionRecognizer.load(tiny_model_dir)
    for record in (records[0], records[1], records[3]):
        expected = recognizer.predict_file(record["source"])
        assert record["label"] == expected.label
        assert record["probabilities"] == pytest.approx(expected.probabilities, abs=1e-5)
    assert "3 of 4 files recognised, 1 skipped" in result.stderr


def test_predict_table_and_windows(tiny_model_dir: Path, audio_tree: Path) -> None:
    result = runner.invoke(
        app, ["predict", str(tiny_model_dir), str(audio_tree / "a.wav"), "--table"]
    )
    assert result.exit_code == 0, result.output
    assert "a.wav" in result.stdout and "1 of 1 files recognised" in result.stderr
    long = runner.invoke(
        app,
        [
            "predict",
            str(tiny_model_dir),
            str(audio_tree / "nested" / "deeper" / "c.flac"),
            "--jsonl",
            "--window",
            "1.0",
            "--hop",
            "0.5",
        ],
    )
    assert long.exit_code == 0, long.output
    (record,) = jsonl(long.stdout)
    assert len(record["segments"]) == 3  # 2 s in 1 s windows every ≤ 0.5 s


def test_predict_stream(tiny_model_dir: Path, audio_tree: Path) -> None:
    result = runner.invoke(
        app,
        [
            "predict",
            str(tiny_model_dir),
            str(audio_tree / "nested" / "b.WAV"),
            "--jsonl",
            "--stream",
            "--chunk",
            "0.5",
            "--left-context",
            "1.0",
            "--lookahead",
            "0.2",
        ],
    )
    assert result.exit_code == 0, result.output
    (record,) = jsonl(result.stdout)
    assert record["streaming"]["chunks"] == 3
    assert record["streaming"]["lookahead_s"] == pytest.approx(0.2)
    assert record["label"] == record["updates"][-1]["label"]
    assert record["streaming"]["latency_ms_max"] > 0


def test_predict_errors(tiny_model_dir: Path, tmp_path: Path) -> None:
    missing = runner.invoke(app, ["predict", str(tiny_model_dir), str(tmp_path / "nope.wav")])
    assert isinstance(missing.exception, PtssnnError)
    empty = runner.invoke(app, ["predict", str(tiny_model_dir), str(tmp_path)])
    assert isinstance(empty.exception, PtssnnError) and "no audio files" in str(empty.exception)
    both = runner.invoke(app, ["predict", str(tiny_model_dir), str(tmp_path), "--jsonl", "--table"])
    assert isinstance(both.exception, PtssnnError)


def test_export_commands(tiny_model_dir: Path, tmp_path: Path) -> None:
    onnx_file = tmp_path / "head.onnx"
    result = runner.invoke(
        app, ["export", str(tiny_model_dir), "--format", "onnx", "--out", str(onnx_file)]
    )
    assert result.exit_code == 0, result.output
    assert onnx_file.stat().st_size > 0
    assert json.loads(result.stdout)["max_abs_diff"] <= 1e-4
    nir_dir = tmp_path / "head-nir"
    result = runner.invoke(
        app, ["export", str(tiny_model_dir), "--format", "nir", "--out", str(nir_dir),
              "--target", "norse", "--dt", "0.002"]
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["target"] == "norse" and report["dt"] == 0.002
    assert report["spikes_equal"] and report["max_abs_diff"] <= 1e-5
    assert (nir_dir / "manifest.json").is_file() and list(nir_dir.glob("*.nir"))
    for bad_option in (["--target", "loihi"], ["--target", "snntorch", "--dt", "0.02"]):
        result = runner.invoke(app, ["export", str(tiny_model_dir), "--format", "nir",
                                     "--out", str(tmp_path / "x"), *bad_option])
        assert isinstance(result.exception, PtssnnError), bad_option
    bad = runner.invoke(app, ["export", str(tiny_model_dir), "--format", "tflite"])
    assert isinstance(bad.exception, PtssnnError)
    missing = runner.invoke(app, ["export", str(tmp_path / "nothing"), "--format", "nir"])
    assert isinstance(missing.exception, PtssnnError)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_python_cli_and_http_give_the_same_prediction(
    tiny_model_dir: Path, audio_tree: Path
) -> None:
    clip = audio_tree / "nested" / "b.WAV"
    python = EmotionRecognizer.load(tiny_model_dir).predict_file(clip)
    (cli,) = jsonl(
        runner.invoke(app, ["predict", str(tiny_model_dir), str(clip), "--jsonl"]).stdout
    )
    port = _free_port()
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen(
        [sys.executable, "-m", "ptssnn", "serve", str(tiny_model_dir), "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=env,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert process.poll() is None, process.stderr.read().decode()
            assert time.monotonic() < deadline, "ptssnn serve did not come up"
            time.sleep(0.2)
        response = httpx.post(
            f"{url}/predict", files={"file": (clip.name, clip.read_bytes())}, timeout=60
        )
        assert response.status_code == 200, response.text
        http = response.json()
    finally:
        process.terminate()
        process.wait(timeout=20)
    assert python.label == cli["label"] == http["label"]
    assert cli["probabilities"] == pytest.approx(python.probabilities, abs=1e-5)
    assert http["probabilities"] == pytest.approx(python.probabilities, abs=1e-5)


def _tiny_casia(shared: Path, root: Path) -> Path:
    """3 speakers × 3 emotions × 6 clips of CASIA, linked (not copied) into ``root/casia``."""
    for speaker in ("liuchanhg", "wangzhe", "zhaoquanyin"):
        for emotion in ("angry", "neutral", "sad"):
            folder = root / "casia" / speaker / emotion
            folder.mkdir(parents=True)
            for number in range(201, 207):
                (folder / f"{number}.flac").symlink_to(
                    shared / "casia" / speaker / emotion / f"{number}.flac"
                )
    return root


def test_train_writes_a_loadable_model_directory(shared_data: Path, tmp_path: Path) -> None:
    root = _tiny_casia(shared_data, tmp_path / "data")
    out = tmp_path / "model"
    result = runner.invoke(
        app,
        [
            "train",
            "casia",
            "--data-root",
            str(root),
            "--backbone",
            "fbank",
            "--out",
            str(out),
            "--epochs",
            "2",
            "--exclude-speakers",
            "wangzhe",
            "--cache",
            str(tmp_path / "cache"),
        ],
    )
    assert result.exit_code == 0, result.output
    assert {p.name for p in out.iterdir()} >= {
        "model.safetensors",
        "config.json",
        "training_summary.json",
    }
    summary = json.loads((out / "training_summary.json").read_text())
    assert summary["labels"] == ["angry", "neutral", "sad"]
    casia = summary["corpora"]["casia"]
    assert casia["held_out_speakers"] == ["wangzhe"]
    assert "wangzhe" not in casia["train_speakers"] + casia["validation_speakers"]
    assert set(casia["train_speakers"]).isdisjoint(casia["validation_speakers"])
    assert summary["num_held_out"] == 18 and summary["held_out"]["num_samples"] == 18
    assert summary["fit"]["epochs_run"] <= 2
    recognizer = EmotionRecognizer.load(out)
    assert recognizer.labels == ("angry", "neutral", "sad")
    assert recognizer.card.frame_pool == summary["frame_pool"]
    assert recognizer.card.layers == summary["layers"]["spec"]
    # The recogniser rebuilds the training features (layers, pooling) from raw audio: its
    # accuracy on the held-out speaker is the trainer's (float16 cache vs float32 features
    # may move a borderline clip).
    clips = sorted((root / "casia" / "wangzhe").rglob("*.flac"))
    correct = sum(recognizer.predict_file(c).label == c.parent.name for c in clips)
    assert abs(correct / len(clips) - summary["held_out"]["wa"]) <= 1 / len(clips) + 1e-9
    unknown = runner.invoke(
        app,
        [
            "train",
            "casia",
            "--data-root",
            str(root),
            "--backbone",
            "fbank",
            "--out",
            str(tmp_path / "x"),
            "--exclude-speakers",
            "nobody",
        ],
    )
    assert isinstance(unknown.exception, PtssnnError) and "nobody" in str(unknown.exception)
