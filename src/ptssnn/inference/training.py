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
(:func:`ptssnn.benchmark.runner.benchmark_train_config`), and the model
factory of the benchmark (the seed goes into the head's initialisation). The model card
records the resolved layer spec and the frame pooling, so inference feeds the head exactly
what it was trained on.
"""

from __future__ import annotations

import platform
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

import ptssnn
from ptssnn.errors import PtssnnError
from ptssnn.inference.card import ModelCard, save_recognizer


@dataclass(frozen=True)
class _Split:
    """Fold-like split over several corpora (``ptssnn.training.select_layers`` reads it)."""

    name: str
    train: tuple[str, ...]
    validation: tuple[str, ...]
    test: tuple[str, ...]


def trainer_mode_to_layer_spec(mode: str) -> str:
    """Translate a resolved trainer layer mode into a :class:`LayerSpec` string.

    ``"all"`` → ``"all"`` (a multi-layer head), ``"mean"`` → ``"mean:all"``,
    ``"mean:a-b"`` → ``"mean:a-b"``, ``"k"`` → ``"k"``.
    """
    from ptssnn.training import parse_layer_mode

    kind, indices = parse_layer_mode(mode)
    if kind in ("auto", "middle"):
        raise ValueError(f"resolve the {kind!r} layer mode before saving it")
    if kind == "all":
        return "all"
    if kind == "mean":
        return "mean:all" if not indices else f"mean:{indices[0]}-{indices[-1]}"
    return str(indices[0])


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
    for fold in folds:
        val_speakers = {by_id[i].speaker for i in fold.validation}
        if fold.validation and not val_speakers & excluded:
            return set(fold.validation), f"validation of fold {fold.name}"
    raise PtssnnError(f"cannot carve validation speakers from {corpus}: give --validation-speakers")


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
        model_overrides: Extra model config fields for ``create_model``.
        progress: Show extraction progress bars.
        log: Called with one line per stage and per epoch (``None``: silent).

    Returns:
        The training summary (also written to ``out/training_summary.json``).

    Raises:
        PtssnnError: Unknown corpus/speaker, missing folders, empty splits.
    """
    from ptssnn.backbones import load_backbone
    from ptssnn.benchmark.runner import benchmark_train_config
    from ptssnn.corpora import get_corpus, scan_corpus
    from ptssnn.features import extract_features
    from ptssnn.models import create_model
    from ptssnn.training import LabelledFeatures
    from ptssnn.training.crossval import LayerViews, train_fold

    started = time.perf_counter()
    if not corpora:
        raise PtssnnError("name at least one corpus to train on")
    data_root = Path(data_root)
    excluded = set(exclude_speakers)
    requested = set(validation_speakers)
    if excluded & requested:
        raise PtssnnError(f"speakers {sorted(excluded & requested)} both excluded and validation")

    utterances: list[Any] = []
    train_ids: list[str] = []
    val_ids: list[str] = []
    test_ids: list[str] = []
    per_corpus: dict[str, Any] = {}
    all_speakers: set[str] = set()
    for corpus in corpora:
        scan = scan_corpus(corpus, _corpus_root(data_root, corpus, len(corpora)))
        utts = list(scan.utterances)
        speakers = {u.speaker for u in utts}
        all_speakers |= speakers
        validation, how = _choose_validation(corpus, utts, excluded, requested, seed)
        kept = [u for u in utts if u.speaker not in excluded]
        c_train = [u.id for u in kept if u.id not in validation]
        c_val = [u.id for u in kept if u.id in validation]
        c_test = [u.id for u in utts if u.speaker in excluded]
        utterances.extend(utts)
        train_ids += c_train
        val_ids += c_val
        test_ids += c_test
        by_id = {u.id: u for u in utts}
        per_corpus[corpus] = {
            "utterances": len(utts),
            "problems": len(scan.problems),
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
    if not train_ids or not val_ids:
        raise PtssnnError(
            f"{len(train_ids)} training and {len(val_ids)} validation utterances: "
            "exclude fewer speakers"
        )

    by_id = {u.id: u for u in utterances}
    # The registry's label order (as the benchmark uses), corpus by corpus: the same classes
    # in the same order give the same head initialisation as the benchmark's fold.
    present = {by_id[i].label for i in train_ids}
    labels = tuple(dict.fromkeys(x for c in corpora for x in get_corpus(c).labels if x in present))
    # Held-out or validation clips of a class never seen in training cannot be scored.
    val_ids = [i for i in val_ids if by_id[i].label in labels]
    test_ids = [i for i in test_ids if by_id[i].label in labels]

    encoder = load_backbone(backbone)
    used = [by_id[i] for i in (*train_ids, *val_ids, *test_ids)]
    feature_set = extract_features(used, encoder, "all", cache_dir, progress=progress)
    failed = sorted(f"{f.id}: {f.reason}" for f in feature_set.failures)
    train_ids = [i for i in train_ids if i in feature_set]
    val_ids = [i for i in val_ids if i in feature_set]
    test_ids = [i for i in test_ids if i in feature_set]
    table = LabelledFeatures.from_feature_set(
        feature_set, [by_id[i] for i in (*train_ids, *val_ids, *test_ids)], labels
    )
    # Without held-out speakers the "test" split is the validation split again (train_fold
    # always scores one); its score is then left out of the summary.
    split = _Split("deploy", tuple(train_ids), tuple(val_ids), tuple(test_ids or val_ids))

    # A deployed head sees one clip at a time, without its speaker's other clips: it
    # standardises with the moments of its training data (stored in the checkpoint).
    changes: dict[str, Any] = {"seed": seed, "normalisation": "global",
                               **(config_overrides or {})}
    if layers is not None:
        changes["layers"] = layers
    # The benchmark's training configuration (the trainer's defaults + the refit on training
    # + validation data), so that a held-out speaker scores exactly as in its benchmark fold.
    config = benchmark_train_config().replace(**changes)
    if epochs is not None:
        config = config.replace(
            max_epochs=epochs,
            patience=min(config.patience, epochs),
            min_epochs=min(config.min_epochs, epochs),
        )
    say = log or (lambda line: None)
    say(
        f"training {preset} on {len(train_ids)} utterances ({', '.join(corpora)}), validating on "
        f"{len(val_ids)}; layers {config.layers}, frames pooled by {config.frame_pool}; up to "
        f"{config.max_epochs} epochs"
    )

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

    def factory(input_dim: int, num_classes: int, input_layers: int) -> torch.nn.Module:
        # As the benchmark's factory: the seed goes into the model's initialisation.
        extra: dict[str, Any] = {"seed": seed, **(model_overrides or {})}
        if input_layers > 1:
            extra["input_layers"] = input_layers
        return create_model(preset, input_dim, num_classes, **extra)

    # The benchmark's own per-fold routine: layer choice on validation, frame pooling,
    # seeding, fit with model selection on validation, scoring of the held-out split.
    result, model = train_fold(LayerViews(table), split, factory, config, epoch_hook=on_epoch)
    model.eval()
    mode = result.layers
    held_out = result.test.to_dict() if test_ids else None

    card = ModelCard(
        labels=labels,
        backbone=encoder.name,
        backbone_options={},
        backbone_identity=_jsonable(encoder.identity()),
        layers=trainer_mode_to_layer_spec(mode),
        sample_rate=encoder.sample_rate,
        frame_rate=encoder.frame_rate,
        frame_pool=config.frame_pool,
        preset=preset,
    )
    summary: dict[str, Any] = {
        "corpora": per_corpus,
        "labels": list(labels),
        "backbone": encoder.name,
        "layers": {"mode": mode, "spec": card.layers, "scores": result.layer_scores},
        "frame_pool": config.frame_pool,
        "preset": preset,
        "num_train": len(train_ids),
        "num_validation": len(val_ids),
        "num_held_out": len(test_ids),
        "excluded_speakers": sorted(excluded),
        "failed_utterances": failed,
        "train_config": config.to_dict(),
        "fit": result.fit,
        "validation": result.fit["best_validation"],
        "num_parameters": result.num_parameters,
        "held_out": held_out,
        "seconds": round(time.perf_counter() - started, 2),
        "ptssnn_version": ptssnn.__version__,
        "torch_version": torch.__version__,
        "python": platform.python_version(),
    }
    save_recognizer(model, out, card, summary)
    return summary


def _jsonable(value: Any) -> Any:
    import json

    return json.loads(json.dumps(value, sort_keys=True, default=str))
