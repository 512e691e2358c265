"""Scores, efficiency and plots: WA/UA/F1 per fold and mean ± std, the probe baseline,
energy and firing statistics of trained heads, matplotlib figures.

Public API (imported on first use)::

    from ptssnn.evaluation import classification_metrics, summarise_folds, run_probe
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "ClassificationMetrics": "ptssnn.evaluation.metrics",
    "classification_metrics": "ptssnn.evaluation.metrics",
    "MeanStd": "ptssnn.evaluation.metrics",
    "mean_std": "ptssnn.evaluation.metrics",
    "summarise_folds": "ptssnn.evaluation.metrics",
    "pooled_confusion": "ptssnn.evaluation.metrics",
    "METRIC_NAMES": "ptssnn.evaluation.metrics",
    "pooled_statistics": "ptssnn.evaluation.probe",
    "LinearProbe": "ptssnn.evaluation.probe",
    "run_probe": "ptssnn.evaluation.probe",
    "ProbeResult": "ptssnn.evaluation.probe",
}

__all__ = list(_LAZY)


def __getattr__(name: str) -> Any:
    # Lazy, for the same reason as ptssnn.training: the two packages use each other.
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'ptssnn.evaluation' has no attribute {name!r}")
