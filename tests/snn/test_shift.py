"""TemporalShift: channel bookkeeping, zero fill, no parameters, no leak from padded frames."""

from __future__ import annotations

import pytest
import torch

from ptssnn.errors import ModelConfigError
from ptssnn.snn.shift import TemporalShift, shift_channels


def test_default_fractions_move_one_eighth_each_way():
    steps, channels = 5, 16
    x = torch.arange(1, steps + 1, dtype=torch.float32)[:, None, None].expand(steps, 1, channels)
    out = TemporalShift()(x)[:, 0]
    assert list(TemporalShift().parameters()) == []
    assert shift_channels(channels, 0.125, 0.125) == (2, 2)
    # Channels 0-1 come from the previous frame (zero at t=0), 2-3 from the next (zero at end).
    assert out[:, 0].tolist() == [0, 1, 2, 3, 4]
    assert out[:, 2].tolist() == [2, 3, 4, 5, 0]
    assert torch.equal(out[:, 4:], x[:, 0, 4:])


def test_configurable_fractions():
    x = torch.randn(4, 2, 8)
    out = TemporalShift(later=0.25, earlier=0.0)(x)
    assert torch.equal(out[1:, :, :2], x[:-1, :, :2]) and out[0, :, :2].abs().sum() == 0
    assert torch.equal(out[..., 2:], x[..., 2:])
    assert torch.equal(TemporalShift(0.0, 0.0)(x), x)
    with pytest.raises(ModelConfigError):
        TemporalShift(later=0.7, earlier=0.5)


def test_padded_frames_never_leak_into_real_frames():
    steps, batch, channels = 9, 3, 16
    x = torch.randn(steps, batch, channels)
    mask = torch.ones(steps, batch, dtype=torch.bool)
    mask[6:, 0] = False   # trailing padding
    mask[3, 1] = False    # a gap
    poisoned = x.clone()
    poisoned[~mask] = 1e6
    shift = TemporalShift()
    out = shift(x, mask)
    out_poisoned = shift(poisoned, mask)
    assert torch.equal(out, out_poisoned)
    assert out[~mask].abs().sum() == 0
    # Real frame next to a padded one receives zeros from it, as at a sequence edge.
    assert out[5, 0, 2:4].abs().sum() == 0
    assert out[4, 1, 0:2].abs().sum() == 0 and out[2, 1, 2:4].abs().sum() == 0


def test_spikes_stay_binary():
    s = (torch.rand(7, 2, 16) > 0.5).float()
    out = TemporalShift()(s)
    assert set(out.unique().tolist()) <= {0.0, 1.0}


def test_zero_padded_input_skips_the_first_mask_with_the_same_result():
    g = torch.Generator().manual_seed(2)
    mask = torch.ones(7, 3, dtype=torch.bool)
    mask[4:, 0] = False
    mask[6:, 2] = False
    x = torch.randn(7, 3, 16, generator=g) * mask[..., None]  # a neuron layer's output
    shift = TemporalShift()
    assert torch.equal(shift(x, mask, zero_padded=True), shift(x, mask))
    # The first mask is really skipped: on input that is not zero on padded frames, a value
    # shifted earlier from the first padded frame reaches the last real one.
    poisoned = x.clone()
    poisoned[~mask] = 1e6
    assert torch.equal(shift(poisoned, mask), shift(x, mask))
    assert not torch.equal(shift(poisoned, mask, zero_padded=True), shift(x, mask))


needs_kernels = pytest.mark.skipif(
    not __import__("ptssnn.snn.plif_compiled", fromlist=["x"]).available(),
    reason="numba kernels unavailable")


@needs_kernels
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float64])
@pytest.mark.parametrize("zero_padded", [False, True])
@pytest.mark.parametrize("fractions", [(0.125, 0.125), (0.25, 0.0), (0.0, 0.5), (0.0, 0.0)])
def test_compiled_shift_and_its_gradient_equal_the_pytorch_form(dtype, zero_padded, fractions):
    from ptssnn.snn.shift import CompiledShift, compiled_shift_available

    assert compiled_shift_available()  # its check runs the kernel once, before counting
    g = torch.Generator().manual_seed(4)
    steps, batch, channels = 9, 3, 16
    mask = torch.ones(steps, batch, dtype=torch.bool)
    mask[6:, 0] = False
    mask[3, 1] = False
    x = torch.randn(steps, batch, channels, generator=g).to(dtype)
    if zero_padded:
        x = x * mask[..., None].to(dtype)
    grad = torch.randn(steps, batch, channels, generator=g).to(dtype)
    shift = TemporalShift(*fractions)
    outputs = []
    for compiled in (False, True):
        calls = []
        apply = CompiledShift.apply
        CompiledShift.apply = (lambda *a, _apply=apply, _calls=calls:
                               (_calls.append(1), _apply(*a))[1])
        try:
            leaf = x.clone().requires_grad_()
            out = shift(leaf, mask, zero_padded=zero_padded, compiled=compiled)
            out.backward(grad)
        finally:
            CompiledShift.apply = apply
        assert len(calls) == int(compiled and fractions != (0.0, 0.0))  # identity: PyTorch
        outputs.append((out.detach(), leaf.grad))
    (out_torch, grad_torch), (out_kernel, grad_kernel) = outputs
    assert out_kernel.dtype == dtype and torch.equal(out_kernel, out_torch)
    assert torch.equal(grad_kernel, grad_torch)


@needs_kernels
def test_compiled_shift_without_a_mask_and_outside_autograd():
    x = torch.randn(5, 2, 16, requires_grad=True)  # channels 0-1 later, 2-3 earlier
    shift = TemporalShift()
    out = shift(x, compiled=True)
    assert torch.equal(out, TemporalShift()(x))
    out.sum().backward()
    # Every value but the edges' goes somewhere exactly once.
    assert x.grad[1:-1].eq(1).all() and x.grad[0, :, 2:4].eq(0).all()
    assert x.grad[-1, :, :2].eq(0).all() and x.grad[0, :, :2].eq(1).all()
    with torch.no_grad():
        assert torch.equal(shift(x, compiled=True), TemporalShift()(x))
