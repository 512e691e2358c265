"""Log-Mel front ends: Slaney Mel filters, a power STFT and Whisper's log-Mel normalisation.

Written from the definitions (no librosa/torchaudio): a 400-point periodic Hann window, hop
160, centred frames with reflect padding, power spectrum, Slaney-normalised Mel filters on the
Slaney Mel scale. Whisper then takes ``log10`` clamped at 1e-10, floors at ``max - 8`` and maps
``(x + 4) / 4``.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import nn

# Slaney Mel scale: linear below 1 kHz (200/3 Hz per Mel), logarithmic above.
_F_SP = 200.0 / 3.0
_MIN_LOG_HZ = 1000.0
_MIN_LOG_MEL = _MIN_LOG_HZ / _F_SP
_LOG_STEP = math.log(6.4) / 27.0


def hz_to_mel(hz: np.ndarray | float) -> np.ndarray:
    """Frequencies in Hz → Slaney Mel (the scale of librosa's default, ``htk=False``)."""
    hz = np.asarray(hz, dtype=np.float64)
    linear = hz / _F_SP
    logarithmic = _MIN_LOG_MEL + np.log(np.maximum(hz, 1e-10) / _MIN_LOG_HZ) / _LOG_STEP
    return np.where(hz >= _MIN_LOG_HZ, logarithmic, linear)


def mel_to_hz(mel: np.ndarray | float) -> np.ndarray:
    """Slaney Mel → Hz (inverse of :func:`hz_to_mel`)."""
    mel = np.asarray(mel, dtype=np.float64)
    linear = mel * _F_SP
    logarithmic = _MIN_LOG_HZ * np.exp(_LOG_STEP * (mel - _MIN_LOG_MEL))
    return np.where(mel >= _MIN_LOG_MEL, logarithmic, linear)


def mel_filters(
    sample_rate: int = 16000,
    n_fft: int = 400,
    n_mels: int = 80,
    f_min: float = 0.0,
    f_max: float | None = None,
) -> np.ndarray:
    """Slaney-normalised triangular Mel filterbank (what Whisper's ``mel_filters.npz`` holds).

    Args:
        sample_rate: Audio sample rate in Hz.
        n_fft: FFT size; the filters cover ``n_fft // 2 + 1`` frequency bins.
        n_mels: Number of Mel bands.
        f_min: Lowest band edge in Hz.
        f_max: Highest band edge in Hz (default: Nyquist).

    Returns:
        ``[n_mels, n_fft // 2 + 1]`` float32 weights; each band has unit area in Hz⁻¹·2
        (Slaney normalisation: ``2 / (upper edge - lower edge)``).
    """
    f_max = sample_rate / 2.0 if f_max is None else f_max
    fft_freqs = np.linspace(0.0, sample_rate / 2.0, n_fft // 2 + 1)
    edges = mel_to_hz(np.linspace(hz_to_mel(f_min), hz_to_mel(f_max), n_mels + 2))
    widths = np.diff(edges)
    ramps = edges[:, None] - fft_freqs[None, :]
    lower = -ramps[:-2] / widths[:-1, None]
    upper = ramps[2:] / widths[1:, None]
    weights = np.maximum(0.0, np.minimum(lower, upper))
    weights *= (2.0 / (edges[2:] - edges[:-2]))[:, None]
    return weights.astype(np.float32)


@dataclass(frozen=True)
class MelSettings:
    """Everything that decides the front end's output (recorded in cache keys)."""

    sample_rate: int = 16000
    n_fft: int = 400
    hop_length: int = 160
    n_mels: int = 80
    f_min: float = 0.0
    f_max: float = 8000.0

    def to_dict(self) -> dict[str, float | int]:
        return asdict(self)


class MelPowerSpectrogram(nn.Module):
    """Mel-filtered power spectrogram with Whisper's framing.

    Centred frames (reflect padding of ``n_fft // 2``), periodic Hann window; the last STFT
    frame is dropped as Whisper does, so ``num_samples`` gives ``num_samples // hop`` frames.
    """

    def __init__(self, settings: MelSettings = MelSettings()) -> None:
        super().__init__()
        self.settings = settings
        self.register_buffer("window", torch.hann_window(settings.n_fft), persistent=False)
        filters = mel_filters(
            settings.sample_rate, settings.n_fft, settings.n_mels, settings.f_min, settings.f_max
        )
        self.register_buffer("filters", torch.from_numpy(filters), persistent=False)

    def num_frames(self, num_samples: int) -> int:
        """Number of spectrogram frames for ``num_samples`` samples."""
        return num_samples // self.settings.hop_length

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        """Args: audio ``[N]`` float. Returns: Mel power ``[n_mels, N // hop]`` float32."""
        if audio.dim() != 1:
            raise ValueError(f"expected 1-D audio, got shape {tuple(audio.shape)}")
        if audio.numel() <= self.settings.n_fft // 2:
            # Reflect padding needs more samples than the half window.
            raise ValueError(
                f"audio of {audio.numel()} samples is too short for a {self.settings.n_fft}-point "
                "STFT"
            )
        stft = torch.stft(
            audio.float(),
            self.settings.n_fft,
            self.settings.hop_length,
            window=self.window,
            center=True,
            pad_mode="reflect",
            return_complex=True,
        )
        # |X|² as re² + im²: no square root (abs) followed by a square.
        power = torch.view_as_real(stft[..., :-1]).square().sum(-1)
        return self.filters @ power


class WhisperLogMel(nn.Module):
    """Whisper's log-Mel spectrogram: ``log10``, dynamic-range floor at max − 8, ``(x + 4) / 4``."""

    def __init__(self, n_mels: int = 80) -> None:
        super().__init__()
        self.settings = MelSettings(n_mels=n_mels)
        self.power = MelPowerSpectrogram(self.settings)

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        """Args: audio ``[N]`` at 16 kHz. Returns: ``[n_mels, N // 160]`` float32."""
        log_spec = torch.clamp(self.power(audio), min=1e-10).log10()
        log_spec = torch.maximum(log_spec, log_spec.max() - 8.0)
        return (log_spec + 4.0) / 4.0
