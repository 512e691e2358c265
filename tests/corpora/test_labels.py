"""Label harmonisation and cross-corpus restriction."""

from __future__ import annotations

from pathlib import Path

import pytest

from ptssnn.corpora import (
    EMOTIONS,
    Utterance,
    list_corpora,
    restrict_labels,
    shared_labels,
    union_labels,
)
from ptssnn.errors import CorpusError


def test_every_label_map_lands_in_the_common_vocabulary():
    for corpus in list_corpora():
        assert set(corpus.label_map.values()) <= set(EMOTIONS), corpus.name
        assert not set(corpus.label_map) & corpus.excluded_labels


def test_class_sets():
    sets = {c.name: set(c.labels) for c in list_corpora()}
    assert sets["casia"] == {"angry", "fear", "happy", "neutral", "sad", "surprise"}
    assert sets["emovo"] == sets["casia"] | {"disgust"}
    assert sets["urdu"] == sets["iemocap"] == {"angry", "happy", "neutral", "sad"}
    assert sets["emodb"] == {"angry", "boredom", "disgust", "fear", "happy", "neutral", "sad"}
    assert sets["ravdess"] == set(EMOTIONS) - {"boredom"}


def test_shared_labels_by_corpus_name():
    assert shared_labels("casia", "emodb") == ("angry", "happy", "neutral", "sad", "fear")
    assert shared_labels("emodb", "ravdess") == shared_labels("ravdess", "emodb")
    assert "boredom" not in shared_labels("emodb", "ravdess")
    assert shared_labels("casia", "iemocap") == ("angry", "happy", "neutral", "sad")


def _utt(utt_id: str, label: str) -> Utterance:
    return Utterance(utt_id, "x", Path(f"{utt_id}.wav"), "s", label, label, 1.0)


def test_shared_labels_by_utterances_and_restriction():
    train = [_utt("a", "angry"), _utt("b", "calm"), _utt("c", "sad")]
    test = [_utt("d", "sad"), _utt("e", "angry"), _utt("f", "boredom")]
    labels = shared_labels(train, test)
    assert labels == ("angry", "sad")
    assert [u.id for u in restrict_labels(train, labels)] == ["a", "c"]
    assert [u.id for u in restrict_labels(test, labels)] == ["d", "e"]
    assert shared_labels("emovo", test) == ("angry", "sad")


def test_union_labels_in_harmonised_order():
    assert union_labels("casia", "emovo", "urdu") == (
        "angry", "happy", "neutral", "sad", "fear", "disgust", "surprise")
    # Label names work too; a label outside the vocabulary is kept, last.
    assert union_labels(("sad", "angry"), ("neutral", "zzz")) == ("angry", "neutral", "sad",
                                                                  "zzz")


def test_restrict_rejects_unknown_labels():
    with pytest.raises(CorpusError, match="unknown harmonised labels"):
        restrict_labels([], ["joy"])


def test_unknown_corpus_name():
    with pytest.raises(CorpusError, match="unknown corpus"):
        shared_labels("casia", "tess")
