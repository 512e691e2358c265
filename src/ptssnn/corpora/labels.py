"""Label harmonisation: one emotion vocabulary across corpora, for cross-corpus experiments."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from ptssnn.corpora.records import Utterance
from ptssnn.errors import CorpusError

#: The harmonised vocabulary; every corpus maps its raw labels into it.
EMOTIONS: tuple[str, ...] = (
    "angry",
    "happy",
    "neutral",
    "sad",
    "fear",
    "disgust",
    "surprise",
    "calm",
    "boredom",
)


def _labels_of(source: str | Iterable[Utterance | str]) -> set[str]:
    if isinstance(source, str):
        from ptssnn.corpora.registry import get_corpus

        return set(get_corpus(source).labels)
    return {item if isinstance(item, str) else item.label for item in source}


def shared_labels(a: str | Iterable[Utterance], b: str | Iterable[Utterance]) -> tuple[str, ...]:
    """Harmonised labels present in both sources, in :data:`EMOTIONS` order.

    Args:
        a: A corpus name (its full label set) or utterances (the labels they carry).
        b: Same, for the other side.

    Returns:
        E.g. ``shared_labels("casia", "emodb")`` -> ``("angry", "happy", "neutral", "sad",
        "fear")``.
    """
    common = _labels_of(a) & _labels_of(b)
    return tuple(label for label in EMOTIONS if label in common)


def union_labels(*sources: str | Iterable[Utterance | str]) -> tuple[str, ...]:
    """Harmonised labels present in any source, in :data:`EMOTIONS` order (a label outside
    the vocabulary, which no registry corpus has, goes last: a union never drops a class).

    Args:
        sources: Corpus names (their full label sets), utterances (the labels they carry) or
            label names.

    Returns:
        E.g. ``union_labels("emodb", "emovo")`` -> ``("angry", "happy", "neutral", "sad",
        "fear", "disgust", "surprise", "boredom")``.
    """
    present = set().union(*(_labels_of(source) for source in sources))
    return (tuple(label for label in EMOTIONS if label in present)
            + tuple(sorted(present - set(EMOTIONS))))


def restrict_labels(utterances: Iterable[Utterance], labels: Sequence[str]) -> list[Utterance]:
    """Keep the utterances whose harmonised label is in ``labels`` (order preserved).

    Raises:
        CorpusError: A label is not in the harmonised vocabulary.
    """
    unknown = sorted(set(labels) - set(EMOTIONS))
    if unknown:
        raise CorpusError(f"unknown harmonised labels {unknown}; use some of {list(EMOTIONS)}")
    keep = set(labels)
    return [utterance for utterance in utterances if utterance.label in keep]
