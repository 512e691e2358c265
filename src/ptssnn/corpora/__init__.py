"""Emotional-speech corpora in their original layouts, and honest evaluation protocols.

- :func:`scan_corpus` walks a corpus folder into :class:`Utterance` records (and lists every
  file it cannot use, with the reason).
- :func:`make_folds` partitions them into speaker-independent :class:`Fold` s (or EmoBox's).
- :func:`shared_labels` / :func:`restrict_labels` align two corpora for cross-corpus tests;
  :func:`union_labels` joins the classes of several for multi-corpus training.
"""

from __future__ import annotations

from ptssnn.corpora.corpus import Candidate, Corpus
from ptssnn.corpora.emobox import emobox_corpora, emobox_num_folds, emobox_test_folds
from ptssnn.corpora.labels import EMOTIONS, restrict_labels, shared_labels, union_labels
from ptssnn.corpora.protocols import (
    PROTOCOLS,
    SPEAKER_LABEL_DEPENDENCE_WARNING,
    Fold,
    list_protocols,
    make_folds,
    speaker_label_dependence,
    speaker_label_warning,
)
from ptssnn.corpora.records import (
    CorpusScan,
    Problem,
    Utterance,
    read_manifest,
    write_manifest,
)
from ptssnn.corpora.registry import CORPORA, get_corpus, list_corpora
from ptssnn.corpora.scan import scan_corpus

__all__ = [
    "CORPORA",
    "EMOTIONS",
    "PROTOCOLS",
    "SPEAKER_LABEL_DEPENDENCE_WARNING",
    "Candidate",
    "Corpus",
    "CorpusScan",
    "Fold",
    "Problem",
    "Utterance",
    "emobox_corpora",
    "emobox_num_folds",
    "emobox_test_folds",
    "get_corpus",
    "list_corpora",
    "list_protocols",
    "make_folds",
    "read_manifest",
    "restrict_labels",
    "scan_corpus",
    "shared_labels",
    "speaker_label_dependence",
    "speaker_label_warning",
    "union_labels",
    "write_manifest",
]
