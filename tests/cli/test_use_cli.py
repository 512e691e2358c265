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
import torch
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


def test_predict_stream_table_shows_the_running_label_live(
    tiny_model_dir: Path, audio_tree: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from rich.progress import Progress

    shown: list[str] = []
    real_update = Progress.update

    def update(self: Progress, task: object, **fields: object) -> None:
        if "description" in fields:
            shown.append(str(fields["description"]))
        real_update(self, task, **fields)

    monkeypatch.setattr(Progress, "update", update)
    clip = audio_tree / "nested" / "b.WAV"
    result = runner.invoke(app, ["predict", str(tiny_model_dir), str(clip), "--stream",
                                 "--chunk", "0.5"])
    assert result.exit_code == 0, result.output
    # One running label per chunk (1.5 s in 0.5 s chunks), shown while the file streams.
    assert len(shown) == 3 and all(line.startswith("b.WAV ") for line in shown)
    final = jsonl(runner.invoke(app, ["predict", str(tiny_model_dir), str(clip), "--stream",
                                      "--chunk", "0.5", "--jsonl"]).stdout)[0]
    assert f"[bold]{final['label']}[/]" in shown[-1]


def test_predict_errors(tiny_model_dir: Path, tmp_path: Path) -> None:
    missing = runner.invoke(app, ["predict", str(tiny_model_dir), str(tmp_path / "nope.wav")])
    assert isinstance(missing.exception, PtssnnError)
    assert "nothing to predict" in str(missing.exception) and "nope.wav" in str(missing.exception)
    empty = runner.invoke(app, ["predict", str(tiny_model_dir), str(tmp_path)])
    assert isinstance(empty.exception, PtssnnError) and "no audio files" in str(empty.exception)
    both = runner.invoke(app, ["predict", str(tiny_model_dir), str(tmp_path), "--jsonl", "--table"])
    assert isinstance(both.exception, PtssnnError)


def test_predict_skips_a_missing_path_and_goes_on(
    tiny_model_dir: Path, audio_tree: Path, tmp_path: Path
) -> None:
    missing = tmp_path / "nope.wav"
    result = runner.invoke(
        app, ["predict", str(tiny_model_dir), str(missing), str(audio_tree / "a.wav"), "--jsonl"]
    )
    assert result.exit_code == 1  # documented: something was skipped
    records = jsonl(result.stdout)
    assert records[0] == {"source": str(missing), "error": f"{missing}: no such file or directory"}
    assert records[1]["label"] in ("angry", "neutral", "sad")
    stderr = " ".join(result.stderr.split())  # rich wraps long lines
    assert f"skipped {missing}: no such file or directory" in stderr
    assert "1 of 1 files recognised, 0 skipped; 1 path missing or unreadable" in stderr


def test_predict_reports_unreadable_folders_and_files(
    tiny_model_dir: Path, audio_tree: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import errno

    locked_folder = audio_tree / "nested" / "deeper"
    locked_file = audio_tree / "nested" / "b.WAV"
    real_scandir, real_open = os.scandir, os.open

    # Simulated permission problems: the tests may run as root, whom chmod does not stop.
    def scandir(path: object = ".") -> object:
        if Path(str(path)) == locked_folder:
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return real_scandir(path)  # type: ignore[arg-type]

    def open_(file: object, flags: int, *args: object, **kwargs: object) -> int:
        if Path(str(file)) == locked_file:
            raise PermissionError(errno.EACCES, "Permission denied", str(file))
        return real_open(file, flags, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "scandir", scandir)
    monkeypatch.setattr(os, "open", open_)
    result = runner.invoke(app, ["predict", str(tiny_model_dir), str(audio_tree), "--jsonl"])
    assert result.exit_code == 1
    stderr = " ".join(result.stderr.split())  # rich may wrap long lines
    assert f"{locked_folder}: folder cannot be read: permission denied" in stderr
    assert f"{locked_file}: cannot be read: permission denied" in stderr
    names = [Path(r["source"]).name for r in jsonl(result.stdout) if "label" in r]
    assert names == ["a.wav"]  # c.flac is in the locked folder, b.WAV locked, broken.wav bad
    assert "1 of 3 files recognised, 2 skipped; 1 path missing or unreadable" in stderr


@pytest.mark.parametrize(
    ("options", "words"),
    [
        (["--window", "0"], "--window and --hop must be > 0"),
        (["--hop", "-1"], "--window and --hop must be > 0"),
        (["--window", "1", "--hop", "2"], "leaves gaps"),
        (["--stream", "--chunk", "0"], "--chunk must be > 0"),
        (["--stream", "--chunk", "0.013"], "multiple of one frame"),
        (["--max-seconds", "0"], "--max-seconds must be > 0"),
    ],
)
def test_predict_option_errors_are_one_line(
    tiny_model_dir: Path, audio_tree: Path, options: list[str], words: str
) -> None:
    result = runner.invoke(app, ["predict", str(tiny_model_dir), str(audio_tree), *options])
    assert isinstance(result.exception, PtssnnError), result.exception
    assert words in str(result.exception)


@pytest.mark.parametrize(
    ("options", "words"),
    [
        (["--max-upload-mb", "0"], "--max-upload-mb must be > 0"),
        (["--max-concurrency", "0"], "--max-concurrency must be ≥ 1"),
        (["--max-decoded-mb", "-1"], "--max-decoded-mb must be > 0"),
        (["--request-timeout", "0"], "--request-timeout must be > 0"),
        (["--max-requests", "0"], "--max-requests must be ≥ 1"),
        (["--port", "99999"], "between 1 and 65535"),
    ],
)
def test_serve_option_errors_are_one_line(
    tiny_model_dir: Path, options: list[str], words: str
) -> None:
    result = runner.invoke(app, ["serve", str(tiny_model_dir), *options])
    assert isinstance(result.exception, PtssnnError), result.exception
    assert words in str(result.exception)


def test_serve_refuses_a_busy_port_and_a_bad_token_file(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = runner.invoke(app, ["serve", str(tiny_model_dir), "--port", str(port)])
        assert isinstance(result.exception, PtssnnError)
        assert f"cannot listen on 127.0.0.1:{port}" in str(result.exception)
    empty = tmp_path / "token"
    empty.write_text("\n")
    for token_file, words in ((empty, "token file is empty"), (tmp_path / "no", "cannot read")):
        result = runner.invoke(app, ["serve", str(tiny_model_dir), "--token-file", str(token_file)])
        assert isinstance(result.exception, PtssnnError)
        assert words in str(result.exception)


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


def test_export_with_a_profile_is_the_head_with_that_profile(
        enrol_model_dir: Path, tiny_model_dir: Path, tmp_path: Path) -> None:
    import onnx

    from ptssnn.export.onnx_export import run_onnx

    recognizer = EmotionRecognizer.load(enrol_model_dir)
    profile_file = recognizer.enrol([0.25 * voiced(1.2 + 0.2 * i, seed=60 + i)
                                     for i in range(5)], 16000).save(tmp_path / "p.json")
    out = tmp_path / "personal.onnx"
    result = runner.invoke(app, ["export", str(enrol_model_dir), "--format", "onnx", "--out",
                                 str(out), "--profile", str(profile_file)])
    assert result.exit_code == 0, result.output
    props = {p.key: p.value for p in onnx.load(str(out)).metadata_props}
    assert json.loads(props["ptssnn"])["speaker_profile"]["clips"] == 5
    # The exported head on plain features = the recogniser with the profile.
    from ptssnn.features.profile import SpeakerProfile

    profile = SpeakerProfile.load(profile_file)
    wave = 0.25 * voiced(2.0, seed=70)
    pool = recognizer.pipeline.pool
    plain = pool(recognizer.features(wave)).float()[None].numpy()
    mask = np.ones(plain.shape[:2], dtype=bool)
    got = run_onnx(out, plain, mask)
    with_profile = pool(recognizer.features(wave, recognizer.moments_for(profile))).float()
    want = recognizer.model(with_profile[None]).detach().numpy()
    # float16 storage rounds before the standardisation in one path, after it in the other.
    np.testing.assert_allclose(got, want, atol=1e-3)
    without = recognizer.model(torch.as_tensor(plain)).detach().numpy()
    assert np.abs(without - want).max() > 1e-2  # the profile does change the logits
    # NIR too: its host program standardises with the folded moments.
    from ptssnn.export import run_export

    nir_dir = tmp_path / "personal-nir"
    result = runner.invoke(app, ["export", str(enrol_model_dir), "--format", "nir", "--out",
                                 str(nir_dir), "--profile", str(profile_file)])
    assert result.exit_code == 0, result.output
    np.testing.assert_allclose(run_export(nir_dir, torch.as_tensor(plain[0])), want[0],
                               atol=1e-3)
    # A model without a speaker prior refuses the profile in one line.
    refused = runner.invoke(app, ["export", str(tiny_model_dir), "--format", "onnx",
                                  "--out", str(tmp_path / "x.onnx"), "--profile",
                                  str(profile_file)])
    assert isinstance(refused.exception, PtssnnError)
    assert "prior" in str(refused.exception)


def test_export_refuses_a_bad_opset_and_a_missing_parent_in_one_line(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    result = runner.invoke(app, ["export", str(tiny_model_dir), "--opset", "5",
                                 "--out", str(tmp_path / "h.onnx")])
    assert isinstance(result.exception, PtssnnError), result.exception
    assert "opset 5 is not supported" in str(result.exception)
    assert "\n" not in str(result.exception) and result.stdout == ""
    assert not (tmp_path / "h.onnx").exists()
    nowhere = tmp_path / "no" / "such" / "dir"
    for kind in ("onnx", "nir"):
        result = runner.invoke(app, ["export", str(tiny_model_dir), "--format", kind,
                                     "--out", str(nowhere / "x")])
        assert isinstance(result.exception, PtssnnError), result.exception
        assert "does not exist" in str(result.exception)
    assert not (tmp_path / "no").exists()


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
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PTSSNN_TOKEN": "t0ken"}
    auth = {"Authorization": "Bearer t0ken"}
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
                if httpx.get(f"{url}/health", timeout=2, headers=auth).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert process.poll() is None, process.stderr.read().decode()
            assert time.monotonic() < deadline, "ptssnn serve did not come up"
            time.sleep(0.2)
        files = {"file": (clip.name, clip.read_bytes())}
        refused = httpx.post(f"{url}/predict", files=files, timeout=60)
        assert refused.status_code == 401  # $PTSSNN_TOKEN is set: no token, no answer
        response = httpx.post(f"{url}/predict", files=files, timeout=60, headers=auth)
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
    # fbank's head default: the saturation keeps each log-Mel frame's level (no LayerNorm).
    assert recognizer.model.config.saturation_norm is False
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


def test_train_for_enrolled_use_then_enrol_and_predict(shared_data: Path, tmp_path: Path) -> None:
    from ptssnn.features.enrolment import SpeakerPrior

    root = _tiny_casia(shared_data, tmp_path / "data")
    out = tmp_path / "model"
    result = runner.invoke(app, ["train", "casia", "--data-root", str(root), "--backbone",
                                 "fbank", "--out", str(out), "--epochs", "1",
                                 "--exclude-speakers", "wangzhe", "--normalisation", "enrolled",
                                 "--model-option", "saturation_norm=true",
                                 "--cache", str(tmp_path / "cache")])
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "training_summary.json").read_text())
    assert summary["normalisation"] == "enrolled"
    # --model-option wins over fbank's head default (no LayerNorm in the saturation).
    assert EmotionRecognizer.load(out).model.config.saturation_norm is True
    assert summary["enrolment"]["trained_for"] == "enrolled"
    prior = SpeakerPrior.load(out)
    assert prior is not None and prior.trained_for == "enrolled" and prior.frames > 0
    recognizer = EmotionRecognizer.load(out)
    assert recognizer.pipeline.normalisation == "speaker"
    clips = sorted((root / "casia" / "wangzhe").rglob("*.flac"))
    profile = recognizer.enrol(clips[:5])
    for clip in clips[5:8]:
        with_profile = recognizer.predict_file(clip, profile=profile)
        alone = recognizer.predict_file(clip)  # the same head without a profile: the prior
        assert with_profile.probabilities != alone.probabilities
        assert abs(sum(alone.probabilities.values()) - 1) < 1e-5


def test_train_refuses_an_existing_model_folder_without_overwrite(tmp_path: Path) -> None:
    out = tmp_path / "model"
    out.mkdir()
    (out / "config.json").write_text("{}")
    result = runner.invoke(app, ["train", "casia", "--data-root", str(tmp_path / "none"),
                                 "--out", str(out)])
    assert isinstance(result.exception, PtssnnError), result.exception
    assert "already exists" in str(result.exception) and "--overwrite" in str(result.exception)
    assert (out / "config.json").read_text() == "{}"
    # With --overwrite it goes on (and stops at the missing data, not at the folder).
    result = runner.invoke(app, ["train", "casia", "--data-root", str(tmp_path / "none"),
                                 "--out", str(out), "--overwrite"])
    assert "already exists" not in str(result.exception)


def test_a_model_option_without_a_value_is_a_one_line_error(tmp_path: Path) -> None:
    result = runner.invoke(app, ["train", "casia", "--data-root", str(tmp_path),
                                 "--out", str(tmp_path / "m"), "--model-option", "dropout"])
    assert isinstance(result.exception, PtssnnError)
    assert "KEY=VALUE" in str(result.exception)
    assert not (tmp_path / "m").exists()


def test_train_report_names_the_model_each_score_belongs_to() -> None:
    from ptssnn.cli.deploy import _train_report

    summary = {"num_train": 10, "num_validation": 4, "labels": ["a", "b"], "num_held_out": 6,
               "validation": {"ua": 0.75}, "fit": {"refit": {"epochs": 7}},
               "held_out": {"wa": 0.5, "ua": 0.25}}
    text = _train_report(summary, Path("m"))
    assert "0.750 is the validation run's" in text and "retrained" in text
    assert "written model on the held-out speakers (6 utterances): WA 0.5000, UA 0.2500" in text
    text = _train_report({**summary, "held_out": None}, Path("m"))
    assert "no unseen-speaker score of the written model" in text
    text = _train_report({**summary, "fit": {}, "held_out": None}, Path("m"))
    assert "0.750 (of the written model)" in text
