"""``probe``: the non-neural baseline of every table.

A class-balanced logistic regression on the mean and standard deviation over time of one
backbone hidden state (``[2D]`` per utterance). It is held to the neural heads' protocol:
the hidden state and the inverse regularisation ``C`` are chosen together on the validation
speakers, then the probe is refitted on training + validation data (as the benchmark refits
the neural heads) and scored once on the test fold. The same machinery ranks layer choices
for the neural heads when their ``layers`` is ``"auto"``.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

from ptssnn.evaluation.metrics import ClassificationMetrics, classification_metrics, positions
from ptssnn.features.table import LabelledFeatures

#: Name of the extra candidate "average of all hidden states".
MEAN_CANDIDATE = "mean"
#: Inverse regularisation strengths the probe chooses from on validation.
PROBE_CS = (0.01, 0.1, 1.0)


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
    """Standardised features → multinomial logistic regression (scikit-learn, lbfgs).

    ``balanced`` weights classes by inverse frequency (the benchmark's metric is UA)."""

    c: float = 1.0
    max_iter: int = 2000
    seed: int = 0
    balanced: bool = False

    def fit(self, x: np.ndarray, y: np.ndarray) -> LinearProbe:
        """Fit on ``x [N, F]``, ``y [N]``."""
        self.scaler_ = StandardScaler().fit(x)
        self.model_ = LogisticRegression(C=self.c, max_iter=self.max_iter,
                                         random_state=self.seed,
                                         class_weight="balanced" if self.balanced else None)
        with warnings.catch_warnings():
            # Near-separable folds converge slowly; the scores are still the usual ones.
            warnings.simplefilter("ignore", ConvergenceWarning)
            self.model_.fit(self.scaler_.transform(x), y)
        return self

    def predict(self, x: np.ndarray, classes: Sequence[int] | None = None) -> np.ndarray:
        """``[N]`` class indices (as given to :meth:`fit`).

        Args:
            x: ``[N, F]``.
            classes: The only classes that may be predicted (a corpus's own within a
                multi-corpus label union); ``None``: any class seen in training.

        Raises:
            ValueError: None of ``classes`` was seen in training.
        """
        z = self.scaler_.transform(x)
        if classes is None:
            return self.model_.predict(z)
        allowed = np.isin(self.model_.classes_, np.asarray(classes))
        if not allowed.any():
            raise ValueError(f"the probe was fitted on none of the classes {list(classes)}")
        scores = self.model_.predict_proba(z)
        scores[:, ~allowed] = -np.inf  # the other classes' scores never win
        return self.model_.classes_[scores.argmax(1)]


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
    classes: Sequence[int] | None = None,
) -> dict[str, float]:
    """Validation UA of a probe per candidate layer.

    Args:
        train_stats: ``[N, K, F]`` pooled statistics of the training items.
        train_labels: ``[N]``.
        val_stats: ``[M, K, F]`` of the validation items.
        val_labels: ``[M]``.
        candidates: Names of the K rows.
        num_classes: C.
        classes: The classes validation is scored over (see :func:`run_probe`).

    Returns:
        ``{candidate: validation UA}``.
    """
    scores = {}
    for k, name in enumerate(candidates):
        probe = LinearProbe(c=c, seed=seed).fit(train_stats[:, k], train_labels)
        predicted = probe.predict(val_stats[:, k], classes)
        scores[name] = scored_metrics(val_labels, predicted, num_classes, classes).ua
    return scores


def scored_metrics(references: np.ndarray, predictions: np.ndarray, num_classes: int,
                   classes: Sequence[int] | None) -> ClassificationMetrics:
    """Metrics over ``classes`` (positions in it), or over all ``num_classes`` when ``None``."""
    if classes is None:
        return classification_metrics(references, predictions, num_classes)
    return classification_metrics(positions(references, classes),
                                  positions(predictions, classes), len(classes))


def best_candidate(scores: dict[str, float]) -> str:
    """Highest score; ties go to the first candidate in order (lower layer first)."""
    return max(scores, key=lambda name: (scores[name], -list(scores).index(name)))


@dataclass
class ProbeResult:
    """A probe trained on one fold.

    Attributes:
        layer: Chosen candidate (``"3"``, ``"mean"``...).
        c: Chosen inverse regularisation strength.
        validation_scores: Validation UA of every candidate (at its best ``C``).
        test: Test metrics of the chosen probe.
        predictions: ``[N_test]`` predicted classes (positions in the scored classes).
        num_parameters: Weights + biases of the logistic regression.
        refit: Whether the final probe was fitted on training + validation rows.
        probe: The fitted probe (not saved), reading row ``candidate`` of
            :func:`pooled_statistics`; :meth:`predict_items` scores new items with it.
        candidate: Index of ``layer`` among the candidates.
    """

    layer: str
    c: float
    validation_scores: dict[str, float]
    test: ClassificationMetrics
    predictions: np.ndarray
    num_parameters: int
    refit: bool = True
    probe: LinearProbe | None = None
    candidate: int = 0

    def predict_items(self, data: LabelledFeatures,
                      classes: Sequence[int] | None = None) -> np.ndarray:
        """Predicted classes of items ``[L, T, D]`` (as the probe's table holds them), as
        positions in ``classes`` (all classes when ``None``)."""
        if self.probe is None:
            raise ValueError("this probe result holds no fitted probe")
        stats, _ = pooled_statistics(data)
        return positions(self.probe.predict(stats[:, self.candidate], classes), classes)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return {
            "layer": self.layer,
            "c": self.c,
            "validation_scores": self.validation_scores,
            "test": self.test.to_dict(),
            "num_parameters": self.num_parameters,
            "refit": self.refit,
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
    cs: tuple[float, ...] = PROBE_CS,
    seed: int = 0,
    refit: bool = True,
    balanced: bool = True,
    only: str | None = None,
    classes: Sequence[int] | None = None,
    refit_extra_rows: np.ndarray | None = None,
) -> ProbeResult:
    """Choose layer and ``C`` on validation, refit on training + validation, score the test.

    Args:
        stats: ``[N, K, F]`` pooled statistics of a whole corpus (:func:`pooled_statistics`).
        labels: ``[N]`` class indices.
        candidates: Names of the K rows.
        train_rows, val_rows, test_rows: Row indices of the fold's three splits.
        num_classes: C.
        cs: Inverse regularisation strengths to choose from.
        refit: Fit the chosen probe on training + validation rows (the neural heads' refit);
            ``False`` fits it on the training rows only.
        balanced: Class-balanced loss.
        only: Read this candidate only (the neural heads' fixed layer, e.g. ``"3"``); only
            ``C`` is then chosen on validation. ``None``: every candidate competes.
        classes: The classes validation and test are scored over, in scored order (a
            corpus's own within a multi-corpus label union): only they are predicted, and
            the test metrics and predictions are positions in it. ``None``: all classes.
        refit_extra_rows: Rows that join the refit only (the speed-perturbed copies of the
            validation clips, as the neural heads' refit gets them).
    """
    if not cs:
        raise ValueError("run_probe needs at least one C")
    if only is not None and only not in candidates:
        raise ValueError(f"probe candidate {only!r} is not among {candidates}")
    best: tuple[float, int, float] | None = None  # (validation UA, candidate, C)
    scores: dict[str, float] = {}
    for k, name in enumerate(candidates):
        if only is not None and name != only:
            continue
        for c in cs:
            probe = LinearProbe(c=c, seed=seed, balanced=balanced).fit(
                stats[train_rows, k], labels[train_rows])
            ua = scored_metrics(labels[val_rows], probe.predict(stats[val_rows, k], classes),
                                num_classes, classes).ua
            scores[name] = max(scores.get(name, -1.0), ua)
            # Ties: the earlier candidate, then the smaller C (the stronger regulariser).
            if best is None or ua > best[0]:
                best = (ua, k, c)
    assert best is not None
    _, k, c = best
    rows = (np.concatenate([train_rows, val_rows,
                            *([] if refit_extra_rows is None else [refit_extra_rows])])
            if refit else train_rows)
    probe = LinearProbe(c=c, seed=seed, balanced=balanced).fit(stats[rows, k], labels[rows])
    predicted = probe.predict(stats[test_rows, k], classes)
    coef = probe.model_.coef_
    return ProbeResult(
        layer=candidates[k],
        c=c,
        validation_scores=scores,
        test=scored_metrics(labels[test_rows], predicted, num_classes, classes),
        predictions=positions(predicted, classes),
        num_parameters=int(coef.size + probe.model_.intercept_.size),
        refit=refit,
        probe=probe,
        candidate=k,
    )
