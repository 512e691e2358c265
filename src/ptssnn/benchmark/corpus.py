"""Corpus tasks: a corpus scanned, limited and split into folds, and its features extracted."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ptssnn.benchmark.settings import BenchmarkError

#: Corpus folder names that mark a data root holding several corpora.
_KNOWN = ("casia", "emovo", "urdu", "emodb", "ravdess", "iemocap")
#: Energy per 32-bit float multiply-accumulate (Horowitz, ISSCC 2014, 45 nm), joules.
E_MAC_J = 4.6e-12


@dataclass(frozen=True)
class CorpusTask:
    """One corpus, ready to run.

    Attributes:
        name: Corpus name (results key).
        utterances: Records with ``id``, ``label``, ``speaker``, ``path``, ``duration``.
        folds: Folds with ``name``, ``train``, ``validation``, ``test`` (and optionally
            ``protocol``, ``validation_policy``).
        label_names: Class order.
        protocol: Protocol name, as reported.
        synthetic: True for generated data (labelled so in every output).
        problems: Files the scan could not use (reported, never guessed around).
    """

    name: str
    utterances: tuple[Any, ...]
    folds: tuple[Any, ...]
    label_names: tuple[str, ...]
    protocol: str
    synthetic: bool = False
    problems: tuple[str, ...] = ()

    def fingerprint(self) -> dict[str, Any]:
        """What of the task changes results: protocol, classes, the utterances (a ``--limit``
        changes them) and the folds, the last two as hashes."""

        def digest(value: Any) -> str:
            text = json.dumps(value, sort_keys=True, default=str)
            return hashlib.sha256(text.encode()).hexdigest()[:16]

        return {
            "protocol": self.protocol,
            "label_names": list(self.label_names),
            "num_utterances": len(self.utterances),
            "utterances": digest(sorted((u.id, u.label, u.speaker) for u in self.utterances)),
            "folds": digest([(str(f.name), list(f.train), list(f.validation), list(f.test))
                             for f in self.folds]),
        }


def limit_utterances(utterances: Sequence[Any], per_speaker_label: int) -> list[Any]:
    """Keep the first ``per_speaker_label`` utterances (by id) of every speaker × label.

    Used for smoke tests on a tiny real subset; the folds are made afterwards.
    """
    if per_speaker_label < 1:
        raise BenchmarkError(f"--limit must be >= 1 (got {per_speaker_label})")
    kept: dict[tuple[str, str], int] = {}
    out = []
    for utterance in sorted(utterances, key=lambda u: u.id):
        key = (utterance.speaker, utterance.label)
        if kept.get(key, 0) < per_speaker_label:
            kept[key] = kept.get(key, 0) + 1
            out.append(utterance)
    return out


def find_corpus_root(data_root: Path, corpus: str) -> Path:
    """``data_root/<corpus>`` when it exists (a data folder of several corpora), else
    ``data_root`` itself (the corpus folder was given).

    Raises:
        BenchmarkError: When neither exists.
    """
    for candidate in (data_root / corpus, data_root / corpus.upper()):
        if candidate.is_dir():
            return candidate
    if data_root.is_dir() and not any((data_root / other).is_dir() for other in _KNOWN):
        return data_root  # the corpus folder itself; the scan checks its layout
    raise BenchmarkError(
        f"no folder for corpus {corpus!r} under {data_root}; expected {data_root / corpus}"
    )


def prepare_corpus(
    corpus: str,
    data_root: str | Path,
    *,
    protocol: str | None = None,
    limit: int | None = None,
    fold_seed: int = 0,
) -> CorpusTask:
    """Scan a real corpus and make its folds.

    Args:
        corpus: Registry name (``casia``, ``emovo``, ``urdu``...).
        data_root: A folder holding ``<corpus>/`` (or the corpus folder itself).
        protocol: Protocol name; ``None`` = the corpus's honest speaker-independent default.
        limit: Keep at most this many utterances per speaker × label (smoke tests).
        fold_seed: Seed of the validation-speaker choice (test folds do not depend on it).
    """
    from ptssnn.corpora import get_corpus, make_folds, scan_corpus

    spec = get_corpus(corpus)
    root = find_corpus_root(Path(data_root).expanduser(), spec.name)
    scan = scan_corpus(spec.name, root)
    utterances = list(scan.utterances)
    if limit is not None:
        utterances = limit_utterances(utterances, limit)
    if not utterances:
        raise BenchmarkError(f"no usable {spec.name} utterance under {root}")
    folds = make_folds(spec.name, utterances, protocol, seed=fold_seed)
    present = {u.label for u in utterances}
    labels = tuple(label for label in spec.labels if label in present)
    return CorpusTask(
        name=spec.name,
        utterances=tuple(utterances),
        folds=tuple(folds),
        label_names=labels,
        protocol=folds[0].protocol if folds else (protocol or spec.default_protocol),
        problems=tuple(f"{p.path}: {p.reason}" for p in scan.problems),
    )


def extract_corpus_features(
    task: CorpusTask, backbone: Any, cache: Path | None, *, progress: bool = True
) -> tuple[CorpusTask, Any, float]:
    """Extract (or reuse from the cache) every hidden state of every utterance.

    Utterances whose audio cannot be decoded are dropped from the task (and its folds) and
    listed among its problems.

    Returns:
        ``(task restricted to the utterances with features, FeatureSet, seconds)``.
    """
    from ptssnn.features import FeatureStore, extract_features

    started = time.perf_counter()
    store = FeatureStore(cache) if cache is not None else FeatureStore()
    feature_set = extract_features(list(task.utterances), backbone, "all", store,
                                   progress=progress)
    seconds = time.perf_counter() - started
    if len(feature_set) == len(task.utterances):
        return task, feature_set, seconds
    kept = set(feature_set.ids)
    folds = tuple(
        dataclasses.replace(
            fold,
            train=tuple(i for i in fold.train if i in kept),
            validation=tuple(i for i in fold.validation if i in kept),
            test=tuple(i for i in fold.test if i in kept),
        )
        for fold in task.folds
    )
    failures = tuple(f"{f.path}: {f.reason}" for f in feature_set.failures)
    task = dataclasses.replace(
        task,
        utterances=tuple(u for u in task.utterances if u.id in kept),
        folds=folds,
        problems=task.problems + failures,
    )
    return task, feature_set, seconds


def backbone_energy(task: CorpusTask, backbone: Any, test_ids: set[str]) -> dict[str, float]:
    sample_rate = int(getattr(backbone, "sample_rate", 16000))
    macs = [backbone.macs(round(u.duration * sample_rate)) for u in task.utterances
            if u.id in test_ids]
    mean_macs = float(np.mean(macs)) if macs else 0.0
    return {"macs_per_sample": mean_macs, "energy_mj_per_sample": mean_macs * E_MAC_J * 1e3}


def speakers_of(task: CorpusTask) -> dict[str, str]:
    """Utterance id → speaker."""
    return {u.id: u.speaker for u in task.utterances}
