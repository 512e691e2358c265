"""PTS-SNN models: config, presets, the head, checkpoints.

>>> from ptssnn.models import create_model
>>> model = create_model("pts-snn", input_dim=768, num_classes=4)
>>> logits = model(features, mask)  # features [B, T, 768], mask [B, T] → [B, 4]
"""

from __future__ import annotations

from typing import Any

from ptssnn.models.checkpoint import load_pretrained, save_pretrained
from ptssnn.models.config import PRESETS, PTSSNNConfig, get_preset, list_presets
from ptssnn.models.factory import HeadSpec
from ptssnn.models.ptssnn import PTSSNN, SoftSaturation, SpikingShiftBlock

__all__ = [
    "PRESETS",
    "PTSSNN",
    "HeadSpec",
    "PTSSNNConfig",
    "SoftSaturation",
    "SpikingShiftBlock",
    "create_model",
    "get_preset",
    "list_presets",
    "load_pretrained",
    "save_pretrained",
]


def create_model(preset: str, input_dim: int, num_classes: int, **overrides: Any) -> PTSSNN:
    """Build the head of preset ``preset`` for ``input_dim`` features and ``num_classes``.

    Args:
        preset: one of :func:`list_presets` (``pts-snn``, ``vanilla-snn``, ``ann``, ...).
        input_dim: backbone feature width D_in.
        num_classes: number of classes C.
        **overrides: any :class:`PTSSNNConfig` field (``input_layers``, ``seed``, ...).

    Raises:
        ModelConfigError: unknown preset or option, or invalid values.
    """
    layers = int(overrides.pop("input_layers", 1))
    return HeadSpec(preset, overrides)(input_dim, num_classes, layers)
