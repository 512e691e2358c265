"""Augmentation in the standardised space: masks to the mean, noise in std units, mixup."""

from __future__ import annotations

import torch

from ptssnn.training.augment import Augmentation, augment, training_augmentation
from ptssnn.training.config import TrainConfig
from ptssnn.training.data import Batch, spec_augment


def batch(layers: int | None = None) -> tuple[Batch, torch.Tensor, torch.Tensor]:
    """A batch of 4 items (lengths 12, 12, 8, 5) on a scale far from zero, and its moments."""
    g = torch.Generator().manual_seed(0)
    shape = (4, 12, 6) if layers is None else (4, layers, 12, 6)
    mean = torch.linspace(-300.0, 500.0, 6).repeat(layers or 1, 1)  # Whisper-like offsets
    std = torch.linspace(0.5, 4.0, 6).repeat(layers or 1, 1)
    m, s = (mean[:, None], std[:, None]) if layers else (mean[0], std[0])
    x = m + s * torch.randn(shape, generator=g)
    mask = torch.zeros(4, 12, dtype=torch.bool)
    for row, frames in enumerate([12, 12, 8, 5]):
        mask[row, :frames] = True
        x[row, ..., frames:, :] = 0.0  # padding, as collate writes it
    return Batch(x, mask, torch.tensor([0, 1, 2, 1]), torch.arange(4)), mean, std


def test_masks_set_channels_to_their_training_mean_not_to_zero():
    b, mean, std = batch()
    out = augment(b, mean, std, Augmentation(time_masks=3, time_mask_width=3,
                                             feature_masks=2, feature_mask_width=2),
                  torch.Generator().manual_seed(1))
    at_mean = torch.isclose(out.features, mean[0].expand_as(out.features), atol=1e-3)
    real = b.mask[..., None].expand_as(at_mean)
    assert (at_mean & real).any()
    # Nothing masked lands on a raw zero, the outlier a raw-space mask would create.
    assert not ((out.features == 0) & real).any()
    assert out.lam == 1.0 and torch.equal(out.partner_labels, b.labels)


def test_identity_moments_reproduce_raw_spec_augment():
    b, _, _ = batch(layers=3)
    reference = Batch(b.features.clone(), b.mask, b.labels, b.indices)
    spec_augment(reference, time_masks=2, time_mask_width=3, feature_masks=2,
                 feature_mask_width=2, generator=torch.Generator().manual_seed(5))
    out = augment(b, torch.zeros(3, 6), torch.ones(3, 6),
                  Augmentation(time_masks=2, time_mask_width=3, feature_masks=2,
                               feature_mask_width=2), torch.Generator().manual_seed(5))
    assert torch.allclose(out.features, reference.features)


def test_noise_is_in_units_of_the_channel_std_and_spares_padding():
    b, mean, std = batch()
    out = augment(b, mean, std, Augmentation(noise=0.5), torch.Generator().manual_seed(2))
    z_change = ((out.features - b.features) / std[0])[b.mask]
    assert 0.4 < float(z_change.std()) < 0.6
    assert torch.allclose(out.features[~b.mask], mean[0].expand_as(out.features[~b.mask]))


def test_mixup_blends_standardised_items_and_their_labels():
    b, mean, std = batch(layers=2)
    out = augment(b, mean, std, Augmentation(mixup_alpha=0.4),
                  torch.Generator().manual_seed(3))
    assert 0.5 <= out.lam < 1.0
    m, s = mean[:, None], std[:, None]
    z = (b.features - m) / s * b.mask[:, None, :, None]
    # Recover the partner of each row from the labels and the blend.
    mixed = (out.features - m) / s
    partners = [int(torch.argmin(torch.stack([
        (mixed[i] - (out.lam * z[i] + (1 - out.lam) * z[j])).abs().max() for j in range(4)])))
        for i in range(4)]
    for i, j in enumerate(partners):
        assert torch.allclose(mixed[i], out.lam * z[i] + (1 - out.lam) * z[j], atol=1e-4)
        assert int(out.partner_labels[i]) == int(b.labels[j])
        assert torch.equal(out.mask[i], b.mask[i] | b.mask[j])
    assert sorted(partners) == [0, 1, 2, 3]  # a permutation of the batch
    again = augment(b, mean, std, Augmentation(mixup_alpha=0.4),
                    torch.Generator().manual_seed(3))
    assert again.lam == out.lam and torch.equal(again.features, out.features)


def test_training_augmentation_uses_the_heads_moments_only_when_asked():
    class Head(torch.nn.Module):
        standardises_input = True

        def __init__(self) -> None:
            super().__init__()
            self.register_buffer("input_mean", torch.full((1, 6), 3.0))
            self.register_buffer("input_std", torch.full((1, 6), 2.0))

    from ptssnn.training.data import LabelledFeatures

    table = LabelledFeatures.from_arrays([("a", torch.zeros(4, 6).numpy(), "x")], ["x"])
    aug, (mean, std) = training_augmentation(
        Head(), table, TrainConfig(augment_space="standardised", mixup_alpha=0.2))
    assert aug.mixup_alpha == 0.2 and float(mean[0, 0]) == 3.0 and float(std[0, 0]) == 2.0
    _, (mean, std) = training_augmentation(Head(), table, TrainConfig(augment_space="raw"))
    assert float(mean.abs().max()) == 0.0 and float(std.min()) == 1.0
