"""Audio in: any libsndfile file, array, upload or stream -> 16 kHz mono float32 in [-1, 1].

Everything goes through one entry, :func:`condition_waveform` (files via :func:`load_audio`,
which first checks the header). Bad audio raises :class:`ptssnn.errors.AudioError` subclasses
that name the source and the reason. :func:`speed_perturb` makes the training copies of
``--speed-perturb``.
"""

from __future__ import annotations

from ptssnn.audio.conditioning import (
    MAX_CHANNELS,
    MAX_SAMPLE_RATE,
    MIN_SAMPLE_RATE,
    RESAMPLE_QUALITY,
    SAMPLE_RATE,
    SILENCE_PEAK,
    check_sample_rate,
    condition_waveform,
    length_policy,
)
from ptssnn.audio.loading import (
    AudioInfo,
    check_header,
    check_samples,
    load_audio,
    probe_audio,
)
from ptssnn.audio.perturbation import speed_perturb

__all__ = [
    "MAX_CHANNELS",
    "MAX_SAMPLE_RATE",
    "MIN_SAMPLE_RATE",
    "RESAMPLE_QUALITY",
    "SAMPLE_RATE",
    "SILENCE_PEAK",
    "AudioInfo",
    "check_header",
    "check_sample_rate",
    "check_samples",
    "condition_waveform",
    "length_policy",
    "load_audio",
    "probe_audio",
    "speed_perturb",
]
