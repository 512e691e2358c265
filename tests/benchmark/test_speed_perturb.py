"""``--speed-perturb``: the copies of each fold's training clips join its training split, for
every head alike; validation and test clips (and their copies) are never trained on."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from ptssnn.audio.perturbation import copy_id
from ptssnn.benchmark import BenchmarkError, BenchmarkSettings, run_benchmark
from ptssnn.benchmark.augmentation import copy_tables, with_copies
from ptssnn.benchmark.manifest import MANIFEST
from ptssnn.benchmark.multicorpus import joint_views, load_views
from ptssnn.demo import synthetic_task
from ptssnn.features import extract_features
from ptssnn.features.extraction import AudioPolicy
from ptssnn.features.table import LabelledFeatures
from ptssnn.training import TrainConfig

pytestmark = pytest.mark.usefixtures("one_thread")
FACTORS = (0.9, 1.1)


@pytest.fixture(scope="module")
def task(tmp_path_factory: pytest.TempPathFactory):
    return synthetic_task(tmp_path_factory.mktemp("synthetic"), clips_per_class=2)


@pytest.fixture(scope="module")
def extracted(task, tmp_path_factory: pytest.TempPathFactory):
    """fbank features of the clips and of their copies at 0.9 and 1.1 (one cache)."""
    cache = tmp_path_factory.mktemp("cache")
    own = extract_features(task.utterances, "fbank", "all", cache, progress=False)
    copies = [(f, extract_features(task.utterances, "fbank", "all", cache, progress=False,
                                   audio_policy=AudioPolicy(speed=f))) for f in FACTORS]
    return cache, own, copies


def test_copies_have_their_own_cache_entries_and_length(extracted, task) -> None:
    _, own, copies = extracted
    keys = {own.namespace.key, *(fs.namespace.key for _, fs in copies)}
    assert len(keys) == 3  # one namespace per factor: never mistaken for the clip itself
    for factor, fs in copies:
        assert fs.namespace.description["audio"]["speed"] == factor
        for u in task.utterances[:4]:
            ratio = fs.get(u.id).shape[1] / own.get(u.id).shape[1]
            assert ratio == pytest.approx(1 / factor, rel=0.05)  # frames scale by 1 / factor
            assert not np.array_equal(fs.get(u.id)[:, :10], own.get(u.id)[:, :10])


def test_folds_train_on_the_copies_of_their_training_clips_only(extracted, task) -> None:
    _, own, copies = extracted
    table = LabelledFeatures.from_feature_set(own, task.utterances, task.label_names)
    views = joint_views(task, table, [], copy_tables(task, copies))
    augmented = with_copies(task, copies)
    speakers = {u.id: u.speaker for u in task.utterances}
    for fold, base in zip(augmented.folds, task.folds, strict=True):
        expected = {copy_id(f, i) for f in FACTORS for i in base.train}
        assert set(fold.train) == set(base.train) | expected
        assert fold.validation == base.validation and fold.test == base.test
        # The validation run trains on no copy of a validation or test clip; the refit adds
        # the validation clips' copies, and never a test clip's.
        held = set(base.validation) | set(base.test)
        assert not {i.split("/", 1)[1] for i in set(fold.train) - set(base.train)} & held
        assert set(fold.refit_extra) == {copy_id(f, i) for f in FACTORS for i in base.validation}
        assert base.refit_extra == ()
        views.rows(fold.train)  # every training id is in the table
        views.rows(fold.refit_extra)
    # A copy is its original's speaker and label (one speaker, not three).
    first = task.utterances[0]
    for factor in FACTORS:
        assert views.speakers[copy_id(factor, first.id)] == speakers[first.id]
        row, copy_row = views.rows([first.id, copy_id(factor, first.id)])
        assert views.table.labels[row] == views.table.labels[copy_row]
    assert len(views.table) == 3 * len(task.utterances)
    assert views.table.label_names == task.label_names and views.columns is None
    # A worker process builds the same views from the feature sets.
    there = load_views(task, own, (), copies)
    assert there.table.ids == views.table.ids and there.speakers == views.speakers
    assert with_copies(task, []) is task


def run(task, out: Path, cache: Path, *, speed=FACTORS, resume=False, jobs=1,
        models=("ann", "probe")) -> dict:
    settings = BenchmarkSettings(
        backbone="fbank", models=models,
        train=TrainConfig(layers="0", frame_pool=4, max_epochs=1, refit=True),
        model_overrides={"width": 16}, cache=cache, out=out, resume=resume, plots=False,
        jobs=jobs, analysis_items=2, speed_perturb=speed)
    return run_benchmark([task], settings, show_progress=False, log=lambda _: None)


def test_benchmark_trains_every_head_on_the_same_copies(
        extracted, task, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import ptssnn.benchmark.scheduling as scheduling
    import ptssnn.training.crossval as crossval

    seen: dict[tuple[str, str], frozenset] = {}
    original = crossval.train_fold

    def spy(views, fold, factory, config, **kwargs):
        head = "probe" if factory is crossval.PROBE_HEAD else factory.preset
        seen[(head, str(fold.name))] = frozenset(fold.train)
        views.rows(fold.train)
        return original(views, fold, factory, config, **kwargs)

    monkeypatch.setattr(crossval, "train_fold", spy)
    monkeypatch.setattr(scheduling, "train_fold", spy)
    cache = extracted[0]
    out = tmp_path / "out"
    results = run(task, out, cache)
    for fold in task.folds:
        copies = {copy_id(f, i) for f in FACTORS for i in fold.train}
        assert seen[("probe", fold.name)] == seen[("ann", fold.name)] == (
            set(fold.train) | copies)
    entry = results["corpora"][task.name]
    assert entry["speed_perturb"]["copies"] == {"0.9": len(task.utterances),
                                                "1.1": len(task.utterances)}
    for model in ("ann", "probe"):
        for fold, base in zip(entry["models"][model]["runs"]["0"]["folds"], task.folds,
                              strict=True):
            assert fold["predictions"]["ids"] == list(base.test)  # originals only
    saved = json.loads((out / "results.json").read_text())
    assert saved["settings"]["speed_perturb"] == list(FACTORS)
    assert "Speed perturbation: copies of the training clips (×0.9" in (
        out / "report.md").read_text()
    # Resume holds the run to its factors.
    with pytest.raises(BenchmarkError, match="speed_perturb"):
        run(task, out, cache, speed=(0.9,), resume=True)
    again = run(task, out, cache, resume=True)
    assert again["corpora"][task.name]["models"]["ann"]["metrics"] == entry["models"]["ann"][
        "metrics"]


def test_the_worker_processes_train_on_the_copies_too(extracted, task, tmp_path: Path) -> None:
    cache = extracted[0]
    one = run(task, tmp_path / "one", cache, models=("ann",))
    two = run(task, tmp_path / "two", cache, models=("ann",), jobs=2)
    first, second = (r["corpora"][task.name]["models"]["ann"]["runs"]["0"]["folds"]
                     for r in (one, two))
    # Same ids, same seed, same data in a worker: the same predictions.
    assert [f["predictions"] for f in first] == [f["predictions"] for f in second]
    # Each worker reports its own peak (VmHWM); one process has none to report.
    assert two["peak_worker_memory_mb"] > 0 and one["peak_worker_memory_mb"] is None
    plain = run(task, tmp_path / "plain", cache, models=("ann",), speed=())
    assert "speed_perturb" not in plain["corpora"][task.name]
    # Off, the key is absent from the run's record, so older run folders still resume.
    assert "speed_perturb" not in json.loads((tmp_path / "plain" / MANIFEST).read_text())
    assert "speed_perturb" in json.loads((tmp_path / "one" / MANIFEST).read_text())


def test_with_multi_corpus_only_the_corpus_own_clips_are_copied(
        extracted, task, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import dataclasses

    import ptssnn.training.crossval as crossval
    from ptssnn.benchmark.multicorpus import partner_id

    seen: dict[tuple[int, str], tuple[frozenset, frozenset]] = {}
    original = crossval.train_fold

    def spy(views, fold, factory, config, **kwargs):
        seen[(len(seen), str(fold.name))] = (frozenset(fold.train), frozenset(fold.refit_extra))
        views.rows(fold.train)
        views.rows(fold.refit_extra)
        return original(views, fold, factory, config, **kwargs)

    monkeypatch.setattr(crossval, "train_fold", spy)
    beta = dataclasses.replace(task, name="beta")
    settings = BenchmarkSettings(
        backbone="fbank", models=("probe",),
        train=TrainConfig(layers="0", frame_pool=4, max_epochs=1, refit=True),
        cache=extracted[0], out=tmp_path / "out", plots=False, jobs=1, analysis_items=2,
        multi_corpus=True, speed_perturb=(0.9,))
    run_benchmark([task, beta], settings, show_progress=False, log=lambda _: None)
    first_fold = task.folds[0]
    train, extra = seen[(0, first_fold.name)]
    partner = {partner_id("beta", u.id) for u in beta.utterances}
    assert partner <= train  # every utterance of the other corpus
    assert train - partner - set(first_fold.train) == {copy_id(0.9, i) for i in first_fold.train}
    assert extra == {copy_id(0.9, i) for i in first_fold.validation}
