"""EmotionRecognizer: loading, prediction on waveforms and files, long audio, errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from ptssnn.errors import (
    CheckpointError,
    EmptyAudioError,
    NonFiniteAudioError,
    TooLongAudioError,
    TooShortAudioError,
    UnreadableAudioError,
    UnsupportedChannelsError,
)
from ptssnn.inference import EmotionRecognizer, Prediction
from speechlike import voiced


@pytest.fixture(scope="module")
def recognizer(tiny_model_dir: Path) -> EmotionRecognizer:
    torch.set_num_threads(1)
    return EmotionRecognizer.load(tiny_model_dir)


def test_load_reads_card_and_backbone(recognizer: EmotionRecognizer) -> None:
    assert recognizer.labels == ("angry", "neutral", "sad")
    assert recognizer.backbone.name == "fbank"
    assert recognizer.sample_rate == 16000
    assert not recognizer.model.training


def test_predict_returns_probabilities_and_timings(recognizer: EmotionRecognizer) -> None:
    result = recognizer.predict(voiced(2.0), 16000, source="clip")
    assert isinstance(result, Prediction)
    assert set(result.probabilities) == set(recognizer.labels)
    assert sum(result.probabilities.values()) == pytest.approx(1.0, abs=1e-5)
    assert result.label == max(result.probabilities, key=result.probabilities.get)
    assert result.duration_s == pytest.approx(2.0)
    assert len(result.segments) == 1
    assert result.timings.backbone_ms > 0 and result.timings.head_ms > 0
    assert result.timings.total_ms >= result.timings.backbone_ms + result.timings.head_ms
    record = json.loads(json.dumps(result.to_dict()))
    assert record["source"] == "clip" and record["label"] == result.label


def test_predict_matches_the_head_on_backbone_features(recognizer: EmotionRecognizer) -> None:
    wave = voiced(1.5, seed=3)
    # Layer 0, rounded to float16 as the feature cache stores it (the pipeline's dtype policy).
    features = recognizer.backbone(torch.from_numpy(wave))[0].half().float()  # [T, D]
    with torch.inference_mode():
        logits = recognizer.model(features[None], torch.ones(1, features.shape[0], dtype=bool))
    expected = torch.softmax(logits, -1)[0]
    got = recognizer.predict(wave, 16000).probabilities
    assert list(got.values()) == pytest.approx(expected.tolist(), abs=1e-6)


def test_predict_file_equals_predict_on_decoded_audio(
    recognizer: EmotionRecognizer, tmp_path: Path
) -> None:
    wave = voiced(1.2, seed=5)
    path = tmp_path / "clip.wav"
    sf.write(path, wave, 16000, subtype="FLOAT")
    from_file = recognizer.predict_file(path)
    from_wave = recognizer.predict(wave, 16000)
    assert from_file.source == str(path)
    assert from_file.probabilities == pytest.approx(from_wave.probabilities, abs=1e-6)


def test_other_rates_and_channels_are_resampled_and_downmixed(
    recognizer: EmotionRecognizer,
) -> None:
    import soxr

    wave16 = voiced(2.0, seed=7)
    wave48 = soxr.resample(wave16, 16000, 48000, quality="VHQ").astype(np.float32)
    stereo = np.stack([wave48, wave48], axis=1)
    a = recognizer.predict(wave16, 16000)
    b = recognizer.predict(stereo, 48000)
    assert b.duration_s == pytest.approx(2.0, abs=1e-3)
    # Two resamplings away from the original: close, not identical.
    assert list(b.probabilities.values()) == pytest.approx(list(a.probabilities.values()), abs=0.05)


def test_long_recording_is_segmented_with_an_overall_label(tiny_model_dir: Path) -> None:
    recognizer = EmotionRecognizer.load(tiny_model_dir, window_s=2.0, hop_s=1.0)
    wave = np.concatenate([voiced(3.0, seed=1, f0=110), voiced(3.0, seed=2, f0=260)])
    result = recognizer.predict(wave, 16000)
    assert len(result.segments) == 5
    assert result.segments[0].start_s == 0.0 and result.segments[-1].end_s == pytest.approx(6.0)
    # The overall probabilities are the duration-weighted (here: plain) mean of the windows'.
    mean = {k: np.mean([s.probabilities[k] for s in result.segments]) for k in recognizer.labels}
    assert result.probabilities == pytest.approx(mean, abs=1e-6)
    # Each window is analysed exactly as a standalone clip of that audio.
    third = result.segments[2]
    alone = recognizer.predict(wave[int(third.start_s * 16000) : int(third.end_s * 16000)], 16000)
    assert third.probabilities == pytest.approx(alone.probabilities, abs=1e-5)


@pytest.mark.parametrize(
    ("wave", "error"),
    [
        (np.zeros(0, np.float32), EmptyAudioError),
        (np.full(16000, np.nan, np.float32), NonFiniteAudioError),
        (np.zeros(1000, np.float32), TooShortAudioError),
        (np.zeros((16000, 9), np.float32), UnsupportedChannelsError),
        (np.zeros((2, 3, 16000), np.float32), UnsupportedChannelsError),
    ],
)
def test_bad_waveforms_raise_typed_errors(
    recognizer: EmotionRecognizer, wave: np.ndarray, error: type
) -> None:
    with pytest.raises(error):
        recognizer.predict(wave, 16000)


def test_too_long_and_unreadable_files(tiny_model_dir: Path, tmp_path: Path) -> None:
    recognizer = EmotionRecognizer.load(tiny_model_dir, max_seconds=1.0)
    with pytest.raises(TooLongAudioError):
        recognizer.predict(voiced(1.5), 16000)
    path = tmp_path / "long.wav"
    sf.write(path, voiced(1.5), 16000)
    with pytest.raises(TooLongAudioError):
        recognizer.predict_file(path)
    junk = tmp_path / "junk.wav"
    junk.write_bytes(b"RIFF\x00\x00not really audio")
    with pytest.raises(UnreadableAudioError):
        recognizer.predict_file(junk)


def test_model_dir_without_card_or_with_other_backbone_is_refused(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    from ptssnn.models import load_pretrained, save_pretrained

    model, metadata = load_pretrained(tiny_model_dir)
    bare = tmp_path / "bare"
    save_pretrained(model, bare, {})
    with pytest.raises(CheckpointError, match="ptssnn train"):
        EmotionRecognizer.load(bare)
    with pytest.raises(CheckpointError, match="no such model directory"):
        EmotionRecognizer.load(tmp_path / "missing")
    changed = json.loads(json.dumps(metadata))
    changed["recognizer"]["backbone"]["identity"]["implementation"] = -1
    other = tmp_path / "other"
    save_pretrained(model, other, changed)
    with pytest.raises(CheckpointError, match="same backbone"):
        EmotionRecognizer.load(other)
    assert EmotionRecognizer.load(other, check_backbone=False).labels == ("angry", "neutral", "sad")
