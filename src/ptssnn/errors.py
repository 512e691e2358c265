"""Typed errors a user can cause. The CLI prints their message without a traceback."""

from __future__ import annotations

from pathlib import Path


class PtssnnError(Exception):
    """Base class: something the user can fix (bad path, bad audio, missing package, ...)."""


class AudioError(PtssnnError):
    """An audio file that cannot be used; carries the file and the reason."""

    reason: str = "unusable audio"

    def __init__(self, path: str | Path, detail: str | None = None) -> None:
        self.path = str(path)
        self.detail = detail or self.reason
        super().__init__(f"{self.path}: {self.detail}")


class UnreadableAudioError(AudioError):
    reason = "cannot be decoded (missing, truncated or not an audio file)"


class EmptyAudioError(AudioError):
    reason = "has no samples"


class SilentAudioError(AudioError):
    reason = "is all silence"


class NonFiniteAudioError(AudioError):
    reason = "contains NaN or infinite samples"


class TooShortAudioError(AudioError):
    reason = "is shorter than the minimum duration"


class TooLongAudioError(AudioError):
    reason = "is longer than the maximum duration"


class UnsupportedChannelsError(AudioError):
    reason = "has an unsupported number of channels"


class UnsupportedSampleRateError(AudioError):
    reason = "has an unsupported sample rate"


class TooLargeAudioError(AudioError):
    reason = "would decode to more samples than the limit"


class CorpusError(PtssnnError):
    """Unknown corpus, missing root or a root with the wrong layout."""


class ProtocolError(PtssnnError):
    """Unknown protocol or one that cannot be applied to this corpus."""


class BackboneUnavailableError(PtssnnError):
    """A backbone whose weights or optional package is not installed."""


class CheckpointError(PtssnnError):
    """A model directory or checkpoint that is missing, incomplete or inconsistent."""


class ModelConfigError(PtssnnError):
    """An unknown model preset or an invalid model configuration value."""
