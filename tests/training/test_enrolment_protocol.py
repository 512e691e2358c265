"""The enrolment protocol: K unlabelled clips per test speaker build a profile, the rest are
scored with it."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from folds import Fold
from ptssnn.features import FeaturePipeline
from ptssnn.models import create_model
from ptssnn.training import LabelledFeatures, TrainConfig, TrainConfigError, train_fold
from ptssnn.training.crossval import FoldResult, LayerViews
from ptssnn.training.enrolment import (
    EnrolledTraining,
    EnrolmentProtocol,
    parse_enrolment_k,
    score_enrolment,
)


def offset_corpus(per: int = 16, seed: int = 0):
    """[L=2, T, D=3] float16 items of 4 speakers; each speaker shifts every channel by ±2, the
    class (2 of them) shifts channel 0 by ±1: globally the speaker swamps the class."""
    rng = np.random.default_rng(seed)
    items, speakers = [], {}
    for s, offset in enumerate((2.0, -2.0, 2.0, -2.0)):
        for i in range(per):
            label = i % 2
            x = rng.normal(0, 0.5, (2, int(rng.integers(8, 16)), 3)).astype(np.float32) + offset
            x[:, :, 0] += 2 * label - 1
            utt = f"s{s}-{i:02d}"
            items.append((utt, x, f"c{label}"))
            speakers[utt] = f"s{s}"
    table = LabelledFeatures.from_arrays(items, ["c0", "c1"])
    ids = lambda *ss: tuple(u for u in table.ids if speakers[u] in ss)  # noqa: E731
    return table, Fold("f0", ids("s0"), ids("s1"), ids("s2", "s3")), speakers


class SignHead(nn.Module):
    """Class 1 when channel 0 of the first layer is positive on average (no training)."""

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        mean = (x[..., 0] * mask).sum(-1) / mask.sum(-1)
        return torch.stack([-mean, mean], dim=-1)


def test_k_parsing_and_protocol_checks() -> None:
    assert parse_enrolment_k("ALL") == "all" and parse_enrolment_k("5") == 5
    for bad in ("-1", "five", "2.5"):
        with pytest.raises(TrainConfigError):
            parse_enrolment_k(bad)
    protocol = EnrolmentProtocol(("0", "5", 5, "all"), draws=2)
    assert protocol.ks == (0, 5, "all")
    assert EnrolmentProtocol.from_dict(protocol.to_dict()) == protocol
    with pytest.raises(TrainConfigError):
        EnrolmentProtocol((), draws=1)


def test_profiles_remove_the_speaker_offset_and_enrolment_clips_are_not_scored() -> None:
    table, fold, speakers = offset_corpus()
    pipeline = FeaturePipeline(layers="0", normalisation="global")
    protocol = EnrolmentProtocol((0, 1, 4, "all"), draws=3, prior_clips=2.0)
    scores = score_enrolment(SignHead(), table, fold, pipeline, speakers, protocol)
    assert scores["0"]["ua"] == pytest.approx(0.5)  # the offset decides every clip
    assert scores["all"]["ua"] > 0.95
    assert 0.8 < scores["4"]["ua"] <= scores["all"]["ua"] and len(scores["4"]["ua_draws"]) == 3
    assert [scores[k]["scored"] for k in ("0", "1", "4", "all")] == [32, 30, 24, 32]
    # No shrinkage and one clip: still removes most of the offset on this easy data; with a
    # heavy prior one clip barely moves the normalisation.
    heavy = score_enrolment(SignHead(), table, fold, pipeline, speakers,
                            EnrolmentProtocol((1,), draws=3, prior_clips=1000.0))
    assert heavy["1"]["ua"] == pytest.approx(0.5)
    # Labels of the enrolment clips play no part: shuffling them changes no prediction of the
    # scored clips, so the scores of a label-free head are the same.
    shuffled = LabelledFeatures(table.ids, table.features, table.labels.flip(0),
                                table.label_names)
    again = score_enrolment(SignHead(), shuffled, fold, pipeline, speakers, protocol)
    assert again["all"]["ua"] < 0.05  # every reference flipped, every prediction the same


def test_train_fold_scores_every_k_and_k0_is_the_plain_test() -> None:
    table, fold, speakers = offset_corpus(per=12)
    config = TrainConfig(max_epochs=2, batch_size=8, frame_pool=1, layers="0",
                         normalisation="global", time_masks=0, feature_masks=0,
                         max_train_frames=None)

    def factory(input_dim: int, num_classes: int, input_layers: int):
        return create_model("pts-snn", input_dim, num_classes, width=16, block_hidden=24,
                            attention_heads=4, num_prompts=2)

    protocol = EnrolmentProtocol((0, 3, "all"), draws=2)
    result, _ = train_fold(LayerViews(table, speakers=speakers), fold, factory, config,
                           enrolment=protocol)
    assert list(result.enrolment) == ["0", "3", "all"]
    assert result.enrolment["0"]["ua"] == pytest.approx(result.test.ua, abs=1e-9)
    assert result.enrolment["3"]["scored"] == len(fold.test) - 2 * 3
    assert FoldResult.from_dict(result.to_dict()).enrolment == result.enrolment
    with pytest.raises(TrainConfigError, match="speaker"):
        train_fold(LayerViews(table), fold, factory, config, enrolment=protocol)


def test_enrolled_training_table_has_every_item_once_per_k() -> None:
    table, fold, speakers = offset_corpus(per=12)
    pipeline = FeaturePipeline(layers="0", normalisation="speaker")
    mixed = EnrolledTraining(table, speakers, pipeline, (*fold.train, *fold.validation),
                             ks=(0, 3, "all"), seed=1)
    assert mixed.prior.trained_for == "enrolled"
    part = mixed.table(fold.train)
    assert len(part) == 3 * len(fold.train)
    assert part.ids[0] == f"{fold.train[0]}@K=0" and part.ids[-1].endswith("@K=all")
    assert torch.equal(part.labels[: len(fold.train)], table.subset(fold.train).labels)
    # K = 0: the prior's moments (speaker s0's +2 offset is about one global std); K = all:
    # the speaker's own but for the prior's 2 of 14 clips; K = 3: in between.
    means = [float(torch.cat([f.float() for f in part.features[i * 12:(i + 1) * 12]])
                   .mean(0)[1]) for i in range(3)]
    assert means[0] > 0.8 and abs(means[2]) < 0.4 and means[2] < means[1] < means[0]
    # Same seed, same draws.
    again = EnrolledTraining(table, speakers, pipeline, (*fold.train, *fold.validation),
                             ks=(0, 3, "all"), seed=1).table(fold.train)
    assert all(torch.equal(a, b) for a, b in zip(part.features, again.features, strict=True))


def test_train_fold_in_enrolled_mode() -> None:
    table, fold, speakers = offset_corpus(per=12)
    config = TrainConfig(max_epochs=1, batch_size=8, frame_pool=1, layers="0",
                         normalisation="enrolled", time_masks=0, feature_masks=0,
                         max_train_frames=None)

    def factory(input_dim: int, num_classes: int, input_layers: int):
        return create_model("pts-snn", input_dim, num_classes, width=16, block_hidden=24,
                            attention_heads=4, num_prompts=2)

    result, model = train_fold(LayerViews(table, speakers=speakers), fold, factory, config,
                               enrolment=EnrolmentProtocol((0, "all"), draws=1))
    assert result.normalisation == "enrolled" and set(result.enrolment) == {"0", "all"}
    # The head standardised its (mixed, per-speaker normalised) training input itself.
    assert float(model.input_mean.abs().max()) < 1.0
    with pytest.raises(TrainConfigError, match="speaker"):
        train_fold(LayerViews(table), fold, factory, config)


@pytest.mark.parametrize("normalisation", ["global", "enrolled"])
def test_the_probe_is_scored_under_the_same_protocol(normalisation) -> None:
    from ptssnn.training import PROBE_HEAD

    table, fold, speakers = offset_corpus(per=12)
    config = TrainConfig(layers="0", normalisation=normalisation, refit=True)
    protocol = EnrolmentProtocol((0, 3, "all"), draws=2)
    result, _ = train_fold(LayerViews(table, speakers=speakers), fold, PROBE_HEAD, config,
                           enrolment=protocol)
    assert list(result.enrolment) == ["0", "3", "all"]
    assert result.enrolment["3"]["scored"] == len(fold.test) - 2 * 3
    assert result.enrolment["all"]["scored"] == len(fold.test)
    if normalisation == "global":
        # No profile: the very items and probe of the plain test.
        assert result.enrolment["0"]["ua"] == pytest.approx(result.test.ua, abs=1e-9)
    assert all(0.0 <= result.enrolment[k]["ua"] <= 1.0 for k in result.enrolment)
    assert FoldResult.from_dict(result.to_dict()).enrolment == result.enrolment
