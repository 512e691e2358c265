"""Metrics against hand-computed values."""

from __future__ import annotations

import math

import pytest

from ptssnn.evaluation.metrics import (
    ClassificationMetrics,
    classification_metrics,
    mean_std,
    pooled_confusion,
    summarise_folds,
)


def test_metrics_match_hand_computation():
    # 3 classes. refs: 0 0 0 0 1 1 2 2 2 2 ; preds: 0 0 1 2 1 1 2 2 0 2
    refs = [0, 0, 0, 0, 1, 1, 2, 2, 2, 2]
    preds = [0, 0, 1, 2, 1, 1, 2, 2, 0, 2]
    m = classification_metrics(refs, preds, 3)
    # WA: correct = 2 + 2 + 3 = 7 of 10
    assert m.wa == pytest.approx(0.7)
    # recalls: 2/4, 2/2, 3/4 -> UA = (0.5 + 1 + 0.75) / 3 = 0.75
    assert m.ua == pytest.approx(0.75)
    # precisions: c0 2/3, c1 2/3, c2 3/4
    f1 = [2 * p * r / (p + r) for p, r in [(2 / 3, 0.5), (2 / 3, 1.0), (0.75, 0.75)]]
    assert m.macro_f1 == pytest.approx(sum(f1) / 3)
    assert m.weighted_f1 == pytest.approx((4 * f1[0] + 2 * f1[1] + 4 * f1[2]) / 10)
    assert m.confusion == ((2, 1, 1), (0, 2, 0), (1, 0, 3))
    assert m.num_samples == 10


def test_ua_ignores_classes_absent_from_references():
    # class 2 never occurs in the references; predicting it once costs recall of class 0 only
    m = classification_metrics([0, 0, 1, 1], [0, 2, 1, 1], 3)
    assert m.ua == pytest.approx((0.5 + 1.0) / 2)
    assert m.confusion[2] == (0, 0, 0)
    # macro-F1 counts the wrongly predicted class 2 with F1 = 0
    f1_0 = 2 * 1.0 * 0.5 / 1.5
    assert m.macro_f1 == pytest.approx((f1_0 + 1.0 + 0.0) / 3)


def test_perfect_and_empty():
    assert classification_metrics([1, 0], [1, 0], 2).ua == 1.0
    empty = classification_metrics([], [], 2)
    assert empty.num_samples == 0 and empty.confusion == ((0, 0), (0, 0))


def test_shape_mismatch_is_an_error():
    with pytest.raises(ValueError):
        classification_metrics([0, 1], [0], 2)


def test_roundtrip_dict():
    m = classification_metrics([0, 1, 1], [0, 1, 0], 2)
    assert ClassificationMetrics.from_dict(m.to_dict()) == m


def test_mean_std_is_population_std():
    ms = mean_std([0.5, 0.7])
    assert ms.mean == pytest.approx(0.6)
    assert ms.std == pytest.approx(0.1)
    assert ms.format() == "60.0 ± 10.0"
    assert math.isnan(mean_std([]).mean)
    assert mean_std([float("nan"), 0.2]).values == (0.2,)


def test_summaries_over_folds():
    folds = [classification_metrics([0, 1], [0, 1], 2).to_dict(),
             classification_metrics([0, 1], [1, 1], 2).to_dict()]
    summary = summarise_folds(folds)
    assert summary["ua"].mean == pytest.approx(0.75)
    assert summary["wa"].std == pytest.approx(0.25)
    assert pooled_confusion(folds) == [[1, 1], [0, 2]]
