"""ptssnn.audio: decoding, down-mix, resampling, and one test per kind of bad file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import soxr

from ptssnn.audio import SILENCE_PEAK, load_audio, probe_audio
from ptssnn.errors import (
    AudioError,
    EmptyAudioError,
    NonFiniteAudioError,
    SilentAudioError,
    TooLongAudioError,
    TooShortAudioError,
    UnreadableAudioError,
    UnsupportedChannelsError,
)


def tone(seconds: float, sample_rate: int, channels: int = 1, amplitude: float = 0.5):
    """``[frames, channels]`` float32: a 440 Hz tone, channel c scaled by 1/(c+1)."""
    t = np.arange(round(seconds * sample_rate)) / sample_rate
    wave = amplitude * np.sin(2 * np.pi * 440.0 * t)
    return np.stack([wave / (c + 1) for c in range(channels)], axis=1).astype(np.float32)


def write(path: Path, data: np.ndarray, sample_rate: int, **kwargs) -> Path:
    sf.write(path, data, sample_rate, **kwargs)
    return path


# --- good files -------------------------------------------------------------------------------


def test_mono_16k_wav_is_returned_as_float32_1d(tmp_path):
    data = tone(1.0, 16000)
    path = write(tmp_path / "a.wav", data, 16000, subtype="PCM_16")
    wave = load_audio(path)
    assert wave.dtype == np.float32 and wave.ndim == 1 and wave.shape == (16000,)
    np.testing.assert_allclose(wave, data[:, 0], atol=1 / 32768)
    assert np.abs(wave).max() <= 1.0


def test_stereo_48k_is_downmixed_then_resampled(tmp_path):
    data = tone(1.0, 48000, channels=2)
    path = write(tmp_path / "stereo.wav", data, 48000, subtype="FLOAT")
    wave = load_audio(path)
    assert wave.shape == (16000,)
    expected = soxr.resample(data.mean(axis=1), 48000, 16000, quality="VHQ")
    np.testing.assert_allclose(wave, expected, atol=1e-6)
    # The mean of a full-scale and a half-scale tone has peak 0.75 * 0.5.
    assert abs(np.abs(wave[1000:-1000]).max() - 0.375) < 0.01


@pytest.mark.parametrize("channels", [2, 6, 8])
def test_up_to_eight_channels_are_accepted(tmp_path, channels):
    path = write(tmp_path / "multi.wav", tone(0.5, 16000, channels), 16000)
    assert load_audio(path).shape == (8000,)


def test_format_comes_from_content_not_extension(tmp_path):
    data = tone(0.5, 22050)
    path = write(tmp_path / "really_flac.wav", data, 22050, format="FLAC", subtype="PCM_16")
    assert probe_audio(path).format == "FLAC"
    assert load_audio(path).shape == (8000,)


@pytest.mark.skipif("OGG" not in sf.available_formats(), reason="libsndfile built without OGG")
def test_ogg_vorbis_decodes(tmp_path):
    path = write(tmp_path / "a.ogg", tone(0.5, 16000), 16000, format="OGG", subtype="VORBIS")
    wave = load_audio(path)
    assert wave.shape == (8000,) and np.abs(wave).max() > 0.3


@pytest.mark.skipif("MP3" not in sf.available_formats(), reason="libsndfile built without MP3")
def test_mp3_decodes_full_length(tmp_path):
    data = tone(1.0, 44100)
    path = write(tmp_path / "a.mp3", data, 44100, format="MP3", subtype="MPEG_LAYER_III")
    wave = load_audio(path)
    assert wave.shape == (16000,) and np.abs(wave).max() > 0.3


def test_hot_float_file_is_scaled_to_peak_one_not_clipped(tmp_path):
    data = tone(0.5, 16000, amplitude=2.0)
    wave = load_audio(write(tmp_path / "hot.wav", data, 16000, subtype="FLOAT"))
    assert np.isclose(np.abs(wave).max(), 1.0)
    np.testing.assert_allclose(wave, data[:, 0] / 2.0, atol=1e-6)  # shape kept, not clipped


def test_probe_reads_header_fields(tmp_path):
    path = write(tmp_path / "p.wav", tone(1.5, 44100, channels=2), 44100, subtype="PCM_24")
    info = probe_audio(path)
    assert (info.sample_rate, info.channels, info.frames) == (44100, 2, 66150)
    assert info.duration == pytest.approx(1.5)
    assert (info.format, info.subtype) == ("WAV", "PCM_24")


# --- bad files: one test per case -------------------------------------------------------------


def test_truncated_wav_is_unreadable(tmp_path):
    full = write(tmp_path / "full.wav", tone(1.0, 16000), 16000, subtype="PCM_16")
    cut = tmp_path / "cut.wav"
    cut.write_bytes(full.read_bytes()[: 44 + 16000])  # header + half of the samples
    with pytest.raises(UnreadableAudioError, match="truncated"):
        load_audio(cut)
    with pytest.raises(UnreadableAudioError, match="truncated"):
        probe_audio(cut)  # scans catch it from the header alone


def test_truncated_flac_is_unreadable(tmp_path):
    full = write(tmp_path / "full.flac", 0.3 * np.random.default_rng(0).standard_normal(16000),
                 16000)  # fmt: skip
    cut = tmp_path / "cut.flac"
    cut.write_bytes(full.read_bytes()[: full.stat().st_size // 2])
    with pytest.raises(UnreadableAudioError, match="truncated or corrupt"):
        load_audio(cut)


def test_header_only_wav_is_unreadable(tmp_path):
    full = write(tmp_path / "full.wav", tone(0.5, 16000), 16000)
    stub = tmp_path / "stub.wav"
    stub.write_bytes(full.read_bytes()[:30])
    with pytest.raises(UnreadableAudioError):
        load_audio(stub)


def test_text_file_is_unreadable(tmp_path):
    path = tmp_path / "notes.wav"
    path.write_text("this is not audio")
    with pytest.raises(UnreadableAudioError, match="cannot be decoded"):
        load_audio(path)


def test_missing_file_is_unreadable(tmp_path):
    with pytest.raises(UnreadableAudioError, match="does not exist"):
        load_audio(tmp_path / "nowhere.wav")


def test_zero_length_wav_is_empty(tmp_path):
    path = write(tmp_path / "empty.wav", np.zeros((0, 1), np.float32), 16000)
    with pytest.raises(EmptyAudioError):
        load_audio(path)


def test_zero_byte_file_is_unreadable(tmp_path):
    path = tmp_path / "zero.wav"
    path.write_bytes(b"")
    with pytest.raises(UnreadableAudioError):
        load_audio(path)


def test_digital_silence_is_silent(tmp_path):
    path = write(tmp_path / "silence.wav", np.zeros((16000, 1), np.float32), 16000)
    with pytest.raises(SilentAudioError):
        load_audio(path)


def test_near_silence_below_threshold_is_silent_above_is_not(tmp_path):
    quiet = tone(0.5, 16000, amplitude=SILENCE_PEAK / 2)
    with pytest.raises(SilentAudioError):
        load_audio(write(tmp_path / "quiet.wav", quiet, 16000, subtype="FLOAT"))
    audible = tone(0.5, 16000, amplitude=SILENCE_PEAK * 4)
    assert load_audio(write(tmp_path / "audible.wav", audible, 16000, subtype="FLOAT")).size


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nan_or_inf_float_wav_is_rejected(tmp_path, bad):
    data = tone(0.5, 16000)
    data[100, 0] = bad
    path = write(tmp_path / "bad.wav", data, 16000, subtype="FLOAT")
    with pytest.raises(NonFiniteAudioError):
        load_audio(path)


def test_shorter_than_minimum_is_rejected(tmp_path):
    path = write(tmp_path / "short.wav", tone(0.1, 16000), 16000)
    with pytest.raises(TooShortAudioError, match=r"0\.100 s"):
        load_audio(path)
    assert load_audio(path, min_seconds=0.05).shape == (1600,)


def test_nine_channels_are_unsupported(tmp_path):
    path = write(tmp_path / "nine.wav", tone(0.5, 16000, channels=9), 16000)
    with pytest.raises(UnsupportedChannelsError, match="9 channels"):
        load_audio(path)


def test_long_file_policies(tmp_path):
    path = write(tmp_path / "long.wav", tone(2.5, 48000), 48000)
    cropped = load_audio(path, max_seconds=1.0)  # default policy: crop
    assert cropped.shape == (16000,)
    whole = load_audio(path, max_seconds=None)
    assert whole.shape == (40000,)
    np.testing.assert_allclose(cropped[:15000], whole[:15000], atol=1e-3)  # same start
    with pytest.raises(TooLongAudioError, match="maximum 1 s"):
        load_audio(path, max_seconds=1.0, long_policy="error")
    assert load_audio(path, max_seconds=None).shape == (40000,)
    with pytest.raises(ValueError, match="long_policy"):
        load_audio(path, long_policy="truncate")  # type: ignore[arg-type]


def test_errors_name_the_file_and_reason(tmp_path):
    path = write(tmp_path / "silence.wav", np.zeros((8000, 1), np.float32), 16000)
    with pytest.raises(AudioError) as caught:
        load_audio(path)
    assert caught.value.path == str(path)
    assert str(path) in str(caught.value) and "silence" in str(caught.value)


# --- real originals against their FLAC copies -------------------------------------------------

# Measured on the shared samples: identical lengths, max |error| 1.53e-5 (half a 16-bit step,
# the FLAC copies' quantisation), SNR 66.5-82.4 dB. Bounds leave margin above that.
MAX_ABS_ERROR = 1 / 32768  # one 16-bit step
MIN_SNR_DB = 60.0


def test_original_formats_match_their_flac_copies(shared_data):
    originals = sorted((shared_data / "original-format-samples").rglob("*.wav"))
    if not originals:
        pytest.skip("no original-format samples in the shared data")
    formats = set()
    for original in originals:
        relative = original.relative_to(shared_data / "original-format-samples")
        copy = (shared_data / relative).with_suffix(".flac")
        info = probe_audio(original)
        formats.add((info.sample_rate, info.channels))
        ours, reference = load_audio(original), load_audio(copy)
        assert ours.shape == reference.shape, relative
        error = ours - reference
        snr = 10 * np.log10(np.sum(reference**2) / np.sum(error**2))
        assert np.abs(error).max() <= MAX_ABS_ERROR, relative
        assert snr > MIN_SNR_DB, (relative, snr)
    # The samples exercise down-mixing and both resampling ratios.
    assert {(48000, 2), (48000, 1), (44100, 1)} <= formats
