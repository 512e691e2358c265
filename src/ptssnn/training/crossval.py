"""``cross_validate``: every fold of one corpus for one head, resumable fold by fold.

Per fold: resolve the feature normalisation and the layer mode (``"auto"`` → chosen on the
validation speakers by a linear probe), build the head from a fixed seed,
:func:`~ptssnn.training.fit` it with model selection on validation (and, with
``TrainConfig.refit``, train it again on training + validation data for the chosen number of
epochs), score the test fold once, optionally analyse the trained head (energy, firing
statistics), write ``<out>/<fold>/result.json``. A finished fold is never run again under
``resume``; an interrupted one continues from its last epoch checkpoint.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from torch import nn

from ptssnn.errors import CheckpointError
from ptssnn.evaluation.metrics import (
    ClassificationMetrics,
    MeanStd,
    pooled_confusion,
    summarise_folds,
)
from ptssnn.training.config import (
    TrainConfig,
    TrainConfigError,
    middle_layer,
    parse_layer_mode,
)
from ptssnn.training.data import LabelledFeatures
from ptssnn.training.trainer import EpochHook, FitResult, evaluate, fit


class FoldLike(Protocol):
    """What a fold must offer (``ptssnn.corpora.Fold`` does)."""

    name: str
    train: Sequence[str]
    validation: Sequence[str]
    test: Sequence[str]


#: ``factory(input_dim, num_classes, input_layers) -> head``; ``input_layers`` > 1 means the
#: head receives ``[B, L, T, D]`` and learns a weighted layer sum.
ModelFactory = Callable[[int, int, int], nn.Module]

#: ``analyse(model, test_data) -> dict`` of extra per-fold numbers (energy, firing rates...).
Analyser = Callable[[nn.Module, LabelledFeatures], dict[str, Any]]


def count_trainable(model: nn.Module) -> int:
    """Trainable parameters of a head."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def _table_key(normalisation: str) -> str:
    """Which stored table a normalisation reads: the speaker-standardised copy, or the raw
    table (``global`` standardises inside the model, ``none`` not at all)."""
    return "speaker" if normalisation == "speaker" else "global"


class LayerViews:
    """A corpus table reduced to each layer mode once (not once per fold).

    Args:
        table: The corpus's features.
        speakers: Utterance id → speaker, for ``normalisation="speaker"``/``"auto"``; the
            speaker-standardised copy of the table is made on first use.
    """

    def __init__(self, table: LabelledFeatures, speakers: Mapping[str, str] | None = None
                 ) -> None:
        self.table = table
        self.speakers = dict(speakers) if speakers is not None else None
        self._tables: dict[str, LabelledFeatures] = {"global": table}
        self._views: dict[str, LabelledFeatures] = {}
        self._stats: dict[str, tuple[np.ndarray, tuple[str, ...]]] = {}
        self._layer_scores: dict[tuple, dict[str, float]] = {}
        self._rows = {utt_id: i for i, utt_id in enumerate(table.ids)}

    def normalised(self, normalisation: str = "global") -> LabelledFeatures:
        """The table as the head sees it before its own (global) standardisation."""
        key = _table_key(normalisation)
        if key not in self._tables:
            if self.speakers is None:
                raise TrainConfigError(
                    "normalisation 'speaker' needs the speaker of every utterance; build "
                    "LayerViews(table, speakers={id: speaker, ...})")
            self._tables[key] = self.table.standardise_by_group(self.speakers)
        return self._tables[key]

    def view(self, mode: str, frame_pool: int = 1, normalisation: str = "global"
             ) -> LabelledFeatures:
        """The table under a resolved layer mode, frames pooled by ``frame_pool``."""
        norm = _table_key(normalisation)
        key = f"{norm}|{mode}|{frame_pool}"
        if key not in self._views:
            table = self.normalised(norm)
            self._views[key] = table.with_layers(mode).pool_frames(frame_pool)
        return self._views[key]

    def pooled(self, normalisation: str = "global") -> tuple[np.ndarray, tuple[str, ...]]:
        """Pooled statistics of every item (for probes and ``"auto"``), computed once."""
        norm = _table_key(normalisation)
        if norm not in self._stats:
            from ptssnn.evaluation.probe import pooled_statistics

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
                candidates, len(self.table.label_names), seed=seed)
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

    ``"middle"`` is the middle hidden state (:func:`~ptssnn.training.config.middle_layer`).
    ``"auto"`` ranks every single hidden state and the average of all by the validation UA of
    a linear probe (mean+std pooling) trained on the fold's training split; the best wins.
    The learned weighted sum (``"all"``) cannot be ranked that cheaply; ask for it explicitly.

    Returns:
        ``(resolved mode, {candidate: validation UA})`` (scores empty unless ``"auto"``).
    """
    kind, _ = parse_layer_mode(mode)
    if kind == "middle":
        return str(middle_layer(views.table.num_layers)), {}
    if kind != "auto":
        return mode, {}
    if views.table.num_layers == 1:
        return "0", {}
    from ptssnn.evaluation.probe import best_candidate

    # The probe's seed only matters for ties in lbfgs; one ranking per fold serves all seeds.
    scores = views.layer_scores(fold, normalisation=normalisation)
    return best_candidate(scores), scores


@dataclass
class FoldResult:
    """One fold of one head.

    Attributes:
        fold: Fold name.
        layers: Resolved layer mode the head read.
        layer_scores: Validation UA per candidate when the mode was ``"auto"``.
        test: Test metrics (model chosen on validation).
        fit: Training summary (best epoch, validation metrics, curves).
        num_parameters: Trainable parameters of the head.
        predictions: ``{"ids", "references", "predictions"}`` of the test items.
        analysis: Extra numbers from the analyser (energy, firing statistics...).
        seconds: Wall time of the fold (layer selection, training, test, analysis).
        normalisation: Resolved feature standardisation (``"global"``, ``"speaker"``...).
        normalisation_scores: Best probe validation UA per mode when it was ``"auto"``.
    """

    fold: str
    layers: str
    layer_scores: dict[str, float]
    test: ClassificationMetrics
    fit: dict[str, Any]
    num_parameters: int
    predictions: dict[str, list]
    analysis: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0
    normalisation: str = "global"
    normalisation_scores: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return {
            "fold": self.fold,
            "layers": self.layers,
            "layer_scores": self.layer_scores,
            "test": self.test.to_dict(),
            "fit": self.fit,
            "num_parameters": self.num_parameters,
            "predictions": self.predictions,
            "analysis": self.analysis,
            "seconds": self.seconds,
            "normalisation": self.normalisation,
            "normalisation_scores": self.normalisation_scores,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FoldResult:
        """Inverse of :meth:`to_dict`."""
        return cls(
            fold=data["fold"],
            layers=data["layers"],
            layer_scores=dict(data["layer_scores"]),
            test=ClassificationMetrics.from_dict(data["test"]),
            fit=data["fit"],
            num_parameters=int(data["num_parameters"]),
            predictions=data["predictions"],
            analysis=data.get("analysis", {}),
            seconds=float(data.get("seconds", 0.0)),
            normalisation=str(data.get("normalisation", "global")),
            normalisation_scores=dict(data.get("normalisation_scores", {})),
        )


@dataclass
class CrossValResult:
    """Every fold of one head on one corpus, and mean ± std over folds."""

    folds: list[FoldResult]
    label_names: tuple[str, ...]

    @property
    def summary(self) -> dict[str, MeanStd]:
        """Mean ± std over folds of WA, UA, macro-F1, weighted-F1."""
        return summarise_folds([f.test.to_dict() for f in self.folds])

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (per-fold records and the summary)."""
        return {
            "label_names": list(self.label_names),
            "summary": {k: v.to_dict() for k, v in self.summary.items()},
            "confusion": pooled_confusion([f.test.to_dict() for f in self.folds]),
            "folds": [f.to_dict() for f in self.folds],
        }


def _write_json(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=1))
    tmp.replace(path)


def _load_finished(path: Path) -> FoldResult | None:
    if not path.exists():
        return None
    try:
        return FoldResult.from_dict(json.loads(path.read_text()))
    except (OSError, KeyError, ValueError) as error:
        raise CheckpointError(
            f"fold result {path} is unreadable ({error}); delete it to rerun that fold"
        ) from error


def _fold_dir(out_dir: Path | None, fold: FoldLike) -> Path | None:
    if out_dir is None:
        return None
    path = Path(out_dir) / str(fold.name)
    path.mkdir(parents=True, exist_ok=True)
    return path


def train_fold(
    views: LayerViews,
    fold: FoldLike,
    model_factory: ModelFactory,
    config: TrainConfig,
    *,
    out_dir: Path | None = None,
    resume: bool = False,
    epoch_hook: EpochHook | None = None,
    analyse: Analyser | None = None,
) -> tuple[FoldResult, nn.Module | None]:
    """Train and test one head on one fold (see module docstring).

    Returns:
        ``(result, model)``; ``model`` is ``None`` when the fold was already finished.
    """
    fold_dir = _fold_dir(out_dir, fold)
    result_path = fold_dir / "result.json" if fold_dir else None
    if resume and result_path is not None:
        finished = _load_finished(result_path)
        if finished is not None:
            return finished, None
    started = time.perf_counter()
    norm, norm_scores = select_normalisation(views, fold, config.normalisation)
    mode, scores = select_layers(views, fold, config.layers, seed=config.seed,
                                 normalisation=norm)
    table = views.view(mode, config.frame_pool, norm)
    input_layers = table.num_layers if table.features[0].dim() == 3 else 1
    # The same seed gives the same initial weights in every run, resumed or not.
    torch.manual_seed(config.seed)
    model = model_factory(table.feature_dim, len(table.label_names), input_layers)
    if not getattr(model, "standardises_input", True) and norm != "none":
        # A head defined on the raw features (vanilla-snn, the paper's baseline) gets them.
        norm, norm_scores = "none", {}
        table = views.view(mode, config.frame_pool, norm)
    train, val, test = (table.subset(fold.train), table.subset(fold.validation),
                        table.subset(fold.test))
    checkpoint = fold_dir / "train_state" if fold_dir else None
    result: FitResult = fit(model, train, val, config, checkpoint=checkpoint, resume=resume,
                            epoch_hook=epoch_hook)
    summary = result.to_dict()
    if config.refit:
        # Same seed, same schedule length as chosen: train + validation, last weights.
        torch.manual_seed(config.seed)
        model = model_factory(table.feature_dim, len(table.label_names), input_layers)
        both = table.subset((*fold.train, *fold.validation))
        refit_config = config.replace(max_epochs=result.best_epoch, min_epochs=1)
        refit = fit(model, both, None, refit_config,
                    checkpoint=fold_dir / "refit_state" if fold_dir else None,
                    resume=resume, epoch_hook=epoch_hook)
        summary["refit"] = {"epochs": refit.epochs_run, "history": refit.history,
                            "seconds": refit.seconds}
    metrics, predicted = evaluate(model, test, config.eval_batch_size)
    analysis = analyse(model, test) if analyse is not None else {}
    fold_result = FoldResult(
        fold=str(fold.name),
        layers=mode,
        layer_scores=scores,
        test=metrics,
        fit=summary,
        num_parameters=count_trainable(model),
        predictions={
            "ids": list(test.ids),
            "references": test.labels.tolist(),
            "predictions": [int(p) for p in predicted],
        },
        analysis=analysis,
        seconds=time.perf_counter() - started,
        normalisation=norm,
        normalisation_scores=norm_scores,
    )
    if fold_dir is not None:
        _write_json(fold_dir / "result.json", fold_result.to_dict())
        # The result is the record of completion; the epoch checkpoints are no longer needed.
        for stem in ("train_state", "refit_state"):
            for suffix in (".safetensors", ".json"):
                (fold_dir / f"{stem}{suffix}").unlink(missing_ok=True)
    return fold_result, model


def cross_validate(
    table: LabelledFeatures | LayerViews,
    folds: Sequence[FoldLike],
    model_factory: ModelFactory,
    config: TrainConfig,
    *,
    out_dir: str | Path | None = None,
    resume: bool = False,
    epoch_hook: EpochHook | None = None,
    fold_hook: Callable[[FoldResult], None] | None = None,
    analyse: Analyser | None = None,
) -> CrossValResult:
    """Train and test a head on every fold.

    Args:
        table: The whole corpus's features (``[L, T, D]`` items), or its :class:`LayerViews`
            (shared between heads so each layer reduction is computed once).
        folds: Speaker-independent folds (train / validation / test ids).
        model_factory: Builds a fresh head (see :data:`ModelFactory`).
        config: Training hyper-parameters; saved as ``config.json`` in ``out_dir``.
        out_dir: Where each fold's ``result.json`` and epoch checkpoint go (``None``: nowhere,
            and no resume).
        resume: Skip finished folds and continue the interrupted one.
        epoch_hook: Called after every epoch.
        fold_hook: Called with each fold's result (finished ones too, under resume).
        analyse: Extra per-fold analysis of the trained head on the test split.

    Returns:
        A :class:`CrossValResult`.
    """
    views = table if isinstance(table, LayerViews) else LayerViews(table)
    out = Path(out_dir) if out_dir is not None else None
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        config.save(out / "config.json")
    results = []
    for fold in folds:
        fold_result, _ = train_fold(views, fold, model_factory, config, out_dir=out,
                                    resume=resume, epoch_hook=epoch_hook, analyse=analyse)
        results.append(fold_result)
        if fold_hook is not None:
            fold_hook(fold_result)
    return CrossValResult(results, views.table.label_names)
