"""Training-only batch handling: DDP sharding and SpecAugment-style masking.

The in-memory table, its batches and the bucketing live in :mod:`ptssnn.features.table`
(evaluation reads them too); they are re-exported here for the trainer's callers.
"""

from __future__ import annotations

import torch

from ptssnn.features.table import (
    Batch,
    DataError,
    LabelledFeatures,
    bucketed_batches,
    iterate_eval_batches,
)

__all__ = [
    "Batch",
    "DataError",
    "LabelledFeatures",
    "bucketed_batches",
    "iterate_eval_batches",
    "shard_batches",
    "spec_augment",
]


def shard_batches(batches: list[list[int]], rank: int, world_size: int) -> list[list[int]]:
    """Give each DDP process every ``world_size``-th batch, padded to equal counts.

    DDP needs the same number of optimiser steps on every process; the few missing batches are
    taken from the start of the list again.
    """
    if world_size <= 1:
        return batches
    total = -(-len(batches) // world_size) * world_size
    padded = batches + batches[: total - len(batches)]
    return padded[rank::world_size]


def spec_augment(
    batch: Batch,
    *,
    time_masks: int,
    time_mask_width: int,
    feature_masks: int,
    feature_mask_width: int,
    generator: torch.Generator,
) -> Batch:
    """SpecAugment-style masking on features, in place: zero random time spans and channels.

    Time masks only cover real frames of each item (padding is already excluded by the mask);
    feature masks hit the same channels in every frame (and every layer) of an item.
    """
    features = batch.features
    lengths = batch.mask.sum(1).tolist()
    dim = features.shape[-1]
    for row, frames in enumerate(lengths):
        for _ in range(time_masks if time_mask_width > 0 else 0):
            width = int(torch.randint(0, time_mask_width + 1, (1,), generator=generator))
            if width == 0 or width >= frames:
                continue
            start = int(torch.randint(0, frames - width + 1, (1,), generator=generator))
            features[row, ..., start : start + width, :] = 0.0
        for _ in range(feature_masks if feature_mask_width > 0 else 0):
            width = int(torch.randint(0, min(feature_mask_width, dim) + 1, (1,),
                                      generator=generator))
            if width == 0:
                continue
            start = int(torch.randint(0, dim - width + 1, (1,), generator=generator))
            features[row, ..., start : start + width] = 0.0
    return batch
