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


#: One epoch of a head trained for enrolled use on the offset corpus.
ENROLLED_RUN = TrainConfig(max_epochs=1, batch_size=8, frame_pool=1, layers="0",
                           normalisation="enrolled", time_masks=0, feature_masks=0,
                           max_train_frames=None)


def tiny_head(input_dim: int, num_classes: int, input_layers: int) -> nn.Module:
    return create_model("pts-snn", input_dim, num_classes, width=16, block_hidden=24,
                        attention_heads=4, num_prompts=2)


def test_train_fold_in_enrolled_mode() -> None:
    table, fold, speakers = offset_corpus(per=12)
    config, factory = ENROLLED_RUN, tiny_head

    result, model = train_fold(LayerViews(table, speakers=speakers), fold, factory, config,
                               enrolment=EnrolmentProtocol((0, "all"), draws=1))
    assert result.normalisation == "enrolled" and set(result.enrolment) == {"0", "all"}
    # The head standardised its (mixed, per-speaker normalised) training input itself.
    assert float(model.input_mean.abs().max()) < 1.0
    with pytest.raises(TrainConfigError, match="speaker"):
        train_fold(LayerViews(table), fold, factory, config)


@pytest.mark.parametrize("normalisation", ["global", "enrolled"])
def test_refit_auto_trains_the_whole_schedule_for_enrolled_use(normalisation) -> None:
    # Two training + validation speakers: under global standardisation "auto" refits for the
    # validation-chosen epoch count, for enrolled use for the whole schedule.
    table, fold, speakers = offset_corpus(per=12)
    config = ENROLLED_RUN.replace(normalisation=normalisation, refit=True, refit_epochs="auto",
                                  max_epochs=3, patience=3)
    result, _ = train_fold(LayerViews(table, speakers=speakers), fold, tiny_head, config)
    refit = result.fit["refit"]
    if normalisation == "enrolled":
        assert refit["policy"] == "max" and refit["epochs"] == 3
    else:
        assert refit["policy"] == "best" and refit["epochs"] == result.fit["best_epoch"]


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


def with_speed_copies(table: LabelledFeatures, speakers: dict[str, str], shift: float = 6.0):
    """``table`` plus a ``speed1.1/`` copy of every item, offset by ``shift`` (another voice),
    attributed to its original's speaker as the benchmark attributes copies."""
    copies = [(f"speed1.1/{u}", (f.float() + shift).numpy(), table.label_names[int(y)])
              for u, f, y in zip(table.ids, table.features, table.labels, strict=True)]
    originals = [(u, f.float().numpy(), table.label_names[int(y)])
                 for u, f, y in zip(table.ids, table.features, table.labels, strict=True)]
    joined = LabelledFeatures.from_arrays(originals + copies, list(table.label_names))
    return joined, {**speakers, **{c: speakers[c.split("/", 1)[1]] for c, _, _ in copies}}


def test_speed_copies_are_standardised_as_voices_of_their_own() -> None:
    table, fold, speakers = offset_corpus(per=12)
    joined, joined_speakers = with_speed_copies(table, speakers)
    plain = LayerViews(table, speakers=speakers)
    copied = LayerViews(joined, speakers=joined_speakers)
    assert copied.speakers[f"speed1.1/{table.ids[0]}"] == speakers[table.ids[0]]
    assert copied.groups[f"speed1.1/{table.ids[0]}"] == f"{speakers[table.ids[0]]}@speed1.1"
    # Per-speaker standardisation: the originals are untouched by their copies' moments, and
    # each copy is standardised by its own voice (the +6 offset is gone).
    a, b = plain.normalised("speaker"), copied.normalised("speaker")
    rows = copied.rows(table.ids)
    assert all(torch.allclose(a.features[i].float(), b.features[r].float(), atol=1e-2)
               for i, r in enumerate(rows))
    copy_rows = copied.rows([f"speed1.1/{u}" for u in table.ids])
    assert abs(float(torch.cat([b.features[r].float().flatten() for r in copy_rows]).mean())) < 0.2
    # Enrolled training: each voice gets its own profiles; the originals' items are the same
    # as without copies (same prior, same draws).
    pipeline = FeaturePipeline(layers="0", normalisation="speaker")
    prior = (*fold.train, *fold.validation)
    alone = EnrolledTraining(table, plain.groups, pipeline, prior, ks=(5, "all"), seed=1)
    mixed = EnrolledTraining(joined, copied.groups, pipeline, prior, ks=(5, "all"), seed=1)
    train_copies = tuple(f"speed1.1/{u}" for u in fold.train)
    part = mixed.table((*fold.train, *train_copies))
    before = dict(zip(alone.table(fold.train).ids, alone.table(fold.train).features,
                      strict=True))
    after = dict(zip(part.ids, part.features, strict=True))
    assert all(torch.equal(before[k], after[k]) for k in before)
    # The copies: exactly as if each speed of a speaker were another speaker.
    renamed = {u: (f"{s}@speed1.1" if u.startswith("speed") else s)
               for u, s in joined_speakers.items()}
    explicit = EnrolledTraining(joined, renamed, pipeline, prior, ks=(5, "all"), seed=1)
    reference = explicit.table(train_copies)
    assert all(torch.equal(after[k], f) for k, f in zip(reference.ids, reference.features,
                                                        strict=True))
    mixed_in = EnrolledTraining(joined, joined_speakers, pipeline, prior, ks=("all",), seed=1)
    assert not torch.equal(mixed_in.table((*fold.train, *train_copies)).features[0],
                           before[f"{fold.train[0]}@K=all"])  # what the groups prevent


def test_train_fold_in_enrolled_mode_with_speed_copies() -> None:
    table, fold, speakers = offset_corpus(per=12)
    joined, joined_speakers = with_speed_copies(table, speakers, shift=1.0)
    fold = Fold("f0", (*fold.train, *(f"speed1.1/{u}" for u in fold.train)), fold.validation,
                fold.test)
    config, factory = ENROLLED_RUN, tiny_head

    result, _ = train_fold(LayerViews(joined, speakers=joined_speakers), fold, factory, config,
                           enrolment=EnrolmentProtocol((0, 5), draws=1))
    assert set(result.enrolment) == {"0", "5"}
    assert result.enrolment["5"]["scored"] == len(fold.test) - 2 * 5  # originals only
