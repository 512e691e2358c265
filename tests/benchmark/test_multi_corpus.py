"""``--multi-corpus``: every fold of a corpus trains on the run's other corpora too, and is
scored over its own classes on its own validation and test speakers."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from ptssnn.benchmark import BenchmarkError, BenchmarkSettings, run_benchmark
from ptssnn.benchmark.manifest import run_settings
from ptssnn.benchmark.multicorpus import joint_views, load_views, partner_id, with_partners
from ptssnn.demo import synthetic_task
from ptssnn.evaluation.probe import LinearProbe
from ptssnn.features.table import LabelledFeatures
from ptssnn.training import TrainConfig
from ptssnn.training.enrolment import EnrolmentProtocol
from ptssnn.training.trainer import evaluate

pytestmark = pytest.mark.usefixtures("one_thread")

#: Corpus "alpha" lacks "happy", and lists its classes in its own (non-harmonised) order.
ALPHA_LABELS = ("sad", "angry", "neutral")


@pytest.fixture(scope="module")
def tasks(tmp_path_factory: pytest.TempPathFactory):
    """Two small synthetic corpora of the same four speakers: alpha (three classes) and beta
    (all four). Their raw utterance ids coincide; only the corpus prefix tells them apart."""
    base = synthetic_task(tmp_path_factory.mktemp("synthetic"), clips_per_class=2)
    kept = tuple(u for u in base.utterances if u.label in ALPHA_LABELS)
    ids = {u.id for u in kept}
    alpha = dataclasses.replace(
        base, name="alpha", utterances=kept, label_names=ALPHA_LABELS,
        folds=tuple(dataclasses.replace(f, train=tuple(i for i in f.train if i in ids),
                                        validation=tuple(i for i in f.validation if i in ids),
                                        test=tuple(i for i in f.test if i in ids))
                    for f in base.folds))
    return alpha, dataclasses.replace(base, name="beta")


def random_table(task, dim: int = 4) -> LabelledFeatures:
    rng = np.random.default_rng(0)
    return LabelledFeatures.from_arrays(
        ((u.id, rng.normal(size=(1, 5, dim)).astype(np.float32), u.label)
         for u in task.utterances), task.label_names)


def test_folds_train_on_the_partners_and_validate_and_test_on_the_corpus_alone(tasks):
    alpha, beta = tasks
    views = joint_views(alpha, random_table(alpha), [(beta, random_table(beta))])
    multi = with_partners(alpha, [beta])
    beta_ids = {partner_id("beta", u.id) for u in beta.utterances}
    alpha_ids = {u.id for u in alpha.utterances}
    for own, fold in zip(alpha.folds, multi.folds, strict=True):
        assert fold.name == own.name
        assert set(fold.train) == set(own.train) | beta_ids  # every beta utterance, all speakers
        assert fold.validation == own.validation and fold.test == own.test
        assert set(fold.validation) | set(fold.test) <= alpha_ids
        views.rows(fold.train)  # every training id is in the joint table
    # Union of the harmonised classes, in EMOTIONS order; scored over alpha's, in its order.
    assert views.table.label_names == ("angry", "happy", "neutral", "sad")
    assert views.labels == ALPHA_LABELS and views.columns == (3, 0, 2)
    assert len(views.table) == len(alpha.utterances) + len(beta.utterances)
    # Speakers prefixed: beta's spk1 is not alpha's spk1.
    first = beta.utterances[0]
    assert views.speakers[partner_id("beta", first.id)] == f"beta/{first.speaker}"
    assert views.speakers[alpha.utterances[0].id] == alpha.utterances[0].speaker
    # A validation/test split may only hold scored classes.
    happy = [partner_id("beta", u.id) for u in beta.utterances if u.label == "happy"]
    with pytest.raises(Exception, match="outside the scored"):
        views.scored(views.table.subset(happy[:1]))


class Features:
    """A feature set: ``get(id)`` (what a worker process reads from the cache)."""

    def __init__(self, table: LabelledFeatures) -> None:
        self.table = table

    def get(self, utt_id: str) -> np.ndarray:
        return self.table.subset([utt_id]).features[0].numpy()


def test_a_worker_builds_the_same_joint_views_from_the_feature_sets(tasks):
    alpha, beta = tasks
    own, other = random_table(alpha), random_table(beta)
    here = joint_views(alpha, own, [(beta, other)])
    there = load_views(alpha, Features(own), [(beta, Features(other))])
    assert there.table.ids == here.table.ids and there.labels == here.labels
    assert torch.equal(there.table.labels, here.table.labels)
    assert there.columns == here.columns and there.speakers == here.speakers


def test_without_partners_the_views_are_the_single_corpus_ones(tasks):
    alpha, _ = tasks
    table = random_table(alpha)
    views = joint_views(alpha, table, [])
    assert views.table is table and views.columns is None and views.labels == ALPHA_LABELS
    assert with_partners(alpha, []) is alpha


class FixedLogits(nn.Module):
    """A "head" whose logits always favour class 1 (``happy`` in the union), then 3."""

    def forward(self, features: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        logits = torch.tensor([0.0, 9.0, 1.0, 5.0])
        return logits.expand(features.shape[0], 4)


def test_predictions_are_restricted_to_the_scored_classes(tasks):
    alpha, beta = tasks
    views = joint_views(alpha, random_table(alpha), [(beta, random_table(beta))])
    test = views.scored(views.table.subset(alpha.folds[0].test))
    assert test.label_names == ALPHA_LABELS
    metrics, predicted = evaluate(FixedLogits(), test.map(lambda x: x[0]), 8, views.columns)
    # "happy" (column 1) is masked out: the best of alpha's classes is "sad" (column 3).
    assert set(predicted.tolist()) == {ALPHA_LABELS.index("sad")}
    assert np.asarray(metrics.confusion).shape == (3, 3)
    # The probe: fitted on the union, it never predicts a class the corpus lacks.
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(40, 3)), np.arange(40) % 4
    x[y == 1] += 50.0  # class 1 dominates everywhere near it
    probe = LinearProbe().fit(x, y)
    assert 1 in probe.predict(x[y == 1])
    assert set(probe.predict(x[y == 1], classes=(3, 0, 2)).tolist()) <= {0, 2, 3}


def run(tasks, out: Path, cache: Path, *, multi: bool, resume: bool = False,
        models=("probe",), jobs: int = 1, **extra) -> dict:
    settings = BenchmarkSettings(
        backbone="fbank", models=models,
        train=TrainConfig(layers="0", frame_pool=4, max_epochs=1, refit=True),
        model_overrides={"width": 16}, cache=cache, out=out, resume=resume, plots=False,
        jobs=jobs, analysis_items=2, multi_corpus=multi, **extra)
    return run_benchmark(list(tasks), settings, show_progress=False, log=lambda _: None)


def test_benchmark_trains_every_head_on_the_same_ids_and_scores_own_classes(
        tasks, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import ptssnn.benchmark.scheduling as scheduling
    import ptssnn.training.crossval as crossval

    seen: dict[tuple[str, str, str], tuple[frozenset, int]] = {}
    original = crossval.train_fold

    def spy(views, fold, factory, config, **kwargs):
        head = "probe" if factory is crossval.PROBE_HEAD else factory.preset
        corpus = "alpha" if views.labels == ALPHA_LABELS else "beta"
        seen[(corpus, head, str(fold.name))] = (frozenset(fold.train), len(views.table))
        return original(views, fold, factory, config, **kwargs)

    monkeypatch.setattr(crossval, "train_fold", spy)
    monkeypatch.setattr(scheduling, "train_fold", spy)
    alpha, beta = tasks
    out = tmp_path / "out"
    results = run(tasks, out, tmp_path / "cache", multi=True, models=("ann", "probe"),
                  enrolment=EnrolmentProtocol(("0", "all"), draws=1))

    both = len(alpha.utterances) + len(beta.utterances)
    for fold in alpha.folds:
        probe_ids, probe_table = seen[("alpha", "probe", fold.name)]
        ann_ids, ann_table = seen[("alpha", "ann", fold.name)]
        assert probe_ids == ann_ids and probe_table == ann_table == both
        assert {partner_id("beta", u.id) for u in beta.utterances} <= probe_ids
    assert {partner_id("alpha", u.id) for u in alpha.utterances} <= seen[
        ("beta", "probe", beta.folds[0].name)][0]

    entry = results["corpora"]["alpha"]
    assert entry["label_names"] == list(ALPHA_LABELS)
    assert entry["multi_corpus"]["corpora"] == {"beta": len(beta.utterances)}
    assert entry["folds"][0]["train"] == len(alpha.folds[0].train)  # the corpus's own
    for model in ("ann", "probe"):
        run_record = entry["models"][model]["runs"]["0"]
        assert run_record["label_names"] == list(ALPHA_LABELS)
        assert np.asarray(run_record["confusion"]).shape == (3, 3)
        for fold, own in zip(run_record["folds"], alpha.folds, strict=True):
            assert fold["predictions"]["ids"] == list(own.test)  # alpha's test speaker only
            assert set(fold["predictions"]["predictions"]) <= {0, 1, 2}
            labels = {u.id: u.label for u in alpha.utterances}
            assert [ALPHA_LABELS[r] for r in fold["predictions"]["references"]] == [
                labels[i] for i in own.test]
            assert np.asarray(fold["test"]["confusion"]).shape == (3, 3)
    assert set(entry["models"]["ann"]["enrolment"]) == {"0", "all"}
    beta_entry = results["corpora"]["beta"]
    assert np.asarray(beta_entry["models"]["probe"]["confusion"]).shape == (4, 4)

    saved = json.loads((out / "results.json").read_text())
    assert saved["settings"]["multi_corpus"] is True
    report = (out / "report.md").read_text()
    assert "Multi-corpus training" in report
    assert f"alpha: + {len(beta.utterances)} utterances (beta {len(beta.utterances)})" in report


def test_the_option_is_recorded_and_resume_refuses_a_switch(tasks, tmp_path: Path) -> None:
    out, cache = tmp_path / "out", tmp_path / "cache"
    run(tasks, out, cache, multi=True)
    run(tasks, out, cache, multi=True, resume=True)  # same settings: resumes
    with pytest.raises(BenchmarkError, match=r"multi_corpus: \['alpha', 'beta'\] → \(unset\)"):
        run(tasks, out, cache, multi=False, resume=True)
    # Another set of corpora changes every corpus's training data: refused as well.
    with pytest.raises(BenchmarkError, match="multi_corpus"):
        run(tasks[:1], out, cache, multi=True, resume=True)
    # Off, the record has no key (run folders made before the option resume unchanged).
    settings = BenchmarkSettings(backbone="fbank")
    assert "multi_corpus" not in run_settings(settings, list(tasks), {})
    assert BenchmarkSettings(multi_corpus=True).to_dict()["multi_corpus"] is True


@pytest.mark.slow
def test_worker_processes_train_the_multi_corpus_folds(tasks, tmp_path: Path) -> None:
    one = run(tasks, tmp_path / "one", tmp_path / "cache", multi=True, models=("ann",))
    two = run(tasks, tmp_path / "two", tmp_path / "cache", multi=True, models=("ann",), jobs=2)
    for corpus in ("alpha", "beta"):
        first, second = (r["corpora"][corpus]["models"]["ann"]["runs"]["0"]["folds"]
                         for r in (one, two))
        # Same seeds, same data: the worker processes reproduce the in-process numbers.
        assert [f["predictions"] for f in first] == [f["predictions"] for f in second]
