"""Cross-corpus evaluation: train on corpus A, test on corpus B over their shared classes.

The head is trained on every speaker of A except a few held-out validation speakers (model
selection and early stopping, as within a corpus) and tested once on all of B's utterances
whose harmonised label A also has. Both corpora must come from the same backbone.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ptssnn.errors import ProtocolError
from ptssnn.features.table import LabelledFeatures


@dataclass(frozen=True)
class CrossCorpusFold:
    """A fold whose training side comes from one corpus and test side from another.

    Attributes:
        name: ``"<source>-><target>"``.
        train: Source ids to fit on.
        validation: Source ids of the held-out validation speakers.
        test: Target ids.
        labels: Shared harmonised classes, in the order the head predicts them.
        validation_policy: Always ``"speakers"``.
    """

    name: str
    train: tuple[str, ...]
    validation: tuple[str, ...]
    test: tuple[str, ...]
    labels: tuple[str, ...]
    validation_policy: str = "speakers"


def shared_classes(source: Sequence[Any], target: Sequence[Any]) -> tuple[str, ...]:
    """Harmonised labels present in both utterance lists, in the harmonised order."""
    from ptssnn.corpora import shared_labels

    return shared_labels(source, target)


def cross_corpus_fold(
    source_name: str,
    source: Sequence[Any],
    target_name: str,
    target: Sequence[Any],
    *,
    validation_fraction: float = 0.1,
    seed: int = 0,
) -> CrossCorpusFold:
    """Build the train (A) / validation (A's held-out speakers) / test (B) split.

    Args:
        source_name / target_name: Corpus names (for the fold name).
        source / target: Utterances with ``id``, ``speaker``, ``label``.
        validation_fraction: Share of A's utterances (whole speakers) held out.
        seed: Order in which validation speakers are drawn.

    Raises:
        ProtocolError: Fewer than two shared classes, or A has a single speaker.
    """
    labels = shared_classes(source, target)
    if len(labels) < 2:
        raise ProtocolError(
            f"{source_name} and {target_name} share {len(labels)} harmonised class(es) "
            f"({', '.join(labels) or 'none'}); cross-corpus needs at least two"
        )
    keep = set(labels)
    pool = [u for u in source if u.label in keep]
    speakers = sorted({u.speaker for u in pool})
    if len(speakers) < 2:
        raise ProtocolError(f"{source_name} has one speaker: no validation speaker to hold out")
    counts = {s: sum(1 for u in pool if u.speaker == s) for s in speakers}
    order = [speakers[i] for i in np.random.default_rng(seed).permutation(len(speakers))]
    chosen: list[str] = []
    for speaker in order:
        if sum(counts[s] for s in chosen) >= validation_fraction * len(pool):
            break
        if len(chosen) == len(speakers) - 1:
            break
        chosen.append(speaker)
    held = set(chosen)
    return CrossCorpusFold(
        name=f"{source_name}->{target_name}",
        train=tuple(u.id for u in pool if u.speaker not in held),
        validation=tuple(u.id for u in pool if u.speaker in held),
        test=tuple(u.id for u in target if u.label in keep),
        labels=labels,
    )


def cross_corpus_table(source: LabelledFeatures, target: LabelledFeatures,
                       labels: Sequence[str]) -> LabelledFeatures:
    """Both corpora's items in one table, relabelled to the shared classes."""
    return joint_table([source, target], labels)


def joint_table(tables: Sequence[LabelledFeatures], labels: Sequence[str]) -> LabelledFeatures:
    """Several corpora's items in one table, relabelled to ``labels`` (items of other classes
    left out; ids must be unique across the tables).

    Raises:
        ProtocolError: The tables come from different backbones (other shapes).
    """
    first = tables[0]
    for other in tables[1:]:
        if other.feature_dim != first.feature_dim or other.num_layers != first.num_layers:
            raise ProtocolError(
                "joining corpora needs features from the same backbone: "
                f"[{first.num_layers}, T, {first.feature_dim}] vs "
                f"[{other.num_layers}, T, {other.feature_dim}]"
            )
    return LabelledFeatures.concatenate([table.relabel(labels) for table in tables])
