"""The enrolment protocol: score a trained head with speaker profiles from K unlabelled clips.

Per test speaker of a fold, ``K`` random clips of that speaker build a
:class:`~ptssnn.features.profile.SpeakerProfile` (their audio only) and are **not scored**;
the speaker's other clips go through the feature pipeline normalised with that profile
(shrunk toward the training split's moments, :func:`ptssnn.features.enrolment.pipeline_moments`)
and are scored. ``K = 0`` is plain prediction; ``K = "all"`` builds the profile from every
clip of the speaker and scores all of them (transductive: the old per-speaker normalisation,
which a deployment never has). Several random draws of the enrolment clips per ``K``; the
fold's score for a ``K`` is the mean over draws.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from ptssnn.evaluation.metrics import classification_metrics, positions
from ptssnn.features.enrolment import SpeakerPrior, pipeline_moments, training_moments
from ptssnn.features.pipeline import FeaturePipeline
from ptssnn.features.profile import (
    DEFAULT_PRIOR_CLIPS,
    SpeakerProfile,
    clip_moments,
    empty_moments,
    merge_moments,
)
from ptssnn.features.table import LabelledFeatures
from ptssnn.training.config import TrainConfigError
from ptssnn.training.trainer import predict_logits

ALL = "all"


def parse_enrolment_k(value: str | int) -> int | str:
    """``"all"`` or a non-negative clip count.

    Raises:
        TrainConfigError: Anything else.
    """
    text = str(value).strip().lower()
    if text == ALL:
        return ALL
    try:
        count = int(text)
    except ValueError:
        count = -1
    if count < 0:
        raise TrainConfigError(f"enrolment K must be a clip count >= 0 or 'all', got {value!r}")
    return count


@dataclass(frozen=True)
class EnrolmentProtocol:
    """Which K to score and how.

    Attributes:
        ks: Clip counts (and/or ``"all"``), in report order.
        draws: Random draws of the enrolment clips per K (``0`` and ``"all"``: one).
        prior_clips: Shrinkage weight of the global moments (``n0``, in clips).
        seed: Seed of the draws (the same clips for every head of a fold).
    """

    ks: tuple[int | str, ...]
    draws: int = 3
    prior_clips: float = DEFAULT_PRIOR_CLIPS
    seed: int = 0

    def __post_init__(self) -> None:
        ks = tuple(dict.fromkeys(parse_enrolment_k(k) for k in self.ks))
        object.__setattr__(self, "ks", ks)
        if not ks:
            raise TrainConfigError("name at least one enrolment K")
        if self.draws < 1 or self.prior_clips < 0:
            raise TrainConfigError("enrolment needs draws >= 1 and prior_clips >= 0")

    def to_dict(self) -> dict[str, Any]:
        return {"ks": [str(k) for k in self.ks], "draws": self.draws,
                "prior_clips": self.prior_clips, "seed": self.seed}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> EnrolmentProtocol:
        return cls(tuple(data["ks"]), int(data.get("draws", 3)),
                   float(data.get("prior_clips", DEFAULT_PRIOR_CLIPS)), int(data.get("seed", 0)))


def _profile(items: Sequence[torch.Tensor], layers: int, dim: int) -> SpeakerProfile:
    stats = empty_moments(layers, dim)
    for item in items:
        stats = merge_moments(stats, clip_moments(item))
    # Scoring happens inside one run: identity checks are the deployed path's business.
    return SpeakerProfile(backbone={}, pipeline="", layers=tuple(range(layers)),
                          clips=len(items), stats=stats)


#: ``predict(items) -> [N]`` predicted classes, as positions in the scored classes.
Predictor = Callable[[LabelledFeatures], np.ndarray]


def head_predictor(model: nn.Module, eval_batch_size: int = 64,
                   columns: Sequence[int] | None = None) -> Predictor:
    """A trained neural head as a :data:`Predictor` (eval mode is set by ``predict_logits``);
    with ``columns`` only those classes may win."""

    def predict(part: LabelledFeatures) -> np.ndarray:
        logits = predict_logits(model, part, eval_batch_size)
        if columns is not None and len(part):
            logits = logits[:, list(columns)]
        return logits.argmax(1)

    return predict


def score_enrolment(
    model: nn.Module | Predictor,
    table: LabelledFeatures,
    fold: Any,
    pipeline: FeaturePipeline,
    speakers: Mapping[str, str],
    protocol: EnrolmentProtocol,
    *,
    eval_batch_size: int = 64,
    columns: Sequence[int] | None = None,
) -> dict[str, Any]:
    """Scores of one trained head on one fold's test speakers for every K.

    Args:
        model: The trained head, or any :data:`Predictor` of items prepared by ``pipeline``
            (the linear probe's, see :func:`ptssnn.training.crossval.train_fold`).
        table: The corpus's raw ``[L, T, D]`` items (the pipeline's input).
        fold: Its ``train``/``validation`` ids give the prior (what the head was fitted on),
            its ``test`` ids are scored.
        pipeline: The head's feature pipeline (its normalisation decides how a profile
            enters, see :func:`~ptssnn.features.enrolment.pipeline_moments`).
        speakers: Utterance id → speaker (labels never enter a profile).
        protocol: Ks, draws, prior weight, seed.
        eval_batch_size: Items per evaluation batch.
        columns: The classes the fold is scored over, as output columns of the head (a
            corpus's own within a multi-corpus label union); only they are predicted.
            ``None``: every class of ``table``.

    Returns:
        ``{K: {"ua", "wa", "ua_draws", "wa_draws", "scored"}}`` with K as text; UA/WA are
        means over draws of the metrics over every scored clip of the fold.
    """
    predict = (head_predictor(model, eval_batch_size, columns) if isinstance(model, nn.Module)
               else model)
    first = table.features[0]
    layers, dim = (first.shape[0] if first.dim() == 3 else 1), first.shape[-1]
    prior_items = table.subset((*fold.train, *fold.validation)).features
    prior = SpeakerPrior.from_moments(training_moments(prior_items),
                                      prior_clips=protocol.prior_clips)
    test = table.subset(fold.test)
    by_speaker: dict[str, list[int]] = {}
    for row, utt_id in enumerate(test.ids):
        by_speaker.setdefault(speakers[utt_id], []).append(row)
    labels = positions(test.labels.numpy(), columns)
    num_classes = len(columns) if columns is not None else len(test.label_names)
    results: dict[str, Any] = {}
    for k in protocol.ks:
        draws = 1 if k in (0, ALL) else protocol.draws
        uas, was, scored = [], [], 0
        for draw in range(draws):
            refs: list[np.ndarray] = []
            preds: list[np.ndarray] = []
            for index, (_speaker, rows) in enumerate(sorted(by_speaker.items())):
                rng = np.random.default_rng([protocol.seed, index, draw, 0 if k == ALL else k])
                if k == ALL:
                    enrol, score = rows, rows
                else:
                    count = min(int(k), len(rows) - 1)
                    picked = set(rng.choice(len(rows), size=count, replace=False).tolist())
                    enrol = [r for i, r in enumerate(rows) if i in picked]
                    score = [r for i, r in enumerate(rows) if i not in picked]
                profile = (_profile([test.features[r] for r in enrol], layers, dim)
                           if enrol else None)
                moments = pipeline_moments(pipeline, prior, profile)
                part = LabelledFeatures(
                    tuple(test.ids[r] for r in score),
                    tuple(pipeline.prepare(test.features[r], moments) for r in score),
                    test.labels[score], test.label_names)
                refs.append(labels[score])
                preds.append(predict(part) if len(part) else np.zeros(0, dtype=np.int64))
            metrics = classification_metrics(np.concatenate(refs), np.concatenate(preds),
                                             num_classes)
            uas.append(metrics.ua)
            was.append(metrics.wa)
            scored = metrics.num_samples
        results[str(k)] = {"ua": float(np.mean(uas)), "wa": float(np.mean(was)),
                           "ua_draws": uas, "wa_draws": was, "scored": scored}
    return results


#: Profiles per training speaker under ``normalisation="enrolled"``: every training item once
#: per K (``docs/enrolment.md``: one head for every K, including no profile at all).
ENROLLED_TRAINING_KS: tuple[int | str, ...] = (0, 5, 20, ALL)


class EnrolledTraining:
    """Training items as a head for enrolled use sees them (``normalisation="enrolled"``).

    Each speaker's items are standardised by a profile from ``K`` random clips of that
    speaker (shrunk toward the prior like a deployed profile), once for every ``K`` in
    ``ks``: the head learns features normalised by good, poor and no profiles alike.

    Args:
        raw: The corpus's raw ``[L, T, D]`` items (the pipeline's input).
        speakers: Utterance id → speaker.
        pipeline: The head's pipeline (normalisation ``"speaker"``).
        prior_ids: Items whose moments form the prior (the fold's labelled data).
        ks: Profile sizes.
        prior_clips: Shrinkage weight (``n0``).
        seed: Seed of the clip draws.
    """

    def __init__(
        self,
        raw: LabelledFeatures,
        speakers: Mapping[str, str],
        pipeline: FeaturePipeline,
        prior_ids: Sequence[str],
        *,
        ks: Sequence[int | str] = ENROLLED_TRAINING_KS,
        prior_clips: float = DEFAULT_PRIOR_CLIPS,
        seed: int = 0,
    ) -> None:
        self.raw = raw
        self.speakers = speakers
        self.pipeline = pipeline
        self.ks = tuple(parse_enrolment_k(k) for k in ks)
        self.seed = seed
        self.prior = SpeakerPrior.from_moments(
            training_moments(raw.subset(prior_ids).features), prior_clips=prior_clips,
            trained_for="enrolled")

    def table(self, ids: Sequence[str]) -> LabelledFeatures:
        """The items ``ids``, each once per K (ids suffixed ``@K=k``)."""
        part = self.raw.subset(ids)
        first = part.features[0]
        layers, dim = (first.shape[0] if first.dim() == 3 else 1), first.shape[-1]
        by_speaker: dict[str, list[int]] = {}
        for row, utt_id in enumerate(part.ids):
            by_speaker.setdefault(self.speakers[utt_id], []).append(row)
        out_ids: list[str] = []
        items: list[torch.Tensor] = []
        rows_out: list[int] = []
        for k in self.ks:
            for speaker, rows in sorted(by_speaker.items()):
                if k == ALL:
                    enrol = rows
                else:
                    rng = np.random.default_rng([self.seed, zlib.crc32(speaker.encode()), k])
                    count = min(int(k), len(rows))
                    enrol = [rows[i] for i in rng.choice(len(rows), size=count, replace=False)]
                profile = (_profile([part.features[r] for r in enrol], layers, dim)
                           if enrol else None)
                moments = pipeline_moments(self.pipeline, self.prior, profile)
                for r in rows:
                    out_ids.append(f"{part.ids[r]}@K={k}")
                    items.append(self.pipeline.prepare(part.features[r], moments))
                    rows_out.append(r)
        return LabelledFeatures(tuple(out_ids), tuple(items), part.labels[rows_out],
                                part.label_names)
