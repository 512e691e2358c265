"""Cross-corpus split: shared classes, validation speakers from the source, all of the target."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

from ptssnn.errors import ProtocolError
from ptssnn.evaluation.crosscorpus import cross_corpus_fold, cross_corpus_table
from ptssnn.training import LabelledFeatures


@dataclass(frozen=True)
class Utt:
    id: str
    speaker: str
    label: str


def corpus(name: str, speakers: int, labels: tuple[str, ...]) -> list[Utt]:
    return [Utt(f"{name}-{s}-{label}-{i}", f"{name}{s}", label)
            for s in range(speakers) for label in labels for i in range(3)]


def test_fold_uses_shared_classes_and_source_speakers_for_validation():
    a = corpus("a", 5, ("angry", "happy", "neutral", "boredom"))
    b = corpus("b", 3, ("angry", "neutral", "sad", "happy"))
    fold = cross_corpus_fold("a", a, "b", b)
    assert fold.name == "a->b"
    assert fold.labels == ("angry", "happy", "neutral")  # harmonised order, boredom/sad out
    source_ids = {u.id for u in a}
    assert set(fold.train) | set(fold.validation) <= source_ids
    assert not set(fold.train) & set(fold.validation)
    speaker = {u.id: u.speaker for u in a}
    assert not {speaker[i] for i in fold.train} & {speaker[i] for i in fold.validation}
    assert fold.validation and all("boredom" not in i for i in fold.train)
    assert set(fold.test) == {u.id for u in b if u.label != "sad"}


def test_too_few_shared_classes_is_an_error():
    with pytest.raises(ProtocolError, match="share 1"):
        cross_corpus_fold("a", corpus("a", 3, ("angry", "calm")), "b",
                          corpus("b", 3, ("angry", "sad")))


def test_table_relabels_to_the_shared_order():
    def table(prefix, labels):
        items = [(f"{prefix}{i}", np.zeros((3, 2), np.float32), label)
                 for i, label in enumerate(labels)]
        return LabelledFeatures.from_arrays(items, sorted(set(labels)))

    joined = cross_corpus_table(table("a", ["sad", "angry", "calm"]),
                                table("b", ["angry", "sad"]), ("angry", "sad"))
    assert joined.ids == ("a0", "a1", "b0", "b1")
    assert joined.labels.tolist() == [1, 0, 0, 1]
    assert joined.label_names == ("angry", "sad")
