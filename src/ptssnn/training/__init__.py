"""Training heads on cached features: config, ``fit``, the one per-fold path
(``train_fold``), ``cross_validate``, and deployment training (``train_recognizer``).

Public API (imported on first use)::

    from ptssnn.training import TrainConfig, LabelledFeatures, fit, cross_validate
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "TrainConfig": "ptssnn.training.config",
    "TrainConfigError": "ptssnn.training.config",
    "LabelledFeatures": "ptssnn.features.table",
    "Batch": "ptssnn.features.table",
    "DataError": "ptssnn.features.table",
    "bucketed_batches": "ptssnn.features.table",
    "fit": "ptssnn.training.trainer",
    "evaluate": "ptssnn.training.trainer",
    "predict_logits": "ptssnn.training.trainer",
    "FitResult": "ptssnn.training.trainer",
    "TrainingError": "ptssnn.training.trainer",
    "learning_rate": "ptssnn.training.trainer",
    "cross_validate": "ptssnn.training.crossval",
    "train_fold": "ptssnn.training.crossval",
    "smoothed_best_epoch": "ptssnn.training.crossval",
    "select_layers": "ptssnn.training.views",
    "select_normalisation": "ptssnn.training.views",
    "NORMALISATIONS": "ptssnn.training.config",
    "count_trainable": "ptssnn.training.crossval",
    "LayerViews": "ptssnn.training.views",
    "PROBE_HEAD": "ptssnn.training.crossval",
    "benchmark_train_config": "ptssnn.training.config",
    "train_recognizer": "ptssnn.training.deployment",
    "FoldResult": "ptssnn.training.crossval",
    "CrossValResult": "ptssnn.training.crossval",
}

__all__ = list(_LAZY)


def __getattr__(name: str) -> Any:
    # Lazy: ``import ptssnn.training`` stays cheap (no torch) for the command line.
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'ptssnn.training' has no attribute {name!r}")
