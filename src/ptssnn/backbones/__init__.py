"""Frozen speech backbones: 16 kHz mono audio → hidden states of every layer ``[L, T, D]``.

``load_backbone(name)`` returns a frozen module (eval mode, no gradients); calling it on a 1-D
float tensor gives ``[L, T, D]`` at 50 frames/s, index 0 = the input of the first block, index
i = the output of block i (the last one after the final layer norm, like Hugging Face's
``hidden_states``). Layer selection lives in
``ptssnn.features`` (``LayerSelection``).
"""

from __future__ import annotations

from ptssnn.backbones.base import Backbone
from ptssnn.backbones.registry import (
    DEFAULT_BACKBONE,
    BackboneInfo,
    head_defaults,
    is_spectral,
    list_backbones,
    load_backbone,
)

__all__ = [
    "DEFAULT_BACKBONE",
    "Backbone",
    "BackboneInfo",
    "head_defaults",
    "is_spectral",
    "list_backbones",
    "load_backbone",
]
