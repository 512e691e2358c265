"""Shared fixtures for the whole test suite (one conftest, as the house style asks)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


def shared_data_root() -> Path:
    """Where the research data lives: ``$PTSSNN_DATA`` or ``<repo root>/../shared/data``."""
    override = os.environ.get("PTSSNN_DATA")
    return Path(override) if override else REPO_ROOT.parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Path of the shared research data; skips the test (with the reason) when it is absent."""
    root = shared_data_root()
    if not root.is_dir():
        pytest.skip(f"research data not found at {root} (set PTSSNN_DATA to its location)")
    return root


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A deployable model directory: fbank backbone + a small random-weight pts-snn head.

    Three labels (angry, neutral, sad). Used by the inference, export, serve and CLI tests.
    """
    import torch

    from ptssnn.backbones import load_backbone
    from ptssnn.features import FeaturePipeline
    from ptssnn.inference import ModelCard, save_recognizer
    from ptssnn.models import create_model

    torch.manual_seed(0)
    backbone = load_backbone("fbank")
    model = create_model("pts-snn", input_dim=backbone.hidden_size, num_classes=3, width=64,
                         block_hidden=128)
    card = ModelCard(
        labels=("angry", "neutral", "sad"),
        backbone=backbone.name,
        backbone_identity=backbone.identity(),
        pipeline=FeaturePipeline(layers="0"),
        preset="pts-snn",
    )
    return save_recognizer(model, tmp_path_factory.mktemp("tiny-model"), card, {"note": "random"})
