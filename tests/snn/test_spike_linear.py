"""Sparse spike-fed Linear (training kernels of the compiled backend) vs ``nn.Linear``."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn import functional as F

from ptssnn.models import create_model
from ptssnn.snn import plif_compiled
from ptssnn.snn import spike_linear as spike_linear_module
from ptssnn.snn.spike_linear import spike_linear

needs_numba = pytest.mark.skipif(
    not plif_compiled.available(),
    reason=f"compiled kernels unavailable: {plif_compiled.unavailable_reason()}")


pytestmark = pytest.mark.usefixtures("one_thread")


def _grads(out, inputs, seed=3):
    g = torch.Generator().manual_seed(seed)
    return torch.autograd.grad((out * torch.randn(out.shape, generator=g)).sum(), inputs)


@needs_numba
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("values", ["spikes", "dense spikes", "sparse reals", "all zero rows",
                                    "negative zeros"])
@pytest.mark.parametrize(("width", "dtype"), [(45, torch.float32), (44, torch.float32),
                                              (44, torch.float64)])
def test_equals_dense_linear(bias, values, width, dtype):
    # Odd float32 widths index values one by one, even ones two per 64-bit word, float64 by
    # its own bits; binary spikes take the multiply-free loops, other values the others.
    g = torch.Generator().manual_seed(0)
    layer = nn.Linear(width, 29, bias=bias).to(dtype)
    s = (torch.rand(6, 5, width, generator=g) < 0.1).to(dtype)
    if values == "dense spikes":  # many spikes per row and column: the four-at-a-time loops
        s = (torch.rand(6, 5, width, generator=g) < 0.6).to(dtype)
    elif values == "sparse reals":
        s = s * torch.randn(s.shape, generator=g, dtype=dtype)
    elif values == "all zero rows":
        s[:, 2] = 0.0
    elif values == "negative zeros":
        s[:, :, ::3] = -0.0
    s.requires_grad_()
    params = [s, *layer.parameters()]
    out = spike_linear(layer, s, sparse=True)
    assert "SpikeLinear" in str(out.grad_fn.next_functions)  # the kernel ran (under a view)
    ref = F.linear(s, layer.weight, layer.bias)
    torch.testing.assert_close(out, ref, rtol=1e-6, atol=1e-6)
    names = ("s", "weight", "bias")[:len(params)]
    for name, a, b in zip(names, _grads(out, params), _grads(ref, params), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-6, msg=name)


@needs_numba
@pytest.mark.parametrize("width", [7, 8])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float64])
def test_spike_positions(width, dtype):
    from ptssnn.snn.spike_linear import _spike_positions

    kernels = plif_compiled._kernels()
    s = torch.zeros(4, width, dtype=dtype)
    s[0, [0, 3, width - 1]] = 1.0
    s[2, 1] = 1.0
    indptr, indices, binary = _spike_positions(kernels, s)
    assert indptr.tolist() == [0, 3, 3, 4, 4]
    assert indices.tolist() == [0, 3, width - 1, 1]
    assert binary
    s[2, 1] = 0.5
    assert not _spike_positions(kernels, s)[2]


@needs_numba
@pytest.mark.parametrize("values", ["spikes", "dense spikes", "reals"])
def test_bfloat16_spikes_into_a_float32_layer(values):
    # Spikes emitted in bfloat16 (under a bfloat16 autocast) feed a float32 layer: the output
    # is the float32 product, the input gradient comes back in bfloat16.
    g = torch.Generator().manual_seed(1)
    layer = nn.Linear(48, 20)
    density = 0.6 if values == "dense spikes" else 0.1
    s = (torch.rand(30, 48, generator=g) < density).float()
    if values == "reals":
        s = s * torch.randn(s.shape, generator=g)
    low = s.bfloat16().requires_grad_()
    out = spike_linear(layer, low, sparse=True)
    assert "SpikeLinear" in str(out.grad_fn.next_functions)
    assert out.dtype == torch.float32
    ref_in = low.detach().float().requires_grad_()
    ref = F.linear(ref_in, layer.weight, layer.bias)
    torch.testing.assert_close(out, ref, rtol=1e-6, atol=1e-6)
    grad = torch.randn(out.shape, generator=g)
    got = torch.autograd.grad(out, (low, layer.weight, layer.bias), grad)
    want = torch.autograd.grad(ref, (ref_in, layer.weight, layer.bias), grad)
    assert got[0].dtype == torch.bfloat16
    torch.testing.assert_close(got[0].float(), want[0].bfloat16().float(), rtol=0, atol=0)
    torch.testing.assert_close(got[1], want[1], rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(got[2], want[2], rtol=1e-6, atol=1e-6)


@needs_numba
def test_dense_outside_training_or_when_not_asked():
    layer = nn.Linear(8, 4)
    s = (torch.rand(3, 2, 8) < 0.3).float()
    with torch.no_grad():
        assert torch.equal(spike_linear(layer, s, sparse=True), layer(s))
    assert "SpikeLinear" not in str(spike_linear(layer, s, sparse=False).grad_fn.next_functions)
    assert torch.equal(spike_linear(layer, s, sparse=False), layer(s))
    # A hook (the energy report's) sees the plain module call, with the kernels or without.
    seen = []
    layer.register_forward_hook(lambda module, args, out: seen.append(out.shape))
    assert "SpikeLinear" not in str(spike_linear(layer, s, sparse=True).grad_fn.next_functions)
    assert seen == [(3, 2, 4)]


@needs_numba
def test_model_training_step_uses_sparse_kernels_and_matches_fused():
    # Compiled backend: PLIF kernels + sparse fc1/fc2 in training; evaluation is bit-identical
    # to the fused backend (dense layers, bit-exact PLIF), training gradients agree closely.
    g = torch.Generator().manual_seed(0)
    features = torch.randn(3, 40, 24, generator=g)
    mask = torch.ones(3, 40, dtype=torch.bool)
    mask[2, 30:] = False
    models = {name: create_model("pts-snn", 24, 4, plif_backend=name, width=32,
                                 block_hidden=48, attention_heads=4, dropout=0.0)
              for name in ("compiled", "fused")}
    with torch.no_grad():
        logits = {name: model(features, mask) for name, model in models.items()}
    assert torch.equal(logits["compiled"], logits["fused"])
    grads = {}
    for name, model in models.items():
        loss = F.cross_entropy(model(features, mask), torch.tensor([0, 1, 2]))
        grads[name] = dict(zip([n for n, _ in model.named_parameters()],
                               torch.autograd.grad(loss, list(model.parameters())), strict=True))
    assert grads["compiled"].keys() == grads["fused"].keys()
    for key, value in grads["compiled"].items():
        torch.testing.assert_close(value, grads["fused"][key], rtol=1e-4, atol=1e-5, msg=key)


@needs_numba
@pytest.mark.filterwarnings("ignore::DeprecationWarning")
@pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning")
def test_tracing_with_gradients_records_plain_operators():
    model = create_model("pts-snn", 12, 3, width=16, block_hidden=24, attention_heads=4).eval()
    features = torch.randn(2, 9, 12)
    traced = torch.jit.trace(model, (features,), check_trace=False)  # autograd is on
    assert "PythonOp" not in str(traced.graph)  # no custom autograd function was traced
    with torch.no_grad():
        assert torch.equal(traced(features), model(features))


@needs_numba
def test_under_bfloat16_autocast_the_input_gradient_is_a_bfloat16_product():
    # TrainConfig.precision = "bf16": the forward stays the float32 sparse kernel; the dense
    # input gradient runs in bfloat16, as nn.Linear's backward does under autocast.
    g = torch.Generator().manual_seed(0)
    layer = nn.Linear(64, 48)
    s = (torch.rand(40, 64, generator=g) < 0.1).float().requires_grad_()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = spike_linear(layer, s, sparse=True)
        dense = layer(s)
    assert "SpikeLinear" in str(out.grad_fn.next_functions)
    assert out.dtype == torch.float32 and dense.dtype == torch.bfloat16
    torch.testing.assert_close(out, dense.float(), rtol=2e-2, atol=2e-2)
    # The forward is the bfloat16 product accumulated (and kept) in float32: the sum of the
    # bfloat16-rounded weights, not of the float32 ones.
    low = s.detach() @ layer.weight.detach().bfloat16().float().t() + layer.bias.detach()
    torch.testing.assert_close(out.detach(), low, rtol=1e-6, atol=1e-6)
    assert not torch.allclose(out.detach(), F.linear(s, layer.weight, layer.bias).detach(),
                              rtol=0, atol=1e-6)
    params = [s, *layer.parameters()]
    got, ref = _grads(out, params), _grads(dense.float(), params)
    assert got[0].dtype == torch.float32
    for a, b in zip(got, ref, strict=True):
        torch.testing.assert_close(a, b, rtol=3e-2, atol=3e-2)
    # Without autocast the same call is the float32 product...
    exact = _grads(spike_linear(layer, s, sparse=True), params)[0]
    torch.testing.assert_close(exact, _grads(F.linear(s, layer.weight, layer.bias), params)[0],
                               rtol=1e-6, atol=1e-6)
    # ...which the autocast input gradient is not: that one was rounded to bfloat16.
    assert not torch.equal(got[0], exact)
    assert torch.equal(got[0], got[0].bfloat16().float())


@needs_numba
@pytest.mark.parametrize("preset", ["pts-snn", "neuromorphic"])
def test_bfloat16_spikes_leave_a_bfloat16_training_step_unchanged(preset):
    # Under TrainConfig.precision="bf16" the neurons that feed matrix products emit bfloat16
    # spikes (PLIF.autocast_spikes): every parameter gradient is bit-identical to the same
    # step with float32 spikes, and nothing changes outside autocast.
    from ptssnn.snn import PLIF

    g = torch.Generator().manual_seed(0)
    features = torch.randn(4, 60, 24, generator=g)
    mask = torch.ones(4, 60, dtype=torch.bool)
    mask[3, 40:] = False
    labels = torch.tensor([0, 1, 2, 3])
    grads, emitted = {}, {}
    for on in (True, False):
        model = create_model(preset, 24, 4, width=32, block_hidden=48, attention_heads=4,
                             dropout=0.0, seed=3)
        neurons = [m for m in model.modules() if isinstance(m, PLIF)]
        for neuron in neurons:
            neuron.autocast_spikes = neuron.autocast_spikes and on
        dtypes: list[torch.dtype] = []

        def seen(module, args, out, _dtypes=dtypes):
            _dtypes.append((out[0] if isinstance(out, tuple) else out).dtype)

        hooks = [n.register_forward_hook(seen) for n in neurons]
        with torch.autocast("cpu", dtype=torch.bfloat16):
            logits = model(features, mask)
        for hook in hooks:
            hook.remove()
        F.cross_entropy(logits.float(), labels).backward()
        grads[on] = {n: p.grad for n, p in model.named_parameters() if p.grad is not None}
        emitted[on] = dtypes
    assert emitted[True].count(torch.bfloat16) >= 5  # blocks, attention keys/values, context
    assert emitted[True][-1] == torch.float32  # the output neuron's spikes are pooled in fp32
    assert set(emitted[False]) == {torch.float32}
    assert grads[True].keys() == grads[False].keys()
    for name, grad in grads[True].items():
        assert torch.equal(grad, grads[False][name]), name


@pytest.mark.parametrize("backend", ["compiled", "fused"])
@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_every_preset_trains_a_step_in_every_precision(backend, precision):
    # Every preset × backend × TrainConfig.precision runs a training step with finite
    # gradients for every parameter that takes part (the neuromorphic preset's batch norm
    # once crashed on bfloat16 currents).
    from ptssnn.models.config import list_presets
    from ptssnn.training.trainer import training_autocast

    if backend == "compiled" and not plif_compiled.available():
        pytest.skip(f"compiled kernels unavailable: {plif_compiled.unavailable_reason()}")
    g = torch.Generator().manual_seed(5)
    features = torch.randn(3, 2, 30, 24, generator=g)
    mask = torch.ones(3, 30, dtype=torch.bool)
    mask[2, 20:] = False
    for preset in list_presets():
        model = create_model(preset, 24, 4, input_layers=2, width=32, block_hidden=48,
                             attention_heads=4, plif_backend=backend)
        with training_autocast(torch.device("cpu"), precision):
            logits = model(features, mask)
        F.cross_entropy(logits.float(), torch.tensor([0, 1, 2])).backward()
        grads = [p.grad for p in model.parameters() if p.grad is not None]
        assert grads and all(bool(torch.isfinite(grad).all()) for grad in grads), preset
        assert all(p.dtype == torch.float32 for p in model.parameters()), preset


@needs_numba
def test_gradient_epilogue_rounds_like_pytorch_and_sums_columns():
    kernels = plif_compiled._kernels()
    g = torch.Generator().manual_seed(0)
    grad = torch.randn(37, 19, generator=g) * 3
    # Ties (rounded to even both ways), infinities, extremes and NaN.
    grad[0, :6] = torch.tensor([1.0 + 2 ** -8, 1.0 + 3 * 2 ** -8, -(1.0 + 2 ** -8),
                                float("inf"), -float("inf"), 3.4e38])
    grad[1, 0] = float("nan")
    low = torch.empty(grad.shape, dtype=torch.bfloat16)
    sums = torch.zeros(grad.shape[1], dtype=torch.float64)
    no_positions = np.zeros(1, dtype=np.int64), np.zeros(0, dtype=np.int32)
    no_rows = np.zeros((0, grad.shape[1]), dtype=np.float32)
    kernels.gradient_epilogue_kernel(grad.numpy(), True,
                                     low.view(torch.int16).numpy().view(np.uint16), sums.numpy(),
                                     *no_positions, True, no_rows, no_rows)
    finite = ~grad.isnan()
    assert torch.equal(low[finite].view(torch.int16), grad.to(torch.bfloat16)[finite].view(
        torch.int16))
    assert low[1, 0].isnan()
    clean = grad[2:].contiguous()
    sums.zero_()
    spikes = (torch.rand(clean.shape[0], 23, generator=g) < 0.2).float()
    spikes[3, 5] = 0.5  # not binary: values are read
    indptr, indices, binary = spike_linear_module._spike_positions(kernels, spikes)
    assert not binary
    grad_weight_t = torch.full((23, clean.shape[1]), float("nan"))
    kernels.gradient_epilogue_kernel(clean.numpy(), False,
                                     low[:0].view(torch.int16).numpy().view(np.uint16),
                                     sums.numpy(), indptr.numpy(), indices.numpy(), binary,
                                     spikes.numpy(), grad_weight_t.numpy())
    torch.testing.assert_close(sums.float(), clean.sum(0))
    torch.testing.assert_close(grad_weight_t, spikes.t() @ clean, rtol=1e-5, atol=1e-5)
