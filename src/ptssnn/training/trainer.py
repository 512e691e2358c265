"""``fit``: train one head on one split, select the best epoch on the validation split.

Model selection and early stopping look at the validation split only (metric: UA); the test
fold is never seen here. Every epoch ends with a checkpoint (safetensors + JSON) holding all
that the next epoch depends on, so ``resume=True`` continues bit-identically.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ptssnn.errors import CheckpointError, PtssnnError
from ptssnn.evaluation.metrics import ClassificationMetrics, classification_metrics
from ptssnn.training.augment import augment, training_augmentation
from ptssnn.training.checkpoint import (
    load_training_state,
    restore_rng,
    save_training_state,
)
from ptssnn.training.config import TrainConfig
from ptssnn.training.data import (
    LabelledFeatures,
    bucketed_batches,
    collate,
    iterate_eval_batches,
    shard_batches,
)


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


def _parameter_groups(model: nn.Module, weight_decay: float, body_lr_scale: float = 1.0
                      ) -> list[dict[str, Any]]:
    # No decay on biases, norms, neuron time constants and bias voltages (1-D tensors).
    # ``lr_scale``: the read-out (``model.classifier``) learns at the full rate, the body
    # at ``body_lr_scale`` of it (see ``TrainConfig.body_lr_scale``).
    readout = getattr(model, "classifier", None)
    readout_ids = {id(p) for p in readout.parameters()} if isinstance(readout, nn.Module) \
        else set()
    groups: dict[tuple[bool, float], list[nn.Parameter]] = {}
    for parameter in model.parameters():
        if not parameter.requires_grad:
            continue
        scale = 1.0 if id(parameter) in readout_ids else body_lr_scale
        groups.setdefault((parameter.dim() >= 2, scale), []).append(parameter)
    return [{"params": params, "weight_decay": weight_decay if decay else 0.0,
             "lr_scale": scale} for (decay, scale), params in groups.items()]


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


def evaluate(model: nn.Module, data: LabelledFeatures, batch_size: int = 64
             ) -> tuple[ClassificationMetrics, np.ndarray]:
    """Metrics and predicted class per item of ``data``."""
    logits = predict_logits(model, data, batch_size)
    predictions = logits.argmax(1) if len(data) else np.zeros(0, dtype=np.int64)
    metrics = classification_metrics(data.labels.numpy(), predictions, len(data.label_names))
    return metrics, predictions


def fit(
    model: nn.Module,
    train_data: LabelledFeatures,
    val_data: LabelledFeatures | None,
    config: TrainConfig,
    *,
    checkpoint: str | Path | None = None,
    resume: bool = False,
    epoch_hook: EpochHook | None = None,
) -> FitResult:
    """Train ``model`` on ``train_data``; keep the epoch with the best validation UA.

    Under ``torchrun`` (a process group already initialised) the model is wrapped in
    ``DistributedDataParallel``; every process takes every ``world_size``-th batch of the same
    epoch order, and all processes run the (identical) validation pass, so they agree on early
    stopping without extra communication. Only rank 0 writes checkpoints.

    Args:
        model: Head with ``forward(features, mask) -> logits [B, C]``; its initial weights
            must already be set (seed them before building it).
        train_data: Training items (``[T, D]`` or ``[L, T, D]`` per item, layer mode applied).
        val_data: Validation items (speaker-disjoint from training and test); ``None``
            trains exactly ``max_epochs`` epochs and keeps the last weights (the refit on
            training + validation data once the epoch count is chosen).
        config: Hyper-parameters.
        checkpoint: Path stem of the per-epoch checkpoint (``None``: none written).
        resume: Continue from ``checkpoint`` if it exists (same config required).
        epoch_hook: Called with each epoch's record after its checkpoint is saved.

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
    rank, world = _distributed()
    num_classes = len(train_data.label_names)

    # Batch order is shared by all processes (so shards tile the epoch); augmentation noise
    # differs per process.
    order_rng = torch.Generator().manual_seed(config.seed * 1_000_003 + 17)
    augment_rng = torch.Generator().manual_seed(config.seed * 1_000_003 + 29 + rank)
    generators = {"order": order_rng, "augment": augment_rng}
    torch.manual_seed(config.seed + 7919 * rank)

    if config.normalisation != "none" and getattr(model, "standardises_input", False):
        # Moments of the training split only (validation and test never enter them).
        model.set_input_statistics(*train_data.moments())

    device = _device_of(model)
    network: nn.Module = model
    if world > 1:
        # CPU (gloo): no device ids; GPU (nccl): this process's device.
        ids = [device.index] if device.type == "cuda" else None
        network = nn.parallel.DistributedDataParallel(model, device_ids=ids)
    optimizer = torch.optim.AdamW(
        _parameter_groups(model, config.weight_decay, config.body_lr_scale), lr=config.lr,
        betas=config.betas
    )
    weight = None
    if config.class_balanced:
        counts = train_data.class_counts().float().clamp(min=1)
        weight = (counts.sum() / (num_classes * counts)).to(device)
    loss_fn = nn.CrossEntropyLoss(weight=weight, label_smoothing=config.label_smoothing)

    augmentation, moments = training_augmentation(model, train_data, config)
    num_batches = -(-len(train_data) // config.batch_size)
    steps_per_epoch = -(-num_batches // world)
    total_steps = steps_per_epoch * config.max_epochs
    warmup_steps = round(config.warmup_epochs * steps_per_epoch)
    lengths = train_data.lengths()

    history: list[dict[str, Any]] = []
    best_state: dict[str, torch.Tensor] | None = None
    best_metrics: ClassificationMetrics | None = None
    best_epoch = 0
    bad_epochs = 0
    step = 0
    start_epoch = 0
    elapsed_before = 0.0
    finished = False
    state: dict[str, Any] | None = None
    config_dict = config.to_dict()
    stem = Path(checkpoint) if checkpoint is not None else None

    if resume and stem is not None:
        state = load_training_state(stem)
        if state is not None:
            if state["config"] != config_dict:
                raise CheckpointError(
                    f"checkpoint {stem} was written with a different training config; "
                    "delete it or run without --resume"
                )
            try:
                model.load_state_dict({k: v.to(device) for k, v in state["model"].items()})
            except RuntimeError as error:
                raise CheckpointError(
                    f"checkpoint {stem} does not fit this model ({error}); delete it"
                ) from error
            optimizer.load_state_dict(state["optimizer"])
            restore_rng(state["rng_tensors"], state["rng_meta"], generators)
            best_state = state["best"]
            best_metrics = (ClassificationMetrics.from_dict(state["best_validation"])
                            if state.get("best_validation") else None)
            best_epoch = int(state["best_epoch"])
            bad_epochs = int(state["bad_epochs"])
            step = int(state["step"])
            start_epoch = int(state["epoch"])
            history = list(state["history"])
            elapsed_before = float(state["seconds"])
            finished = bool(state["finished"])

    started = time.perf_counter()
    stopped_early = bool(state.get("stopped_early")) if finished else False
    epoch = start_epoch
    while not finished and epoch < config.max_epochs:
        epoch_started = time.perf_counter()
        network.train()
        batches = bucketed_batches(lengths, config.batch_size, generator=order_rng,
                                   jitter=config.length_jitter)
        total_loss, total_items = 0.0, 0
        for indices in shard_batches(batches, rank, world):
            batch = collate(train_data, indices, crop_frames=config.max_train_frames,
                            generator=augment_rng)
            mixed = augment(batch, *moments, augmentation, augment_rng)
            rate = learning_rate(step, peak=config.lr, warmup_steps=warmup_steps,
                                 total_steps=total_steps)
            for group in optimizer.param_groups:
                group["lr"] = rate * group["lr_scale"]
            logits = network(mixed.features.to(device), mixed.mask.to(device))
            loss = loss_fn(logits, mixed.labels.to(device))
            if mixed.lam < 1.0:
                loss = mixed.lam * loss + (1.0 - mixed.lam) * loss_fn(
                    logits, mixed.partner_labels.to(device))
            if not torch.isfinite(loss):
                raise TrainingError(
                    f"loss became {loss.item()} at epoch {epoch + 1}; lower TrainConfig.lr or "
                    "enable grad_clip"
                )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if config.grad_clip > 0:
                nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
            optimizer.step()
            step += 1
            total_loss += float(loss.detach()) * len(indices)
            total_items += len(indices)

        epoch += 1
        record = {
            "epoch": epoch,
            "train_loss": total_loss / max(1, total_items),
            "lr": optimizer.param_groups[0]["lr"] / optimizer.param_groups[0]["lr_scale"],
        }
        if val_data is None:
            best_epoch = epoch  # no selection: the last epoch is the result
        else:
            val_metrics, _ = evaluate(model, val_data, config.eval_batch_size)
            if best_metrics is None or val_metrics.ua > best_metrics.ua:
                best_metrics = val_metrics
                best_epoch = epoch
                best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
                bad_epochs = 0
            else:
                bad_epochs += 1
            record.update(val_wa=val_metrics.wa, val_ua=val_metrics.ua,
                          val_macro_f1=val_metrics.macro_f1)
        record["seconds"] = time.perf_counter() - epoch_started
        history.append(record)
        stopped_early = bad_epochs >= config.patience and epoch >= config.min_epochs
        finished = stopped_early or epoch >= config.max_epochs
        if stem is not None and rank == 0:
            save_training_state(
                stem,
                model_state=model.state_dict(),
                best_state=best_state,
                optimizer_state=optimizer.state_dict(),
                generators=generators,
                scalars={
                    "config": config_dict,
                    "epoch": epoch,
                    "step": step,
                    "best_epoch": best_epoch,
                    "best_validation": best_metrics.to_dict() if best_metrics else None,
                    "bad_epochs": bad_epochs,
                    "history": history,
                    "seconds": elapsed_before + time.perf_counter() - started,
                    "finished": finished,
                    "stopped_early": stopped_early,
                },
            )
        if epoch_hook is not None:
            epoch_hook(dict(record))

    if best_state is not None:
        model.load_state_dict(best_state)
    return FitResult(
        best_epoch=best_epoch,
        best_validation=best_metrics,
        epochs_run=epoch,
        stopped_early=stopped_early,
        history=history,
        seconds=elapsed_before + time.perf_counter() - started,
    )

