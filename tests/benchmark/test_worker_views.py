"""Worker processes read the features through the heads' one pipeline item by item (an eighth
of the memory at the default frame pooling) when that pipeline does not depend on the fold;
what they train on is bit-identical to the main process's views."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from ptssnn.benchmark import BenchmarkSettings
from ptssnn.benchmark.multicorpus import load_views
from ptssnn.benchmark.scheduling import worker_pipeline
from ptssnn.demo import synthetic_task
from ptssnn.features import extract_features
from ptssnn.features.pipeline import FeaturePipeline
from ptssnn.features.table import DataError
from ptssnn.training import TrainConfig
from ptssnn.training.enrolment import EnrolmentProtocol
from ptssnn.training.views import select_layers

pytestmark = pytest.mark.usefixtures("one_thread")


def settings(**train) -> BenchmarkSettings:
    return BenchmarkSettings(train=TrainConfig(**{"frame_pool": 8, **train}))


def test_the_worker_pipeline_exists_only_when_no_fold_or_speaker_decides_it() -> None:
    assert worker_pipeline(settings(layers="all"), 7) == FeaturePipeline(
        layers="all", frame_pool=8, normalisation="global")
    assert worker_pipeline(settings(layers="middle"), 7).layers == "3"  # resolved here
    assert worker_pipeline(settings(layers="mean:2-4", normalisation="none"), 7).layers == \
        "mean:2-4"
    assert worker_pipeline(settings(layers="auto"), 7) is None  # ranked per fold
    assert worker_pipeline(settings(normalisation="speaker"), 7) is None
    assert worker_pipeline(settings(normalisation="auto"), 7) is None
    enrolled = dataclasses.replace(settings(), enrolment=EnrolmentProtocol(("5",)))
    assert worker_pipeline(enrolled, 7) is None


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory):
    task = synthetic_task(tmp_path_factory.mktemp("synthetic"), clips_per_class=2)
    features = extract_features(task.utterances, "fbank", "all",
                                tmp_path_factory.mktemp("cache"), progress=False)
    return task, features


@pytest.mark.parametrize("layers", ["0", "middle"])
def test_prepared_views_hold_exactly_what_the_heads_read(corpus, layers: str) -> None:
    task, features = corpus
    full = load_views(task, features)
    pipeline = worker_pipeline(settings(layers=layers), full.num_layers)
    worker = load_views(task, features, prepared=pipeline)
    fold = task.folds[0]
    # The fold's layer choice is the same on both sides (the middle of the original states).
    mode, _ = select_layers(worker, fold, layers)
    assert mode == select_layers(full, fold, layers)[0] == pipeline.layers
    expected = full.view(pipeline)
    got = worker.view(pipeline)
    assert got.ids == expected.ids and torch.equal(got.labels, expected.labels)
    assert all(torch.equal(a, b) for a, b in zip(got.features, expected.features, strict=True))
    assert got.features[0].shape[-2] == -(-full.table.features[0].shape[-2] // 8)
    # Nothing else can be asked of them.
    with pytest.raises(DataError, match="prepared for layers"):
        worker.view(pipeline.replace(frame_pool=4))
    with pytest.raises(DataError, match="probe's statistics"):
        worker.pooled()
    with pytest.raises(DataError, match="no per-speaker table"):
        worker.normalised("speaker")
