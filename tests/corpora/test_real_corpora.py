"""Scans and protocols on the real CASIA, EMOVO and URDU data (skipped when it is absent)."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from ptssnn.corpora import make_folds, scan_corpus

EXPECTED = {
    # corpus: (utterances, speakers, classes, per-class count)
    "casia": (1200, 4, 6, 200),
    "emovo": (588, 6, 7, 84),
    "urdu": (400, 29, 4, 100),
}


@pytest.fixture(scope="module")
def scans(shared_data):
    found = {}
    for corpus in EXPECTED:
        if (shared_data / corpus).is_dir():
            found[corpus] = scan_corpus(corpus, shared_data / corpus, strict=True)
    return found


def _scan(scans, corpus):
    if corpus not in scans:
        pytest.skip(f"{corpus} audio not in the shared data")
    return scans[corpus]


def _emobox_rows(shared_data: Path, corpus: str, name: str) -> list[dict]:
    path = shared_data / "splits" / corpus / name
    if not path.is_file():
        pytest.skip(f"EmoBox split file {path} is absent")
    with path.open() as handle:
        return [json.loads(line) for line in handle if line.strip()]


@pytest.mark.parametrize("corpus", sorted(EXPECTED))
def test_scan_counts(scans, corpus):
    scan = _scan(scans, corpus)
    utterances, speakers, classes, per_class = EXPECTED[corpus]
    assert len(scan.utterances) == utterances
    assert len(scan.speakers) == speakers
    labels = Counter(u.label for u in scan.utterances)
    assert len(labels) == classes and set(labels.values()) == {per_class}  # balanced
    assert scan.problems == [] and scan.excluded == []
    assert [u.id for u in scan.utterances] == sorted(u.id for u in scan.utterances)
    assert all(u.sample_rate == 16000 and u.channels == 1 for u in scan.utterances)
    assert all(0.25 <= u.duration < 30 for u in scan.utterances)


def test_casia_speakers_are_balanced(scans):
    scan = _scan(scans, "casia")
    grid = Counter((u.speaker, u.label) for u in scan.utterances)
    assert set(grid.values()) == {50} and len(grid) == 24


@pytest.mark.parametrize("corpus", sorted(EXPECTED))
def test_ids_and_raw_labels_equal_emobox(scans, shared_data, corpus):
    scan = _scan(scans, corpus)
    rows = _emobox_rows(shared_data, corpus, f"{corpus}.jsonl")
    assert {u.id: u.raw_label for u in scan.utterances} == {r["key"]: r["emo"] for r in rows}


@pytest.mark.parametrize("corpus", sorted(EXPECTED))
def test_emobox_protocol_reproduces_emobox_folds(scans, shared_data, corpus):
    scan = _scan(scans, corpus)
    folds = make_folds(corpus, scan.utterances, "emobox")
    for k, fold in enumerate(folds, start=1):
        test = {
            r["key"] for r in _emobox_rows(shared_data, corpus, f"{corpus}_test_fold_{k}.jsonl")
        }
        train = {
            r["key"] for r in _emobox_rows(shared_data, corpus, f"{corpus}_train_fold_{k}.jsonl")
        }
        assert set(fold.test) == test
        # Our train + validation is EmoBox's train; validation never touches the test fold.
        assert set(fold.train) | set(fold.validation) == train
        assert not set(fold.train) & set(fold.validation)
    assert not (
        shared_data / "splits" / corpus / f"{corpus}_test_fold_{len(folds) + 1}.jsonl"
    ).exists()


@pytest.mark.parametrize("corpus", sorted(EXPECTED))
def test_default_protocol_is_speaker_disjoint(scans, corpus):
    scan = _scan(scans, corpus)
    speaker = {u.id: u.speaker for u in scan.utterances}
    folds = make_folds(corpus, scan.utterances)
    tested = []
    for fold in folds:
        sides = [{speaker[i] for i in side} for side in (fold.train, fold.validation, fold.test)]
        assert all(sides), fold.name
        assert not sides[0] & sides[1] and not sides[0] & sides[2] and not sides[1] & sides[2]
        assert fold.validation_policy == "speakers"
        assert len(fold.train) + len(fold.validation) + len(fold.test) == len(scan.utterances)
        tested += fold.test
    assert sorted(tested) == sorted(speaker)  # every utterance is tested exactly once


def test_default_fold_counts_and_urdu_balance(scans):
    expected_folds = {"casia": 4, "emovo": 6, "urdu": 5}
    for corpus, count in expected_folds.items():
        if corpus in scans:
            assert len(make_folds(corpus, scans[corpus].utterances)) == count
    if "urdu" in scans:
        sizes = [len(f.test) for f in make_folds("urdu", scans["urdu"].utterances)]
        assert max(sizes) - min(sizes) <= 4  # 400 files, one speaker holds 80


def test_emobox_urdu_falls_back_to_stratified_validation(scans):
    scan = _scan(scans, "urdu")
    (fold,) = make_folds("urdu", scan.utterances, "emobox", validation_fraction=0.1)
    assert fold.validation_policy == "stratified"  # EmoBox URDU shares speakers train/test
    label = {u.id: u.label for u in scan.utterances}
    counts = Counter(label[i] for i in fold.validation)
    assert len(counts) == 4 and max(counts.values()) - min(counts.values()) <= 1


def test_original_format_samples_scan_as_their_corpus(shared_data):
    originals = shared_data / "original-format-samples"
    if not originals.is_dir():
        pytest.skip("no original-format samples in the shared data")
    emovo = scan_corpus("emovo", originals / "emovo", strict=True)
    assert [u.id for u in emovo.utterances] == ["emovo-gio-f1-b1", "emovo-rab-f1-b1",
                                                "emovo-tri-f1-n1"]  # fmt: skip
    assert {(u.sample_rate, u.channels) for u in emovo.utterances} == {(48000, 2), (48000, 1)}
    urdu = scan_corpus("urdu", originals / "urdu", strict=True)
    assert {u.sample_rate for u in urdu.utterances} == {44100}
    assert {u.speaker for u in urdu.utterances} == {"M1"}


def test_speaker_label_dependence_of_the_real_corpora(scans):
    from ptssnn.corpora import SPEAKER_LABEL_DEPENDENCE_WARNING, speaker_label_dependence

    def dependence(corpus: str) -> float:
        scan = _scan(scans, corpus)
        return speaker_label_dependence([u.speaker for u in scan.utterances],
                                        [u.label for u in scan.utterances])

    # CASIA and EMOVO: every speaker acted every emotion alike. URDU: mostly one each.
    assert dependence("casia") == pytest.approx(0.0, abs=1e-9)
    assert dependence("emovo") == pytest.approx(0.0, abs=1e-9)
    assert dependence("urdu") > 0.9 > SPEAKER_LABEL_DEPENDENCE_WARNING
