"""PTS-SNN: prompt-tuned temporal-shift spiking neural networks for speech emotion recognition.

The package is split along the s3prl line: frozen *backbones* turn audio into frame features
(``[L, T, D]`` hidden states at 50 frames/s), and the spiking *head* (``ptssnn.models``) turns
frame features plus a padding mask into emotion logits. Everything in between is cached.
See ``docs/architecture.md``.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# Public names, imported on first use so that `import ptssnn` stays cheap (no torch).
_LAZY = {
    "PTSSNN": "ptssnn.models",
    "PTSSNNConfig": "ptssnn.models",
    "create_model": "ptssnn.models",
    "list_presets": "ptssnn.models",
    "load_backbone": "ptssnn.backbones",
    "scan_corpus": "ptssnn.corpora",
    "make_folds": "ptssnn.corpora",
    "EmotionRecognizer": "ptssnn.inference",
    "FeaturePipeline": "ptssnn.features",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'ptssnn' has no attribute {name!r}")
