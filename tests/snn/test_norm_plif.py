"""LayerNorm → PLIF in one compiled pass each way: the same spikes as the PLIF on the
normalised current, the gradients of nn.LayerNorm + PLIF, and the two layers called as
before wherever the fused kernel does not apply."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from ptssnn.models import create_model
from ptssnn.snn import norm_plif, plif_compiled
from ptssnn.snn.norm import MaskedBatchNorm
from ptssnn.snn.norm_plif import CompiledNormPLIF, layer_norm_plif
from ptssnn.snn.plif import PLIF, PLIFParameters

pytestmark = [pytest.mark.usefixtures("one_thread"),
              pytest.mark.skipif(not plif_compiled.available(),
                                 reason="compiled PLIF kernels unavailable")]


def _layers(width: int, dtype: torch.dtype, params: PLIFParameters, backend: str = "compiled"
            ) -> tuple[nn.LayerNorm, PLIF]:
    g = torch.Generator().manual_seed(1)
    norm = nn.LayerNorm(width).to(dtype)
    with torch.no_grad():
        norm.weight.copy_(torch.rand(width, generator=g) + 0.5)
        norm.bias.copy_(torch.rand(width, generator=g) * 1.2 - 0.2)
    neuron = PLIF(params, backend=backend).to(dtype)
    with torch.no_grad():
        neuron.w.fill_(0.3)
    return norm, neuron


def _inputs(shape, dtype):
    g = torch.Generator().manual_seed(0)
    x = (torch.randn(shape, generator=g, dtype=torch.float64) * 2 + 0.4).to(dtype)
    mask = torch.rand(shape[:2], generator=g) > 0.2
    mask[:, 0] = True
    v0 = (torch.randn(shape[1:], generator=g, dtype=torch.float64) * 0.3).to(dtype)
    weight = torch.randn(shape, generator=g, dtype=torch.float64).to(dtype)
    return x, mask, v0, weight


def _run(norm, neuron, x, mask, v0, weight, fused: bool):
    assert norm_plif.norm_plif_available()  # its check runs the kernel, before counting
    calls = []
    apply = CompiledNormPLIF.apply

    def counted(*args):
        calls.append(1)
        return apply(*args)

    CompiledNormPLIF.apply = counted  # type: ignore[method-assign]
    try:
        for p in (*norm.parameters(), *neuron.parameters()):
            p.grad = None
        leaf, v = x.clone().requires_grad_(), v0.clone().requires_grad_()
        if fused:
            spikes, v_final = layer_norm_plif(norm, neuron, leaf, mask, v)
        else:
            spikes, v_final = neuron(norm(leaf), mask=mask, v=v, return_state=True)
        ((spikes.float() * weight.float()).sum() + v_final.float().sum() * 0.3).backward()
    finally:
        CompiledNormPLIF.apply = apply  # type: ignore[method-assign]
    assert len(calls) == int(fused)
    grads = (leaf.grad, v.grad, neuron.w.grad, norm.weight.grad, norm.bias.grad)
    return spikes.detach(), v_final.detach(), grads


@pytest.mark.parametrize(("decay_input", "v_reset", "detach_reset", "surrogate"), [
    (True, 0.0, True, "sigmoid"), (False, None, False, "atan"), (True, None, True, "sigmoid"),
    (False, 0.0, False, "sigmoid")])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_spikes_and_gradients_equal_layer_norm_then_plif(decay_input, v_reset, detach_reset,
                                                         surrogate, dtype):
    params = PLIFParameters(decay_input=decay_input, v_reset=v_reset,
                            detach_reset=detach_reset, surrogate=surrogate)
    norm, neuron = _layers(37, dtype, params)  # 37: a vector remainder in every row loop
    x, mask, v0, weight = _inputs((23, 5, 37), dtype)
    reference = _run(norm, neuron, x, mask, v0, weight, fused=False)
    fused = _run(norm, neuron, x, mask, v0, weight, fused=True)
    assert torch.equal(fused[0], reference[0])  # no spike moved by the moments' rounding
    assert 0.05 < float(reference[0].mean()) < 0.6
    tol = 1e-10 if dtype == torch.float64 else 2e-5
    torch.testing.assert_close(fused[1], reference[1], rtol=tol, atol=tol)
    names = ("x", "v0", "w", "LayerNorm weight", "LayerNorm bias")
    for name, got, want in zip(names, fused[2], reference[2], strict=True):
        assert float(want.abs().max()) > 0
        torch.testing.assert_close(got, want, rtol=tol, atol=tol, msg=f"gradient of {name}")


def test_spikes_are_bit_for_bit_the_plif_on_the_kernels_current():
    # The current is ((x - mean)·rstd)·gamma + beta with the kernel's own moments: the
    # PyTorch expression with those moments gives the same spikes and charge, float32.
    params = PLIFParameters()
    norm, neuron = _layers(40, torch.float32, params)
    x, mask, v0, _ = _inputs((30, 6, 40), torch.float32)
    kernels = plif_compiled._kernels()
    q = torch.sigmoid(neuron.w.detach())
    steps, batch, width = x.shape
    mean, rstd = torch.empty(steps, batch), torch.empty(steps, batch)
    spikes, charge, v = torch.empty_like(x), torch.empty_like(x), v0.clone()
    constants = plif_compiled._params(q, params)
    kernels.norm_forward_kernel(
        x.numpy(), v.numpy(), mask.numpy(), constants, norm_plif._norm_constants(
            torch.float32, norm.eps, width), norm.weight.detach().numpy(),
        norm.bias.detach().numpy(), params.decay_input, not params.soft_reset,
        charge.numpy(), spikes.numpy(), constants[3], constants[4],
        torch.empty(width).numpy(), mean.numpy(), rstd.numpy())
    torch.testing.assert_close(mean[mask], x.mean(-1)[mask], rtol=0, atol=2e-6)
    want_rstd = torch.rsqrt(x.var(-1, unbiased=False) + norm.eps)
    torch.testing.assert_close(rstd[mask], want_rstd[mask], rtol=2e-6, atol=0)
    current = (x - mean[..., None]) * rstd[..., None] * norm.weight.detach() + norm.bias.detach()
    want_spikes, want_v = plif_compiled.plif_multi_step_compiled(current, v0, neuron.w.detach(),
                                                                 params, mask=mask)
    assert torch.equal(spikes, want_spikes) and torch.equal(v, want_v)


def test_bfloat16_spikes_carry_the_same_values_and_gradient():
    norm, neuron = _layers(32, torch.float32, PLIFParameters())
    neuron.autocast_spikes = True
    x, mask, v0, weight = _inputs((12, 4, 32), torch.float32)
    reference = _run(norm, neuron, x, mask, v0, weight, fused=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        spikes, _, grads = _run(norm, neuron, x, mask, v0, weight.bfloat16().float(),
                                fused=True)
    assert spikes.dtype == torch.bfloat16
    assert torch.equal(spikes.float(), reference[0])
    torch.testing.assert_close(grads[0], _run(norm, neuron, x, mask, v0,
                                              weight.bfloat16().float(), fused=True)[2][0])


def test_the_two_layers_are_called_wherever_the_kernel_does_not_apply():
    x, mask, v0, weight = _inputs((10, 3, 16), torch.float32)
    norm, neuron = _layers(16, torch.float32, PLIFParameters())
    with torch.no_grad():  # evaluation
        spikes, _ = layer_norm_plif(norm, neuron, x, mask)
        assert torch.equal(spikes, neuron(norm(x), mask=mask))
    for other_norm, other_neuron in (
            (MaskedBatchNorm(16), neuron),
            (norm, _layers(16, torch.float32, PLIFParameters(), backend="fused")[1])):
        _run(other_norm, other_neuron, x, mask, v0, weight, fused=False)
        calls = []
        apply = CompiledNormPLIF.apply
        CompiledNormPLIF.apply = lambda *a, _calls=calls: _calls.append(1)  # type: ignore[method-assign]
        try:
            layer_norm_plif(other_norm, other_neuron, x.clone().requires_grad_(), mask)
        finally:
            CompiledNormPLIF.apply = apply  # type: ignore[method-assign]
        assert calls == []
    seen = []
    handle = norm.register_forward_hook(lambda *args: seen.append(1))  # a report watching
    try:
        layer_norm_plif(norm, neuron, x, mask)
    finally:
        handle.remove()
    assert seen == [1]


def test_a_compiled_model_trains_through_the_kernel_like_the_fused_model(monkeypatch):
    assert norm_plif.norm_plif_available()
    calls = []
    apply = CompiledNormPLIF.apply
    monkeypatch.setattr(CompiledNormPLIF, "apply",
                        lambda *a: (calls.append(1), apply(*a))[1])
    torch.manual_seed(0)
    features = torch.randn(4, 30, 24)
    mask = torch.ones(4, 30, dtype=torch.bool)
    mask[2:, 22:] = False
    labels = torch.tensor([0, 1, 2, 3])
    grads = []
    for backend in ("compiled", "fused"):
        model = create_model("pts-snn", 24, 4, plif_backend=backend, seed=3)
        torch.manual_seed(1)
        loss = nn.functional.cross_entropy(model(features, mask), labels)
        loss.backward()
        grads.append([loss.detach()] + [p.grad.clone() for p in model.parameters()
                                        if p.grad is not None])
        if backend == "compiled":
            # Block MLPs (one each) and the calibration's keys and values.
            assert len(calls) == model.config.num_blocks + 2
    for compiled_value, fused_value in zip(*grads, strict=True):
        torch.testing.assert_close(compiled_value, fused_value, rtol=1e-4, atol=1e-5)
