"""Training heads on cached features: config, in-memory data, ``fit``, ``cross_validate``.

Public API (imported on first use)::

    from ptssnn.training import TrainConfig, LabelledFeatures, fit, cross_validate
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "TrainConfig": "ptssnn.training.config",
    "TrainConfigError": "ptssnn.training.config",
    "LabelledFeatures": "ptssnn.training.data",
    "Batch": "ptssnn.training.data",
    "DataError": "ptssnn.training.data",
    "bucketed_batches": "ptssnn.training.data",
    "fit": "ptssnn.training.trainer",
    "evaluate": "ptssnn.training.trainer",
    "predict_logits": "ptssnn.training.trainer",
    "FitResult": "ptssnn.training.trainer",
    "TrainingError": "ptssnn.training.trainer",
    "learning_rate": "ptssnn.training.trainer",
    "cross_validate": "ptssnn.training.crossval",
    "train_fold": "ptssnn.training.crossval",
    "select_layers": "ptssnn.training.crossval",
    "select_normalisation": "ptssnn.training.crossval",
    "NORMALISATIONS": "ptssnn.training.config",
    "count_trainable": "ptssnn.training.crossval",
    "LayerViews": "ptssnn.training.crossval",
    "FoldResult": "ptssnn.training.crossval",
    "CrossValResult": "ptssnn.training.crossval",
}

__all__ = list(_LAZY)


def __getattr__(name: str) -> Any:
    # Lazy: training and evaluation import each other's modules; eager imports here would
    # make the import order matter.
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'ptssnn.training' has no attribute {name!r}")
