"""Training-time augmentation of frozen features, in the standardised space the head sees.

The head standardises its input with the training split's moments (``PTSSNN.input_mean``,
``input_std``). Augmenting the raw features would be wrong for Whisper-style encoders: a
few channels have means hundreds of standard deviations away from zero, so a raw zero (a
SpecAugment mask, or the padding mixed in by mixup) becomes a huge outlier after
standardisation. Here every augmentation works on ``z = (x - mean) / std``: a mask sets
``z = 0`` (the channel's training mean), noise is in units of the channel's standard deviation,
and mixup blends standardised frames, padding counted as the mean. The batch goes back to
the raw scale at the end, so the model's forward pass is unchanged.

Mixup (Zhang et al., 2018) blends pairs of utterances and their labels with one
``λ ~ Beta(α, α)`` per batch; on a few hundred clips from two or three speakers it is the
regulariser that makes the head learn speaker-general cues rather than memorise clips.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ptssnn.training.config import TrainConfig
from ptssnn.training.data import Batch, LabelledFeatures


@dataclass(frozen=True)
class Augmentation:
    """What to do to a training batch (all off when zero).

    Attributes:
        time_masks: Spans of frames set to the mean, per utterance.
        time_mask_width: Max span width, in frames.
        feature_masks: Spans of channels set to the mean (same channels in every frame and
            layer), per utterance.
        feature_mask_width: Max span width, in channels.
        noise: Standard deviation of Gaussian noise added to the standardised features.
        mixup_alpha: α of the Beta(α, α) mixing weight; 0 disables mixup.
    """

    time_masks: int = 0
    time_mask_width: int = 0
    feature_masks: int = 0
    feature_mask_width: int = 0
    noise: float = 0.0
    mixup_alpha: float = 0.0


@dataclass(frozen=True)
class MixedBatch:
    """An augmented batch: the loss is ``lam · CE(logits, labels) + (1 - lam) ·
    CE(logits, partner_labels)`` (``lam`` = 1 and ``partner_labels`` = ``labels`` without
    mixup)."""

    features: torch.Tensor
    mask: torch.Tensor
    labels: torch.Tensor
    partner_labels: torch.Tensor
    lam: float


def _moments(mean: torch.Tensor, std: torch.Tensor, features: torch.Tensor
             ) -> tuple[torch.Tensor, torch.Tensor]:
    """Moments ``[L, D]`` shaped to broadcast against ``[B, T, D]`` or ``[B, L, T, D]``."""
    if features.dim() == 4:
        return mean[:, None, :], std[:, None, :]
    return mean[0], std[0]


def augment(batch: Batch, mean: torch.Tensor, std: torch.Tensor, augmentation: Augmentation,
            generator: torch.Generator) -> MixedBatch:
    """Augment a training batch in the standardised space (see the module docstring).

    Args:
        batch: Padded batch, features ``[B, T, D]`` or ``[B, L, T, D]`` on the raw scale.
        mean, std: The head's input moments, ``[L, D]`` (L = 1 for ``[B, T, D]`` batches).
        augmentation: What to apply.
        generator: Source of randomness (masks, noise, λ, pairing).

    Returns:
        A :class:`MixedBatch` on the raw scale.
    """
    m, s = _moments(mean.float(), std.float(), batch.features)
    z = (batch.features - m) / s
    mask = batch.mask
    # Padding is the mean, so a mixed frame past a shorter partner's end is half a real frame.
    frame_mask = mask[:, None, :, None] if z.dim() == 4 else mask[:, :, None]
    z = z * frame_mask
    lengths = mask.sum(1).tolist()
    dim = z.shape[-1]
    a = augmentation
    for row, frames in enumerate(lengths):
        for _ in range(a.time_masks if a.time_mask_width > 0 else 0):
            width = int(torch.randint(0, a.time_mask_width + 1, (1,), generator=generator))
            if width == 0 or width >= frames:
                continue
            start = int(torch.randint(0, frames - width + 1, (1,), generator=generator))
            z[row, ..., start : start + width, :] = 0.0
        for _ in range(a.feature_masks if a.feature_mask_width > 0 else 0):
            width = int(torch.randint(0, min(a.feature_mask_width, dim) + 1, (1,),
                                      generator=generator))
            if width == 0:
                continue
            start = int(torch.randint(0, dim - width + 1, (1,), generator=generator))
            z[row, ..., start : start + width] = 0.0
    if a.noise > 0:
        z = z + a.noise * torch.randn(z.shape, generator=generator) * frame_mask
    labels = partner = batch.labels
    lam = 1.0
    if a.mixup_alpha > 0 and len(lengths) > 1:
        lam = _beta_sample(a.mixup_alpha, generator)
        lam = max(lam, 1.0 - lam)  # the first item dominates: its frames and mask lead
        order = torch.randperm(len(lengths), generator=generator)
        z = lam * z + (1.0 - lam) * z[order]
        mask = mask | mask[order]
        partner = batch.labels[order]
    return MixedBatch(z * s + m, mask, labels, partner, lam)


def _beta_sample(alpha: float, generator: torch.Generator) -> float:
    """One Beta(α, α) draw that depends on ``generator`` only (``Beta.sample`` takes no
    generator, so it runs under a fork of the global RNG seeded from ``generator``)."""
    seed = int(torch.randint(0, 2**31 - 1, (1,), generator=generator))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return float(torch.distributions.Beta(alpha, alpha).sample())


def training_augmentation(model: torch.nn.Module, train_data: LabelledFeatures,
                          config: TrainConfig
                          ) -> tuple[Augmentation, tuple[torch.Tensor, torch.Tensor]]:
    """The augmentation of a :class:`TrainConfig` and the moments it works in: the head's
    input moments when it standardises its input and ``augment_space`` is
    ``"standardised"``, else identity moments (masks then zero the raw features, the
    behaviour before this module existed)."""
    augmentation = Augmentation(
        time_masks=config.time_masks, time_mask_width=config.time_mask_width,
        feature_masks=config.feature_masks, feature_mask_width=config.feature_mask_width,
        noise=config.noise, mixup_alpha=config.mixup_alpha)
    layers, dim = train_data.num_layers, train_data.feature_dim
    if config.augment_space == "standardised" and getattr(model, "standardises_input", False):
        mean = model.input_mean.detach().cpu().float()
        std = model.input_std.detach().cpu().float()
    else:
        mean, std = torch.zeros(layers, dim), torch.ones(layers, dim)
    return augmentation, (mean, std)
