"""Multi-corpus training (``--multi-corpus``): each corpus's folds trained with the run's other
corpora added.

For corpus X, every fold's training split also holds every utterance of the other corpora of
the run (all their speakers; their ids and speakers are prefixed ``<corpus>/`` so they never
collide with X's). Validation and test splits stay X's own, so the folds stay
speaker-independent and X's test speakers appear nowhere else. Every head learns the union of
the run's harmonised classes (:func:`ptssnn.corpora.union_labels`, the labels the cross-corpus
mode also harmonises with); validation and test predictions are restricted to X's classes
(:class:`~ptssnn.training.views.LayerViews` ``labels``), so X is scored, selected on and
reported over its own classes, exactly as when it is trained alone.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

from ptssnn.benchmark.corpus import CorpusTask, speakers_of
from ptssnn.features.pipeline import FeaturePipeline
from ptssnn.features.table import LabelledFeatures
from ptssnn.training.views import LayerViews


def partner_id(corpus: str, utterance_id: str) -> str:
    """The id of another corpus's utterance in a multi-corpus table."""
    return f"{corpus}/{utterance_id}"


def with_partners(task: CorpusTask, partners: Sequence[CorpusTask]) -> CorpusTask:
    """``task`` whose every fold also trains on every utterance of ``partners``.

    Validation and test splits, utterances and classes stay the task's own (its classes are
    the ones it is scored over).
    """
    if not partners:
        return task
    extra = tuple(partner_id(p.name, u.id) for p in partners for u in p.utterances)
    folds = tuple(dataclasses.replace(fold, train=(*fold.train, *extra)) for fold in task.folds)
    return dataclasses.replace(task, folds=folds)


def joint_views(task: CorpusTask, table: LabelledFeatures,
                partners: Sequence[tuple[CorpusTask, LabelledFeatures]],
                copies: Sequence[tuple[LabelledFeatures, dict[str, str]]] = (), *,
                prepared: FeaturePipeline | None = None,
                num_layers: int | None = None) -> LayerViews:
    """The table the heads of ``task`` train on: its own, joined with the partners' (ids and
    speakers prefixed), over the union of their classes, scored over the task's classes;
    and with the task's speed-perturbed ``copies`` (:func:`ptssnn.benchmark.augmentation.
    copy_tables`: tables and their ids' speakers, the originals' speakers).

    Without partners or copies, the task's own views (what a single-corpus run uses).
    ``prepared`` and ``num_layers``: the tables were read through that pipeline
    (:class:`~ptssnn.training.views.LayerViews`).
    """
    from ptssnn.corpora import union_labels
    from ptssnn.evaluation.crosscorpus import joint_table

    speakers = speakers_of(task)
    if not partners and not copies:
        return LayerViews(table, speakers=speakers, prepared=prepared, num_layers=num_layers)
    labels = (union_labels(task.label_names, *(p.label_names for p, _ in partners))
              if partners else task.label_names)
    renamed = [dataclasses.replace(t, ids=tuple(partner_id(p.name, i) for i in t.ids))
               for p, t in partners]
    speakers.update({partner_id(p.name, u.id): f"{p.name}/{u.speaker}"
                     for p, _ in partners for u in p.utterances})
    for _, copy_speakers in copies:
        speakers.update(copy_speakers)
    tables = [table, *renamed, *(copy_table for copy_table, _ in copies)]
    return LayerViews(joint_table(tables, labels), speakers=speakers, labels=task.label_names,
                      prepared=prepared, num_layers=num_layers)


def load_views(task: CorpusTask, feature_set: Any,
               partners: Sequence[tuple[CorpusTask, Any]] = (),
               copies: Sequence[tuple[float, Any]] = (),
               prepared: FeaturePipeline | None = None) -> LayerViews:
    """:func:`joint_views` from cached features (``partners``: ``(task, feature set)``;
    ``copies``: ``(speed factor, feature set)``), for a worker process that holds no table
    yet; with ``prepared``, each item is read through that pipeline as it is loaded (the
    worker then holds the head's input rate, not the backbone's)."""
    from ptssnn.benchmark.augmentation import copy_tables

    # The per-utterance preparation inference uses too (no speaker moments: global).
    transform = None if prepared is None else prepared.prepare
    table = LabelledFeatures.from_feature_set(feature_set, task.utterances, task.label_names,
                                              transform=transform)
    loaded = [(p, LabelledFeatures.from_feature_set(fs, p.utterances, p.label_names,
                                                    transform=transform))
              for p, fs in partners]
    return joint_views(task, table, loaded, copy_tables(task, copies, transform),
                       prepared=prepared,
                       num_layers=None if prepared is None else feature_set.num_layers)


def added_summary(partners: Sequence[CorpusTask], labels: Sequence[str]) -> dict[str, Any]:
    """What multi-corpus training added to a corpus's training splits (``results.json``)."""
    counts = {p.name: len(p.utterances) for p in partners}
    return {"corpora": counts, "utterances": sum(counts.values()),
            "speakers": sum(len({u.speaker for u in p.utterances}) for p in partners),
            "labels": list(labels)}
