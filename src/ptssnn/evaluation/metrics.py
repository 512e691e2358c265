"""Classification metrics (scikit-learn) per fold, and mean ± std over folds."""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from sklearn.exceptions import UndefinedMetricWarning
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, recall_score

#: Scalar metrics in the order reports show them.
METRIC_NAMES = ("wa", "ua", "macro_f1", "weighted_f1")


@dataclass(frozen=True)
class ClassificationMetrics:
    """Scores of one evaluation, as fractions in [0, 1].

    Attributes:
        wa: Weighted accuracy = overall accuracy.
        ua: Unweighted accuracy = mean recall over the classes present in the references.
        macro_f1: Unweighted mean of per-class F1 (over the classes present in references
            or predictions).
        weighted_f1: Per-class F1 weighted by class support.
        confusion: ``[C, C]`` counts, rows = reference, columns = prediction.
        num_samples: Items evaluated.
    """

    wa: float
    ua: float
    macro_f1: float
    weighted_f1: float
    confusion: tuple[tuple[int, ...], ...]
    num_samples: int

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return {
            "wa": self.wa,
            "ua": self.ua,
            "macro_f1": self.macro_f1,
            "weighted_f1": self.weighted_f1,
            "confusion": [list(row) for row in self.confusion],
            "num_samples": self.num_samples,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ClassificationMetrics:
        """Inverse of :meth:`to_dict`."""
        return cls(
            _number(data["wa"]),
            _number(data["ua"]),
            _number(data["macro_f1"]),
            _number(data["weighted_f1"]),
            tuple(tuple(int(v) for v in row) for row in data["confusion"]),
            int(data["num_samples"]),
        )


def _number(value: Any) -> float:
    """A stored metric; ``null`` (how strict JSON writes NaN) reads back as NaN."""
    return float("nan") if value is None else float(value)


def classification_metrics(
    references: Sequence[int] | np.ndarray,
    predictions: Sequence[int] | np.ndarray,
    num_classes: int,
) -> ClassificationMetrics:
    """WA, UA, macro-F1, weighted-F1 and the confusion matrix.

    Args:
        references: ``[N]`` true class indices.
        predictions: ``[N]`` predicted class indices.
        num_classes: C; the confusion matrix is ``[C, C]`` even for absent classes.

    Returns:
        The scores. UA averages recall over the classes that occur in ``references`` (a class
        with no test item has no recall), as balanced accuracy does.
    """
    y_true = np.asarray(references, dtype=np.int64)
    y_pred = np.asarray(predictions, dtype=np.int64)
    if y_true.shape != y_pred.shape or y_true.ndim != 1:
        raise ValueError(f"references {y_true.shape} and predictions {y_pred.shape} must be [N]")
    labels = list(range(num_classes))
    if y_true.size == 0:
        empty = tuple(tuple(0 for _ in labels) for _ in labels)
        return ClassificationMetrics(0.0, 0.0, 0.0, 0.0, empty, 0)
    present = sorted(set(y_true.tolist()))
    with warnings.catch_warnings():
        # A class never predicted has precision 0/0; scikit-learn then counts F1 = 0, as we want.
        warnings.simplefilter("ignore", UndefinedMetricWarning)
        ua = recall_score(y_true, y_pred, labels=present, average="macro", zero_division=0)
        observed = sorted(set(present) | set(y_pred.tolist()))
        macro_f1 = f1_score(y_true, y_pred, labels=observed, average="macro", zero_division=0)
        weighted_f1 = f1_score(y_true, y_pred, labels=present, average="weighted",
                               zero_division=0)
    confusion = confusion_matrix(y_true, y_pred, labels=labels)
    return ClassificationMetrics(
        wa=float(accuracy_score(y_true, y_pred)),
        ua=float(ua),
        macro_f1=float(macro_f1),
        weighted_f1=float(weighted_f1),
        confusion=tuple(tuple(int(v) for v in row) for row in confusion),
        num_samples=int(y_true.size),
    )


def positions(indices: Sequence[int] | np.ndarray, classes: Sequence[int] | None
              ) -> np.ndarray:
    """Class indices of a larger label set re-expressed as positions in ``classes``, the
    scored subset (a corpus's classes within a multi-corpus label union).

    Args:
        indices: ``[N]`` class indices, each one of ``classes``.
        classes: Scored class indices, in scored order; ``None``: every class, unchanged.

    Raises:
        ValueError: An index that is not among ``classes``.
    """
    values = np.asarray(indices, dtype=np.int64)
    if classes is None:
        return values
    lookup = {int(c): k for k, c in enumerate(classes)}
    try:
        return np.asarray([lookup[int(v)] for v in values], dtype=np.int64)
    except KeyError as error:
        raise ValueError(f"class {error.args[0]} is not among the scored classes "
                         f"{list(classes)}") from None


@dataclass(frozen=True)
class MeanStd:
    """Mean and sample-free (population, ddof=0) standard deviation over folds."""

    mean: float
    std: float
    values: tuple[float, ...]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return {"mean": self.mean, "std": self.std, "values": list(self.values)}

    def format(self, scale: float = 100.0, digits: int = 1) -> str:
        """``"52.3 ± 4.1"`` (percent by default)."""
        if math.isnan(self.mean):
            return "n/a"
        return f"{self.mean * scale:.{digits}f} ± {self.std * scale:.{digits}f}"


def mean_std(values: Iterable[float]) -> MeanStd:
    """Mean ± std of finite values (NaN when there are none).

    The std is the population std (ddof=0) over folds, as EmoBox and most SER papers report.
    """
    kept = tuple(float(v) for v in values if v is not None and math.isfinite(float(v)))
    if not kept:
        return MeanStd(float("nan"), float("nan"), ())
    array = np.asarray(kept, dtype=np.float64)
    return MeanStd(float(array.mean()), float(array.std()), kept)


def summarise_folds(per_fold: Sequence[Mapping[str, Any]]) -> dict[str, MeanStd]:
    """Mean ± std of every metric in :data:`METRIC_NAMES` over folds.

    Args:
        per_fold: One metrics dict per fold (as :meth:`ClassificationMetrics.to_dict`).
    """
    return {name: mean_std(fold[name] for fold in per_fold if name in fold)
            for name in METRIC_NAMES}


def pooled_confusion(per_fold: Sequence[Mapping[str, Any]]) -> list[list[int]]:
    """Sum of the per-fold confusion matrices (every test item counted once)."""
    total: np.ndarray | None = None
    for fold in per_fold:
        matrix = np.asarray(fold["confusion"], dtype=np.int64)
        total = matrix if total is None else total + matrix
    return [] if total is None else total.tolist()
