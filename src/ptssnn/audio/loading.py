"""Decode any audio file libsndfile reads into 16 kHz mono float32, or say why it cannot.

Policy, in the order the checks run:

1. The header is read with :func:`soundfile.info` (the format comes from the file's bytes, never
   from its extension). Unreadable header -> :class:`UnreadableAudioError`; more than
   ``MAX_CHANNELS`` channels -> :class:`UnsupportedChannelsError`; zero frames ->
   :class:`EmptyAudioError`; shorter than ``min_seconds`` -> :class:`TooShortAudioError`;
   longer than ``max_seconds`` -> cropped, kept whole, or :class:`TooLongAudioError`, as
   ``long_policy`` says.
2. The samples are decoded as float32. Fewer frames than the header declares (a truncated
   file) -> :class:`UnreadableAudioError`; any NaN or infinite sample ->
   :class:`NonFiniteAudioError`.
3. Channels are averaged (down-mix). A peak below ``SILENCE_PEAK`` (-80 dBFS, below the
   dither of 16-bit audio) -> :class:`SilentAudioError`.
4. Resampled with soxr at ``"VHQ"`` quality (very high: the quality the shared FLAC copies were
   made with, so a WAV original and its FLAC copy give the same signal to within 16-bit
   quantisation).
5. If the peak exceeds 1 (float files recorded hot, or a few ulps of resampler overshoot) the
   whole signal is scaled down to peak 1 rather than clipped, which would add distortion.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import soundfile as sf
import soxr

from ptssnn.errors import (
    EmptyAudioError,
    NonFiniteAudioError,
    SilentAudioError,
    TooLongAudioError,
    TooShortAudioError,
    UnreadableAudioError,
    UnsupportedChannelsError,
)

SAMPLE_RATE = 16000
MAX_CHANNELS = 8
SILENCE_PEAK = 1e-4  # -80 dBFS
RESAMPLE_QUALITY = "VHQ"

LongPolicy = Literal["crop", "split", "error"]
_LONG_POLICIES = ("crop", "split", "error")


@dataclass(frozen=True)
class AudioInfo:
    """What a file's header says, read without decoding the samples.

    Attributes:
        path: The file.
        sample_rate: Samples per second per channel (Hz).
        channels: Number of channels.
        frames: Number of samples per channel.
        duration: ``frames / sample_rate`` in seconds.
        format: libsndfile's container name, e.g. ``"WAV"``, ``"FLAC"``.
        subtype: libsndfile's sample encoding, e.g. ``"PCM_16"``, ``"FLOAT"``.
    """

    path: Path
    sample_rate: int
    channels: int
    frames: int
    duration: float
    format: str
    subtype: str


def probe_audio(path: str | Path) -> AudioInfo:
    """Read an audio file's header only (cheap: for corpus scans).

    Args:
        path: Any file libsndfile can read (WAV, FLAC, OGG, AIFF, ...), whatever its extension.

    Returns:
        The header fields as an :class:`AudioInfo`.

    Raises:
        UnreadableAudioError: The file is missing or its header is not an audio header.
    """
    path = Path(path)
    if not path.is_file():
        raise UnreadableAudioError(path, "does not exist or is not a file")
    try:
        info = sf.info(str(path))
    except (sf.LibsndfileError, RuntimeError, TypeError) as error:
        # libsndfile's own text, without the path it repeats (the error names the file).
        why = getattr(error, "error_string", None) or str(error)
        raise UnreadableAudioError(path, f"cannot be decoded as audio ({why})") from error
    missing = _missing_wav_bytes(path)
    if missing:
        raise UnreadableAudioError(
            path, f"is truncated: its WAV header declares {missing} more bytes than the file holds"
        )
    sample_rate = int(info.samplerate)
    frames = int(info.frames)
    return AudioInfo(
        path=path,
        sample_rate=sample_rate,
        channels=int(info.channels),
        frames=frames,
        duration=frames / sample_rate if sample_rate > 0 else 0.0,
        format=str(info.format),
        subtype=str(info.subtype),
    )


def _missing_wav_bytes(path: Path) -> int:
    """Bytes the ``data`` chunk of a RIFF/WAVE file declares but the file lacks (0 if not WAV).

    libsndfile silently shortens a truncated WAV to what is there, so a cut-off download would
    otherwise pass as a shorter, valid file.
    """
    with path.open("rb") as handle:
        head = handle.read(12)
        if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
            return 0
        file_size = path.stat().st_size
        position = 12
        for _ in range(64):  # a WAV has a handful of chunks; bound the walk on garbage
            handle.seek(position)
            chunk = handle.read(8)
            if len(chunk) < 8:
                return 0
            chunk_id, size = chunk[:4], struct.unpack("<I", chunk[4:])[0]
            if chunk_id == b"data":
                # 0 and 0xFFFFFFFF mean "unknown length" (streamed WAV): nothing to compare.
                if size in (0, 0xFFFFFFFF):
                    return 0
                return max(0, size - (file_size - position - 8))
            position += 8 + size + (size & 1)
    return 0


def check_header(
    info: AudioInfo, *, min_seconds: float = 0.25, max_channels: int = MAX_CHANNELS
) -> None:
    """Apply the checks that need only the header (shared by :func:`load_audio` and scans).

    Raises:
        UnsupportedChannelsError: More than ``max_channels`` channels, or none.
        EmptyAudioError: No samples.
        TooShortAudioError: Shorter than ``min_seconds``.
    """
    if not 1 <= info.channels <= max_channels:
        raise UnsupportedChannelsError(
            info.path,
            f"has {info.channels} channels; at most {max_channels} are supported "
            "(down-mix or extract the speech channel first)",
        )
    if info.frames <= 0 or info.sample_rate <= 0:
        raise EmptyAudioError(info.path, "has no samples (zero-length file)")
    if info.duration < min_seconds:
        raise TooShortAudioError(
            info.path,
            f"lasts {info.duration:.3f} s, shorter than the minimum {min_seconds:g} s",
        )


def load_audio(
    path: str | Path,
    *,
    sample_rate: int = SAMPLE_RATE,
    max_seconds: float | None = 30.0,
    min_seconds: float = 0.25,
    long_policy: LongPolicy = "crop",
) -> np.ndarray:
    """Decode, down-mix and resample an audio file; see the module docstring for the policy.

    Args:
        path: Any file libsndfile reads; the format is taken from the content, not the name.
        sample_rate: Output rate in Hz.
        max_seconds: Longest accepted duration (``None``: no limit). What happens to longer
            files depends on ``long_policy``.
        min_seconds: Shortest accepted duration.
        long_policy: ``"crop"`` keeps the first ``max_seconds``; ``"split"`` returns the whole
            signal so that the caller can cut it with :func:`split_long`; ``"error"`` raises
            :class:`TooLongAudioError`.

    Returns:
        ``[num_samples]`` float32 waveform at ``sample_rate``, peak at most 1.

    Raises:
        AudioError: A subclass naming the file and the reason (unreadable or truncated,
            empty, silent, NaN/inf, too short, too long under ``"error"``, too many channels).
        ValueError: ``long_policy`` is not one of ``crop``, ``split``, ``error``.
    """
    if long_policy not in _LONG_POLICIES:
        raise ValueError(f"long_policy must be one of {_LONG_POLICIES}, not {long_policy!r}")
    info = probe_audio(path)
    check_header(info, min_seconds=min_seconds)

    frames_to_read = info.frames
    if max_seconds is not None and info.duration > max_seconds:
        if long_policy == "error":
            raise TooLongAudioError(
                info.path,
                f"lasts {info.duration:.1f} s, longer than the maximum {max_seconds:g} s "
                "(raise max_seconds, or use long_policy='crop' or 'split')",
            )
        if long_policy == "crop":
            # Crop before decoding: no need to read (or resample) what is thrown away.
            frames_to_read = round(max_seconds * info.sample_rate)

    try:
        data, _ = sf.read(str(info.path), frames=frames_to_read, dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError) as error:
        why = getattr(error, "error_string", None) or str(error)
        raise UnreadableAudioError(info.path, f"is truncated or corrupt ({why})") from error
    if data.shape[0] < frames_to_read:
        raise UnreadableAudioError(
            info.path,
            f"is truncated: the header declares {frames_to_read} frames, "
            f"only {data.shape[0]} could be decoded",
        )
    if data.shape[0] == 0:
        raise EmptyAudioError(info.path)
    if not np.isfinite(data).all():
        raise NonFiniteAudioError(info.path)

    # Mean, not sum: keeps the level of a stereo recording of one voice.
    wave = data.mean(axis=1, dtype=np.float32) if data.shape[1] > 1 else data[:, 0]
    # Checked after the down-mix: silence is about what the model will hear.
    if float(np.max(np.abs(wave))) < SILENCE_PEAK:
        raise SilentAudioError(
            info.path, f"is all silence (peak below {20 * np.log10(SILENCE_PEAK):.0f} dBFS)"
        )

    if info.sample_rate != sample_rate:
        wave = soxr.resample(wave, info.sample_rate, sample_rate, quality=RESAMPLE_QUALITY)
    wave = np.ascontiguousarray(wave, dtype=np.float32)
    peak = float(np.max(np.abs(wave)))
    if peak > 1.0:
        wave /= peak
    return wave


def split_long(
    wave: np.ndarray,
    *,
    sample_rate: int = SAMPLE_RATE,
    max_seconds: float = 30.0,
    min_seconds: float = 0.25,
    hop_seconds: float | None = None,
) -> list[np.ndarray]:
    """Cut a long waveform into windows of at most ``max_seconds``.

    Windows start every ``hop_seconds`` (default ``max_seconds``: back to back, no overlap).
    A trailing piece shorter than ``min_seconds`` is dropped, since it would be rejected as too
    short on its own; a wave no longer than ``max_seconds`` comes back as one window.

    Args:
        wave: ``[num_samples]`` waveform.
        sample_rate: Its rate in Hz.
        max_seconds: Window length in seconds.
        min_seconds: Shortest trailing window kept.
        hop_seconds: Distance between window starts; at most ``max_seconds``.

    Returns:
        List of ``[<= max_seconds * sample_rate]`` views into ``wave``, in time order.

    Raises:
        ValueError: ``wave`` is not 1-D, or the window/hop lengths are not positive.
    """
    if wave.ndim != 1:
        raise ValueError(f"split_long expects a 1-D waveform, got shape {tuple(wave.shape)}")
    hop_seconds = max_seconds if hop_seconds is None else hop_seconds
    if max_seconds <= 0 or not 0 < hop_seconds <= max_seconds:
        raise ValueError("need max_seconds > 0 and 0 < hop_seconds <= max_seconds")
    window = round(max_seconds * sample_rate)
    hop = round(hop_seconds * sample_rate)
    shortest = round(min_seconds * sample_rate)
    if wave.shape[0] <= window:
        return [wave]
    pieces: list[np.ndarray] = []
    for start in range(0, wave.shape[0], hop):
        piece = wave[start : start + window]
        if piece.shape[0] < window and pieces and piece.shape[0] < shortest:
            break
        pieces.append(piece)
        if start + window >= wave.shape[0]:
            break
    return pieces
