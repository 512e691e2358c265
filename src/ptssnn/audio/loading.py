"""Decode any audio file libsndfile reads into 16 kHz mono float32, or say why it cannot.

Policy, in the order the checks run:

1. The header is read with :func:`soundfile.info` (the format comes from the file's bytes, never
   from its extension). Missing or unreadable file (permissions) or not an audio header ->
   :class:`UnreadableAudioError`; then :func:`check_header` applies, from the header alone,
   every rule of :func:`~ptssnn.audio.condition_waveform` that needs no samples (sample rate,
   channels, length) and the decoded-size budget ``max_decoded_mb``, so a small file that
   declares gigabytes of samples is refused before anything is decoded.
2. The (possibly cropped) samples are decoded as float32. Fewer frames than the header
   declares (a truncated file) -> :class:`UnreadableAudioError`.
3. The samples go through :func:`~ptssnn.audio.condition_waveform`, the one audio entry that
   arrays, uploads and streams use too (finite, down-mix, silence, resampling, peak).
"""

from __future__ import annotations

import errno
import os
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from ptssnn.audio.conditioning import (
    MAX_CHANNELS,
    SAMPLE_RATE,
    SILENCE_PEAK,
    LongPolicy,
    check_channels,
    check_sample_rate,
    condition_waveform,
    length_policy,
)
from ptssnn.errors import (
    NonFiniteAudioError,
    SilentAudioError,
    TooLargeAudioError,
    UnreadableAudioError,
)

#: Bytes of one decoded sample (float32).
_SAMPLE_BYTES = 4


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
        # libsndfile reports a permission problem as "System error."; ask the OS first.
        os.close(os.open(path, os.O_RDONLY))
    except OSError as error:
        if error.errno in (errno.EACCES, errno.EPERM):
            raise UnreadableAudioError(path, "cannot be read: permission denied") from error
        raise UnreadableAudioError(path, f"cannot be read ({error.strerror or error})") from error
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
    info: AudioInfo,
    *,
    min_seconds: float = 0.25,
    max_channels: int = MAX_CHANNELS,
    max_seconds: float | None = None,
    long_policy: LongPolicy = "crop",
    max_decoded_mb: float | None = None,
) -> int:
    """Apply every check that needs only the header (shared by :func:`load_audio` and scans).

    Returns:
        How many frames :func:`load_audio` decodes (all, or the first ``max_seconds`` when
        a long file is cropped).

    Raises:
        UnsupportedSampleRateError: A sample rate outside 4-384 kHz.
        UnsupportedChannelsError: More than ``max_channels`` channels, or none.
        EmptyAudioError: No samples.
        TooShortAudioError: Shorter than ``min_seconds``.
        TooLongAudioError: Longer than ``max_seconds`` under ``long_policy="error"``.
        TooLargeAudioError: Frames x channels to decode exceed ``max_decoded_mb`` of float32.
    """
    check_channels(info.channels, info.path, max_channels)
    if info.frames <= 0:
        # Before the rate check: a zero-length file is "empty" whatever its header's rate.
        length_policy(0, 1, info.path)
    rate = check_sample_rate(info.sample_rate, info.path)
    frames = length_policy(
        info.frames,
        rate,
        info.path,
        min_seconds=min_seconds,
        max_seconds=max_seconds,
        long_policy=long_policy,
    )
    if max_decoded_mb is not None:
        decoded_mb = frames * info.channels * _SAMPLE_BYTES / 1e6
        if decoded_mb > max_decoded_mb:
            raise TooLargeAudioError(
                info.path,
                f"would decode to {decoded_mb:,.0f} MB ({info.channels} channels x "
                f"{rate} Hz x {frames / rate:.1f} s), more than the limit of "
                f"{max_decoded_mb:g} MB",
            )
    return frames


def check_samples(path: str | Path, block_seconds: float = 30.0) -> None:
    """Decode a whole file block by block (bounded memory) and refuse what no model can hear.

    The content checks of :func:`condition_waveform` without resampling: NaN or infinite
    samples, and silence (peak of the down-mix below ``SILENCE_PEAK``) over the whole file.

    Raises:
        AudioError: unreadable or truncated content, NaN/inf samples, or all silence.
    """
    path = Path(path)
    peak = 0.0
    try:
        with sf.SoundFile(str(path)) as handle:
            block = max(1, int(block_seconds * handle.samplerate))
            for data in handle.blocks(blocksize=block, dtype="float32", always_2d=True):
                if not np.isfinite(data).all():
                    raise NonFiniteAudioError(path)
                wave = data.mean(axis=1) if data.shape[1] > 1 else data[:, 0]
                if wave.size:
                    peak = max(peak, float(np.max(np.abs(wave))))
    except (sf.LibsndfileError, RuntimeError) as error:
        why = getattr(error, "error_string", None) or str(error)
        raise UnreadableAudioError(path, f"is truncated or corrupt ({why})") from error
    if peak < SILENCE_PEAK:
        raise SilentAudioError(
            path, f"is all silence (peak below {20 * np.log10(SILENCE_PEAK):.0f} dBFS)"
        )


def load_audio(
    path: str | Path,
    *,
    sample_rate: int = SAMPLE_RATE,
    max_seconds: float | None = 30.0,
    min_seconds: float = 0.25,
    long_policy: LongPolicy = "crop",
    max_decoded_mb: float | None = None,
) -> np.ndarray:
    """Decode a file and condition it like any waveform; see the module docstring.

    Args:
        path: Any file libsndfile reads; the format is taken from the content, not the name.
        sample_rate: Output rate in Hz.
        max_seconds: Longest accepted duration (``None``: no limit). What happens to longer
            files depends on ``long_policy``.
        min_seconds: Shortest accepted duration.
        long_policy: ``"crop"`` keeps the first ``max_seconds`` (and decodes no more);
            ``"error"`` raises :class:`TooLongAudioError`. Long recordings are windowed
            by the caller (:func:`ptssnn.inference.windows.plan_windows`).
        max_decoded_mb: Refuse, from the header, a file whose decoded float32 samples
            (frames x channels) would exceed this many megabytes (``None``: no limit).

    Returns:
        ``[num_samples]`` float32 waveform at ``sample_rate``, peak at most 1.

    Raises:
        AudioError: A subclass naming the file and the reason (unreadable, truncated or not
            permitted, empty, silent, NaN/inf, too short, too long under ``"error"``, too
            many channels, unsupported sample rate, too large to decode).
        ValueError: ``long_policy`` is not ``crop`` or ``error``.
    """
    info = probe_audio(path)
    frames_to_read = check_header(
        info,
        min_seconds=min_seconds,
        max_seconds=max_seconds,
        long_policy=long_policy,
        max_decoded_mb=max_decoded_mb,
    )
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
    return condition_waveform(
        data,
        info.sample_rate,
        target_rate=sample_rate,
        source=info.path,
        min_seconds=min_seconds,
        max_seconds=max_seconds,
        long_policy=long_policy,
    )
