"""Speed-perturbed training copies (``--speed-perturb 0.9,1.1``) in the benchmark's folds (the
copies' features and tables: :mod:`ptssnn.features.copies`, which ``ptssnn train`` uses too).

Each factor's copies of a corpus's clips are extracted like any corpus (the cache keeps them
in their own namespace: :class:`~ptssnn.features.extraction.AudioPolicy` ``speed``) and join
the table under the ids ``speed<f>/<id>`` (:func:`~ptssnn.audio.perturbation.copy_id`),
labelled and attributed to the speaker of their original, so that the speaker count that
sets the refit's length sees one speaker, not three, and validation carving keeps a
speaker's copies on its side. Under a per-speaker normalisation (``speaker``, ``auto``,
``enrolled``) each speed of a speaker is standardised as a voice of its own
(:func:`~ptssnn.audio.perturbation.normalisation_groups`), never by its original's moments.

A fold's validation run trains on the copies of its training clips only: its validation
clips, and their copies, are not trained on, so it cannot choose on a clip it has heard in
another tempo. The refit on training + validation data trains on the copies of both (the
copies of the validation clips are the fold's ``refit_extra``), so every training speaker
keeps its share of the data. Test clips are never copied into training.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import torch

from ptssnn.audio.perturbation import copy_id
from ptssnn.benchmark.corpus import CorpusTask
from ptssnn.features.table import LabelledFeatures

#: ``(factor, feature set of the copies)``: what a worker process needs to rebuild the table.
Copies = Sequence[tuple[float, Any]]


def extract_copies(task: CorpusTask, backbone: Any, cache: Path | None,
                   factors: Sequence[float], *, progress: bool = True
                   ) -> list[tuple[float, Any]]:
    """The features of every factor's copies of the task's training and validation clips (any
    fold's)."""
    from ptssnn.features import copies

    trained = {i for fold in task.folds for i in (*fold.train, *fold.validation)}
    return copies.extract_copies([u for u in task.utterances if u.id in trained], backbone,
                                 cache, factors, progress=progress)


def with_copies(task: CorpusTask, copies: Copies) -> CorpusTask:
    """``task`` whose every fold also trains on the copies of its training clips, and whose
    refit also trains on the copies of its validation clips (``Fold.refit_extra``); only
    clips whose copy has features (a clip whose copy failed trains once, as itself)."""
    if not copies:
        return task

    def extra(ids: Iterable[str]) -> tuple[str, ...]:
        return tuple(copy_id(factor, i) for factor, fs in copies for i in ids if i in fs)

    folds = tuple(dataclasses.replace(fold, train=(*fold.train, *extra(fold.train)),
                                      refit_extra=(*fold.refit_extra, *extra(fold.validation)))
                  for fold in task.folds)
    return dataclasses.replace(task, folds=folds)


def copy_tables(task: CorpusTask, copies: Copies,
                transform: Callable[[torch.Tensor], torch.Tensor] | None = None
                ) -> list[tuple[LabelledFeatures, dict[str, str]]]:
    """Each factor's copies as a table with their own ids, and those ids' speakers
    (``transform``: applied to each item as it is read)."""
    from ptssnn.features import copies as copy_features

    return [(table, {i: u.speaker for i, u in origin.items()})
            for table, origin in copy_features.copy_tables(task.utterances, copies,
                                                           task.label_names, transform)]


def copies_summary(task: CorpusTask, copies: Copies) -> dict[str, Any]:
    """What speed perturbation added to a corpus (``results.json``)."""
    return {"factors": [factor for factor, _ in copies],
            "copies": {f"{factor:g}": len(fs) for factor, fs in copies},
            "failed": {f"{factor:g}": len(fs.failures) for factor, fs in copies},
            "utterances": len(task.utterances)}
