"""cross_validate: layer selection on validation, fold records, resume across folds."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from folds import Fold
from ptssnn.training import LabelledFeatures, TrainConfig, cross_validate, select_layers
from ptssnn.training.config import TrainConfigError
from ptssnn.training.crossval import LayerViews


class MeanPoolHead(nn.Module):
    """Stand-in head: optional learned layer sum, linear, masked mean, linear."""

    def __init__(self, input_dim: int, num_classes: int, input_layers: int = 1) -> None:
        super().__init__()
        self.layer_logits = nn.Parameter(torch.zeros(input_layers)) if input_layers > 1 else None
        self.proj = nn.Linear(input_dim, 16)
        self.out = nn.Linear(16, num_classes)

    def forward(self, features: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        if self.layer_logits is not None:
            weights = self.layer_logits.softmax(0).view(1, -1, 1, 1)
            features = (features * weights).sum(1)
        hidden = torch.tanh(self.proj(features))
        m = mask.unsqueeze(-1).float()
        return self.out((hidden * m).sum(1) / m.sum(1).clamp(min=1))


def factory(input_dim: int, num_classes: int, input_layers: int) -> nn.Module:
    return MeanPoolHead(input_dim, num_classes, input_layers)


def corpus(speakers: int = 4, per: int = 12, layers: int = 3, informative: int = 2):
    """Items [L, T, D]; only hidden state `informative` carries the class."""
    rng = np.random.default_rng(0)
    items, spk = [], {}
    for s in range(speakers):
        for i in range(per):
            label = i % 3
            x = rng.standard_normal((layers, int(rng.integers(8, 20)), 6)).astype(np.float32)
            x[informative, :, label] += 2.0
            utt = f"s{s}-{i:02d}"
            items.append((utt, x, f"c{label}"))
            spk[utt] = s
    table = LabelledFeatures.from_arrays(items, ["c0", "c1", "c2"])
    folds = []
    for s in range(speakers):
        v = (s + 1) % speakers
        folds.append(Fold(
            f"loso-{s}",
            tuple(u for u in table.ids if spk[u] not in (s, v)),
            tuple(u for u in table.ids if spk[u] == v),
            tuple(u for u in table.ids if spk[u] == s),
        ))
    return table, folds


def config(**changes) -> TrainConfig:
    base = dict(max_epochs=4, patience=5, batch_size=8, lr=5e-3, warmup_epochs=0.5, frame_pool=1,
                layers="auto", time_masks=0, feature_masks=0, refit=False)
    base.update(changes)
    return TrainConfig(**base)


def test_auto_picks_the_informative_layer_on_validation():
    table, folds = corpus()
    mode, scores = select_layers(LayerViews(table), folds[0], "auto")
    assert mode == "2"
    assert set(scores) == {"0", "1", "2", "mean"}
    assert scores["2"] > scores["0"]
    assert select_layers(LayerViews(table), folds[0], "all") == ("all", {})


def test_cross_validate_reports_every_fold(tmp_path):
    table, folds = corpus()
    result = cross_validate(table, folds, factory, config(), out_dir=tmp_path)
    assert [f.fold for f in result.folds] == [f.name for f in folds]
    for fold_result, fold in zip(result.folds, folds, strict=True):
        assert fold_result.layers == "2"
        assert fold_result.predictions["ids"] == list(fold.test)
        assert fold_result.test.num_samples == len(fold.test)
        assert (tmp_path / fold.name / "result.json").exists()
        assert not (tmp_path / fold.name / "train_state.safetensors").exists()
    assert result.summary["ua"].mean > 0.8
    assert (tmp_path / "config.json").exists()


def test_weighted_layer_sum_head_gets_all_layers():
    table, folds = corpus()
    seen = []

    def spy(input_dim, num_classes, input_layers):
        seen.append((input_dim, num_classes, input_layers))
        return factory(input_dim, num_classes, input_layers)

    cross_validate(table, folds[:1], spy, config(layers="all", max_epochs=1))
    assert seen == [(6, 3, 3)]


def test_resume_across_folds_matches_uninterrupted(tmp_path):
    table, folds = corpus()
    reference = cross_validate(table, folds, factory, config(), out_dir=tmp_path / "ref")

    class Interrupt(Exception):
        pass

    calls = {"n": 0}

    def hook(record):
        calls["n"] += 1
        if calls["n"] == 4 + 2:  # second epoch of the second fold
            raise Interrupt

    with pytest.raises(Interrupt):
        cross_validate(table, folds, factory, config(), out_dir=tmp_path / "run",
                       epoch_hook=hook)
    assert (tmp_path / "run" / folds[0].name / "result.json").exists()
    assert (tmp_path / "run" / folds[1].name / "train_state.json").exists()

    epochs = []
    resumed = cross_validate(table, folds, factory, config(), out_dir=tmp_path / "run",
                             resume=True, epoch_hook=epochs.append)
    # fold 1 skipped, fold 2 continues at epoch 3, folds 3-4 in full
    assert [r["epoch"] for r in epochs] == [3, 4, 1, 2, 3, 4, 1, 2, 3, 4]
    for a, b in zip(resumed.folds, reference.folds, strict=True):
        assert a.test == b.test
        assert a.predictions == b.predictions
        assert a.fit["best_epoch"] == b.fit["best_epoch"]


def test_refit_trains_on_train_and_validation_for_the_chosen_epochs(tmp_path):
    table, folds = corpus()
    seen = []

    def spy(input_dim, num_classes, input_layers):
        seen.append(input_dim)
        return factory(input_dim, num_classes, input_layers)

    result = cross_validate(table, folds[:1], spy, config(refit=True), out_dir=tmp_path)
    fit = result.folds[0].fit
    assert len(seen) == 2  # the selection run and the refit
    assert fit["refit"]["epochs"] == fit["best_epoch"]
    assert [h["epoch"] for h in fit["refit"]["history"]] == list(range(1, fit["best_epoch"] + 1))
    assert "val_ua" not in fit["refit"]["history"][0]  # no selection on data it trains on
    assert not (tmp_path / folds[0].name / "refit_state.json").exists()


def test_refit_max_trains_the_whole_schedule_whatever_validation_chose(tmp_path):
    table, folds = corpus()
    # patience 1: the selection run may stop early; the refit still trains all epochs.
    result = cross_validate(table, folds[:1], factory,
                            config(refit=True, refit_epochs="max", patience=1, max_epochs=5),
                            out_dir=tmp_path)
    fit = result.folds[0].fit
    assert fit["refit"]["epochs"] == 5
    assert [h["epoch"] for h in fit["refit"]["history"]] == [1, 2, 3, 4, 5]


def test_the_smoothed_refit_length_is_the_argmax_of_a_centred_window_mean():
    from ptssnn.training import smoothed_best_epoch

    curve = [{"val_ua": u} for u in (0.88, 0.67, 0.83, 0.86, 0.62, 0.78, 0.64, 0.80, 0.78,
                                     0.81, 0.78)]
    assert smoothed_best_epoch(curve, 1, fallback=0) == 1  # the raw argmax: a lucky epoch 1
    # Window 3: epoch 9's (0.80 + 0.78 + 0.81) / 3 beats epoch 1's (0.88 + 0.67) / 2.
    assert smoothed_best_epoch(curve, 3, fallback=0) == 9
    assert smoothed_best_epoch([{"val_ua": 0.5}, {"val_ua": 0.5}], 3, fallback=0) == 1
    assert smoothed_best_epoch([{"train_loss": 1.0}], 3, fallback=4) == 4  # no validation
    with pytest.raises(TrainConfigError, match="refit_smoothing"):
        config(refit_smoothing=0)


def test_the_refit_trains_the_smoothed_epoch_count(tmp_path, monkeypatch):
    from ptssnn.training import crossval

    calls = []

    def spy(history, window, fallback):
        # An epoch count other than the raw argmax, so the refit must follow this one.
        calls.append((len(history), window, fallback))
        return fallback % 5 + 1

    monkeypatch.setattr(crossval, "smoothed_best_epoch", spy)
    table, folds = corpus()
    result = cross_validate(table, folds[:1], factory,
                            config(refit=True, refit_smoothing=3, max_epochs=5, patience=5),
                            out_dir=tmp_path)
    fit = result.folds[0].fit
    assert calls == [(len(fit["history"]), 3, fit["best_epoch"])]
    assert fit["refit"]["epochs"] == fit["best_epoch"] % 5 + 1 != fit["best_epoch"]


def test_refit_auto_follows_the_number_of_speakers():
    from ptssnn.training.config import REFIT_MAX_MIN_SPEAKERS, refit_policy

    assert refit_policy("auto", REFIT_MAX_MIN_SPEAKERS) == "max"
    assert refit_policy("auto", REFIT_MAX_MIN_SPEAKERS - 1) == "best"
    assert refit_policy("auto", None) == "best"
    assert refit_policy("max", 2) == "max" and refit_policy("best", 50) == "best"
    # A head trained for enrolled use refits for the whole schedule whatever the speakers.
    assert refit_policy("auto", 2, "enrolled") == "max"
    assert refit_policy("auto", 2, "global") == refit_policy("auto", 2, "speaker") == "best"
    assert refit_policy("best", 2, "enrolled") == "best"


def test_resume_inside_the_refit_matches_uninterrupted(tmp_path):
    table, folds = corpus()
    cfg = config(refit=True, max_epochs=3)
    reference = cross_validate(table, folds[:2], factory, cfg, out_dir=tmp_path / "ref")

    class Interrupt(Exception):
        pass

    def hook(record):
        if "val_ua" not in record and record["epoch"] == 1:  # first refit epoch, fold 1
            raise Interrupt

    with pytest.raises(Interrupt):
        cross_validate(table, folds[:2], factory, cfg, out_dir=tmp_path / "run", epoch_hook=hook)
    assert (tmp_path / "run" / folds[0].name / "refit_state.json").exists()
    resumed = cross_validate(table, folds[:2], factory, cfg, out_dir=tmp_path / "run",
                             resume=True)
    for a, b in zip(resumed.folds, reference.folds, strict=True):
        assert a.test == b.test and a.predictions == b.predictions
        assert a.fit["refit"]["epochs"] == b.fit["refit"]["epochs"]


def test_the_refit_also_trains_on_the_folds_refit_extra(tmp_path, monkeypatch):
    """``Fold.refit_extra`` (the speed-perturbed copies of the validation clips) joins the
    refit only, for the neural heads and for the probe; a fold without the field has none."""
    import dataclasses

    from ptssnn.corpora import Fold as CorpusFold
    from ptssnn.evaluation import probe as probe_module
    from ptssnn.training import crossval

    table, folds = corpus()
    base = folds[0]
    # Copies of the validation clips under new ids (their features: the same arrays).
    copies = table.subset(base.validation)
    copies = dataclasses.replace(copies, ids=tuple(f"speed0.9/{i}" for i in copies.ids))
    joined = LabelledFeatures.concatenate([table, copies])
    fold = CorpusFold(base.name, base.train, base.validation, base.test,
                      refit_extra=copies.ids)
    sizes: list[int] = []
    original_fit = crossval.fit

    def spy_fit(model, train, val, config, **kwargs):
        sizes.append(len(train))
        return original_fit(model, train, val, config, **kwargs)

    monkeypatch.setattr(crossval, "fit", spy_fit)
    cross_validate(joined, [fold], factory, config(refit=True), out_dir=tmp_path / "a")
    assert sizes == [len(base.train), len(base.train) + 2 * len(base.validation)]
    sizes.clear()
    cross_validate(joined, [base], factory, config(refit=True), out_dir=tmp_path / "b")
    assert sizes == [len(base.train), len(base.train) + len(base.validation)]

    fitted: list[int] = []
    original_probe_fit = probe_module.LinearProbe.fit

    def spy_probe(self, x, y):
        fitted.append(len(x))
        return original_probe_fit(self, x, y)

    monkeypatch.setattr(probe_module.LinearProbe, "fit", spy_probe)
    cross_validate(joined, [fold], crossval.PROBE_HEAD, config(refit=True, layers="2"),
                   out_dir=tmp_path / "c")
    assert fitted[-1] == len(base.train) + 2 * len(base.validation)  # the refit
    assert set(fitted[:-1]) == {len(base.train)}  # C chosen on the training rows only
