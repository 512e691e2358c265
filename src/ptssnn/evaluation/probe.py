"""``probe``: the non-neural baseline of every table.

A logistic regression on the mean and standard deviation over time of one backbone hidden
state (``[2D]`` per utterance); which hidden state is chosen on the validation speakers. The
same machinery ranks layer choices for the neural heads when their ``layers`` is ``"auto"``.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

from ptssnn.evaluation.metrics import ClassificationMetrics, classification_metrics
from ptssnn.features.table import LabelledFeatures

#: Name of the extra candidate "average of all hidden states".
MEAN_CANDIDATE = "mean"


def pooled_statistics(data: LabelledFeatures) -> tuple[np.ndarray, tuple[str, ...]]:
    """Mean and std over time of every hidden state, plus of their average.

    Args:
        data: Items ``[L, T, D]`` (or ``[T, D]``, treated as L = 1).

    Returns:
        ``(stats, candidates)``: ``stats`` is ``[N, K, 2D]`` float32 with K = L + 1 (each
        layer, then the layer average; K = 1 when L = 1); ``candidates`` names the K rows
        (``"0"``, ``"1"``, …, ``"mean"``), each a valid ``TrainConfig.layers`` value.
    """
    layers = data.num_layers
    names = tuple(str(i) for i in range(layers)) + ((MEAN_CANDIDATE,) if layers > 1 else ())
    out = np.zeros((len(data), len(names), 2 * data.feature_dim), dtype=np.float32)
    for row, item in enumerate(data.features):
        x = item.float()
        if x.dim() == 2:
            x = x.unsqueeze(0)
        if layers > 1:
            x = np.concatenate([x.numpy(), x.mean(0, keepdim=True).numpy()], axis=0)
        else:
            x = x.numpy()
        out[row, :, : data.feature_dim] = x.mean(1)
        out[row, :, data.feature_dim :] = x.std(1)
    return out, names


@dataclass
class LinearProbe:
    """Standardised features → multinomial logistic regression (scikit-learn, lbfgs)."""

    c: float = 1.0
    max_iter: int = 2000
    seed: int = 0

    def fit(self, x: np.ndarray, y: np.ndarray) -> LinearProbe:
        """Fit on ``x [N, F]``, ``y [N]``."""
        self.scaler_ = StandardScaler().fit(x)
        self.model_ = LogisticRegression(C=self.c, max_iter=self.max_iter,
                                         random_state=self.seed)
        with warnings.catch_warnings():
            # Near-separable folds converge slowly; the scores are still the usual ones.
            warnings.simplefilter("ignore", ConvergenceWarning)
            self.model_.fit(self.scaler_.transform(x), y)
        return self

    def predict(self, x: np.ndarray) -> np.ndarray:
        """``[N]`` class indices (as given to :meth:`fit`)."""
        return self.model_.predict(self.scaler_.transform(x))


def probe_layer_scores(
    train_stats: np.ndarray,
    train_labels: np.ndarray,
    val_stats: np.ndarray,
    val_labels: np.ndarray,
    candidates: tuple[str, ...],
    num_classes: int,
    *,
    c: float = 1.0,
    seed: int = 0,
) -> dict[str, float]:
    """Validation UA of a probe per candidate layer.

    Args:
        train_stats: ``[N, K, F]`` pooled statistics of the training items.
        train_labels: ``[N]``.
        val_stats: ``[M, K, F]`` of the validation items.
        val_labels: ``[M]``.
        candidates: Names of the K rows.
        num_classes: C.

    Returns:
        ``{candidate: validation UA}``.
    """
    scores = {}
    for k, name in enumerate(candidates):
        probe = LinearProbe(c=c, seed=seed).fit(train_stats[:, k], train_labels)
        predicted = probe.predict(val_stats[:, k])
        scores[name] = classification_metrics(val_labels, predicted, num_classes).ua
    return scores


def best_candidate(scores: dict[str, float]) -> str:
    """Highest score; ties go to the first candidate in order (lower layer first)."""
    return max(scores, key=lambda name: (scores[name], -list(scores).index(name)))


@dataclass
class ProbeResult:
    """A probe trained on one fold.

    Attributes:
        layer: Chosen candidate (``"3"``, ``"mean"``...).
        validation_scores: Validation UA of every candidate.
        test: Test metrics of the chosen probe.
        predictions: ``[N_test]`` predicted classes.
        num_parameters: Weights + biases of the logistic regression.
    """

    layer: str
    validation_scores: dict[str, float]
    test: ClassificationMetrics
    predictions: np.ndarray
    num_parameters: int

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return {
            "layer": self.layer,
            "validation_scores": self.validation_scores,
            "test": self.test.to_dict(),
            "num_parameters": self.num_parameters,
        }


def run_probe(
    stats: np.ndarray,
    labels: np.ndarray,
    candidates: tuple[str, ...],
    train_rows: np.ndarray,
    val_rows: np.ndarray,
    test_rows: np.ndarray,
    num_classes: int,
    *,
    c: float = 1.0,
    seed: int = 0,
    scores: dict[str, float] | None = None,
) -> ProbeResult:
    """Choose the layer on validation, train on the training rows, score the test rows.

    Args:
        stats: ``[N, K, F]`` pooled statistics of a whole corpus (:func:`pooled_statistics`).
        labels: ``[N]`` class indices.
        candidates: Names of the K rows.
        train_rows, val_rows, test_rows: Row indices of the fold's three splits.
        num_classes: C.
    """
    scores = probe_layer_scores(stats[train_rows], labels[train_rows], stats[val_rows],
                                labels[val_rows], candidates, num_classes, c=c, seed=seed)
    chosen = best_candidate(scores)
    k = candidates.index(chosen)
    probe = LinearProbe(c=c, seed=seed).fit(stats[train_rows, k], labels[train_rows])
    predicted = probe.predict(stats[test_rows, k])
    coef = probe.model_.coef_
    return ProbeResult(
        layer=chosen,
        validation_scores=scores,
        test=classification_metrics(labels[test_rows], predicted, num_classes),
        predictions=np.asarray(predicted),
        num_parameters=int(coef.size + probe.model_.intercept_.size),
    )
