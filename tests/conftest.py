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


@pytest.fixture(scope="session", autouse=True)
def private_feature_cache(tmp_path_factory: pytest.TempPathFactory):
    """Every test that names no ``--cache`` writes into a temporary cache, never into the
    user's ``~/.cache/ptssnn`` (and subprocesses inherit it through the environment)."""
    saved = os.environ.get("PTSSNN_CACHE")
    os.environ["PTSSNN_CACHE"] = str(tmp_path_factory.mktemp("feature-cache"))
    yield
    if saved is None:
        os.environ.pop("PTSSNN_CACHE", None)
    else:
        os.environ["PTSSNN_CACHE"] = saved


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


@pytest.fixture(scope="session")
def enrol_model_dir(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``tiny_model_dir`` plus a speaker prior (``speaker_prior.safetensors``) so it takes
    speaker profiles; the prior's moments come from speech-like clips at two loudness levels
    (as a training set of several speakers and channels would)."""
    import shutil

    from ptssnn.features.enrolment import SpeakerPrior, training_moments
    from ptssnn.inference import EmotionRecognizer
    from speechlike import voiced

    directory = tmp_path_factory.mktemp("enrol-model")
    shutil.copytree(tiny_model_dir, directory, dirs_exist_ok=True)
    recognizer = EmotionRecognizer.load(tiny_model_dir)
    items = [recognizer.clip_hidden_states(gain * voiced(1.0 + 0.3 * i, seed=50 + i,
                                                         f0=120 + 15 * i))
             for gain in (1.0, 0.25) for i in range(8)]
    SpeakerPrior.from_moments(training_moments(items)).save(directory)
    return directory


@pytest.fixture
def one_thread():
    """The CI machine is small and shared: one intra-op thread keeps the tensor-heavy tests
    fast (modules opt in with ``pytestmark = pytest.mark.usefixtures("one_thread")``)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
