"""One per-fold training path for every head, and ``cross_validate`` over a corpus's folds.

:func:`train_fold` is the only way a fold is trained: by the benchmark (neural heads and
the linear probe), by ``ptssnn train`` (:mod:`ptssnn.training.deployment`) and by the
torchrun fold job (:mod:`ptssnn.training.distributed`). Its stages, in order:

1. **resume**: a fold with a ``result.json`` is finished and never run again;
2. **choose**: the feature normalisation and the layer selection (``"auto"`` → chosen on the
   validation speakers by a linear probe), giving the fold's
   :class:`~ptssnn.features.FeaturePipeline`;
3. **fit**: build the head from a fixed seed (:class:`~ptssnn.models.HeadSpec` or any
   factory), :func:`~ptssnn.training.fit` it with model selection on validation and, with
   ``TrainConfig.refit``, train it again on training + validation data for the chosen number
   of epochs; the probe head (:data:`PROBE_HEAD`) fits a logistic regression instead;
4. **score**: the test fold once, plus an optional analysis of the trained head;
5. **record**: ``<out>/<fold>/result.json`` (rank 0 only under DDP); the epoch checkpoints
   of an interrupted fold let ``resume`` continue from its last epoch.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ptssnn.errors import CheckpointError
from ptssnn.evaluation.metrics import (
    ClassificationMetrics,
    MeanStd,
    pooled_confusion,
    positions,
    summarise_folds,
)
from ptssnn.features.pipeline import FeaturePipeline
from ptssnn.features.table import LabelledFeatures
from ptssnn.jsonio import dumps as strict_json
from ptssnn.training.config import TrainConfig, TrainConfigError, refit_policy
from ptssnn.training.enrolment import EnrolledTraining, EnrolmentProtocol, score_enrolment
from ptssnn.training.trainer import EpochHook, FitResult, evaluate, fit
from ptssnn.training.views import FoldLike, LayerViews, select_layers, select_normalisation

#: ``factory(input_dim, num_classes, input_layers) -> head``; ``input_layers`` > 1 means the
#: head receives ``[B, L, T, D]`` and learns a weighted layer sum
#: (:class:`ptssnn.models.HeadSpec` is one).
ModelFactory = Callable[[int, int, int], nn.Module]

#: ``analyse(model, test_data) -> dict`` of extra per-fold numbers (energy, firing rates...).
Analyser = Callable[[nn.Module, LabelledFeatures], dict[str, Any]]


class LinearProbeHead:
    """The non-neural baseline as a fold head: a logistic regression on pooled statistics
    of the hidden state chosen on validation (:mod:`ptssnn.evaluation.probe`)."""

    def __repr__(self) -> str:
        return "PROBE_HEAD"


#: The probe head (pass it to :func:`train_fold` / :func:`cross_validate` as the factory).
PROBE_HEAD = LinearProbeHead()


def count_trainable(model: nn.Module) -> int:
    """Trainable parameters of a head."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


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
        enrolment: Test scores per enrolment K (:func:`ptssnn.training.enrolment.score_enrolment`),
            when an enrolment protocol was asked for.
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
    enrolment: dict[str, Any] = field(default_factory=dict)

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
            **({"enrolment": self.enrolment} if self.enrolment else {}),
        }

    def pipeline(self, frame_pool: int) -> FeaturePipeline:
        """The feature pipeline this fold's head read (``frame_pool``: its config's)."""
        # A head trained for enrolled use reads per-speaker standardised features.
        return FeaturePipeline(layers=self.layers, frame_pool=frame_pool,
                               normalisation=_pipeline_normalisation(self.normalisation))

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
            enrolment=dict(data.get("enrolment", {})),
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
    tmp.write_text(strict_json(data, indent=1))
    tmp.replace(path)


def _primary() -> bool:
    """Rank 0, or not under DDP: the process that writes results."""
    return not torch.distributed.is_initialized() or torch.distributed.get_rank() == 0


def _load_finished(fold_dir: Path | None) -> FoldResult | None:
    path = fold_dir / "result.json" if fold_dir is not None else None
    if path is None or not path.exists():
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


def _record(fold_dir: Path | None, result: FoldResult) -> None:
    if fold_dir is None or not _primary():
        return
    _write_json(fold_dir / "result.json", result.to_dict())
    # The result is the record of completion; the epoch checkpoints are no longer needed.
    for stem in ("train_state", "refit_state"):
        for suffix in (".safetensors", ".json"):
            (fold_dir / f"{stem}{suffix}").unlink(missing_ok=True)


def _predictions(ids: Sequence[str], references: Sequence[int], predicted: Any
                 ) -> dict[str, list]:
    return {"ids": list(ids), "references": list(references),
            "predictions": [int(p) for p in predicted]}


def _probe_fold(views: LayerViews, fold: FoldLike, config: TrainConfig, norm: str,
                enrolment: EnrolmentProtocol | None = None) -> FoldResult:
    """Stages 2-4 for the probe, held to the neural heads' protocol: when the heads read one
    fixed hidden state (``layers`` ``"middle"`` or an index) the probe reads the same one,
    otherwise (``"all"``, ``"auto"``) every hidden state and their mean compete; ``C`` is
    chosen on validation; with ``config.refit`` the chosen probe is refitted on training +
    validation rows, as the heads are; then the test fold is scored once. Under an
    ``enrolment`` protocol the test speakers are also scored with profiles, exactly as a
    neural head's: the profile standardises every hidden state before pooling. (Under
    ``normalisation="enrolled"`` the probe is trained on statistics standardised by each
    training speaker's own moments from all of its clips, not on the neural head's mix of
    K-clip profiles.)"""
    from ptssnn.evaluation.probe import run_probe

    labels = views.table.labels.numpy()
    stats, candidates = views.pooled(norm)
    test_rows = views.rows(fold.test)
    fixed, _ = select_layers(views, fold, config.layers if config.layers != "auto" else "all")
    probe = run_probe(stats, labels, candidates, views.rows(fold.train),
                      views.rows(fold.validation), test_rows, len(views.table.label_names),
                      seed=config.seed, refit=config.refit,
                      only=fixed if fixed in candidates else None, classes=views.columns,
                      refit_extra_rows=views.rows(refit_extra(fold)))
    enrolment_scores: dict[str, Any] = {}
    if enrolment is not None:
        if views.speakers is None:
            raise TrainConfigError("the enrolment protocol needs the speaker of every utterance")
        # Every hidden state, unpooled: the items the probe's statistics were computed on.
        pipeline = FeaturePipeline(layers="all", frame_pool=1,
                                   normalisation=_pipeline_normalisation(norm))
        enrolment_scores = score_enrolment(
            lambda part: probe.predict_items(part, views.columns), views.table, fold,
            pipeline, views.speakers, enrolment, columns=views.columns)
    return FoldResult(
        fold=str(fold.name),
        layers=probe.layer,
        layer_scores=probe.validation_scores,
        test=probe.test,
        fit={"best_validation_ua": probe.validation_scores[probe.layer], "c": probe.c,
             "refit": probe.refit},
        num_parameters=probe.num_parameters,
        predictions=_predictions(fold.test, positions(labels[test_rows], views.columns).tolist(),
                                 probe.predictions),
        normalisation=norm,
        enrolment=enrolment_scores,
    )


def _build_head(factory: ModelFactory, table: LabelledFeatures, seed: int) -> nn.Module:
    input_layers = table.num_layers if table.features[0].dim() == 3 else 1
    # The same seed gives the same initial weights in every run, resumed or not.
    torch.manual_seed(seed)
    return factory(table.feature_dim, len(table.label_names), input_layers)


def _fit_head(
    views: LayerViews,
    fold: FoldLike,
    factory: ModelFactory,
    config: TrainConfig,
    norm: str,
    *,
    fold_dir: Path | None,
    resume: bool,
    epoch_hook: EpochHook | None,
    analyse: Analyser | None,
    enrolment: EnrolmentProtocol | None = None,
) -> tuple[FoldResult, nn.Module]:
    """Stages 2-4 for a neural head."""
    mode, scores = select_layers(views, fold, config.layers, seed=config.seed,
                                 normalisation=norm)
    pipeline = FeaturePipeline(layers=mode, frame_pool=config.frame_pool,
                               normalisation=_pipeline_normalisation(norm))
    table = views.view(pipeline)
    model = _build_head(factory, table, config.seed)
    if not getattr(model, "standardises_input", True) and norm != "none":
        # A head defined on the raw features (vanilla-snn, the paper's baseline) gets them.
        pipeline = pipeline.replace(normalisation="none")
        table = views.view(pipeline)
    train, val, test = (table.subset(fold.train), table.subset(fold.validation),
                        table.subset(fold.test))
    mixed = None
    if norm == "enrolled":
        if views.groups is None:
            raise TrainConfigError("normalisation 'enrolled' needs the speaker of every utterance")
        mixed = EnrolledTraining(views.table, views.groups, pipeline,
                                 (*fold.train, *fold.validation), seed=config.seed)
        train, val = mixed.table(fold.train), mixed.table(fold.validation)
    # Scored over the views' classes (a corpus's own, in a multi-corpus table).
    val, test = views.scored(val), views.scored(test)
    result: FitResult = fit(model, train, val, config,
                            checkpoint=fold_dir / "train_state" if fold_dir else None,
                            resume=resume, epoch_hook=epoch_hook, columns=views.columns)
    summary = result.to_dict()
    if config.refit:
        # Same seed, same schedule length as chosen: train + validation, last weights.
        model = _build_head(factory, table, config.seed)
        refit_ids = (*fold.train, *fold.validation, *refit_extra(fold))
        both = mixed.table(refit_ids) if mixed is not None else table.subset(refit_ids)
        speakers = (len({views.speakers[u] for u in (*fold.train, *fold.validation)})
                    if views.speakers is not None else None)
        policy = refit_policy(config.refit_epochs, speakers, norm)
        if policy == "max":
            epochs = config.max_epochs
        elif config.refit_smoothing == 1:
            epochs = result.best_epoch
        else:
            epochs = smoothed_best_epoch(result.history, config.refit_smoothing,
                                         fallback=result.best_epoch)
        refit_config = config.replace(max_epochs=epochs, min_epochs=1)
        refit = fit(model, both, None, refit_config,
                    checkpoint=fold_dir / "refit_state" if fold_dir else None,
                    resume=resume, epoch_hook=epoch_hook)
        summary["refit"] = {"epochs": refit.epochs_run, "policy": policy,
                            "history": refit.history,
                            "seconds": refit.seconds}
    metrics, predicted = evaluate(model, test, config.eval_batch_size, views.columns)
    enrolment_scores: dict[str, Any] = {}
    if enrolment is not None:
        if views.speakers is None:
            raise TrainConfigError("the enrolment protocol needs the speaker of every utterance")
        enrolment_scores = score_enrolment(model, views.table, fold, pipeline, views.speakers,
                                           enrolment, eval_batch_size=config.eval_batch_size,
                                           columns=views.columns)
    fold_result = FoldResult(
        fold=str(fold.name),
        layers=mode,
        layer_scores=scores,
        test=metrics,
        fit=summary,
        num_parameters=count_trainable(model),
        predictions=_predictions(test.ids, test.labels.tolist(), predicted),
        analysis=analyse(model, test) if analyse is not None else {},
        normalisation="enrolled" if mixed is not None else pipeline.normalisation,
        enrolment=enrolment_scores,
    )
    return fold_result, model


def refit_extra(fold: FoldLike) -> tuple[str, ...]:
    """Ids that join the refit only (``Fold.refit_extra``: speed-perturbed copies of the
    validation clips); a fold-like object without the field has none."""
    return tuple(getattr(fold, "refit_extra", ()))


def _pipeline_normalisation(norm: str) -> str:
    """The pipeline mode of a training normalisation (``enrolled`` reads per-speaker
    standardised features, like ``speaker``)."""
    return "speaker" if norm == "enrolled" else norm


def smoothed_best_epoch(history: Sequence[Mapping[str, Any]], window: int,
                        fallback: int) -> int:
    """The 1-based epoch whose validation UA, averaged over a centred ``window`` of epochs
    (shorter at the ends of the curve), is the highest; the first such epoch on ties.

    ``window`` 1 is the raw argmax. ``fallback`` when the history has no validation UA.
    """
    scores = [record.get("val_ua") for record in history]
    if not scores or any(score is None for score in scores):
        return fallback
    half = window // 2
    means = [float(np.mean(scores[max(0, i - half):i + half + 1])) for i in range(len(scores))]
    return int(np.argmax(means)) + 1


def train_fold(
    views: LayerViews,
    fold: FoldLike,
    model_factory: ModelFactory | LinearProbeHead,
    config: TrainConfig,
    *,
    out_dir: Path | None = None,
    resume: bool = False,
    epoch_hook: EpochHook | None = None,
    analyse: Analyser | None = None,
    enrolment: EnrolmentProtocol | None = None,
) -> tuple[FoldResult, nn.Module | None]:
    """Train and test one head on one fold (the stages in the module docstring).

    Args:
        views: The corpus table.
        fold: Train / validation / test ids.
        model_factory: A neural head factory (:class:`~ptssnn.models.HeadSpec`...) or
            :data:`PROBE_HEAD`.
        config: Training configuration (its ``seed`` seeds the head, or the probe).
        out_dir: Where ``<fold>/result.json`` and the epoch checkpoints go (``None``: none).
        resume: Reuse a finished fold, continue an interrupted one.
        epoch_hook: Called after every epoch of a neural head.
        analyse: Extra analysis of a trained neural head on the test split.
        enrolment: Also score the test speakers with speaker profiles from K of their
            clips (needs ``views.speakers``; neural heads and the probe alike).

    Returns:
        ``(result, model)``; ``model`` is ``None`` for the probe and for a finished fold.
        The result's :meth:`FoldResult.pipeline` is what the head reads.
    """
    fold_dir = _fold_dir(out_dir, fold)
    if resume:
        finished = _load_finished(fold_dir)
        if finished is not None:
            return finished, None
    started = time.perf_counter()
    norm, norm_scores = select_normalisation(views, fold, config.normalisation)
    model: nn.Module | None = None
    if isinstance(model_factory, LinearProbeHead):
        result = _probe_fold(views, fold, config, norm, enrolment)
    else:
        result, model = _fit_head(views, fold, model_factory, config, norm, fold_dir=fold_dir,
                                  resume=resume, epoch_hook=epoch_hook, analyse=analyse,
                                  enrolment=enrolment)
    result.seconds = time.perf_counter() - started
    # A raw-feature head (normalisation forced to "none") made no choice.
    result.normalisation_scores = norm_scores if result.normalisation == norm else {}
    _record(fold_dir, result)
    return result, model


def cross_validate(
    table: LabelledFeatures | LayerViews,
    folds: Sequence[FoldLike],
    model_factory: ModelFactory | LinearProbeHead,
    config: TrainConfig,
    *,
    out_dir: str | Path | None = None,
    resume: bool = False,
    epoch_hook: EpochHook | None = None,
    fold_hook: Callable[[FoldResult], None] | None = None,
    analyse: Analyser | None = None,
    enrolment: EnrolmentProtocol | None = None,
) -> CrossValResult:
    """Train and test a head on every fold.

    Args:
        table: The whole corpus's features (``[L, T, D]`` items), or its :class:`LayerViews`
            (shared between heads so each layer reduction is computed once).
        folds: Speaker-independent folds (train / validation / test ids).
        model_factory: Builds a fresh head (see :data:`ModelFactory`), or
            :data:`PROBE_HEAD`.
        config: Training hyper-parameters; saved as ``config.json`` in ``out_dir``.
        out_dir: Where each fold's ``result.json`` and epoch checkpoint go (``None``: nowhere,
            and no resume).
        resume: Skip finished folds and continue the interrupted one.
        epoch_hook: Called after every epoch.
        fold_hook: Called with each fold's result (finished ones too, under resume).
        analyse: Extra per-fold analysis of the trained head on the test split.
        enrolment: Also score every fold with speaker profiles (see :func:`train_fold`).

    Returns:
        A :class:`CrossValResult`.
    """
    views = table if isinstance(table, LayerViews) else LayerViews(table)
    out = Path(out_dir) if out_dir is not None else None
    if out is not None and _primary():
        out.mkdir(parents=True, exist_ok=True)
        config.save(out / "config.json")
    results = []
    for fold in folds:
        fold_result, _ = train_fold(views, fold, model_factory, config, out_dir=out,
                                    resume=resume, epoch_hook=epoch_hook, analyse=analyse,
                                    enrolment=enrolment)
        results.append(fold_result)
        if fold_hook is not None:
            fold_hook(fold_result)
    return CrossValResult(results, views.labels)
