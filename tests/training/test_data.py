"""In-memory features: subsets, bucketed batches, augmentation (layer selection, pooling and
collation: tests/features/test_pipeline.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ptssnn.training import DataError, LabelledFeatures, TrainConfig, TrainConfigError
from ptssnn.training.data import bucketed_batches, shard_batches, spec_augment


def table(layers: int = 3) -> LabelledFeatures:
    items = []
    for i, frames in enumerate([5, 9, 3, 7]):
        x = np.stack([np.full((frames, 2), 10 * k + i, dtype=np.float32) for k in range(layers)])
        items.append((f"u{i}", x, "b" if i % 2 else "a"))
    return LabelledFeatures.from_arrays(items, ["a", "b"])


def test_subset_keeps_order_and_shares_tensors():
    t = table()
    sub = t.subset(["u3", "u0"])
    assert sub.ids == ("u3", "u0")
    assert sub.labels.tolist() == [1, 0]
    assert sub.features[0] is t.features[3]
    with pytest.raises(DataError, match="u9"):
        t.subset(["u9"])


def test_unknown_label_is_an_error():
    with pytest.raises(DataError, match="not among"):
        LabelledFeatures.from_arrays([("x", np.zeros((2, 3)), "zzz")], ["a"])


def test_bad_layer_value_in_config():
    with pytest.raises(TrainConfigError, match="layers"):
        TrainConfig(layers="top")
    with pytest.raises(TrainConfigError, match="lr"):
        TrainConfig(lr=0)


def test_config_json_roundtrip(tmp_path):
    config = TrainConfig(max_epochs=3, layers="mean:2-4", betas=(0.8, 0.9))
    config.save(tmp_path / "c.json")
    assert TrainConfig.load(tmp_path / "c.json") == config
    with pytest.raises(TrainConfigError, match="unknown"):
        TrainConfig.from_dict({"epochs": 3})


def test_bucketed_batches_cover_everything_and_group_lengths():
    lengths = [50, 10, 48, 12, 30, 31, 11, 49]
    batches = bucketed_batches(lengths, 2)
    assert sorted(i for b in batches for i in b) == list(range(8))
    assert batches == [[1, 6], [3, 4], [5, 2], [7, 0]]  # sorted by length, no shuffle
    g = torch.Generator().manual_seed(0)
    shuffled = bucketed_batches(lengths, 2, generator=g, jitter=0.0)
    assert sorted(map(sorted, shuffled)) == sorted(map(sorted, batches))


def test_shards_tile_the_epoch_with_equal_counts():
    batches = [[i] for i in range(5)]
    shards = [shard_batches(batches, r, 2) for r in range(2)]
    assert len(shards[0]) == len(shards[1]) == 3
    assert sorted(b[0] for s in shards for b in s) == [0, 0, 1, 2, 3, 4]


def test_spec_augment_masks_only_real_frames():
    x = torch.ones(2, 20, 16)
    mask = torch.zeros(2, 20, dtype=torch.bool)
    mask[0, :20] = True
    mask[1, :6] = True
    from ptssnn.training.data import Batch

    batch = Batch(x.clone(), mask, torch.zeros(2, dtype=torch.long), torch.arange(2))
    g = torch.Generator().manual_seed(3)
    for _ in range(20):
        spec_augment(batch, time_masks=2, time_mask_width=4, feature_masks=0,
                     feature_mask_width=0, generator=g)
    zeroed = batch.features == 0
    assert zeroed[0].any() and zeroed[1, :6].any()
    assert not zeroed[1, 6:].any()  # time masks stay inside the real frames
    # a time mask spans whole frames, a feature mask whole channels
    assert (zeroed.all(-1) == zeroed.any(-1)).all()
    other = Batch(x.clone(), mask, torch.zeros(2, dtype=torch.long), torch.arange(2))
    spec_augment(other, time_masks=0, time_mask_width=0, feature_masks=3,
                 feature_mask_width=4, generator=torch.Generator().manual_seed(0))
    channels = (other.features == 0).all(1)  # [B, D]: channel zero in every frame
    assert channels.any() and ((other.features == 0).any(1) == channels).all()
