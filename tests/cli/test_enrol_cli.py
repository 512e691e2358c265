"""``ptssnn enrol`` and ``ptssnn predict --profile / --enrol-from``: CLI = Python API."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import soundfile as sf
from typer.testing import CliRunner

from ptssnn.cli import app
from ptssnn.errors import PtssnnError
from ptssnn.features.profile import SpeakerProfile
from ptssnn.inference import EmotionRecognizer
from speechlike import voiced

runner = CliRunner()


@pytest.fixture(scope="module")
def speaker(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Twenty short clips of one 'speaker' and a broken file."""
    root = tmp_path_factory.mktemp("speaker")
    for i in range(20):
        sf.write(root / f"clip{i:02d}.wav", 0.6 * voiced(0.5 + 0.05 * i, seed=i, f0=110 + 4 * i),
                 16000)
    (root / "broken.wav").write_bytes(b"RIFF....WAVEfmt garbage")
    return root


def records(output: str) -> list[dict]:
    return [json.loads(line) for line in output.splitlines() if line.startswith("{")]


def test_enrol_then_predict_equals_the_python_api(
    enrol_model_dir: Path, speaker: Path, tmp_path: Path
) -> None:
    out = tmp_path / "profile.json"
    result = runner.invoke(app, ["enrol", str(enrol_model_dir), str(speaker), "--out", str(out),
                                 "--name", "ana"])
    assert result.exit_code == 0, result.output
    assert "enrolled 20 of 21 clip(s)" in result.output and "skipped 1" in result.output
    recognizer = EmotionRecognizer.load(enrol_model_dir)
    clips = sorted(speaker.glob("clip*.wav"))
    expected_profile = recognizer.enrol(clips)
    profile = SpeakerProfile.load(out)
    assert (profile.clips, profile.frames, profile.name) == (20, expected_profile.frames, "ana")

    probe = tmp_path / "probe.wav"
    sf.write(probe, 0.6 * voiced(1.7, seed=99, f0=128), 16000)
    expected = recognizer.predict_file(probe, profile=expected_profile)
    for extra in (["--profile", str(out)], ["--enrol-from", str(speaker)]):
        result = runner.invoke(app, ["predict", str(enrol_model_dir), str(probe), "--jsonl",
                                     *extra])
        assert result.exit_code == 0, result.output
        (record,) = records(result.stdout)
        assert record["label"] == expected.label
        assert record["probabilities"] == pytest.approx(expected.probabilities, abs=1e-5)
    # The profile changes what the head sees: without it the numbers differ.
    plain = recognizer.predict_file(probe)
    assert plain.probabilities != pytest.approx(expected.probabilities, abs=1e-7)


def test_enrol_update_and_errors(enrol_model_dir: Path, tiny_model_dir: Path, speaker: Path,
                                 tmp_path: Path) -> None:
    out = tmp_path / "p.json"
    clips = sorted(speaker.glob("clip*.wav"))
    assert runner.invoke(app, ["enrol", str(enrol_model_dir), *map(str, clips[:3]),
                               "--out", str(out)]).exit_code == 0
    result = runner.invoke(app, ["enrol", str(enrol_model_dir), *map(str, clips[3:5]),
                                 "--out", str(out), "--update"])
    assert result.exit_code == 0, result.output
    assert SpeakerProfile.load(out).clips == 5
    # Nothing usable: a clear error, no profile written.
    result = runner.invoke(app, ["enrol", str(enrol_model_dir), str(speaker / "broken.wav"),
                                 "--out", str(tmp_path / "none.json")])
    assert result.exit_code != 0 and not (tmp_path / "none.json").exists()
    # A model without a speaker prior, and a profile made for another pipeline.
    with pytest.raises(PtssnnError, match="no speaker prior"):
        runner.invoke(app, ["enrol", str(tiny_model_dir), str(clips[0]), "--out",
                            str(tmp_path / "x.json")], catch_exceptions=False)
    data = json.loads(out.read_text())
    data["pipeline"] = "0123456789abcdef"
    (tmp_path / "other.json").write_text(json.dumps(data))
    with pytest.raises(PtssnnError, match="feature pipeline"):
        runner.invoke(app, ["predict", str(enrol_model_dir), str(clips[0]), "--profile",
                            str(tmp_path / "other.json")], catch_exceptions=False)
    result = runner.invoke(app, ["predict", str(enrol_model_dir), str(clips[0]), "--profile",
                                 str(out), "--enrol-from", str(speaker)])
    assert result.exit_code != 0


def test_streaming_prediction_with_a_profile(enrol_model_dir: Path, speaker: Path,
                                             tmp_path: Path) -> None:
    out = tmp_path / "p.json"
    clips = sorted(speaker.glob("clip*.wav"))
    assert runner.invoke(app, ["enrol", str(enrol_model_dir), *map(str, clips[:5]),
                               "--out", str(out)]).exit_code == 0
    probe = tmp_path / "probe.wav"
    sf.write(probe, 0.6 * voiced(2.3, seed=7, f0=131), 16000)
    result = runner.invoke(app, ["predict", str(enrol_model_dir), str(probe), "--jsonl",
                                 "--stream", "--chunk", "0.5", "--profile", str(out)])
    assert result.exit_code == 0, result.output
    (record,) = records(result.stdout)
    recognizer = EmotionRecognizer.load(enrol_model_dir)
    wave, rate = sf.read(probe, dtype="float32")
    last = recognizer.stream(chunk_s=0.5, profile=SpeakerProfile.load(out)).run(wave, rate)[-1]
    assert record["label"] == last.label
    assert record["probabilities"] == pytest.approx(last.probabilities, abs=1e-5)
