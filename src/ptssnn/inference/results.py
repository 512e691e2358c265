"""What a recogniser returns: plain, JSON-ready result records.

The same records are printed by ``ptssnn predict`` (JSON Lines or a table) and returned by
``POST /predict`` of ``ptssnn serve``, so that the three front ends cannot drift apart.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Timings:
    """Wall-clock cost of one prediction, in milliseconds.

    Attributes:
        backbone_ms: Frozen encoder (audio → hidden states), all segments together.
        head_ms: Spiking head (hidden states → logits), all segments together.
        total_ms: Everything, including resampling and segmentation.
        audio_seconds: Duration of the audio that was processed.
    """

    backbone_ms: float
    head_ms: float
    total_ms: float
    audio_seconds: float

    @property
    def times_real_time(self) -> float:
        """Audio seconds processed per second of wall clock (``> 1`` = faster than real time)."""
        return self.audio_seconds / max(self.total_ms / 1000.0, 1e-9)

    def to_dict(self) -> dict[str, float]:
        """JSON-ready dictionary (rounded to microseconds)."""
        return {
            "backbone_ms": round(self.backbone_ms, 3),
            "head_ms": round(self.head_ms, 3),
            "total_ms": round(self.total_ms, 3),
            "audio_seconds": round(self.audio_seconds, 4),
            "times_real_time": round(self.times_real_time, 2),
        }


@dataclass(frozen=True)
class SegmentPrediction:
    """The label of one analysis window of a (long) recording.

    Attributes:
        start_s: Window start in seconds from the beginning of the audio.
        end_s: Window end in seconds (exclusive).
        label: Most probable class.
        probabilities: Class name → probability (sums to 1).
    """

    start_s: float
    end_s: float
    label: str
    probabilities: dict[str, float]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dictionary."""
        return {
            "start_s": round(self.start_s, 4),
            "end_s": round(self.end_s, 4),
            "label": self.label,
            "probabilities": {k: round(v, 6) for k, v in self.probabilities.items()},
        }


@dataclass(frozen=True)
class Prediction:
    """The recogniser's answer for one recording.

    Attributes:
        label: Overall most probable class.
        probabilities: Overall class probabilities: the duration-weighted mean of the
            segments' probabilities (a single segment for audio no longer than the window).
        duration_s: Duration of the audio after resampling to the model's sample rate.
        timings: Where the time went.
        segments: One entry per analysis window, in time order.
        source: File name or other identifier of the input, when known.
    """

    label: str
    probabilities: dict[str, float]
    duration_s: float
    timings: Timings
    segments: tuple[SegmentPrediction, ...] = field(default_factory=tuple)
    source: str | None = None

    @property
    def confidence(self) -> float:
        """Probability of the predicted label."""
        return self.probabilities[self.label]

    def to_dict(self, *, include_segments: bool = True) -> dict[str, Any]:
        """JSON-ready dictionary (the schema of ``ptssnn predict --jsonl`` and of the API)."""
        out: dict[str, Any] = {}
        if self.source is not None:
            out["source"] = self.source
        out.update(
            {
                "label": self.label,
                "confidence": round(self.confidence, 6),
                "probabilities": {k: round(v, 6) for k, v in self.probabilities.items()},
                "duration_s": round(self.duration_s, 4),
                "timings": self.timings.to_dict(),
            }
        )
        if include_segments:
            out["segments"] = [s.to_dict() for s in self.segments]
        return out


@dataclass(frozen=True)
class StreamUpdate:
    """The running answer of a streaming session after one chunk of audio.

    Attributes:
        end_s: Audio time covered so far (seconds since the stream started).
        label: Running most probable class, from everything heard so far.
        probabilities: Running class probabilities.
        latency_ms: Wall-clock time spent on this chunk (backbone + head).
        chunk_s: Duration of the chunk that produced this update.
        backbone_ms: Part of ``latency_ms`` spent in the frozen encoder.
        head_ms: Part of ``latency_ms`` spent in the spiking head.
    """

    end_s: float
    label: str
    probabilities: dict[str, float]
    latency_ms: float
    chunk_s: float
    backbone_ms: float
    head_ms: float

    @property
    def real_time_factor(self) -> float:
        """Processing time / audio time for this chunk (``< 1`` keeps up with real time)."""
        return (self.latency_ms / 1000.0) / max(self.chunk_s, 1e-9)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dictionary."""
        return {
            "end_s": round(self.end_s, 4),
            "label": self.label,
            "probabilities": {k: round(v, 6) for k, v in self.probabilities.items()},
            "latency_ms": round(self.latency_ms, 3),
            "backbone_ms": round(self.backbone_ms, 3),
            "head_ms": round(self.head_ms, 3),
            "real_time_factor": round(self.real_time_factor, 4),
        }
