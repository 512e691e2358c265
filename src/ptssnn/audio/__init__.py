"""Audio decoding: any libsndfile format in, 16 kHz mono float32 in [-1, 1] out.

Bad files raise :class:`ptssnn.errors.AudioError` subclasses that name the file and the reason.
"""

from __future__ import annotations

from ptssnn.audio.loading import (
    MAX_CHANNELS,
    RESAMPLE_QUALITY,
    SAMPLE_RATE,
    SILENCE_PEAK,
    AudioInfo,
    check_header,
    load_audio,
    probe_audio,
    split_long,
)

__all__ = [
    "MAX_CHANNELS",
    "RESAMPLE_QUALITY",
    "SAMPLE_RATE",
    "SILENCE_PEAK",
    "AudioInfo",
    "check_header",
    "load_audio",
    "probe_audio",
    "split_long",
]
