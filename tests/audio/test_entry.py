"""The one audio entry: files, arrays and streams get the same rules (issue 10 and 14)."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from ptssnn.audio import (
    MAX_SAMPLE_RATE,
    MIN_SAMPLE_RATE,
    condition_waveform,
    load_audio,
    probe_audio,
)
from ptssnn.errors import (
    SilentAudioError,
    TooLargeAudioError,
    TooLongAudioError,
    UnreadableAudioError,
    UnsupportedChannelsError,
    UnsupportedSampleRateError,
)
from ptssnn.inference import EmotionRecognizer
from speechlike import voiced


@pytest.fixture(scope="module")
def recognizer(tiny_model_dir: Path) -> EmotionRecognizer:
    torch.set_num_threads(1)
    return EmotionRecognizer.load(tiny_model_dir)


# --- the three disagreements of issue 10 ------------------------------------------------------


def test_hot_float_wav_gives_the_same_probabilities_as_array_and_file(
    recognizer: EmotionRecognizer, tmp_path: Path
) -> None:
    wave = voiced(1.5, seed=4)
    hot = (wave * (2.4 / np.abs(wave).max())).astype(np.float32)
    path = tmp_path / "hot.wav"
    sf.write(path, hot, 16000, subtype="FLOAT")
    from_file = recognizer.predict_file(path).probabilities
    from_array = recognizer.predict(hot, 16000).probabilities
    assert from_array == pytest.approx(from_file, abs=1e-6)
    # The backbone hears the same samples both ways: the signal scaled to peak 1 (the array
    # path used to pass it on unscaled; the fbank test backbone hides that in the
    # probabilities, whisper's log-Mel clamp does not).
    heard = recognizer.prepare_waveform(hot, 16000)
    np.testing.assert_array_equal(heard, load_audio(path, max_seconds=None))
    assert np.abs(heard).max() == pytest.approx(1.0)


def test_a_hot_stream_is_scaled_down_like_the_file(recognizer: EmotionRecognizer) -> None:
    wave = voiced(1.5, seed=4)
    hot = (wave * (2.4 / np.abs(wave).max())).astype(np.float32)
    streamed = recognizer.stream().run(hot, 16000)[-1].probabilities
    scaled = recognizer.stream().run(hot / 2.4, 16000)[-1].probabilities
    assert streamed == pytest.approx(scaled, abs=1e-5)
    # Block by block: a louder block lowers the gain for itself and what follows.
    session = recognizer.stream()
    session.push(wave * 0.5, 16000)
    session.push(hot, 16000)
    assert session._gain == pytest.approx(1 / 2.4)


def test_minus_120_dbfs_is_silent_as_file_as_array_and_through_predict(
    recognizer: EmotionRecognizer, tmp_path: Path
) -> None:
    wave = voiced(1.0, seed=2)
    quiet = (wave * (1e-6 / np.abs(wave).max())).astype(np.float32)  # peak -120 dBFS
    path = tmp_path / "quiet.wav"
    sf.write(path, quiet, 16000, subtype="FLOAT")
    with pytest.raises(SilentAudioError):
        recognizer.predict_file(path)
    with pytest.raises(SilentAudioError):
        recognizer.predict(quiet, 16000)
    with pytest.raises(SilentAudioError):
        condition_waveform(quiet, 16000)


def test_nine_channels_are_refused_by_stream_predict_and_file(
    recognizer: EmotionRecognizer, tmp_path: Path
) -> None:
    nine = np.tile(voiced(1.0)[:, None], (1, 9))
    with pytest.raises(UnsupportedChannelsError, match="9 channels"):
        recognizer.stream().push(nine, 16000)
    with pytest.raises(UnsupportedChannelsError, match="9 channels"):
        recognizer.predict(nine, 16000)
    path = tmp_path / "nine.wav"
    sf.write(path, nine, 16000)
    with pytest.raises(UnsupportedChannelsError, match="9 channels"):
        recognizer.predict_file(path)
    # Eight channels are accepted everywhere, and a stream hears the offline down-mix.
    eight = np.stack([voiced(1.0, seed=c) for c in range(8)], axis=1)
    mono = condition_waveform(eight, 16000)
    assert recognizer.predict(eight, 16000).probabilities == pytest.approx(
        recognizer.predict(mono, 16000).probabilities, abs=1e-6
    )
    streamed = recognizer.stream().run(eight, 16000)[-1].probabilities
    assert streamed == pytest.approx(recognizer.stream().run(mono)[-1].probabilities, abs=1e-6)


# --- sample rate, length, dtype ----------------------------------------------------------------


@pytest.mark.parametrize("rate", [1, 8, MIN_SAMPLE_RATE - 1, MAX_SAMPLE_RATE + 1, 655350])
def test_absurd_sample_rates_are_refused_everywhere(
    recognizer: EmotionRecognizer, tmp_path: Path, rate: int
) -> None:
    samples = np.full(max(2, rate // 2), 0.1, np.float32)
    with pytest.raises(UnsupportedSampleRateError, match=f"{rate} Hz"):
        recognizer.predict(samples, rate)
    with pytest.raises(UnsupportedSampleRateError):
        recognizer.stream().push(samples, rate)
    path = tmp_path / "odd.wav"
    sf.write(path, samples, rate, format="WAV")
    with pytest.raises(UnsupportedSampleRateError):
        load_audio(path)


def test_two_samples_at_one_hz_are_refused_not_labelled(recognizer: EmotionRecognizer) -> None:
    with pytest.raises(UnsupportedSampleRateError, match="1 Hz"):
        recognizer.predict(np.array([0.5, -0.5], np.float32), 1)


@pytest.mark.parametrize("rate", [MIN_SAMPLE_RATE, MAX_SAMPLE_RATE])
def test_rates_at_the_bounds_are_accepted(rate: int) -> None:
    t = np.arange(rate // 2) / rate
    out = condition_waveform((0.3 * np.sin(2 * np.pi * 300 * t)).astype(np.float32), rate)
    assert out.shape == (8000,) and out.dtype == np.float32


@pytest.mark.parametrize("rate", [0, -16000, 16000.5, True])
def test_non_positive_or_fractional_rates_are_refused(rate: object) -> None:
    with pytest.raises(UnsupportedSampleRateError):
        condition_waveform(np.ones(16000, np.float32) * 0.1, rate)  # type: ignore[arg-type]


def test_int16_array_equals_its_pcm16_wav(tmp_path: Path) -> None:
    pcm = (voiced(1.0, seed=9) * 20000).astype(np.int16)
    path = tmp_path / "pcm.wav"
    sf.write(path, pcm, 16000, subtype="PCM_16")
    np.testing.assert_array_equal(condition_waveform(pcm, 16000), load_audio(path))


def test_crop_is_the_same_for_an_array_and_its_file(tmp_path: Path) -> None:
    wave = np.tile(voiced(1.0, rate=44100, seed=3), 3)
    path = tmp_path / "long.wav"
    sf.write(path, wave, 44100, subtype="FLOAT")
    from_file = load_audio(path, max_seconds=1.5, long_policy="crop")
    from_array = condition_waveform(wave, 44100, max_seconds=1.5, long_policy="crop")
    np.testing.assert_array_equal(from_file, from_array)
    assert from_file.shape == (24000,)
    with pytest.raises(TooLongAudioError) as caught:
        condition_waveform(wave, 44100, max_seconds=1.5, long_policy="error")
    assert "long_policy" not in str(caught.value)  # HTTP clients cannot set it


def test_conditioning_never_changes_the_callers_array() -> None:
    hot = voiced(0.5) * 3.0
    before = hot.copy()
    condition_waveform(hot, 16000)
    np.testing.assert_array_equal(hot, before)


# --- the decoded-size budget (decompression bombs) ---------------------------------------------


def flac_bomb(path: Path, rate: int, seconds: int, channels: int = 8) -> Path:
    """A constant signal: FLAC compresses it to almost nothing."""
    block = np.full((rate, channels), 0.25, np.float32)
    with sf.SoundFile(path, "w", rate, channels, format="FLAC", subtype="PCM_16") as out:
        for _ in range(seconds):
            out.write(block)
    return path


def test_header_budget_refuses_a_bomb_without_decoding(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = flac_bomb(tmp_path / "bomb.flac", MAX_SAMPLE_RATE, 4)
    assert path.stat().st_size < 100_000  # 4 s x 8 ch x 384 kHz = 49 MB of float32
    import ptssnn.audio.loading as loading

    def no_decoding(*args: object, **kwargs: object) -> None:
        raise AssertionError("the samples were decoded")

    monkeypatch.setattr(loading.sf, "read", no_decoding)
    with pytest.raises(TooLargeAudioError, match=r"49 MB \(8 channels x 384000 Hz x 4.0 s\)"):
        load_audio(path, max_seconds=None, max_decoded_mb=20)
    # A cropped read is bounded by what is kept, not by the file's length.
    with pytest.raises(TooLargeAudioError, match="12 MB"):
        load_audio(path, max_seconds=1.0, long_policy="crop", max_decoded_mb=10)


def test_header_budget_lets_ordinary_files_through(tmp_path: Path) -> None:
    path = tmp_path / "stereo.wav"
    sf.write(path, np.stack([voiced(1.0, rate=48000)] * 2, axis=1), 48000)
    assert load_audio(path, max_decoded_mb=1.0).shape == (16000,)  # 0.38 MB decoded


# --- permissions --------------------------------------------------------------------------------


def test_permission_problems_are_reported_as_such(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "locked.wav"
    sf.write(path, voiced(0.5), 16000)
    real_open = os.open

    def denied(file: object, flags: int, *args: object, **kwargs: object) -> int:
        if Path(str(file)) == path:
            raise PermissionError(errno.EACCES, "Permission denied", str(file))
        return real_open(file, flags, *args, **kwargs)

    # Simulated: the tests may run as root, whom chmod does not stop.
    monkeypatch.setattr(os, "open", denied)
    with pytest.raises(UnreadableAudioError, match="permission denied"):
        probe_audio(path)
    with pytest.raises(UnreadableAudioError, match="permission denied"):
        load_audio(path)


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their mode")
def test_unreadable_file_mode_is_reported_as_permission(tmp_path: Path) -> None:
    path = tmp_path / "locked.wav"
    sf.write(path, voiced(0.5), 16000)
    path.chmod(0)
    with pytest.raises(UnreadableAudioError, match="permission denied"):
        load_audio(path)
