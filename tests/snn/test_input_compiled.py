"""The one-pass input kernels against PyTorch: standardisation + layer sum, and the soft
saturation (LayerNorm + tanh)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from ptssnn.models import create_model
from ptssnn.snn import input_compiled, plif_compiled
from ptssnn.snn.input_compiled import (
    CompiledSaturation,
    soft_saturation,
    standardised_layer_sum,
)

pytestmark = [pytest.mark.usefixtures("one_thread"),
              pytest.mark.skipif(not plif_compiled.available(),
                                 reason="compiled kernels unavailable")]


def test_tanh_approximation_is_within_a_few_ulp():
    z = torch.cat([torch.linspace(-12, 12, 400_001), torch.tensor([0.0, -0.0, 1e-30, 7.9, 9.0])])
    y = CompiledSaturation.apply(z[None], None, None, 1.0, 0.0)[0]
    assert float((y - torch.tanh(z)).abs().max()) < 5e-7
    assert float(y.abs().max()) <= 1.0
    torch.testing.assert_close(y, -CompiledSaturation.apply(-z[None], None, None, 1.0, 0.0)[0],
                               rtol=0, atol=0)  # odd


@pytest.mark.parametrize("norm", [True, False])
@pytest.mark.parametrize("input_grad", [True, False])
def test_forward_and_gradients_equal_layer_norm_and_tanh(norm, input_grad):
    g = torch.Generator().manual_seed(int(norm) * 2 + int(input_grad))
    layer = nn.LayerNorm(48) if norm else nn.Identity()
    if norm:
        with torch.no_grad():
            layer.weight.normal_(1.0, 0.3, generator=g)
            layer.bias.normal_(0.0, 0.3, generator=g)
    x = torch.randn(7, 5, 48, generator=g) * 2.0 + 0.5
    grad_y = torch.randn(7, 5, 48, generator=g)
    results = []
    for compiled in (True, False):
        inputs = x.clone().requires_grad_(input_grad)
        layer.zero_grad()
        y = soft_saturation(inputs, layer, 1.7, compiled)
        if y.requires_grad:
            y.backward(grad_y)
        results.append((y.detach(), inputs.grad,
                        *((layer.weight.grad, layer.bias.grad) if norm else ())))
    for new, reference in zip(*results, strict=True):
        if reference is None:
            assert new is None
        else:
            torch.testing.assert_close(new, reference, rtol=1e-5, atol=2e-6)


def test_pytorch_form_outside_compiled_training(monkeypatch):
    layer = nn.LayerNorm(8)
    x = torch.randn(3, 4, 8)
    calls = []
    apply = CompiledSaturation.apply
    monkeypatch.setattr(CompiledSaturation, "apply",
                        lambda *args: calls.append(1) or apply(*args))
    with torch.no_grad():
        soft_saturation(x, layer, 1.0, compiled=True)  # inference
    soft_saturation(x, layer, 1.0, compiled=False)  # fused or loop neurons
    soft_saturation(x.double(), layer.double(), 1.0, compiled=True)  # float64
    assert not calls
    soft_saturation(x, layer.float(), 1.0, compiled=True)
    assert calls == [1]


def _count_kernel_calls(monkeypatch) -> list[str]:
    """Record which input kernel ran (the compiled model must train through them)."""
    calls: list[str] = []
    for kernel in (input_compiled.CompiledLayerSum, CompiledSaturation):
        apply = kernel.apply
        monkeypatch.setattr(kernel, "apply", lambda *args, _a=apply, _k=kernel: (
            calls.append(_k.__name__), _a(*args))[1])
    return calls


def test_the_compiled_model_trains_through_the_kernel_and_matches_fused(monkeypatch):
    assert input_compiled.input_kernels_available()
    calls = _count_kernel_calls(monkeypatch)
    torch.manual_seed(0)
    features = torch.randn(4, 30, 24)
    labels = torch.tensor([0, 1, 2, 3])
    grads = []
    for backend in ("compiled", "fused"):
        model = create_model("pts-snn", 24, 4, plif_backend=backend, seed=3)
        torch.manual_seed(1)  # the same dropout masks
        loss = nn.functional.cross_entropy(model(features), labels)
        loss.backward()
        grads.append((loss.detach(), model.saturation.norm.weight.grad.clone(),
                      model.projection.weight.grad.clone()))
    for compiled_value, fused_value in zip(*grads, strict=True):
        torch.testing.assert_close(compiled_value, fused_value, rtol=1e-4, atol=1e-5)
    assert float(grads[0][1].abs().sum()) > 0
    assert calls == ["CompiledLayerSum", "CompiledSaturation"]  # the compiled model only


def test_kernel_arrays_are_float32_only():
    # The kernel is only entered for float32 rows; anything else takes the PyTorch form.
    x = torch.randn(2, 3, dtype=torch.float64, requires_grad=True)
    y = soft_saturation(x, nn.Identity(), 1.0, compiled=True)
    assert y.dtype == torch.float64
    np.testing.assert_allclose(y.detach().numpy(), np.tanh(x.detach().numpy()))


@pytest.mark.parametrize("layers", [1, 7])
def test_layer_sum_and_its_weight_gradient_equal_the_pytorch_form(layers):
    g = torch.Generator().manual_seed(layers)
    features = torch.randn(3, layers, 11, 40, generator=g) * 3 + 1
    mean = torch.randn(layers, 40, generator=g)
    std = torch.rand(layers, 40, generator=g) + 0.5
    logits = torch.randn(layers, generator=g).requires_grad_()
    grad_out = torch.randn(11, 3, 40, generator=g)
    results = []
    for compiled in (True, False):
        logits.grad = None
        weights = torch.softmax(logits, 0) if layers > 1 else None
        out = standardised_layer_sum(features, mean, std, weights, compiled)
        if compiled:
            assert out is not None and out.is_contiguous() and out.shape == (11, 3, 40)
        else:
            assert out is None
            standard = (features - mean[:, None]) / std[:, None]
            out = (torch.einsum("bltd,l->btd", standard, weights) if layers > 1
                   else standard[:, 0]).transpose(0, 1)
        if layers > 1:
            out.backward(grad_out)
        results.append((out.detach(), logits.grad))
    if layers == 1:
        assert torch.equal(results[0][0], results[1][0])  # the standardisation alone
    else:
        torch.testing.assert_close(results[0][0], results[1][0])
        torch.testing.assert_close(results[0][1], results[1][1], rtol=1e-5, atol=1e-5)


def test_layer_sum_leaves_other_calls_to_pytorch():
    features = torch.randn(2, 3, 5, 8)
    mean, std = torch.zeros(3, 8), torch.ones(3, 8)
    weights = torch.full((3,), 1 / 3)
    assert standardised_layer_sum(features, mean, std, weights, True) is not None
    with torch.no_grad():
        assert standardised_layer_sum(features, mean, std, weights, True) is None
    assert standardised_layer_sum(features.double(), mean.double(), std.double(),
                                  weights.double(), True) is None
    assert standardised_layer_sum(features.requires_grad_(), mean, std, weights, True) is None
    assert standardised_layer_sum(features.detach()[:, :2], mean, std, weights, True) is None


def test_a_compiled_multi_layer_model_trains_like_the_fused_one(monkeypatch):
    calls = _count_kernel_calls(monkeypatch)
    torch.manual_seed(0)
    features = torch.randn(4, 5, 30, 24) * 2 + 0.3
    labels = torch.tensor([0, 1, 2, 3])
    grads = []
    for backend in ("compiled", "fused"):
        model = create_model("pts-snn", 24, 4, plif_backend=backend, seed=3, input_layers=5)
        model.set_input_statistics(features.mean((0, 2)), features.std((0, 2)))
        torch.manual_seed(1)  # the same dropout masks
        loss = nn.functional.cross_entropy(model(features), labels)
        loss.backward()
        grads.append((loss.detach(), model.layer_weights.grad.clone()))
    for compiled_value, fused_value in zip(*grads, strict=True):
        torch.testing.assert_close(compiled_value, fused_value, rtol=1e-4, atol=1e-5)
    assert float(grads[0][1].abs().sum()) > 0
    assert calls == ["CompiledLayerSum", "CompiledSaturation"]  # the compiled model only


def test_without_the_kernels_everything_takes_the_pytorch_form(monkeypatch):
    # A machine where numba cannot build the kernels: the PLIF backend falls back to fused
    # (with its notice) and the input path quietly to PyTorch.
    monkeypatch.setattr(plif_compiled, "available", lambda: False)
    input_compiled.input_kernels_available.cache_clear()
    try:
        x = torch.randn(2, 3, 5, 8)
        assert standardised_layer_sum(x, torch.zeros(3, 8), torch.ones(3, 8),
                                      torch.full((3,), 1 / 3), compiled=True) is None
        layer = nn.LayerNorm(8)
        y = soft_saturation(x[:, 0], layer, 1.0, compiled=True)
        torch.testing.assert_close(y, torch.tanh(layer(x[:, 0])), rtol=0, atol=0)
    finally:
        input_compiled.input_kernels_available.cache_clear()


@pytest.mark.parametrize("norm", [True, False])
def test_bfloat16_output_under_autocast_is_the_rounded_result_with_the_same_gradients(norm):
    # Under a bfloat16 autocast the saturation writes its result in bfloat16 (what autocast
    # would cast it to for the projection) and recomputes tanh in its backward.
    g = torch.Generator().manual_seed(7)
    layer = nn.LayerNorm(40) if norm else nn.Identity()
    x = torch.randn(6, 5, 40, generator=g) * 2.0 + 0.5
    grad_y = torch.randn(6, 5, 40, generator=g).bfloat16()
    results = []
    for autocast in (False, True):
        inputs = x.clone().requires_grad_()
        layer.zero_grad()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            y = soft_saturation(inputs, layer, 1.3, compiled=True)
        y.backward(grad_y.to(y.dtype))
        results.append((y.detach(), inputs.grad,
                        *((layer.weight.grad, layer.bias.grad) if norm else ())))
    (y32, *grads32), (y16, *grads16) = results
    assert y16.dtype == torch.bfloat16 and y32.dtype == torch.float32
    assert torch.equal(y16, y32.bfloat16())
    for low, full in zip(grads16, grads32, strict=True):
        torch.testing.assert_close(low, full, rtol=1e-5, atol=1e-6)
