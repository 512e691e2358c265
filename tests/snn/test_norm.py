"""MaskedBatchNorm: statistics over real frames only, a fixed affine map at inference."""

from __future__ import annotations

import pytest
import torch

from ptssnn.errors import ModelConfigError
from ptssnn.snn.norm import MaskedBatchNorm, apply_norm, make_norm


def test_padding_does_not_enter_the_statistics() -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(6, 2, 4, generator=g) * 2 + 1
    mask = torch.ones(6, 2, dtype=torch.bool)
    mask[3:, 1] = False
    padded = x.clone()
    padded[~mask] = 1e6  # garbage in the padding must not matter
    norm = MaskedBatchNorm(4)
    out = norm(padded, mask)
    real = x[mask]  # [n, 4]
    expected = (real - real.mean(0)) / torch.sqrt(real.var(0, unbiased=False) + 1e-5)
    torch.testing.assert_close(out[mask], expected)
    torch.testing.assert_close(norm.running_mean, 0.1 * real.mean(0))
    torch.testing.assert_close(norm.running_var, 0.9 + 0.1 * real.var(0, unbiased=True))


def test_inference_is_the_affine_map_and_folds_into_a_linear() -> None:
    g = torch.Generator().manual_seed(1)
    norm = MaskedBatchNorm(5).eval()
    with torch.no_grad():
        norm.running_mean.copy_(torch.randn(5, generator=g))
        norm.running_var.copy_(torch.rand(5, generator=g) + 0.5)
        norm.weight.copy_(torch.randn(5, generator=g))
        norm.bias.copy_(torch.randn(5, generator=g))
    linear = torch.nn.Linear(3, 5)
    x = torch.randn(7, 1, 3, generator=g)
    scale, shift = norm.affine()
    expected = (linear(x) - norm.running_mean) / torch.sqrt(norm.running_var + 1e-5) \
        * norm.weight + norm.bias
    torch.testing.assert_close(norm(linear(x)), expected)
    folded = torch.nn.functional.linear(x, scale[:, None] * linear.weight,
                                        scale * linear.bias + shift)
    torch.testing.assert_close(folded, expected)


def test_factory_and_call_helper() -> None:
    assert isinstance(make_norm("layer", 4), torch.nn.LayerNorm)
    batch = make_norm("batch", 4)
    x = torch.randn(3, 2, 4)
    assert torch.equal(apply_norm(batch.eval(), x, None), batch(x))
    with pytest.raises(ModelConfigError, match="norm"):
        make_norm("group", 4)
    with pytest.raises(ModelConfigError, match="two real frames"):
        MaskedBatchNorm(4)(torch.randn(1, 1, 4))


def test_batch_norm_takes_bfloat16_currents_in_float32():
    # A bfloat16 training step (autocast) hands the norm bfloat16 currents: statistics and
    # running moments stay float32 (this crashed in running_mean.lerp_ before).
    norm = MaskedBatchNorm(6)
    x = torch.randn(5, 3, 6)
    mask = torch.ones(5, 3, dtype=torch.bool)
    out = norm(x.bfloat16(), mask)
    ref = MaskedBatchNorm(6)(x.bfloat16().float(), mask)
    assert out.dtype == torch.float32 and norm.running_mean.dtype == torch.float32
    assert torch.equal(out, ref)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert norm(x.bfloat16(), mask).dtype == torch.float32
