"""A corpus table and the per-fold choices made on it: normalisation and layer selection.

:class:`LayerViews` holds one corpus's features once and derives, on demand and only once,
what every head of every fold reads (speaker-standardised copies, the
:class:`~ptssnn.features.FeaturePipeline` views, the pooled statistics the linear probe
ranks layers with). :func:`select_normalisation` and :func:`select_layers` resolve the
``"auto"`` requests of a :class:`~ptssnn.training.TrainConfig` for one fold, on its
validation speakers only.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol

import numpy as np

from ptssnn.audio.perturbation import normalisation_groups
from ptssnn.features.layers import LayerSelection, middle_layer
from ptssnn.features.pipeline import FeaturePipeline
from ptssnn.features.table import DataError, LabelledFeatures
from ptssnn.training.config import TrainConfigError


class FoldLike(Protocol):
    """What a fold must offer (``ptssnn.corpora.Fold`` does)."""

    name: str
    train: Sequence[str]
    validation: Sequence[str]
    test: Sequence[str]


def _table_key(normalisation: str) -> str:
    """Which stored table a normalisation reads: the speaker-standardised copy, or the raw
    table (``global`` standardises inside the model, ``none`` not at all)."""
    return "speaker" if normalisation in ("speaker", "enrolled") else "global"


def _view_key(pipeline: FeaturePipeline) -> str:
    """Which prepared table a pipeline reads: its stored table, layers and frame pooling."""
    return f"{_table_key(pipeline.normalisation)}|{pipeline.layers}|{pipeline.frame_pool}"


class LayerViews:
    """A corpus table reduced to each layer mode once (not once per fold).

    Args:
        table: The corpus's features.
        speakers: Utterance id → speaker, for ``normalisation="speaker"``/``"auto"``/
            ``"enrolled"``; the speaker-standardised copy of the table is made on first use.
            A speed-perturbed copy (``speed<f>/<id>``) is attributed to its original's
            speaker, and is standardised as a voice of its own (:attr:`groups`).
        labels: The classes every fold is scored over, when fewer than the table's (one
            corpus's classes in a table that joins several, see
            :mod:`ptssnn.benchmark.multicorpus`): heads learn every class of the table, but
            validation and test predictions are restricted to these, and metrics and
            predictions are expressed over them, in this order. ``None``: the table's.
        prepared: ``table`` was read through this pipeline already (layer selection and frame
            pooling, item by item: a benchmark worker that trains only heads reading it holds
            it, not the backbone-rate table); :meth:`view` then serves that pipeline only,
            and the probe's statistics and per-speaker tables are unavailable.
        num_layers: The hidden states of the features before ``prepared`` selected some
            (what ``"middle"`` counts); default: the table's.

    Raises:
        DataError: A scored label the table does not have.
    """

    def __init__(self, table: LabelledFeatures, speakers: Mapping[str, str] | None = None,
                 labels: Sequence[str] | None = None, *,
                 prepared: FeaturePipeline | None = None,
                 num_layers: int | None = None) -> None:
        self.table = table
        self.prepared = prepared
        self.num_layers = num_layers if num_layers is not None else table.num_layers
        self.speakers = dict(speakers) if speakers is not None else None
        #: Who standardises whom under a per-speaker normalisation: a speaker, and each
        #: speed-perturbed copy of a speaker its own voice
        #: (:func:`~ptssnn.audio.perturbation.normalisation_groups`).
        self.groups = normalisation_groups(speakers) if speakers is not None else None
        self.labels = tuple(labels) if labels is not None else table.label_names
        unknown = [name for name in self.labels if name not in table.label_names]
        if unknown:
            raise DataError(f"scored labels {unknown} are not among the table's "
                            f"{list(table.label_names)}")
        #: The table's class index of each scored label (``None``: all, in the table's order).
        self.columns: tuple[int, ...] | None = (
            None if self.labels == table.label_names
            else tuple(table.label_names.index(name) for name in self.labels))
        self._tables: dict[str, LabelledFeatures] = {"global": table}
        self._views: dict[str, LabelledFeatures] = {}
        self._stats: dict[str, tuple[np.ndarray, tuple[str, ...]]] = {}
        self._layer_scores: dict[tuple, dict[str, float]] = {}
        self._rows = {utt_id: i for i, utt_id in enumerate(table.ids)}

    def normalised(self, normalisation: str = "global") -> LabelledFeatures:
        """The table as the head sees it before its own (global) standardisation."""
        key = _table_key(normalisation)
        if key not in self._tables:
            if self.prepared is not None:
                raise DataError("these views hold features prepared for one pipeline only "
                                f"({self.prepared.layers}, frames pooled by "
                                f"{self.prepared.frame_pool}); no per-speaker table")
            if self.speakers is None:
                raise TrainConfigError(
                    "normalisation 'speaker' needs the speaker of every utterance; build "
                    "LayerViews(table, speakers={id: speaker, ...})")
            self._tables[key] = self.table.standardise_by_group(self.groups)
        return self._tables[key]

    def view(self, pipeline: FeaturePipeline) -> LabelledFeatures:
        """The table as a head reads it through ``pipeline`` (resolved layers, frame
        pooling, the pipeline's normalisation)."""
        key = _view_key(pipeline)
        if self.prepared is not None:
            ready = self.prepared
            if key != _view_key(ready):
                raise DataError(f"these views hold features prepared for layers "
                                f"{ready.layers!r}, frames pooled by {ready.frame_pool}; "
                                f"asked for {pipeline.layers!r} pooled by {pipeline.frame_pool}")
            return self.table
        if key not in self._views:
            self._views[key] = self.normalised(pipeline.normalisation).prepared(pipeline)
        return self._views[key]

    def scored(self, data: LabelledFeatures) -> LabelledFeatures:
        """A validation or test split of the table relabelled to the scored classes.

        Raises:
            DataError: An item of a class that is not scored (a fold whose validation or test
                split holds another corpus's utterances).
        """
        if self.columns is None:
            return data
        kept = data.relabel(self.labels)
        if len(kept) != len(data):
            raise DataError(f"{len(data) - len(kept)} validation/test item(s) have a class "
                            f"outside the scored ones {list(self.labels)}")
        return kept

    def pooled(self, normalisation: str = "global") -> tuple[np.ndarray, tuple[str, ...]]:
        """Pooled statistics of every item (for probes and ``"auto"``), computed once."""
        norm = _table_key(normalisation)
        if norm not in self._stats:
            from ptssnn.evaluation.probe import pooled_statistics

            if self.prepared is not None:
                raise DataError("these views hold features prepared for one pipeline only; "
                                "the probe's statistics need the backbone-rate table")
            self._stats[norm] = pooled_statistics(self.normalised(norm))
        return self._stats[norm]

    def layer_scores(self, fold: FoldLike, seed: int = 0, normalisation: str = "global"
                     ) -> dict[str, float]:
        """Validation UA of a linear probe per layer candidate for one fold (cached: every
        head and the probe baseline of a fold share one ranking)."""
        norm = _table_key(normalisation)
        key = (norm, tuple(fold.train), tuple(fold.validation), seed)
        if key not in self._layer_scores:
            from ptssnn.evaluation.probe import probe_layer_scores

            stats, candidates = self.pooled(norm)
            labels = self.table.labels.numpy()
            train_rows, val_rows = self.rows(fold.train), self.rows(fold.validation)
            self._layer_scores[key] = probe_layer_scores(
                stats[train_rows], labels[train_rows], stats[val_rows], labels[val_rows],
                candidates, len(self.table.label_names), seed=seed, classes=self.columns)
        return self._layer_scores[key]

    def share_rankings(self) -> dict[tuple, dict[str, float]]:
        """The cached layer rankings (to hand to another process)."""
        return dict(self._layer_scores)

    def adopt_rankings(self, rankings: dict[tuple, dict[str, float]]) -> None:
        """Reuse rankings computed elsewhere (same table, same folds)."""
        self._layer_scores.update(rankings)

    def rows(self, ids: Sequence[str]) -> np.ndarray:
        """Row indices of these ids in the table."""
        return np.asarray([self._rows[i] for i in ids], dtype=np.int64)


def select_normalisation(views: LayerViews, fold: FoldLike, mode: str
                         ) -> tuple[str, dict[str, float]]:
    """Resolve a normalisation mode for one fold.

    ``"auto"`` compares the best validation UA of a linear probe (any layer candidate) on
    globally and on speaker-standardised features and keeps the better one (ties: global,
    which needs no speaker labels at inference). Speaker standardisation helps where each
    speaker shows every emotion (CASIA, EMOVO) and hurts where speakers and emotions are
    confounded (URDU), so it is chosen per fold, on validation speakers only.

    Returns:
        ``(resolved mode, {mode: best validation UA})`` (scores empty unless ``"auto"``).
    """
    if mode != "auto":
        return mode, {}
    if views.speakers is None:
        return "global", {}
    scores = {norm: max(views.layer_scores(fold, normalisation=norm).values())
              for norm in ("global", "speaker")}
    return ("speaker" if scores["speaker"] > scores["global"] else "global"), scores


def select_layers(views: LayerViews, fold: FoldLike, mode: str, *, seed: int = 0,
                  normalisation: str = "global") -> tuple[str, dict[str, float]]:
    """Resolve a layer mode for one fold.

    ``"middle"`` becomes the middle hidden state's index. ``"auto"`` ranks every
    single hidden state and the average of all by the validation UA of
    a linear probe (mean+std pooling) trained on the fold's training split; the best wins.
    The learned weighted sum (``"all"``) cannot be ranked that cheaply; ask for it explicitly.

    Returns:
        ``(resolved mode, {candidate: validation UA})`` (scores empty unless ``"auto"``).
    """
    selection = LayerSelection.parse(mode)
    if selection.middle:  # a prior, not a choice: saved as the concrete index
        return str(middle_layer(views.num_layers)), {}
    if not selection.auto:
        return mode, {}
    if views.num_layers == 1:
        return "0", {}
    from ptssnn.evaluation.probe import best_candidate

    # The probe's seed only matters for ties in lbfgs; one ranking per fold serves all seeds.
    scores = views.layer_scores(fold, normalisation=normalisation)
    return best_candidate(scores), scores
