"""``fit``: train one head on one split, select the best epoch on the validation split.

Model selection and early stopping look at the validation split only (metric: UA); the test
fold is never seen here. Every epoch ends with a checkpoint (safetensors + JSON) holding all
that the next epoch depends on, so ``resume=True`` continues bit-identically.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ptssnn.errors import CheckpointError, PtssnnError
from ptssnn.evaluation.metrics import ClassificationMetrics, classification_metrics
from ptssnn.features.table import LabelledFeatures, bucketed_batches, iterate_eval_batches
from ptssnn.training.augment import MixedBatch, augment, training_augmentation
from ptssnn.training.checkpoint import (
    load_training_state,
    restore_rng,
    save_training_state,
)
from ptssnn.training.config import TrainConfig
from ptssnn.training.data import shard_batches


class TrainingError(PtssnnError):
    """Training that cannot go on (loss became NaN, empty split)."""


#: Called after every epoch (after its checkpoint is written) with the epoch record.
EpochHook = Callable[[dict[str, Any]], None]


@dataclass
class FitResult:
    """What :func:`fit` returns; the model passed in holds the best epoch's weights.

    Attributes:
        best_epoch: 1-based epoch with the best validation UA (the last epoch when trained
            without validation data).
        best_validation: Validation metrics of that epoch (``None`` without validation data).
        epochs_run: Epochs trained (early stopping may end before ``max_epochs``).
        stopped_early: True when patience ran out.
        history: One record per epoch: epoch, train_loss, lr, val_* metrics, seconds.
        seconds: Wall time of the training, resumed parts included.
    """

    best_epoch: int
    best_validation: ClassificationMetrics | None
    epochs_run: int
    stopped_early: bool
    history: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary."""
        return {
            "best_epoch": self.best_epoch,
            "best_validation": (self.best_validation.to_dict()
                                if self.best_validation is not None else None),
            "epochs_run": self.epochs_run,
            "stopped_early": self.stopped_early,
            "history": self.history,
            "seconds": self.seconds,
        }


def learning_rate(step: int, *, peak: float, warmup_steps: int, total_steps: int) -> float:
    """Linear warm-up to ``peak`` then cosine decay to zero at ``total_steps``.

    Args:
        step: Optimiser steps already taken (0-based index of the coming step).
    """
    if warmup_steps > 0 and step < warmup_steps:
        return peak * (step + 1) / warmup_steps
    span = max(1, total_steps - warmup_steps)
    progress = min(1.0, (step - warmup_steps) / span)
    return peak * 0.5 * (1.0 + math.cos(math.pi * progress))


def _distributed() -> tuple[int, int]:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


def _device_of(model: nn.Module) -> torch.device:
    parameter = next(model.parameters(), None)
    return parameter.device if parameter is not None else torch.device("cpu")


def training_autocast(device: torch.device, precision: str) -> torch.autocast:
    """The autocast context of a training forward pass (``TrainConfig.precision``): bfloat16
    matrix products for ``"bf16"``, nothing for ``"fp32"``. The backward pass runs the
    recorded products in the same dtypes; spiking neurons integrate in float32 (see
    :class:`ptssnn.snn.PLIF`)."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16")


def _parameter_groups(model: nn.Module, weight_decay: float, body_lr_scale: float = 1.0,
                      layer_mix_lr_scale: float = 1.0) -> list[dict[str, Any]]:
    # No decay on biases, norms, neuron time constants and bias voltages (1-D tensors).
    # ``lr_scale``: the read-out (``model.classifier``) learns at the full rate, the body
    # at ``body_lr_scale`` of it (see ``TrainConfig.body_lr_scale``), the learned layer sum
    # (``model.layer_weights``) at ``layer_mix_lr_scale``.
    readout = getattr(model, "classifier", None)
    readout_ids = {id(p) for p in readout.parameters()} if isinstance(readout, nn.Module) \
        else set()
    layer_mix = getattr(model, "layer_weights", None)
    layer_mix_id = id(layer_mix) if isinstance(layer_mix, nn.Parameter) else None
    groups: dict[tuple[bool, float], list[nn.Parameter]] = {}
    for parameter in model.parameters():
        if not parameter.requires_grad:
            continue
        scale = 1.0 if id(parameter) in readout_ids else body_lr_scale
        if id(parameter) == layer_mix_id:
            scale = layer_mix_lr_scale
        groups.setdefault((parameter.dim() >= 2, scale), []).append(parameter)
    return [{"params": params, "weight_decay": weight_decay if decay else 0.0,
             "lr_scale": scale} for (decay, scale), params in groups.items()]


class WeightAverage:
    """Exponential moving average of a model's parameters (Polyak averaging, as timm's
    ``ModelEmaV2``), with a horizon given in epochs so it means the same on any corpus size.

    Small corpora give a noisy last epoch; the average of the recent weights is a smoother
    point of the same run. Buffers (input moments) are not averaged: they are fixed.
    """

    def __init__(self, model: nn.Module, horizon_steps: float) -> None:
        self.decay = math.exp(-1.0 / max(horizon_steps, 1e-9))
        self.updates = 0
        self.state = {name: p.detach().clone() for name, p in model.named_parameters()}

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        # The (1 + n) / (10 + n) ramp keeps the random start from dominating early averages.
        self.updates += 1
        decay = min(self.decay, (1 + self.updates) / (10 + self.updates))
        for name, parameter in model.named_parameters():
            self.state[name].lerp_(parameter.detach(), 1.0 - decay)

    @torch.no_grad()
    def swap(self, model: nn.Module) -> None:
        """Exchange the model's parameters with the averaged ones (call twice to undo)."""
        for name, parameter in model.named_parameters():
            held = parameter.detach().clone()
            parameter.copy_(self.state[name])
            self.state[name] = held


@torch.no_grad()
def predict_logits(model: nn.Module, data: LabelledFeatures, batch_size: int = 64) -> np.ndarray:
    """Logits for every item of ``data``, in its order.

    Args:
        model: ``model(features [B,T,D] | [B,L,T,D], mask [B,T]) -> logits [B, C]``.
        data: Items to score (layer mode already applied).
        batch_size: Items per forward pass.

    Returns:
        ``[N, C]`` float32 logits.
    """
    was_training = model.training
    model.eval()
    device = _device_of(model)
    out: np.ndarray | None = None
    for batch in iterate_eval_batches(data, batch_size):
        logits = model(batch.features.to(device), batch.mask.to(device)).float().cpu()
        if out is None:
            out = np.zeros((len(data), logits.shape[-1]), dtype=np.float32)
        out[batch.indices.numpy()] = logits.numpy()
    model.train(was_training)
    return out if out is not None else np.zeros((0, 0), dtype=np.float32)


def evaluate(model: nn.Module, data: LabelledFeatures, batch_size: int = 64,
             columns: Sequence[int] | None = None) -> tuple[ClassificationMetrics, np.ndarray]:
    """Metrics and predicted class per item of ``data``.

    Args:
        model: The head.
        data: Items to score.
        batch_size: Items per forward pass.
        columns: The model's output column of each of ``data``'s classes, when the model
            predicts more classes than ``data`` is scored over (a head trained on several
            corpora, scored on one): only these columns compete, and predictions are in
            ``data``'s class order. ``None``: the model's classes are ``data``'s.
    """
    logits = predict_logits(model, data, batch_size)
    if columns is not None and len(data):
        logits = logits[:, list(columns)]
    predictions = logits.argmax(1) if len(data) else np.zeros(0, dtype=np.int64)
    metrics = classification_metrics(data.labels.numpy(), predictions, len(data.label_names))
    return metrics, predictions


@dataclass
class _Progress:
    """Everything an epoch changes (and a checkpoint restores)."""

    history: list[dict[str, Any]] = field(default_factory=list)
    best_state: dict[str, torch.Tensor] | None = None
    best_metrics: ClassificationMetrics | None = None
    best_epoch: int = 0
    bad_epochs: int = 0
    step: int = 0
    epoch: int = 0
    elapsed_before: float = 0.0
    finished: bool = False
    stopped_early: bool = False


class _FitLoop:
    """One training run, in SpeechBrain ``Brain`` style: :func:`fit` calls the stages
    (``resume`` → per epoch ``train_epoch`` → ``end_epoch`` → ``checkpoint``) in order.

    Batch order is shared by all DDP processes (so shards tile the epoch); augmentation noise
    differs per process.
    """

    def __init__(self, model: nn.Module, train_data: LabelledFeatures, config: TrainConfig,
                 checkpoint: str | Path | None, columns: Sequence[int] | None = None) -> None:
        self.model = model
        self.columns = columns
        self.train_data = train_data
        self.config = config
        self.config_dict = config.to_dict()
        self.stem = Path(checkpoint) if checkpoint is not None else None
        self.rank, self.world = _distributed()
        self.order_rng = torch.Generator().manual_seed(config.seed * 1_000_003 + 17)
        self.augment_rng = torch.Generator().manual_seed(config.seed * 1_000_003 + 29 + self.rank)
        self.generators = {"order": self.order_rng, "augment": self.augment_rng}
        torch.manual_seed(config.seed + 7919 * self.rank)
        if config.normalisation != "none" and getattr(model, "standardises_input", False):
            # Moments of the training split only (validation and test never enter them).
            model.set_input_statistics(*train_data.moments())
        self.device = _device_of(model)
        self.network: nn.Module = model
        if self.world > 1:
            # CPU (gloo): no device ids; GPU (nccl): this process's device.
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.network = nn.parallel.DistributedDataParallel(model, device_ids=ids)
        self.optimizer = torch.optim.AdamW(
            _parameter_groups(model, config.weight_decay, config.body_lr_scale,
                              config.layer_mix_lr_scale), lr=config.lr,
            betas=config.betas)
        self.loss_fn = nn.CrossEntropyLoss(weight=self._class_weights(),
                                           label_smoothing=config.label_smoothing)
        num_batches = -(-len(train_data) // config.batch_size)
        steps_per_epoch = -(-num_batches // self.world)
        self.total_steps = steps_per_epoch * config.max_epochs
        self.warmup_steps = round(config.warmup_epochs * steps_per_epoch)
        self.lengths = train_data.lengths()
        # Masks, noise and mixup (TrainConfig.augment_space), with the training moments.
        self.augmentation, self.moments = training_augmentation(model, train_data, config)
        self.average = (WeightAverage(model, config.weight_average_epochs * steps_per_epoch)
                        if config.weight_average_epochs > 0 else None)
        self.state = _Progress()

    def _class_weights(self) -> torch.Tensor | None:
        if not self.config.class_balanced:
            return None
        counts = self.train_data.class_counts().float().clamp(min=1)
        num_classes = len(self.train_data.label_names)
        return (counts.sum() / (num_classes * counts)).to(self.device)

    # ------------------------------------------------------------------ stages
    def resume(self) -> None:
        """Continue from the checkpoint, if there is one (same config required)."""
        saved = load_training_state(self.stem) if self.stem is not None else None
        if saved is None:
            return
        if saved["config"] != self.config_dict:
            raise CheckpointError(
                f"checkpoint {self.stem} was written with a different training config; "
                "delete it or run without --resume"
            )
        try:
            self.model.load_state_dict({k: v.to(self.device) for k, v in saved["model"].items()})
        except RuntimeError as error:
            raise CheckpointError(
                f"checkpoint {self.stem} does not fit this model ({error}); delete it"
            ) from error
        self.optimizer.load_state_dict(saved["optimizer"])
        if self.average is not None:
            if saved.get("average") is None:
                raise CheckpointError(f"checkpoint {self.stem} has no weight average; delete it")
            self.average.state = dict(saved["average"])
            self.average.updates = int(saved["step"])
        restore_rng(saved["rng_tensors"], saved["rng_meta"], self.generators)
        finished = bool(saved["finished"])
        self.state = _Progress(
            history=list(saved["history"]),
            best_state=saved["best"],
            best_metrics=(ClassificationMetrics.from_dict(saved["best_validation"])
                          if saved.get("best_validation") else None),
            best_epoch=int(saved["best_epoch"]),
            bad_epochs=int(saved["bad_epochs"]),
            step=int(saved["step"]),
            epoch=int(saved["epoch"]),
            elapsed_before=float(saved["seconds"]),
            finished=finished,
            stopped_early=bool(saved.get("stopped_early")) if finished else False,
        )

    def compute_objectives(self, batch: MixedBatch) -> torch.Tensor:
        """Forward pass and loss of one (augmented, possibly mixed) training batch."""
        with training_autocast(self.device, self.config.precision):
            logits = self.network(batch.features.to(self.device), batch.mask.to(self.device))
        logits = logits.float()  # the loss in float32 whatever the precision
        loss = self.loss_fn(logits, batch.labels.to(self.device))
        if batch.lam < 1.0:  # mixup: the partner's labels weigh 1 - lam
            loss = batch.lam * loss + (1.0 - batch.lam) * self.loss_fn(
                logits, batch.partner_labels.to(self.device))
        return loss

    def train_epoch(self) -> dict[str, Any]:
        """One pass over this process's share of the training batches."""
        config, state = self.config, self.state
        self.network.train()
        batches = bucketed_batches(self.lengths, config.batch_size, generator=self.order_rng,
                                   jitter=config.length_jitter)
        total_loss, total_items = 0.0, 0
        for indices in shard_batches(batches, self.rank, self.world):
            batch = self.train_data.batch(indices, crop_frames=config.max_train_frames,
                                          generator=self.augment_rng)
            mixed = augment(batch, *self.moments, self.augmentation, self.augment_rng)
            rate = learning_rate(state.step, peak=config.lr, warmup_steps=self.warmup_steps,
                                 total_steps=self.total_steps)
            for group in self.optimizer.param_groups:
                group["lr"] = rate * group["lr_scale"]
            loss = self.compute_objectives(mixed)
            if not torch.isfinite(loss):
                raise TrainingError(
                    f"loss became {loss.item()} at epoch {state.epoch + 1}; lower TrainConfig.lr "
                    "or enable grad_clip"
                )
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if config.grad_clip > 0:
                nn.utils.clip_grad_norm_(self.model.parameters(), config.grad_clip)
            self.optimizer.step()
            if self.average is not None:
                self.average.update(self.model)
            state.step += 1
            total_loss += float(loss.detach()) * len(indices)
            total_items += len(indices)
        state.epoch += 1
        return {
            "epoch": state.epoch,
            "train_loss": total_loss / max(1, total_items),
            "lr": self.optimizer.param_groups[0]["lr"] / self.optimizer.param_groups[0]["lr_scale"],
        }

    def end_epoch(self, record: dict[str, Any], val_data: LabelledFeatures | None,
                  started: float) -> None:
        """Validation, model selection, early stopping; completes ``record``."""
        config, state = self.config, self.state
        if self.average is not None:
            self.average.swap(self.model)  # validate (and keep) the averaged weights
        if val_data is None:
            state.best_epoch = state.epoch  # no selection: the last epoch is the result
            if self.average is not None:
                state.best_state = {k: v.detach().clone()
                                    for k, v in self.model.state_dict().items()}
        else:
            val_metrics, _ = evaluate(self.model, val_data, config.eval_batch_size,
                                      self.columns)
            if state.best_metrics is None or val_metrics.ua > state.best_metrics.ua:
                state.best_metrics = val_metrics
                state.best_epoch = state.epoch
                state.best_state = {k: v.detach().clone()
                                    for k, v in self.model.state_dict().items()}
                state.bad_epochs = 0
            else:
                state.bad_epochs += 1
            record.update(val_wa=val_metrics.wa, val_ua=val_metrics.ua,
                          val_macro_f1=val_metrics.macro_f1)
        if self.average is not None:
            self.average.swap(self.model)
        record["seconds"] = time.perf_counter() - started
        state.history.append(record)
        state.stopped_early = (state.bad_epochs >= config.patience
                               and state.epoch >= config.min_epochs)
        state.finished = state.stopped_early or state.epoch >= config.max_epochs

    def checkpoint(self, seconds: float) -> None:
        """Everything the next epoch depends on (rank 0 writes)."""
        if self.stem is None or self.rank != 0:
            return
        state = self.state
        save_training_state(
            self.stem,
            model_state=self.model.state_dict(),
            best_state=state.best_state,
            optimizer_state=self.optimizer.state_dict(),
            average_state=self.average.state if self.average is not None else None,
            generators=self.generators,
            scalars={
                "config": self.config_dict,
                "epoch": state.epoch,
                "step": state.step,
                "best_epoch": state.best_epoch,
                "best_validation": state.best_metrics.to_dict() if state.best_metrics else None,
                "bad_epochs": state.bad_epochs,
                "history": state.history,
                "seconds": seconds,
                "finished": state.finished,
                "stopped_early": state.stopped_early,
            },
        )


def fit(
    model: nn.Module,
    train_data: LabelledFeatures,
    val_data: LabelledFeatures | None,
    config: TrainConfig,
    *,
    checkpoint: str | Path | None = None,
    resume: bool = False,
    epoch_hook: EpochHook | None = None,
    columns: Sequence[int] | None = None,
) -> FitResult:
    """Train ``model`` on ``train_data``; keep the epoch with the best validation UA.

    Under ``torchrun`` (a process group already initialised) the model is wrapped in
    ``DistributedDataParallel``; every process takes every ``world_size``-th batch of the same
    epoch order, and all processes run the (identical) validation pass, so they agree on early
    stopping without extra communication. Only rank 0 writes checkpoints.

    Args:
        model: Head with ``forward(features, mask) -> logits [B, C]``; its initial weights
            must already be set (seed them before building it).
        train_data: Training items (``[T, D]`` or ``[L, T, D]`` per item, pipeline applied).
        val_data: Validation items (speaker-disjoint from training and test); ``None``
            trains exactly ``max_epochs`` epochs and keeps the last weights (the refit on
            training + validation data once the epoch count is chosen).
        config: Hyper-parameters.
        checkpoint: Path stem of the per-epoch checkpoint (``None``: none written).
        resume: Continue from ``checkpoint`` if it exists (same config required).
        epoch_hook: Called with each epoch's record after its checkpoint is saved.
        columns: When ``val_data`` is scored over fewer classes than the head predicts (its
            own classes, in its order): the head's output column of each (see
            :func:`evaluate`); model selection then sees only those predictions.

    Returns:
        A :class:`FitResult`; ``model`` ends with the best epoch's weights.

    Raises:
        TrainingError: Empty training or validation split, or a non-finite loss.
        CheckpointError: A checkpoint from a different config or model.
    """
    if len(train_data) == 0 or (val_data is not None and len(val_data) == 0):
        raise TrainingError(
            f"cannot train with {len(train_data)} training and "
            f"{0 if val_data is None else len(val_data)} validation items; check the fold lists"
        )
    if config.num_threads:
        torch.set_num_threads(config.num_threads)
    loop = _FitLoop(model, train_data, config, checkpoint, columns)
    if resume:
        loop.resume()
    state = loop.state
    started = time.perf_counter()
    while not state.finished and state.epoch < config.max_epochs:
        epoch_started = time.perf_counter()
        record = loop.train_epoch()
        loop.end_epoch(record, val_data, epoch_started)
        loop.checkpoint(state.elapsed_before + time.perf_counter() - started)
        if epoch_hook is not None:
            epoch_hook(dict(record))
    if state.best_state is not None:
        model.load_state_dict(state.best_state)
    return FitResult(
        best_epoch=state.best_epoch,
        best_validation=state.best_metrics,
        epochs_run=state.epoch,
        stopped_early=state.stopped_early,
        history=state.history,
        seconds=state.elapsed_before + time.perf_counter() - started,
    )
