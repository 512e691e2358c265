"""A small spiking head that looks trained, for the NIR export tests."""

from __future__ import annotations

import torch

from ptssnn.models import create_model
from ptssnn.snn import PLIF
from ptssnn.snn.norm import MaskedBatchNorm


def calibrated_model(preset: str = "pts-snn", **overrides: object) -> torch.nn.Module:
    """A small head whose calibration bias is not zero (a fresh one starts at zero), with
    varied time constants and non-trivial input moments, as a trained head has."""
    model = create_model(preset, input_dim=80, num_classes=4, width=64, block_hidden=96,
                         **overrides)
    generator = torch.Generator().manual_seed(3)
    with torch.no_grad():
        if model.calibration is not None:
            projection = model.calibration.projection
            projection.weight.copy_(torch.randn(projection.weight.shape, generator=generator) * 0.3)
            projection.bias.copy_(torch.randn(projection.bias.shape, generator=generator) * 0.3)
        for module in model.modules():
            if isinstance(module, PLIF):
                module.w.fill_(float(torch.randn((), generator=generator)))
            if isinstance(module, MaskedBatchNorm):  # learned statistics, not the identity
                shape = module.running_mean.shape
                module.running_mean.copy_(torch.randn(shape, generator=generator) * 0.3)
                module.running_var.copy_(torch.rand(shape, generator=generator) + 0.5)
                module.weight.copy_(torch.rand(shape, generator=generator) + 0.5)
    shape = model.input_mean.shape
    model.set_input_statistics(torch.randn(shape, generator=generator),
                               torch.rand(shape, generator=generator) + 0.5)
    return model.eval()
