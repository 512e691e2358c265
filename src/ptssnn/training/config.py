"""The one training configuration: every knob of a run, saved as JSON beside its results."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ptssnn.errors import PtssnnError
from ptssnn.features.layers import LayerSelection, LayerSelectionError
from ptssnn.jsonio import dumps as strict_json

#: Feature standardisation modes (see ``TrainConfig.normalisation``).
NORMALISATIONS = ("global", "speaker", "enrolled", "auto", "none")
#: The normalisations that standardise (some) speakers by their own clips.
PER_SPEAKER_NORMALISATIONS = ("speaker", "enrolled", "auto")
#: How many epochs the refit on training + validation trains (``TrainConfig.refit_epochs``).
REFIT_EPOCHS = ("best", "max", "auto")
#: ``refit_epochs="auto"``: the whole schedule from this many training + validation speakers.
REFIT_MAX_MIN_SPEAKERS = 5
#: Where training augmentation acts (see ``TrainConfig.augment_space``).
AUGMENT_SPACES = ("standardised", "raw")
#: Arithmetic of the training steps (see ``TrainConfig.precision``).
PRECISIONS = ("fp32", "bf16")


def refit_policy(refit_epochs: str, speakers: int | None, normalisation: str | None = None) -> str:
    """``"best"`` or ``"max"``: how long the refit trains (``TrainConfig.refit_epochs``).

    ``"auto"`` refits for the whole schedule when training + validation hold at least
    :data:`REFIT_MAX_MIN_SPEAKERS` speakers, where the validation curve is flat and its
    argmax mostly noise, and for a head trained for enrolled use (``normalisation=
    "enrolled"``) whatever the speaker count: with each speaker standardised by its own
    moments, the early validation peak of four-speaker LOSO did not hold up (CASIA, three
    seeds, every seed: K = 20 UA 60.3 against 55.8 with the chosen count;
    benchmarks/README.md, "Enrolment"). With fewer speakers and global standardisation it
    does, and the refit stops there. Unknown speakers: ``"best"``.
    """
    if refit_epochs != "auto":
        return refit_epochs
    if normalisation == "enrolled":
        return "max"
    return "max" if speakers is not None and speakers >= REFIT_MAX_MIN_SPEAKERS else "best"


class TrainConfigError(PtssnnError):
    """A training configuration with an impossible value (negative rate, unknown layer mode)."""


@dataclass
class TrainConfig:
    """Hyper-parameters of one training run.

    Defaults: paper.md's AdamW + cosine with warm-up, sized so the whole benchmark (3 corpora,
    7 neural heads, 15 folds) trains in well under half an hour on two CPU cores: backbone
    frames averaged in eights (50 → 6.25 Hz: on CASIA the same UA as 12.5 Hz within the fold
    spread, 2.3× faster), at most 8 epochs (validation UA on CASIA whisper-base folds peaked
    at epochs 3-9, mean 6), then (benchmark) the refit on training + validation data; batch
    16 (twice the updates of 32 per epoch at the same cost), lr 1e-3; a learned softmax sum
    of all hidden states (as SUPERB/s3prl) whose seven logits learn at 30× the rate, so the
    mix can move in a few hundred updates (at 1× it stayed uniform); and mixup (α 0.4) with
    SpecAugment-style masks applied to the standardised features (see
    :mod:`ptssnn.training.augment`); all measured in benchmarks/README.md. Frame counts
    (``time_mask_width``, ``max_train_frames``) are after pooling.

    Attributes:
        lr: Peak AdamW learning rate.
        weight_decay: AdamW decoupled weight decay.
        betas: AdamW moment coefficients.
        max_epochs: Upper bound on epochs; the cosine schedule spans all of them.
        patience: Stop after this many epochs without a better validation UA.
        min_epochs: Never stop early before this epoch (1-based).
        warmup_epochs: Linear warm-up length, in epochs (may be fractional).
        batch_size: Utterances per optimiser step (per process under DDP).
        eval_batch_size: Utterances per forward pass at validation/test time.
        grad_clip: Max global gradient norm (0 disables clipping).
        label_smoothing: Cross-entropy label smoothing.
        class_balanced: Weight the loss by inverse class frequency of the training split.
        time_masks: SpecAugment-style masks along time per training utterance.
        time_mask_width: Max width of one time mask, in frames.
        feature_masks: Masks along the feature axis per training utterance.
        feature_mask_width: Max width of one feature mask, in channels.
        augment_space: ``"standardised"``: masks, noise and mixup act on the features as
            the head sees them after its input standardisation (a mask sets a channel to its
            training mean; see :mod:`ptssnn.training.augment`); ``"raw"``: masks zero the raw
            features (the earlier behaviour).
        body_lr_scale: Learning rate of every parameter but the read-out classifier, as a
            fraction of ``lr`` (1: one rate for all).
        layer_mix_lr_scale: Learning rate of the learned layer sum (``layers="all"``), as a
            multiple of ``lr``: seven softmax logits need larger steps than the weights to
            move in a few hundred updates.
        noise: Gaussian noise added to the standardised features during training (std).
        mixup_alpha: Mixup's Beta(α, α) (0: off).
        weight_average_epochs: Validate, select and keep an exponential moving average of
            the weights with this horizon, in epochs (0: off; the raw weights).
        max_train_frames: Random crop of longer training utterances (``None``: no crop);
            validation and test always see the whole utterance.
        length_jitter: Relative noise on lengths before bucketing, so batches differ per epoch.
        frame_pool: Average groups of this many backbone frames before the head (8: 50 Hz →
            6.25 Hz), applied once when a corpus is prepared by :func:`cross_validate`;
            ``fit`` itself takes features as given. It divides the head's training cost and
            energy by about the factor; a head trained so must be fed features pooled alike.
        refit: After the epoch count is chosen on the validation speakers, train a fresh head
            (same seed) on training + validation data for that many epochs and test that one
            (:func:`~ptssnn.training.train_fold`). The test fold is still never looked at;
            LOSO on four speakers then trains on three instead of two. Off by default (the
            validation scores of a refit head would be scores on its own training data); the
            benchmark turns it on (:func:`benchmark_train_config`).
        refit_epochs: How long the refit trains: ``"best"`` (the epoch count with the best
            validation UA), ``"max"`` (``max_epochs``, the whole cosine schedule; the
            validation run then only reports its curve) or ``"auto"`` (``"max"`` when
            training + validation hold at least ``REFIT_MAX_MIN_SPEAKERS`` speakers or the
            head is trained for enrolled use, else ``"best"``; see
            :func:`refit_policy`). Measured in benchmarks/README.md
            ("Ablation, round two"; "Enrolment").
        refit_smoothing: With ``"best"``, the refit's epoch count is the argmax of the
            validation UA averaged over this many neighbouring epochs (a centred window,
            shorter at the ends; 1: the raw argmax). A one-speaker validation curve swings
            by ±15 points from epoch to epoch, and its raw argmax is often epoch 1 or 2,
            a refit that ends inside the warm-up (:func:`ptssnn.training.smoothed_best_epoch`).
            Measured (benchmarks/README.md): +1.1 on the synthetic demo, −1.5 on CASIA,
            whose early validation peak is real; so 1 stays the default.
        layers: Which backbone hidden states the head reads, in the one layer grammar
            (:class:`ptssnn.features.LayerSelection`): ``"all"`` (the default: a learned
            softmax-weighted sum, the model's ``input_layers``, see
            ``layer_mix_lr_scale``), ``"middle"`` (the middle hidden
            state, index ``L // 2`` of the ``L`` stored: 3 of whisper-base's 7; see
            :func:`ptssnn.features.middle_layer`), ``"auto"`` (chosen on the
            validation speakers, see :func:`ptssnn.training.select_layers`), ``"mean"`` (average
            of all), ``"mean:a-b"`` (average of a..b), one index such as ``"3"`` or ``"-1"``,
            or a list ``"1,3"``. The resolved choice is saved in the model's
            :class:`ptssnn.features.FeaturePipeline`.
        normalisation: How the frozen features are standardised per channel before the head:
            ``"global"`` (moments of the training split, stored in the model as buffers, so
            a single new clip needs nothing else), ``"speaker"`` (each speaker's features by
            that speaker's own moments, test speakers included: unlabelled audio only, but
            it needs the speaker of every clip; the model's global moments then come out
            near identity), ``"auto"`` (the better of the two by a linear probe's
            validation UA, per fold; see :func:`ptssnn.training.select_normalisation`),
            ``"enrolled"`` (for use with speaker profiles: each training speaker standardised
            by a profile from K random clips, K in ``{0, 5, 20, all}``, every item once per K;
            the head reads per-speaker standardised features and works without a profile
            too; see ``docs/enrolment.md``) or ``"none"``. Speaker modes need the speakers
            (:class:`LayerViews`).
        precision: Arithmetic of the training steps: ``"fp32"`` (the default; every result
            in the READMEs) or ``"bf16"``: mixed precision (``torch.autocast`` to bfloat16)
            for the matrix products of the forward and backward passes, on CPUs with
            AVX-512 BF16 or AMX and on GPUs. The weights, the optimiser, the PLIF membrane
            dynamics, the losses and all evaluation stay float32, so a trained head is used
            exactly as one trained in fp32. Measured in benchmarks/README.md ("Training
            step").
        seed: Seed of initialisation, batch order, augmentation and dropout.
        num_threads: ``torch.set_num_threads`` for the run (``None``: leave as is).
    """

    lr: float = 1e-3
    weight_decay: float = 0.1
    betas: tuple[float, float] = (0.9, 0.98)
    max_epochs: int = 8
    patience: int = 3
    min_epochs: int = 1
    warmup_epochs: float = 1.0
    batch_size: int = 16
    eval_batch_size: int = 64
    grad_clip: float = 1.0
    label_smoothing: float = 0.1
    class_balanced: bool = False
    time_masks: int = 2
    time_mask_width: int = 2
    feature_masks: int = 2
    feature_mask_width: int = 32
    max_train_frames: int | None = 50
    augment_space: str = "standardised"
    body_lr_scale: float = 1.0
    layer_mix_lr_scale: float = 30.0
    noise: float = 0.0
    mixup_alpha: float = 0.4
    weight_average_epochs: float = 0.0
    length_jitter: float = 0.1
    frame_pool: int = 8
    refit: bool = False
    refit_epochs: str = "best"
    refit_smoothing: int = 1
    layers: str = "all"
    normalisation: str = "global"
    precision: str = "fp32"
    seed: int = 0
    num_threads: int | None = None

    def __post_init__(self) -> None:
        self.betas = (float(self.betas[0]), float(self.betas[1]))
        self.validate()

    def validate(self) -> None:
        """Raise :class:`TrainConfigError` on a value no run could use."""
        problems = []
        if not self.lr > 0:
            problems.append(f"lr must be > 0 (got {self.lr})")
        if self.weight_decay < 0:
            problems.append(f"weight_decay must be >= 0 (got {self.weight_decay})")
        if self.max_epochs < 1:
            problems.append(f"max_epochs must be >= 1 (got {self.max_epochs})")
        if self.patience < 1:
            problems.append(f"patience must be >= 1 (got {self.patience})")
        if self.batch_size < 1 or self.eval_batch_size < 1:
            problems.append("batch sizes must be >= 1")
        if self.warmup_epochs < 0:
            problems.append(f"warmup_epochs must be >= 0 (got {self.warmup_epochs})")
        if not 0 <= self.label_smoothing < 1:
            problems.append(f"label_smoothing must be in [0, 1) (got {self.label_smoothing})")
        if self.frame_pool < 1:
            problems.append(f"frame_pool must be >= 1 (got {self.frame_pool})")
        if self.max_train_frames is not None and self.max_train_frames < 1:
            problems.append("max_train_frames must be >= 1 or None")
        if self.augment_space not in AUGMENT_SPACES:
            problems.append(f"augment_space must be one of {', '.join(AUGMENT_SPACES)} "
                            f"(got {self.augment_space!r})")
        if not 0 <= self.body_lr_scale <= 1:
            problems.append(f"body_lr_scale must be in [0, 1] (got {self.body_lr_scale})")
        if self.refit_epochs not in REFIT_EPOCHS:
            problems.append(f"refit_epochs must be one of {', '.join(REFIT_EPOCHS)} "
                            f"(got {self.refit_epochs!r})")
        if self.refit_smoothing < 1:
            problems.append(f"refit_smoothing must be >= 1 (got {self.refit_smoothing})")
        if self.layer_mix_lr_scale <= 0:
            problems.append(f"layer_mix_lr_scale must be > 0 (got {self.layer_mix_lr_scale})")
        if self.noise < 0 or self.mixup_alpha < 0 or self.weight_average_epochs < 0:
            problems.append("noise, mixup_alpha and weight_average_epochs must be >= 0")
        if self.precision not in PRECISIONS:
            problems.append(f"precision must be one of {', '.join(PRECISIONS)} "
                            f"(got {self.precision!r})")
        if self.normalisation not in NORMALISATIONS:
            problems.append(f"normalisation must be one of {', '.join(NORMALISATIONS)} "
                            f"(got {self.normalisation!r})")
        try:
            LayerSelection.parse(self.layers)
        except LayerSelectionError as error:
            problems.append(f"layers: {error}")
        if problems:
            raise TrainConfigError("invalid training config: " + "; ".join(problems))

    def replace(self, **changes: Any) -> TrainConfig:
        """A copy with some fields changed (validated)."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict of every field."""
        data = dataclasses.asdict(self)
        data["betas"] = list(self.betas)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        """Inverse of :meth:`to_dict`; unknown keys are an error (a typo must not pass)."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise TrainConfigError(
                f"unknown training config keys {unknown}; valid keys: {sorted(names)}"
            )
        values = dict(data)
        if not values.get("extra", True):
            del values["extra"]  # an always-empty field of earlier versions
        if "betas" in values:
            values["betas"] = tuple(values["betas"])
        return cls(**values)

    def save(self, path: str | Path) -> None:
        """Write the config as indented JSON."""
        Path(path).write_text(strict_json(self.to_dict(), indent=2, sort_keys=True) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> TrainConfig:
        """Read a config written by :meth:`save`."""
        try:
            data = json.loads(Path(path).read_text())
        except (OSError, json.JSONDecodeError) as error:
            raise TrainConfigError(f"cannot read training config {path}: {error}") from error
        return cls.from_dict(data)


def benchmark_train_config(**changes: Any) -> TrainConfig:
    """The benchmark's training defaults (also what ``ptssnn train`` uses): :class:`TrainConfig`'s
    (global standardisation with the training split's moments: no test-speaker information,
    what a deployed head gets), plus the refit on training + validation data once the epoch
    count is chosen on validation. The refit trains the whole schedule when the fold has five
    or more training + validation speakers or the head is trained for enrolled use
    (``refit_epochs="auto"``): there the validation-chosen epoch count is mostly noise
    (benchmarks/README.md, "Ablation, round two" and "Enrolment").
    ``normalisation="auto"``/``"speaker"`` (per-speaker z-normalisation, which reads the
    unlabelled audio of the test speakers: transductive) stay available."""
    return TrainConfig(**{"refit": True, "refit_epochs": "auto", "normalisation": "global",
                          **changes})
