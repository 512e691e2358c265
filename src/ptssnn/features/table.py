"""Labelled features preloaded into RAM, bucketed batches with padding masks.

A corpus's features are read from the feature store once (``[L, T, D]`` float16 per
utterance) and kept as tensors; folds are index subsets of that one table, so no epoch and
no fold re-reads the disk.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ptssnn.errors import PtssnnError
from ptssnn.features.pipeline import FeaturePipeline, Moments, pad_items, standardise


class DataError(PtssnnError):
    """Features and labels that do not fit together (unknown id, missing label, bad shape)."""


@dataclass(frozen=True)
class LabelledFeatures:
    """Per-utterance frame features with integer labels, held in memory.

    Attributes:
        ids: Utterance ids, one per item.
        features: One tensor per item, ``[L, T, D]`` (several hidden states) or ``[T, D]``
            (after layer selection); float16 or float32.
        labels: ``[N]`` int64 class indices into ``label_names``.
        label_names: Class names, index = class id.
    """

    ids: tuple[str, ...]
    features: tuple[torch.Tensor, ...]
    labels: torch.Tensor
    label_names: tuple[str, ...]

    def __post_init__(self) -> None:
        if not (len(self.ids) == len(self.features) == len(self.labels)):
            raise DataError(
                f"ids ({len(self.ids)}), features ({len(self.features)}) and labels "
                f"({len(self.labels)}) must have the same length"
            )
        ranks = {f.dim() for f in self.features}
        if len(ranks) > 1 or (ranks and ranks.pop() not in (2, 3)):
            raise DataError("every feature tensor must be [T, D] or [L, T, D], all the same rank")

    def __len__(self) -> int:
        return len(self.ids)

    @classmethod
    def from_arrays(
        cls,
        items: Iterable[tuple[str, Any, str]],
        label_names: Sequence[str],
        *,
        dtype: torch.dtype = torch.float16,
        transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ) -> LabelledFeatures:
        """Build from ``(id, array [L,T,D] or [T,D], label name)`` triples; ``transform``
        (e.g. a pipeline's layer selection and frame pooling) is applied to each item as it
        is read, so the untransformed table is never held whole.

        Raises:
            DataError: When a label is not in ``label_names``.
        """
        index = {name: i for i, name in enumerate(label_names)}
        ids, feats, labels = [], [], []
        for utt_id, array, label in items:
            if label not in index:
                raise DataError(
                    f"utterance {utt_id!r} has label {label!r}, not among {list(label_names)}"
                )
            ids.append(utt_id)
            # A copy: feature-store arrays are read-only memory maps; the table lives in RAM.
            item = torch.from_numpy(np.array(array)).to(dtype)
            feats.append(transform(item) if transform is not None else item)
            labels.append(index[label])
        return cls(tuple(ids), tuple(feats), torch.tensor(labels, dtype=torch.long),
                   tuple(label_names))

    @classmethod
    def from_feature_set(
        cls,
        feature_set: Any,
        utterances: Sequence[Any],
        label_names: Sequence[str] | None = None,
        *,
        dtype: torch.dtype = torch.float16,
        transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ) -> LabelledFeatures:
        """Preload the features of ``utterances`` from a :class:`ptssnn.features.FeatureSet`.

        Args:
            feature_set: Anything with ``get(utt_id) -> array [L, T, D]``.
            utterances: Records with ``id`` and ``label`` (harmonised) attributes.
            label_names: Class order; default: sorted labels present.
            dtype: Storage dtype in RAM (float16 halves memory; batches are cast to float32).
            transform: Applied to each item as it is read (:meth:`from_arrays`).
        """
        names = tuple(label_names) if label_names else tuple(sorted({u.label for u in utterances}))
        return cls.from_arrays(
            ((u.id, feature_set.get(u.id), u.label) for u in utterances), names, dtype=dtype,
            transform=transform,
        )

    @property
    def num_layers(self) -> int:
        """L for ``[L, T, D]`` items, 1 for ``[T, D]`` items."""
        first = self.features[0]
        return int(first.shape[0]) if first.dim() == 3 else 1

    @property
    def feature_dim(self) -> int:
        """D, the last axis."""
        return int(self.features[0].shape[-1])

    def lengths(self) -> list[int]:
        """Frames per item."""
        return [int(f.shape[-2]) for f in self.features]

    def subset(self, ids: Iterable[str]) -> LabelledFeatures:
        """The items with these ids, in the given order (tensors shared, not copied).

        Raises:
            DataError: When an id is unknown.
        """
        position = {utt_id: i for i, utt_id in enumerate(self.ids)}
        picked = []
        for utt_id in ids:
            if utt_id not in position:
                raise DataError(f"utterance {utt_id!r} has no features in this table")
            picked.append(position[utt_id])
        return LabelledFeatures(
            tuple(self.ids[i] for i in picked),
            tuple(self.features[i] for i in picked),
            self.labels[picked] if picked else self.labels[:0],
            self.label_names,
        )

    def relabel(self, label_names: Sequence[str]) -> LabelledFeatures:
        """Keep the items whose class is in ``label_names``, re-indexed to that order."""
        index = {name: i for i, name in enumerate(label_names)}
        keep = [i for i, label in enumerate(self.labels.tolist())
                if self.label_names[label] in index]
        labels = [index[self.label_names[int(self.labels[i])]] for i in keep]
        return LabelledFeatures(
            tuple(self.ids[i] for i in keep),
            tuple(self.features[i] for i in keep),
            torch.tensor(labels, dtype=torch.long),
            tuple(label_names),
        )

    @staticmethod
    def concatenate(tables: Sequence[LabelledFeatures]) -> LabelledFeatures:
        """One table of several with the same classes (ids must be unique across them).

        Raises:
            DataError: Different class lists or a repeated id.
        """
        names = tables[0].label_names
        if any(t.label_names != names for t in tables):
            raise DataError("tables to concatenate must have the same label names")
        ids = tuple(i for t in tables for i in t.ids)
        if len(set(ids)) != len(ids):
            raise DataError("tables to concatenate share utterance ids")
        return LabelledFeatures(ids, tuple(f for t in tables for f in t.features),
                                torch.cat([t.labels for t in tables]), names)

    def map(self, transform: Callable[[torch.Tensor], torch.Tensor]) -> LabelledFeatures:
        """The same items, each passed through ``transform`` (e.g. a pipeline stage)."""
        return LabelledFeatures(self.ids, tuple(transform(f) for f in self.features),
                                self.labels, self.label_names)

    def prepared(self, pipeline: FeaturePipeline) -> LabelledFeatures:
        """The items as the head reads them: the pipeline's layer selection and frame
        pooling (items are already in the storage dtype; see :meth:`from_feature_set`)."""
        return self.map(lambda item: pipeline.pool(pipeline.select(item)))

    def batch(
        self,
        indices: Sequence[int],
        *,
        crop_frames: int | None = None,
        generator: torch.Generator | None = None,
    ) -> Batch:
        """Items ``indices`` padded into one :class:`Batch` (the pipeline's collation).

        Args:
            indices: Items of the batch.
            crop_frames: Random crop of longer items to this many frames (training only;
                needs ``generator``).
            generator: Randomness for the crop offsets.
        """
        features, mask = pad_items([self.features[i] for i in indices],
                                   crop_frames=crop_frames, generator=generator)
        index = torch.tensor(list(indices), dtype=torch.long)
        return Batch(features, mask, self.labels[index], index)

    def moments(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and standard deviation of every channel over all frames of all items.

        Returns:
            ``(mean, std)`` in float32, ``[L, D]`` for ``[L, T, D]`` items, ``[D]`` for
            ``[T, D]`` items. ``std`` is floored at 1e-5 so dead channels divide safely.
        """
        moments = Moments.of(self.features)
        return moments.mean, moments.std

    def standardise_by_group(self, groups: Mapping[str, str]) -> LabelledFeatures:
        """Standardise each item with the moments of its group (e.g. its speaker).

        Speaker-level z-normalisation (Busso et al., 2013) removes a speaker's voice and
        recording channel from the features; it needs only unlabelled audio of a speaker, so
        it can be applied to test speakers without touching their labels.

        Raises:
            DataError: When an item has no group.
        """
        missing = [i for i in self.ids if i not in groups]
        if missing:
            raise DataError(f"{len(missing)} utterance(s) have no group, e.g. {missing[0]!r}")
        members: dict[str, list[int]] = {}
        for index, utt_id in enumerate(self.ids):
            members.setdefault(groups[utt_id], []).append(index)
        out: list[torch.Tensor] = list(self.features)
        for indices in members.values():
            moments = Moments.of([self.features[i] for i in indices])
            for i in indices:
                out[i] = standardise(self.features[i], moments)
        return LabelledFeatures(self.ids, tuple(out), self.labels, self.label_names)

    def class_counts(self) -> torch.Tensor:
        """``[C]`` items per class."""
        return torch.bincount(self.labels, minlength=len(self.label_names))


@dataclass(frozen=True)
class Batch:
    """A padded batch.

    Attributes:
        features: ``[B, T, D]`` or ``[B, L, T, D]`` float32.
        mask: ``[B, T]`` bool, True = real frame.
        labels: ``[B]`` int64.
        indices: ``[B]`` positions in the source table.
    """

    features: torch.Tensor
    mask: torch.Tensor
    labels: torch.Tensor
    indices: torch.Tensor


def bucketed_batches(
    lengths: Sequence[int],
    batch_size: int,
    *,
    generator: torch.Generator | None = None,
    jitter: float = 0.0,
) -> list[list[int]]:
    """Group items of similar length so padding stays small.

    Sorts by (optionally jittered) length, cuts consecutive runs of ``batch_size`` and, with a
    generator, shuffles the order of the batches. Without a generator the result is the
    deterministic evaluation order (by length).

    Args:
        lengths: Frames per item.
        batch_size: Items per batch (the last batch may be smaller).
        generator: Source of randomness for jitter and batch order; ``None`` = no shuffling.
        jitter: Relative length noise (0.1 = ±10 %) so the grouping changes between epochs.

    Returns:
        Batches of item indices covering every item exactly once.
    """
    count = len(lengths)
    if count == 0:
        return []
    keys = torch.tensor(lengths, dtype=torch.float64)
    if generator is not None and jitter > 0:
        noise = torch.rand(count, generator=generator, dtype=torch.float64) * 2 - 1
        keys = keys * (1 + jitter * noise)
    # Stable sort on (key, index) keeps equal lengths in a reproducible order.
    order = sorted(range(count), key=lambda i: (float(keys[i]), i))
    batches = [order[i : i + batch_size] for i in range(0, count, batch_size)]
    if generator is not None:
        permutation = torch.randperm(len(batches), generator=generator).tolist()
        batches = [batches[i] for i in permutation]
    return batches


def iterate_eval_batches(data: LabelledFeatures, batch_size: int) -> Iterator[Batch]:
    """Deterministic evaluation batches (length-sorted, whole utterances)."""
    for indices in bucketed_batches(data.lengths(), batch_size):
        yield data.batch(indices)
