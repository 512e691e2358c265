"""The corpus registry: name -> :class:`~ptssnn.corpora.corpus.Corpus`."""

from __future__ import annotations

from ptssnn.corpora import casia, emodb, emovo, iemocap, ravdess, urdu
from ptssnn.corpora.corpus import Corpus
from ptssnn.errors import CorpusError

CORPORA: dict[str, Corpus] = {
    module.CORPUS.name: module.CORPUS for module in (casia, emodb, emovo, iemocap, ravdess, urdu)
}


def get_corpus(name: str | Corpus) -> Corpus:
    """Look a corpus up by name (case-insensitive); a :class:`Corpus` passes through.

    Raises:
        CorpusError: No corpus of that name.
    """
    if isinstance(name, Corpus):
        return name
    corpus = CORPORA.get(str(name).lower())
    if corpus is None:
        raise CorpusError(f"unknown corpus {name!r}; known corpora: {', '.join(sorted(CORPORA))}")
    return corpus


def list_corpora() -> list[Corpus]:
    """All registered corpora, sorted by name."""
    return [CORPORA[name] for name in sorted(CORPORA)]
