"""``train_recognizer``: train a deployable model directory on whole corpora.

Unlike the benchmark (which tests every fold), this trains one head on every speaker of the
given corpora except a held-out validation set used for model selection and early stopping,
and writes a self-contained model directory (:func:`ptssnn.inference.save_recognizer`).

Validation speakers, per corpus (speaker-disjoint from training, as in the benchmark):

* ``validation_speakers`` given: exactly those.
* otherwise the corpus's default speaker-independent folds (``make_folds(corpus, all
  utterances, seed=seed)``) are consulted: if the excluded speakers of that corpus are
  exactly one fold's test speakers, that fold's validation split is used, so "train on
  CASIA without speaker X" reproduces the benchmark's fold X bit for bit (same train,
  same validation, same seed, same trainer); otherwise the validation split of the first
  fold whose validation speakers are not excluded.

Multi-corpus training uses the harmonised labels (``Utterance.label``): the label set is
the union over the corpora's training utterances, in the corpus registry's label order.

Training is the benchmark's per-fold routine itself (:func:`ptssnn.training.train_fold`:
layer choice on the validation speakers, frame pooling, seeding, ``fit`` with model
selection on validation, then a final fit on training + validation data for the chosen
number of epochs: the head that gets deployed) with the benchmark's training configuration
(:func:`ptssnn.training.config.benchmark_train_config`), and the model
factory of the benchmark (the seed goes into the head's initialisation). The model card
records the feature pipeline (resolved layer selection, frame pooling, dtype policy,
normalisation), so inference feeds the head exactly what it was trained on.
"""

from __future__ import annotations

import dataclasses
import platform
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

import ptssnn
from ptssnn.audio.perturbation import check_speed_factors
from ptssnn.backbones.registry import head_defaults
from ptssnn.corpora.protocols import speaker_label_dependence, speaker_label_warning
from ptssnn.errors import PtssnnError
from ptssnn.features.enrolment import SpeakerPrior, training_moments
from ptssnn.features.table import LabelledFeatures
from ptssnn.jsonio import dumps as strict_json
from ptssnn.models.card import ModelCard, save_recognizer
from ptssnn.models.factory import HeadSpec
from ptssnn.training.config import (
    PER_SPEAKER_NORMALISATIONS,
    TrainConfig,
    benchmark_train_config,
)
from ptssnn.training.crossval import train_fold
from ptssnn.training.views import LayerViews


@dataclass(frozen=True)
class _Split:
    """Fold-like split over several corpora (``ptssnn.training.select_layers`` reads it)."""

    name: str
    train: tuple[str, ...]
    validation: tuple[str, ...]
    test: tuple[str, ...]
    refit_extra: tuple[str, ...] = ()  # speed-perturbed copies of the validation clips


def _corpus_root(data_root: Path, corpus: str, count: int) -> Path:
    candidate = data_root / corpus
    if candidate.is_dir():
        return candidate
    if count == 1 and data_root.is_dir():
        return data_root  # --data-root pointing at the corpus folder itself
    raise PtssnnError(
        f"corpus {corpus!r} not found: expected the folder {candidate} (point --data-root at "
        "the folder that holds one sub-folder per corpus)"
    )


def _choose_validation(
    corpus: str,
    utterances: Sequence[Any],
    excluded: set[str],
    requested: set[str],
    seed: int,
) -> tuple[set[str], str]:
    """Validation utterance ids of one corpus, and how they were chosen."""
    from ptssnn.corpora import make_folds

    if requested:
        ids = {u.id for u in utterances if u.speaker in requested}
        return ids, f"speakers {sorted({u.speaker for u in utterances if u.id in ids})}"
    folds = make_folds(corpus, list(utterances), seed=seed)
    by_id = {u.id: u for u in utterances}
    corpus_excluded = excluded & {u.speaker for u in utterances}
    for fold in folds:
        test_speakers = {by_id[i].speaker for i in fold.test}
        if corpus_excluded and test_speakers == corpus_excluded:
            return set(fold.validation), f"fold {fold.name} of the default protocol"
    candidates = [fold for fold in folds if fold.validation
                  and not {by_id[i].speaker for i in fold.validation} & excluded]
    if not candidates:
        raise PtssnnError(
            f"cannot carve validation speakers from {corpus}: give --validation-speakers")
    # The first fold whose validation side holds the most classes: a corpus with one small
    # speaker would otherwise validate on a handful of clips of one or two classes.
    fold = max(candidates, key=lambda f: len({by_id[i].label for i in f.validation}))
    return set(fold.validation), f"validation of fold {fold.name}"


def train_recognizer(
    corpora: Sequence[str],
    *,
    data_root: str | Path,
    out: str | Path,
    backbone: str = "whisper-base",
    preset: str = "pts-snn",
    epochs: int | None = None,
    exclude_speakers: Sequence[str] = (),
    validation_speakers: Sequence[str] = (),
    layers: str | None = None,
    cache_dir: str | Path | None = None,
    seed: int = 0,
    config_overrides: dict[str, Any] | None = None,
    model_overrides: dict[str, Any] | None = None,
    progress: bool = False,
    log: Callable[[str], None] | None = None,
    speed_perturb: Sequence[float] = (),
) -> dict[str, Any]:
    """Train a head on whole corpora and write a model directory.

    Args:
        corpora: Corpus registry names (``casia``, ``emovo``...); several = multi-corpus.
        data_root: Folder with one sub-folder per corpus (or, for one corpus, its folder).
        out: Model directory to write.
        backbone: Backbone registry name.
        preset: Model preset (``ptssnn.models.list_presets()``).
        epochs: Maximum epochs (default: the benchmark's).
        exclude_speakers: Speakers left out of training and validation altogether; their
            utterances (if any) are scored as a held-out test set in the summary.
        validation_speakers: Force these speakers as the validation set.
        layers: Trainer layer mode (``auto``, ``all``, ``mean``, ``mean:a-b``, ``k``);
            default: the benchmark's.
        cache_dir: Feature cache (default ``$PTSSNN_CACHE`` or ``~/.cache/ptssnn/features``).
        seed: Seed of the validation choice, initialisation and training.
        config_overrides: Extra :class:`TrainConfig` fields (e.g. ``frame_pool``,
            ``num_threads``, ``refit``); everything else is the benchmark's configuration.
        model_overrides: Extra model config fields for ``create_model`` (over the
            backbone's :func:`~ptssnn.backbones.head_defaults`).
        progress: Show extraction progress bars.
        log: Called with one line per stage and per epoch (``None``: silent).
        speed_perturb: Speed factors (e.g. ``(0.9, 1.1)``) whose perturbed copies join the
            training data, as the benchmark's ``--speed-perturb``
            (:mod:`ptssnn.benchmark.augmentation`): the validation run trains on the
            training clips' copies, the refit (the written model) on the validation clips'
            copies too; validation scores read the original clips only.

    Returns:
        The training summary (also written to ``out/training_summary.json``).

    Raises:
        PtssnnError: Unknown corpus/speaker, missing folders, empty splits.
    """
    started = time.perf_counter()
    if not corpora:
        raise PtssnnError("name at least one corpus to train on")
    factors = check_speed_factors(list(speed_perturb))
    excluded, requested = set(exclude_speakers), set(validation_speakers)
    if excluded & requested:
        raise PtssnnError(f"speakers {sorted(excluded & requested)} both excluded and validation")
    config = _deployment_config(seed, layers, epochs, config_overrides)
    splits = _speaker_splits(corpora, Path(data_root), excluded, requested, seed)
    table, split, encoder, failed = _load_features(splits, corpora, backbone, cache_dir,
                                                   progress)
    num_originals = len(split.train)
    table, split, copies = _add_copies(table, split, splits, encoder, cache_dir, progress,
                                       factors)
    say = log or (lambda line: None)
    say(
        f"training {preset} on {len(split.train)} utterances ({', '.join(corpora)}"
        + (f"; {len(split.train) - num_originals} of them speed-perturbed copies, and "
           f"{len(split.refit_extra)} copies of the validation clips join the final refit"
           if copies else "") + "), validating "
        f"on {len(split.validation)}; layers {config.layers}, frames pooled by "
        f"{config.frame_pool}; up to {config.max_epochs} epochs"
    )
    warning = _validation_warning(table.subset(split.validation))
    if warning:
        say(warning)
    dependence = _speaker_label_dependence(splits, (*split.train, *split.validation))
    warning = speaker_label_warning(dependence)
    if warning and config.normalisation in PER_SPEAKER_NORMALISATIONS:
        say(f"{warning}; --normalisation global does not")
    # As the benchmark's heads: the backbone's head defaults, the seed in the model's
    # initialisation, then the caller's options.
    head = HeadSpec(preset, {**head_defaults(backbone), "seed": seed, **(model_overrides or {})})
    # The benchmark's own per-fold routine: layer choice on validation, frame pooling,
    # seeding, fit with model selection on validation, scoring of the held-out split.
    # Speakers (named per corpus, which may reuse names) for the speaker-aware normalisations.
    by_id = {u.id: u for u in splits.utterances}
    speakers = {i: f"{by_id[i].corpus}/{by_id[i].speaker}" for i in table.ids
                if i in by_id}
    speakers.update({i: speakers[original] for i, original in copies.items()})
    result, model = train_fold(LayerViews(table, speakers=speakers), split, head, config,
                               epoch_hook=_epoch_logger(say))
    model.eval()
    # The labelled data's moments at the pipeline's input: what speaker profiles are shrunk
    # toward (and, for a speaker-trained head, what it uses without a profile).
    prior = SpeakerPrior.from_moments(
        training_moments(table.subset((*split.train, *split.validation,
                                       *(split.refit_extra if config.refit else ()))).features),
        trained_for={"enrolled": "enrolled", "speaker": "speaker"}.get(result.normalisation,
                                                                         "global"))
    card = ModelCard(
        labels=table.label_names,
        backbone=encoder.name,
        backbone_options={},
        backbone_identity=_jsonable(encoder.identity()),
        pipeline=result.pipeline(config.frame_pool),
        sample_rate=encoder.sample_rate,
        frame_rate=encoder.frame_rate,
        preset=preset,
    )
    summary: dict[str, Any] = {
        "corpora": splits.per_corpus,
        "labels": list(table.label_names),
        "backbone": encoder.name,
        "layers": {"mode": result.layers, "spec": card.layers, "scores": result.layer_scores},
        "pipeline": card.pipeline.to_dict(),
        "normalisation": result.normalisation,
        "speaker_label_dependence": dependence,
        "enrolment": {"trained_for": prior.trained_for, "prior_clips": prior.prior_clips,
                      "prior_frames": prior.frames},
        "frame_pool": config.frame_pool,
        "preset": preset,
        "num_train": len(split.train),
        "speed_perturb": {"factors": list(factors),
                          "copies": len(copies)},
        "num_validation": len(split.validation),
        "num_held_out": len(splits.test),
        "excluded_speakers": sorted(excluded),
        "failed_utterances": failed,
        "train_config": config.to_dict(),
        "fit": result.fit,
        "validation": result.fit["best_validation"],
        "num_parameters": result.num_parameters,
        "held_out": result.test.to_dict() if splits.test else None,
        "seconds": round(time.perf_counter() - started, 2),
        "ptssnn_version": ptssnn.__version__,
        "torch_version": torch.__version__,
        "python": platform.python_version(),
    }
    save_recognizer(model, out, card, summary)
    prior.save(out)
    return summary


@dataclass
class _Splits:
    """Speaker-disjoint training / validation / held-out ids over every corpus."""

    utterances: list[Any]
    train: list[str]
    validation: list[str]
    test: list[str]
    per_corpus: dict[str, Any]


def _speaker_splits(corpora: Sequence[str], data_root: Path, excluded: set[str],
                    requested: set[str], seed: int) -> _Splits:
    """Scan the corpora and split them by speaker (see the module docstring)."""
    from ptssnn.corpora import scan_corpus

    splits = _Splits([], [], [], [], {})
    all_speakers: set[str] = set()
    for corpus in corpora:
        scan = scan_corpus(corpus, _corpus_root(data_root, corpus, len(corpora)))
        utts = list(scan.utterances)
        all_speakers |= {u.speaker for u in utts}
        validation, how = _choose_validation(corpus, utts, excluded, requested, seed)
        kept = [u for u in utts if u.speaker not in excluded]
        c_train = [u.id for u in kept if u.id not in validation]
        c_val = [u.id for u in kept if u.id in validation]
        c_test = [u.id for u in utts if u.speaker in excluded]
        splits.utterances.extend(utts)
        splits.train += c_train
        splits.validation += c_val
        splits.test += c_test
        by_id = {u.id: u for u in utts}
        splits.per_corpus[corpus] = {
            "utterances": len(utts),
            "problems": len(scan.problems),
            "left_out": [f"{p.path}: {p.reason}" for p in scan.problems],
            "train_speakers": sorted({by_id[i].speaker for i in c_train}),
            "validation_speakers": sorted({by_id[i].speaker for i in c_val}),
            "held_out_speakers": sorted({by_id[i].speaker for i in c_test}),
            "validation_choice": how,
        }
    unknown = (excluded | requested) - all_speakers
    if unknown:
        raise PtssnnError(
            f"unknown speakers {sorted(unknown)}; the corpora have {sorted(all_speakers)}"
        )
    if not splits.train or not splits.validation:
        raise PtssnnError(
            f"{len(splits.train)} training and {len(splits.validation)} validation utterances: "
            "exclude fewer speakers"
        )
    return splits


def _load_features(splits: _Splits, corpora: Sequence[str], backbone: str,
                   cache_dir: str | Path | None, progress: bool
                   ) -> tuple[LabelledFeatures, _Split, Any, list[str]]:
    """Label order, features (extracted or cached) and the table of every used utterance."""
    from ptssnn.backbones import load_backbone
    from ptssnn.corpora import get_corpus
    from ptssnn.features import extract_features

    by_id = {u.id: u for u in splits.utterances}
    # The registry's label order (as the benchmark uses), corpus by corpus: the same classes
    # in the same order give the same head initialisation as the benchmark's fold.
    present = {by_id[i].label for i in splits.train}
    labels = tuple(dict.fromkeys(x for c in corpora for x in get_corpus(c).labels
                                 if x in present))
    # Held-out or validation clips of a class never seen in training cannot be scored.
    splits.validation = [i for i in splits.validation if by_id[i].label in labels]
    splits.test = [i for i in splits.test if by_id[i].label in labels]
    encoder = load_backbone(backbone)
    used = [by_id[i] for i in (*splits.train, *splits.validation, *splits.test)]
    feature_set = extract_features(used, encoder, "all", cache_dir, progress=progress)
    failed = sorted(f"{f.id}: {f.reason}" for f in feature_set.failures)
    for name in ("train", "validation", "test"):
        setattr(splits, name, [i for i in getattr(splits, name) if i in feature_set])
    table = LabelledFeatures.from_feature_set(
        feature_set, [by_id[i] for i in (*splits.train, *splits.validation, *splits.test)],
        labels)
    # Without held-out speakers the "test" split is the validation split again (train_fold
    # always scores one); its score is then left out of the summary.
    split = _Split("deploy", tuple(splits.train), tuple(splits.validation),
                   tuple(splits.test or splits.validation))
    return table, split, encoder, failed


def _add_copies(table: LabelledFeatures, split: _Split, splits: _Splits, encoder: Any,
                cache_dir: str | Path | None, progress: bool, factors: Sequence[float]
                ) -> tuple[LabelledFeatures, _Split, dict[str, str]]:
    """The table and split with the speed-perturbed copies of the training and validation
    clips added (the latter for the refit only); ``{copy id: original id}``. A clip whose
    copy fails trains once, as itself."""
    from ptssnn.features.copies import copy_tables, extract_copies

    if not factors:
        return table, split, {}
    by_id = {u.id: u for u in splits.utterances}
    originals = [by_id[i] for i in (*split.train, *split.validation)]
    parts = copy_tables(originals, extract_copies(originals, encoder, cache_dir, factors,
                                                  progress=progress), table.label_names)
    tables = [table, *(part for part, _ in parts)]
    copies = {i: u.id for _, origin in parts for i, u in origin.items()}
    # The validation run trains on the training clips' copies; the refit (the deployed
    # model) on the validation clips' copies too.
    validation = set(split.validation)
    train = (*split.train, *(c for c, i in copies.items() if i not in validation))
    extra = tuple(c for c, i in copies.items() if i in validation)
    return (LabelledFeatures.concatenate(tables),
            dataclasses.replace(split, train=train, refit_extra=extra), copies)


def _speaker_label_dependence(splits: _Splits, ids: Sequence[str]) -> float:
    """:func:`~ptssnn.corpora.speaker_label_dependence` of these utterances (speakers named
    per corpus); copies are not among the splits' utterances, and need not be."""
    by_id = {u.id: u for u in splits.utterances}
    chosen = [by_id[i] for i in ids if i in by_id]
    return speaker_label_dependence([f"{u.corpus}/{u.speaker}" for u in chosen],
                                    [u.label for u in chosen])


def _validation_warning(validation: LabelledFeatures) -> str | None:
    """A line for a validation split too small to choose the epoch count on: fewer than two
    clips per class, or a class it does not hold (a small corpus with one small speaker)."""
    counts = validation.class_counts().tolist()
    missing = [name for name, count in zip(validation.label_names, counts, strict=True)
               if count == 0]
    if not missing and len(validation) >= 2 * len(counts):
        return None
    lacking = f"; no clip of {', '.join(missing)}" if missing else ""
    return (f"warning: the validation speakers hold only {len(validation)} utterance(s) of "
            f"the {len(counts)} classes{lacking}: scores and choices made on them are noise. "
            "Name larger ones with --validation-speakers.")


def _deployment_config(seed: int, layers: str | None, epochs: int | None,
                       overrides: dict[str, Any] | None) -> TrainConfig:
    """The benchmark's training configuration (the trainer's defaults + the refit on training
    + validation data for the whole schedule), so that a held-out speaker scores exactly as in
    its benchmark fold."""
    # A deployed head sees one clip at a time, without its speaker's other clips: it
    # standardises with the moments of its training data (stored in the checkpoint).
    changes: dict[str, Any] = {"seed": seed, "normalisation": "global", **(overrides or {})}
    if layers is not None:
        changes["layers"] = layers
    config = benchmark_train_config().replace(**changes)
    if epochs is not None:
        config = config.replace(max_epochs=epochs, patience=min(config.patience, epochs),
                                min_epochs=min(config.min_epochs, epochs))
    return config


def _epoch_logger(say: Callable[[str], None]) -> Callable[[dict[str, Any]], None]:
    def on_epoch(record: dict[str, Any]) -> None:
        # Epochs of a refit on training + validation data (TrainConfig.refit) have no
        # validation scores.
        scores = (
            f"val UA {record['val_ua']:.4f}  WA {record['val_wa']:.4f}"
            if "val_ua" in record
            else "(refit on training + validation)"
        )
        say(
            f"epoch {record['epoch']:3d}  loss {record['train_loss']:.4f}  {scores}  "
            f"({record.get('seconds', 0.0):.1f} s)"
        )

    return on_epoch


def _jsonable(value: Any) -> Any:
    import json

    return json.loads(strict_json(value, sort_keys=True, default=str))
