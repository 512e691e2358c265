"""The one audio entry: :func:`condition_waveform` validates and conditions every waveform.

Files (:func:`ptssnn.audio.load_audio`), arrays (``EmotionRecognizer.predict``), HTTP uploads
(``ptssnn serve``, through the file loader) and streams (``StreamingSession.push``) all pass
their samples through this function, so one recording gets one treatment whatever way it
comes in. The policy, in the order the checks run:

1. **Sample rate** between :data:`MIN_SAMPLE_RATE` (4 kHz: below it speech is unintelligible)
   and :data:`MAX_SAMPLE_RATE` (384 kHz: the highest rate audio interfaces record; above it a
   small file can declare gigabytes of samples) -> else :class:`UnsupportedSampleRateError`.
2. **Layout** ``[N]`` or ``[N, C]`` (soundfile's layout) with ``1 <= C <= max_channels`` ->
   else :class:`UnsupportedChannelsError`. Integer samples are scaled as libsndfile scales
   PCM (divided by ``2**(bits-1)``), so an ``int16`` array equals its 16-bit WAV.
3. **Length** (:func:`length_policy`, also applied to file headers before decoding): no
   samples -> :class:`EmptyAudioError`; shorter than ``min_seconds`` ->
   :class:`TooShortAudioError`; longer than ``max_seconds`` -> cropped to the first
   ``max_seconds`` (``"crop"``), kept whole (``"split"``) or :class:`TooLongAudioError`
   (``"error"``).
4. **Finite**: any NaN or infinite sample -> :class:`NonFiniteAudioError`.
5. **Down-mix**: the mean of the channels (keeps the level of one voice recorded in stereo).
6. **Silence**: a peak below :data:`SILENCE_PEAK` (-80 dBFS, under the dither of 16-bit audio)
   after the down-mix -> :class:`SilentAudioError` (streams skip this: a pause is not an
   error in a live stream).
7. **Resampling** to ``target_rate`` with soxr at :data:`RESAMPLE_QUALITY` (``"VHQ"``, the
   quality the shared FLAC copies were made with).
8. **Peak**: a signal whose peak exceeds 1 (float files recorded hot, resampler overshoot) is
   scaled down as a whole to peak 1, never clipped (clipping adds distortion).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import numpy as np

from ptssnn.errors import (
    EmptyAudioError,
    NonFiniteAudioError,
    SilentAudioError,
    TooLongAudioError,
    TooShortAudioError,
    UnsupportedChannelsError,
    UnsupportedSampleRateError,
)

SAMPLE_RATE = 16000
MAX_CHANNELS = 8
SILENCE_PEAK = 1e-4  # -80 dBFS
RESAMPLE_QUALITY = "VHQ"
MIN_SAMPLE_RATE = 4_000
MAX_SAMPLE_RATE = 384_000

LongPolicy = Literal["crop", "split", "error"]
LONG_POLICIES = ("crop", "split", "error")


def check_sample_rate(sample_rate: Any, source: str | Path) -> int:
    """Return ``sample_rate`` as an int, or raise if it is outside the supported range.

    Raises:
        UnsupportedSampleRateError: Not a whole number of Hz, or outside
            ``[MIN_SAMPLE_RATE, MAX_SAMPLE_RATE]``.
    """
    if isinstance(sample_rate, bool) or not isinstance(sample_rate, int | np.integer):
        raise UnsupportedSampleRateError(
            source, f"has sample rate {sample_rate!r}; pass a whole number of Hz"
        )
    if not MIN_SAMPLE_RATE <= sample_rate <= MAX_SAMPLE_RATE:
        raise UnsupportedSampleRateError(
            source,
            f"has a sample rate of {int(sample_rate)} Hz; supported rates are "
            f"{MIN_SAMPLE_RATE}-{MAX_SAMPLE_RATE} Hz",
        )
    return int(sample_rate)


def check_channels(channels: int, source: str | Path, max_channels: int = MAX_CHANNELS) -> None:
    """Raise :class:`UnsupportedChannelsError` unless ``1 <= channels <= max_channels``."""
    if not 1 <= channels <= max_channels:
        raise UnsupportedChannelsError(
            source,
            f"has {channels} channels; at most {max_channels} are supported "
            "(down-mix or extract the speech channel first)",
        )


def length_policy(
    frames: int,
    sample_rate: int,
    source: str | Path,
    *,
    min_seconds: float = 0.25,
    max_seconds: float | None = None,
    long_policy: LongPolicy = "error",
) -> int:
    """How many of ``frames`` to keep; the same rule for a file header and for an array.

    Returns:
        ``frames``, or ``round(max_seconds * sample_rate)`` when a long recording is cropped.

    Raises:
        EmptyAudioError: No frames.
        TooShortAudioError: Shorter than ``min_seconds``.
        TooLongAudioError: Longer than ``max_seconds`` under ``long_policy="error"``.
        ValueError: An unknown ``long_policy``.
    """
    if long_policy not in LONG_POLICIES:
        raise ValueError(f"long_policy must be one of {LONG_POLICIES}, not {long_policy!r}")
    if frames <= 0:
        raise EmptyAudioError(source, "has no samples (zero-length audio)")
    seconds = frames / sample_rate
    if seconds < min_seconds:
        raise TooShortAudioError(
            source, f"lasts {seconds:.3f} s, shorter than the minimum {min_seconds:g} s"
        )
    if max_seconds is not None and seconds > max_seconds:
        if long_policy == "error":
            # No option names here: the message reaches HTTP clients, who cannot set them.
            raise TooLongAudioError(
                source, f"lasts {seconds:.1f} s, longer than the maximum {max_seconds:g} s"
            )
        if long_policy == "crop":
            return min(frames, round(max_seconds * sample_rate))
    return frames


def as_frames(samples: Any, source: str | Path, max_channels: int = MAX_CHANNELS) -> np.ndarray:
    """``[N, C]`` float32 view of ``[N]`` / ``[N, C]`` samples (array, tensor or list).

    Raises:
        UnsupportedChannelsError: Not 1-D or 2-D, or more than ``max_channels`` channels.
        ValueError: Samples that are not real numbers.
    """
    if hasattr(samples, "detach"):  # a torch tensor, without importing torch
        samples = samples.detach().cpu().numpy()
    wave = np.asarray(samples)
    if wave.dtype.kind in "iu":
        info = np.iinfo(wave.dtype)
        # libsndfile's PCM scaling: x / 2**(bits-1), unsigned centred first.
        middle = (int(info.max) + 1) // 2 if wave.dtype.kind == "u" else 0
        wave = (wave.astype(np.float64) - middle) / float(int(info.max) + 1 - middle)
    elif wave.dtype.kind not in "fb":
        raise ValueError(f"{source}: samples of dtype {wave.dtype} are not real numbers")
    wave = wave.astype(np.float32, copy=False)
    if wave.ndim == 1:
        wave = wave[:, None]
    elif wave.ndim != 2:
        raise UnsupportedChannelsError(
            source, f"has shape {tuple(wave.shape)}; pass [samples] or [samples, channels]"
        )
    check_channels(wave.shape[1], source, max_channels)
    return wave


def condition_waveform(
    samples: Any,
    sample_rate: int,
    *,
    target_rate: int | None = SAMPLE_RATE,
    source: str | Path = "<waveform>",
    min_seconds: float = 0.25,
    max_seconds: float | None = None,
    long_policy: LongPolicy = "error",
    max_channels: int = MAX_CHANNELS,
    reject_silence: bool = True,
    normalise_peak: bool = True,
) -> np.ndarray:
    """Validate and condition one waveform (the policy is in the module docstring).

    Args:
        samples: ``[N]`` or ``[N, C]`` samples: float in [-1, 1] (a peak above 1 is scaled
            down) or integer PCM; numpy array, torch tensor or list.
        sample_rate: Rate of ``samples`` in Hz.
        target_rate: Output rate (``None``: keep ``sample_rate``; streams resample
            incrementally themselves).
        source: Name used in error messages (a path, ``"<waveform>"``, ``"<stream>"``).
        min_seconds: Shortest accepted duration (0 for stream blocks).
        max_seconds: Longest accepted duration (``None``: no limit); what happens to longer
            audio depends on ``long_policy``.
        long_policy: ``"crop"``, ``"split"`` (kept whole) or ``"error"``.
        max_channels: Most channels accepted.
        reject_silence: Raise :class:`SilentAudioError` on a peak below ``SILENCE_PEAK``.
        normalise_peak: Scale a signal whose peak exceeds 1 down to peak 1.

    Returns:
        ``[N']`` float32 mono at ``target_rate``, contiguous.

    Raises:
        AudioError: A subclass naming ``source`` and the reason (sample rate, channels,
            empty, too short, too long, NaN/inf, silent).
    """
    rate = check_sample_rate(sample_rate, source)
    frames = as_frames(samples, source, max_channels)
    keep = length_policy(
        frames.shape[0],
        rate,
        source,
        min_seconds=min_seconds,
        max_seconds=max_seconds,
        long_policy=long_policy,
    )
    frames = frames[:keep]
    if not np.isfinite(frames).all():
        raise NonFiniteAudioError(source)
    wave = frames.mean(axis=1, dtype=np.float32) if frames.shape[1] > 1 else frames[:, 0]
    # Checked after the down-mix: silence is about what the model will hear.
    if reject_silence and float(np.max(np.abs(wave))) < SILENCE_PEAK:
        raise SilentAudioError(
            source, f"is all silence (peak below {20 * np.log10(SILENCE_PEAK):.0f} dBFS)"
        )
    if target_rate is not None and rate != target_rate:
        import soxr

        wave = soxr.resample(wave, rate, target_rate, quality=RESAMPLE_QUALITY)
    wave = np.array(wave, dtype=np.float32, order="C")  # a copy: never scale the caller's data
    if normalise_peak:
        peak = float(np.max(np.abs(wave))) if wave.size else 0.0
        if peak > 1.0:
            wave /= peak
    return wave
