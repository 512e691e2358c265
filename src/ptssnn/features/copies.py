"""Speed-perturbed copies of clips (``--speed-perturb``): their features and their tables.

Each factor's copies are extracted like any clip, under
:class:`~ptssnn.features.extraction.AudioPolicy` ``speed`` (their own cache namespace), and
enter a table under the ids ``speed<f>/<id>`` (:func:`ptssnn.audio.perturbation.copy_id`).
The benchmark (:mod:`ptssnn.benchmark.augmentation`) and ``ptssnn train``
(:func:`ptssnn.training.deployment.train_recognizer`) both build their copies here.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

import torch

from ptssnn.audio.perturbation import copy_id
from ptssnn.features.extraction import AudioPolicy, extract_features
from ptssnn.features.table import LabelledFeatures


def extract_copies(utterances: Sequence[Any], backbone: Any, store: Any,
                   factors: Sequence[float], *, progress: bool = True
                   ) -> list[tuple[float, Any]]:
    """``(factor, feature set)`` of every factor's copies of ``utterances`` (clips whose
    copy fails are in the set's failures, as any unreadable clip)."""
    return [(factor, extract_features(list(utterances), backbone, "all", store,
                                      progress=progress, audio_policy=AudioPolicy(speed=factor)))
            for factor in factors]


def copy_tables(utterances: Sequence[Any], copies: Sequence[tuple[float, Any]],
                label_names: Sequence[str],
                transform: Callable[[torch.Tensor], torch.Tensor] | None = None
                ) -> list[tuple[LabelledFeatures, dict[str, Any]]]:
    """Each factor's copies of ``utterances`` (those with features) as a table under the copy
    ids, with ``{copy id: original utterance}``; ``transform`` is applied to each item as it
    is read."""
    tables = []
    for factor, feature_set in copies:
        kept = [u for u in utterances if u.id in feature_set]
        if not kept:
            continue
        table = LabelledFeatures.from_feature_set(feature_set, kept, label_names,
                                                  transform=transform)
        table = dataclasses.replace(table, ids=tuple(copy_id(factor, i) for i in table.ids))
        tables.append((table, {copy_id(factor, u.id): u for u in kept}))
    return tables
