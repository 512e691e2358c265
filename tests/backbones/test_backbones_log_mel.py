"""The log-Mel front end against independent computations (direct DFT, transformers)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ptssnn.backbones.log_mel import (
    MelPowerSpectrogram,
    WhisperLogMel,
    hz_to_mel,
    mel_filters,
    mel_to_hz,
)


def _speechlike(seconds: float, seed: int = 0) -> np.ndarray:
    """Harmonics with a moving pitch plus noise: energy across the whole Mel range."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * 16000)) / 16000
    pitch = 140 + 40 * np.sin(2 * np.pi * 0.7 * t)
    phase = 2 * np.pi * np.cumsum(pitch) / 16000
    voice = sum(np.sin(k * phase) / k for k in range(1, 20))
    return (0.2 * voice + 0.02 * rng.standard_normal(t.size)).astype(np.float32)


def _reference_triangles(n_mels: int, n_fft: int, sample_rate: int) -> np.ndarray:
    """Slaney filters built a second way: explicit loops over bands and bins, from the
    published constants (linear below 1 kHz at 200/3 Hz per Mel, log step ln(6.4)/27 above)."""

    def to_mel(f: float) -> float:
        return f / (200 / 3) if f < 1000 else 15 + np.log(f / 1000) / (np.log(6.4) / 27)

    def to_hz(m: float) -> float:
        return m * (200 / 3) if m < 15 else 1000 * np.exp((m - 15) * np.log(6.4) / 27)

    top = to_mel(sample_rate / 2)
    edges = [to_hz(top * i / (n_mels + 1)) for i in range(n_mels + 2)]
    weights = np.zeros((n_mels, n_fft // 2 + 1))
    for band in range(n_mels):
        low, centre, high = edges[band], edges[band + 1], edges[band + 2]
        for bin_index in range(n_fft // 2 + 1):
            f = bin_index * sample_rate / n_fft
            if low < f < high:
                rise = (f - low) / (centre - low)
                fall = (high - f) / (high - centre)
                weights[band, bin_index] = min(rise, fall) * 2 / (high - low)
    return weights


def test_mel_scale_round_trip_and_knee() -> None:
    freqs = np.array([0.0, 200.0, 999.0, 1000.0, 4000.0, 8000.0])
    np.testing.assert_allclose(mel_to_hz(hz_to_mel(freqs)), freqs, rtol=1e-10, atol=1e-9)
    assert hz_to_mel(1000.0) == pytest.approx(15.0)


def test_mel_filters_match_an_explicit_construction() -> None:
    ours = mel_filters(16000, 400, 80)
    assert ours.shape == (80, 201)
    np.testing.assert_allclose(ours, _reference_triangles(80, 400, 16000), rtol=1e-5, atol=1e-8)


def test_mel_filters_match_transformers() -> None:
    audio_utils = pytest.importorskip("transformers.audio_utils")
    theirs = audio_utils.mel_filter_bank(
        num_frequency_bins=201,
        num_mel_filters=80,
        min_frequency=0.0,
        max_frequency=8000.0,
        sampling_rate=16000,
        norm="slaney",
        mel_scale="slaney",
    )
    np.testing.assert_allclose(mel_filters(16000, 400, 80), theirs.T, rtol=1e-5, atol=1e-8)


def _direct_dft_log_mel(audio: np.ndarray, n_mels: int = 80) -> np.ndarray:
    """Whisper's log-Mel by a direct DFT (no FFT), in float64."""
    n_fft, hop = 400, 160
    padded = np.pad(audio.astype(np.float64), n_fft // 2, mode="reflect")
    num_frames = 1 + (padded.size - n_fft) // hop
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n_fft) / n_fft)  # periodic Hann
    frames = np.stack([padded[i * hop : i * hop + n_fft] * window for i in range(num_frames)])
    k = np.arange(n_fft // 2 + 1)[:, None]
    n = np.arange(n_fft)[None, :]
    basis = np.exp(-2j * np.pi * k * n / n_fft)
    power = np.abs(frames @ basis.T) ** 2  # [frames, bins]
    mel = _reference_triangles(n_mels, n_fft, 16000) @ power[:-1].T  # Whisper drops the last frame
    log_spec = np.log10(np.maximum(mel, 1e-10))
    log_spec = np.maximum(log_spec, log_spec.max() - 8.0)
    return (log_spec + 4.0) / 4.0


def test_whisper_log_mel_matches_direct_dft() -> None:
    audio = _speechlike(1.3)
    ours = WhisperLogMel()(torch.from_numpy(audio)).numpy()
    reference = _direct_dft_log_mel(audio)
    assert ours.shape == reference.shape == (80, audio.size // 160)
    np.testing.assert_allclose(ours, reference, atol=2e-4)


def test_whisper_log_mel_matches_transformers_feature_extractor() -> None:
    transformers = pytest.importorskip("transformers")
    extractor = transformers.WhisperFeatureExtractor(feature_size=80)
    audio = _speechlike(2.0, seed=3)
    # Padded to 30 s as Whisper does; the extractor's own numpy STFT is the reference.
    theirs = extractor(audio, sampling_rate=16000, return_tensors="np").input_features[0]
    padded = np.zeros(480000, dtype=np.float32)
    padded[: audio.size] = audio
    ours = WhisperLogMel()(torch.from_numpy(padded)).numpy()
    assert theirs.shape == ours.shape == (80, 3000)
    np.testing.assert_allclose(ours, theirs, atol=2e-4)


def test_power_spectrogram_frames_and_input_checks() -> None:
    power = MelPowerSpectrogram()
    assert power(torch.zeros(16000) + 0.1).shape == (80, 100)
    assert power.num_frames(16159) == 100
    with pytest.raises(ValueError, match="1-D"):
        power(torch.zeros(2, 800))
    with pytest.raises(ValueError, match="too short"):
        power(torch.zeros(100))
