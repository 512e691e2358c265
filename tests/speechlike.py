"""Speech-like test signals shared by the inference, service and CLI tests."""

from __future__ import annotations

import numpy as np


def voiced(seconds: float, rate: int = 16000, seed: int = 0, f0: float = 140.0) -> np.ndarray:
    """A speech-like test signal: a harmonic tone with a moving pitch, an envelope and noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    pitch = f0 * (1 + 0.2 * np.sin(2 * np.pi * 1.3 * t + seed))
    phase = 2 * np.pi * np.cumsum(pitch) / rate
    wave = sum(np.sin(k * phase) / k for k in range(1, 8))
    wave = wave * (0.5 + 0.5 * np.sin(2 * np.pi * 3.0 * t) ** 2)
    wave = wave + 0.05 * rng.standard_normal(t.size)
    return (0.3 * wave / np.abs(wave).max()).astype(np.float32)
