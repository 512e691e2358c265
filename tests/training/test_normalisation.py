"""Feature standardisation: moments, per-speaker z-norm, the validation choice, the model's
stored statistics."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from folds import Fold
from ptssnn.features import FeaturePipeline
from ptssnn.models import create_model, load_pretrained, save_pretrained
from ptssnn.training import (
    DataError,
    LabelledFeatures,
    TrainConfig,
    TrainConfigError,
    fit,
    select_normalisation,
    train_fold,
)
from ptssnn.training.crossval import FoldResult, LayerViews

SMALL = dict(width=16, block_hidden=24, attention_heads=4, num_prompts=2)


def speaker_corpus(confounded: bool, speakers: int = 6, per: int = 12, seed: int = 0):
    """[T, D] items. Each speaker adds a large random offset to every channel; the class adds
    a small one to channel 0. ``confounded``: every speaker speaks one class only."""
    rng = np.random.default_rng(seed)
    items, spk = [], {}
    for s in range(speakers):
        offset = rng.normal(0.0, 3.0, size=4).astype(np.float32)
        for i in range(per):
            label = s % 3 if confounded else i % 3
            x = rng.standard_normal((int(rng.integers(10, 20)), 4)).astype(np.float32)
            x += offset
            x[:, 0] += 0.8 * label
            utt = f"s{s}-{i:02d}"
            items.append((utt, x, f"c{label}"))
            spk[utt] = f"s{s}"
    table = LabelledFeatures.from_arrays(items, ["c0", "c1", "c2"], dtype=torch.float32)
    by = {s: tuple(u for u in table.ids if spk[u] == s) for s in sorted(set(spk.values()))}
    names = sorted(by)
    # Speaker-independent: test = 2 speakers, validation = 2 others, train = the rest.
    fold = Fold("f0", tuple(u for s in names[:2] for u in by[s]),
                tuple(u for s in names[2:4] for u in by[s]),
                tuple(u for s in names[4:] for u in by[s]))
    return table, fold, spk


def test_standardise_by_group_zeroes_each_group():
    table, _, spk = speaker_corpus(confounded=False)
    normed = table.standardise_by_group(spk)
    for speaker in set(spk.values()):
        frames = torch.cat([f for i, f in zip(normed.ids, normed.features, strict=True)
                            if spk[i] == speaker])
        torch.testing.assert_close(frames.mean(0), torch.zeros(4), atol=1e-4, rtol=0)
        torch.testing.assert_close(frames.std(0, unbiased=False), torch.ones(4), atol=1e-4,
                                   rtol=0)
    assert normed.features[0].dtype == table.features[0].dtype
    assert torch.equal(normed.labels, table.labels)
    with pytest.raises(DataError, match="no group"):
        table.standardise_by_group({})


def test_auto_normalisation_follows_the_validation_speakers():
    # Speaker offsets swamp the class signal: per-speaker z-norm wins on validation.
    table, fold, spk = speaker_corpus(confounded=False)
    mode, scores = select_normalisation(LayerViews(table, speakers=spk), fold, "auto")
    assert mode == "speaker"
    assert scores["speaker"] > scores["global"]
    # Speakers and classes confounded: z-norm per speaker erases the class; global wins.
    table, fold, spk = speaker_corpus(confounded=True)
    mode, scores = select_normalisation(LayerViews(table, speakers=spk), fold, "auto")
    assert mode == "global"
    assert scores["global"] >= scores["speaker"]
    # Without speakers there is nothing to choose from.
    assert select_normalisation(LayerViews(table), fold, "auto") == ("global", {})
    assert select_normalisation(LayerViews(table), fold, "speaker") == ("speaker", {})
    with pytest.raises(TrainConfigError, match="speaker"):
        LayerViews(table).view(FeaturePipeline(normalisation="speaker"))


def test_train_fold_records_the_chosen_normalisation():
    table, fold, spk = speaker_corpus(confounded=False)
    config = TrainConfig(max_epochs=2, batch_size=8, frame_pool=1, normalisation="auto",
                         time_masks=0, feature_masks=0, max_train_frames=None)

    def factory(input_dim: int, num_classes: int, input_layers: int):
        return create_model("pts-snn", input_dim, num_classes, **SMALL)

    result, model = train_fold(LayerViews(table, speakers=spk), fold, factory, config)
    assert result.normalisation == "speaker"
    assert set(result.normalisation_scores) == {"global", "speaker"}
    again = FoldResult.from_dict(result.to_dict())
    assert again.normalisation == "speaker"
    assert again.normalisation_scores == result.normalisation_scores
    # Speaker-normalised inputs have moments near identity, and the model holds them.
    assert model is not None
    assert float(model.input_mean.abs().max()) < 0.5
    with pytest.raises(TrainConfigError, match="normalisation"):
        TrainConfig(normalisation="per-clip")


def test_fit_stores_the_training_split_moments_in_the_model(tmp_path):
    table, fold, _ = speaker_corpus(confounded=False)
    train, val = table.subset(fold.train), table.subset(fold.validation)
    model = create_model("pts-snn", 4, 3, **SMALL)
    fit(model, train, val, TrainConfig(max_epochs=1, batch_size=8, frame_pool=1))
    mean, std = train.moments()
    torch.testing.assert_close(model.input_mean[0], mean)
    torch.testing.assert_close(model.input_std[0], std)
    untouched = create_model("pts-snn", 4, 3, **SMALL)
    fit(untouched, train, val, TrainConfig(max_epochs=1, batch_size=8, frame_pool=1,
                                           normalisation="none"))
    assert torch.equal(untouched.input_mean, torch.zeros(1, 4))

    # The moments travel with the checkpoint...
    save_pretrained(model, tmp_path / "head")
    loaded, _ = load_pretrained(tmp_path / "head")
    torch.testing.assert_close(loaded.input_std, model.input_std)
    x = torch.randn(2, 9, 4) * 5
    torch.testing.assert_close(loaded(x), model.eval()(x))
    # ...and a checkpoint written before they existed loads with identity moments.
    weights = tmp_path / "head" / "model.safetensors"
    tensors = load_file(str(weights))
    save_file({k: v for k, v in tensors.items() if not k.startswith("input_")}, str(weights))
    old, _ = load_pretrained(tmp_path / "head")
    assert torch.equal(old.input_mean, torch.zeros(1, 4))
    assert torch.equal(old.input_std, torch.ones(1, 4))


def test_vanilla_snn_reads_the_raw_features():
    # The paper's baseline: projection + PLIF on the frozen features as they are.
    table, fold, spk = speaker_corpus(confounded=False)
    config = TrainConfig(max_epochs=1, batch_size=8, frame_pool=1, normalisation="auto",
                         time_masks=0, feature_masks=0, max_train_frames=None)

    def factory(preset: str):
        return lambda d, c, _layers: create_model(preset, d, c, **SMALL)

    result, model = train_fold(LayerViews(table, speakers=spk), fold, factory("vanilla-snn"),
                               config)
    assert result.normalisation == "none"
    assert not model.standardises_input
    assert torch.equal(model.input_mean, torch.zeros(1, 4))
    result, model = train_fold(LayerViews(table, speakers=spk), fold, factory("+standardise"),
                               config)
    assert result.normalisation == "speaker"
    assert model.standardises_input and not model.config.saturation
