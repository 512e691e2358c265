"""Read access to extracted features: ``FeatureSet.get(utt_id) -> [L_sel, T, D]`` memory-mapped."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ptssnn.features.store import Entry, FeatureCacheError, Namespace


@dataclass(frozen=True)
class ExtractionFailure:
    """An utterance that was skipped: its id, file and why."""

    id: str
    path: str
    reason: str


@dataclass
class ExtractionReport:
    """What one ``extract_features`` call did (summed over processes when distributed).

    Attributes:
        total: Utterances asked for.
        extracted: Computed by the backbone in this call.
        cached: Found intact in the cache.
        failed: Skipped (bad audio); see ``FeatureSet.failures``.
        wall_seconds: Wall-clock time of the call (the slowest process when distributed).
        extracted_audio_seconds: Audio duration of the extracted utterances.
        audio_seconds: Audio duration of every utterance in the set.
        cache_bytes: Bytes on disk of every entry in the set.
        processes: Number of processes that shared the work.
    """

    total: int = 0
    extracted: int = 0
    cached: int = 0
    failed: int = 0
    wall_seconds: float = 0.0
    extracted_audio_seconds: float = 0.0
    audio_seconds: float = 0.0
    cache_bytes: int = 0
    processes: int = 1
    rebuilt: int = 0
    extras: dict[str, Any] = field(default_factory=dict)

    @property
    def real_time_factor(self) -> float:
        """Seconds of audio extracted per wall-clock second (× real time); 0 if none."""
        if self.extracted == 0 or self.wall_seconds <= 0:
            return 0.0
        return self.extracted_audio_seconds / self.wall_seconds

    @property
    def bytes_per_hour(self) -> float:
        """Cache bytes per hour of audio."""
        return self.cache_bytes / (self.audio_seconds / 3600.0) if self.audio_seconds else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "total": self.total,
            "extracted": self.extracted,
            "cached": self.cached,
            "failed": self.failed,
            "rebuilt": self.rebuilt,
            "wall_seconds": round(self.wall_seconds, 3),
            "extracted_audio_seconds": round(self.extracted_audio_seconds, 3),
            "audio_seconds": round(self.audio_seconds, 3),
            "real_time_factor": round(self.real_time_factor, 2),
            "cache_bytes": self.cache_bytes,
            "cache_bytes_per_hour": round(self.bytes_per_hour),
            "processes": self.processes,
            **self.extras,
        }


class FeatureSet:
    """Features of a list of utterances, read lazily from the cache.

    ``get(utt_id)`` (or ``set[utt_id]``) returns a read-only memory map ``[L_sel, T, D]`` in the
    storage dtype (float16 by default): nothing is loaded until it is indexed, so a corpus
    larger than memory still trains. Convert a batch with ``np.asarray(x, np.float32)``.

    Attributes:
        ids: Utterance ids with features, in the order they were given (failures left out).
        lengths: ``{utt_id: T}``.
        failures: Utterances skipped, with the reason.
        report: What the extraction did.
        namespace: The cache namespace (``.description`` says backbone, layers, dtype).
    """

    def __init__(
        self,
        namespace: Namespace,
        entries: Mapping[str, Entry],
        *,
        order: Sequence[str],
        failures: Sequence[ExtractionFailure] = (),
        report: ExtractionReport | None = None,
    ) -> None:
        self.namespace = namespace
        self._entries = dict(entries)
        self.ids: tuple[str, ...] = tuple(i for i in order if i in self._entries)
        self.lengths: dict[str, int] = {i: self._entries[i].num_frames for i in self.ids}
        self.failures = list(failures)
        self.report = report or ExtractionReport()

    def __getitem__(self, utt_id: str) -> np.ndarray:
        return self.get(utt_id)

    def __iter__(self) -> Iterator[str]:
        return iter(self.ids)

    def __len__(self) -> int:
        return len(self.ids)

    def __contains__(self, utt_id: object) -> bool:
        return utt_id in self._entries

    def __repr__(self) -> str:
        return (
            f"FeatureSet({len(self)} utterances, backbone="
            f"{self.backbone_identity.get('name')!r}, layers={self.layers!r}, "
            f"L_sel={self.num_layers}, D={self.hidden_size}, dtype={self.dtype})"
        )

    # ---------------------------------------------------------------------------------------
    def get(self, utt_id: str) -> np.ndarray:
        """Features of one utterance.

        Args:
            utt_id: An id from :attr:`ids`.

        Returns:
            ``[L_sel, T, D]`` read-only memory map in the storage dtype.

        Raises:
            KeyError: The id is not in this set (failed or never asked for).
            FeatureCacheError: The file changed size on disk since extraction.
        """
        entry = self._entries.get(utt_id)
        if entry is None:
            raise KeyError(f"no features for utterance {utt_id!r} in this feature set")
        try:
            size = entry.path.stat().st_size
        except OSError:
            size = -1
        if size != entry.num_bytes:
            raise FeatureCacheError(
                f"cached features of {utt_id} at {entry.path} are missing or damaged; rerun "
                "`ptssnn features extract` to rebuild them"
            )
        return np.load(entry.path, mmap_mode="r", allow_pickle=False)

    def entry(self, utt_id: str) -> Entry:
        """The cache entry (path, shape, seconds, bytes) of one utterance."""
        return self._entries[utt_id]

    @property
    def backbone_identity(self) -> dict[str, Any]:
        return self.namespace.description["backbone"]

    @property
    def layers(self) -> str:
        """Canonical layer spec (absolute indices), e.g. ``"0,1,2,3,4,5,6"`` or ``"mean:2,3,4"``."""
        return self.namespace.description["layers"]

    @property
    def dtype(self) -> np.dtype:
        return self.namespace.dtype

    @property
    def num_layers(self) -> int:
        """``L_sel``."""
        first = next(iter(self._entries.values()), None)
        return first.shape[0] if first else 0

    @property
    def hidden_size(self) -> int:
        """``D``."""
        first = next(iter(self._entries.values()), None)
        return first.shape[2] if first else 0

    @property
    def audio_seconds(self) -> float:
        return sum(self._entries[i].seconds for i in self.ids)

    @property
    def cache_bytes(self) -> int:
        return sum(self._entries[i].num_bytes for i in self.ids)

    @property
    def bytes_per_hour(self) -> float:
        """Cache size per hour of audio."""
        seconds = self.audio_seconds
        return self.cache_bytes / (seconds / 3600.0) if seconds else 0.0

    def metadata(self) -> dict[str, Any]:
        """What a checkpoint should record to reproduce these features."""
        return {
            "backbone": self.backbone_identity,
            "layers": self.layers,
            "num_layers": self.num_layers,
            "hidden_size": self.hidden_size,
            "dtype": str(self.dtype),
            "audio": self.namespace.description.get("audio", {}),
            "cache_key": self.namespace.key,
        }
