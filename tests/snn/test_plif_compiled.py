"""The ``compiled`` PLIF backend: what the shared equivalence tests in test_plif.py do not
reach (vector remainders, several neuron dims, gradient shapes autograd produces, float64),
and the dispatch: default backend, fallback to ``fused`` with one notice."""

from __future__ import annotations

import itertools
import warnings

import pytest
import torch

from ptssnn.snn import plif_compiled
from ptssnn.snn.plif import (
    PLIF,
    PLIFParameters,
    plif_multi_step,
    plif_multi_step_compiled,
    plif_multi_step_loop,
)

needs_numba = pytest.mark.skipif(
    not plif_compiled.available(),
    reason=f"compiled PLIF kernels unavailable: {plif_compiled.unavailable_reason()}")


pytestmark = pytest.mark.usefixtures("one_thread")


def _inputs(shape, seed=0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    x = (torch.randn(shape, generator=g, dtype=torch.float64) * 1.5 + 0.6).to(dtype)
    v0 = (torch.randn(shape[1:], generator=g, dtype=torch.float64) * 0.3).to(dtype)
    mask = torch.rand(shape[:2], generator=g) > 0.2
    mask[:, 0] = True
    return x.requires_grad_(), v0.requires_grad_(), mask


def _compare(shape, params, loss, dtype=torch.float32, masked=True, tol=1e-5):
    x, v0, mask = _inputs(shape, dtype=dtype)
    w = torch.tensor(0.3, dtype=dtype, requires_grad=True)
    out = []
    for fn in (plif_multi_step_loop, plif_multi_step_compiled):
        s, v = fn(x, v0, w, params, mask=mask if masked else None)
        out.append((s, v, torch.autograd.grad(loss(s, v), [x, v0, w])))
    (s1, v1, g1), (s2, v2, g2) = out
    assert 0.05 < s1.mean() < 0.6
    assert torch.equal(s1, s2) and torch.equal(v1, v2)
    assert s2.grad_fn is not None and "Compiled" in type(s2.grad_fn).__name__
    for name, a, b in zip(("x", "v0", "w"), g1, g2, strict=True):
        torch.testing.assert_close(b, a, rtol=tol, atol=tol, msg=f"gradient w.r.t. {name}")


def _weighted(s, v):
    g = torch.Generator().manual_seed(5)
    return (s * torch.randn(s.shape, generator=g, dtype=s.dtype)).sum() + (v * 0.3).sum()


@needs_numba
@pytest.mark.parametrize(("decay_input", "v_reset", "surrogate"),
                         list(itertools.product([True, False], [0.0, None, -0.3],
                                                ["sigmoid", "atan"])))
def test_several_neuron_dims_and_vector_remainders(decay_input, v_reset, surrogate):
    # K = 3·37 = 111 neurons per sample: full SIMD vectors plus a remainder, B = 5 samples.
    params = PLIFParameters(decay_input=decay_input, v_reset=v_reset, surrogate=surrogate)
    _compare((29, 5, 3, 37), params, _weighted)


@needs_numba
@pytest.mark.parametrize("loss", [
    pytest.param(lambda s, v: s.sum() * 0.5 + v.sum(), id="sum: broadcast scalar dL/dS"),
    pytest.param(lambda s, v: (v ** 2).sum(), id="state only: no dL/dS"),
    pytest.param(lambda s, v: (s[::2] * 2.0).sum(), id="strided dL/dS"),
])
@pytest.mark.parametrize("detach_reset", [False, True])
def test_gradient_shapes_autograd_produces(loss, detach_reset):
    _compare((31, 4, 24), PLIFParameters(detach_reset=detach_reset), loss)


@needs_numba
@pytest.mark.parametrize("v_reset", [0.0, None])
def test_float64(v_reset):
    # σ' is evaluated in float32 (documented), so float64 gradients agree to ~1e-7.
    _compare((23, 3, 19), PLIFParameters(v_reset=v_reset), _weighted, dtype=torch.float64,
             tol=1e-6)


@needs_numba
def test_no_grad_forward_and_unmasked():
    x, v0, _ = _inputs((17, 2, 9))
    w = torch.tensor(-0.4)
    with torch.no_grad():
        s1, v1 = plif_multi_step_loop(x, v0, w)
        s2, v2 = plif_multi_step_compiled(x, v0, w)
    assert s2.grad_fn is None and torch.equal(s1, s2) and torch.equal(v1, v2)
    _compare((17, 2, 9), PLIFParameters(), _weighted, masked=False)


@needs_numba
def test_default_backend_is_compiled():
    neuron = PLIF()
    assert neuron.backend == "compiled"
    x = torch.rand(6, 2, 4, requires_grad=True) * 3
    assert "Compiled" in type(neuron(x).grad_fn).__name__
    # Inputs the kernels do not take go to the fused backend, silently (the PLIF module
    # itself lifts a bfloat16 current to its float32 parameters first; the function does not).
    half = x.detach().bfloat16().requires_grad_()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        spikes, _ = plif_multi_step(half, torch.zeros(2, 4, dtype=torch.bfloat16), neuron.w,
                                    backend="compiled")
    assert spikes.dtype == torch.bfloat16 and "Fused" in type(spikes.grad_fn).__name__
    assert "Compiled" in type(neuron(half).grad_fn).__name__


@needs_numba
@pytest.mark.parametrize("context", [torch.no_grad, torch.inference_mode])
def test_availability_probe_works_under_inference(context):
    # The first PLIF call of a process may be inference; the probe must still build and run.
    plif_compiled.unavailable_reason.cache_clear()
    try:
        with context():
            assert plif_compiled.usable(torch.zeros(2, 1, 3))
            x = torch.rand(5, 2, 3) * 3
            assert torch.equal(PLIF()(x), plif_multi_step_loop(x, torch.zeros(2, 3),
                                                                torch.tensor(0.0))[0])
    finally:
        plif_compiled.unavailable_reason.cache_clear()


def test_falls_back_to_fused_with_one_notice(monkeypatch):
    def no_numba():
        raise ImportError("No module named 'numba'")

    plif_compiled.unavailable_reason.cache_clear()
    plif_compiled._notice.cache_clear()
    monkeypatch.setattr(plif_compiled, "_kernels", no_numba)
    try:
        assert not plif_compiled.available()
        assert "numba is not installed" in plif_compiled.unavailable_reason()
        x = torch.rand(5, 2, 3, requires_grad=True) * 3
        with pytest.warns(RuntimeWarning, match="'compiled' unavailable, using 'fused'"):
            s1, _ = plif_multi_step(x, torch.zeros(2, 3), torch.tensor(0.0), backend="compiled")
        with warnings.catch_warnings():  # once per process
            warnings.simplefilter("error")
            plif_multi_step(x, torch.zeros(2, 3), torch.tensor(0.0), backend="compiled")
        assert "Fused" in type(s1.grad_fn).__name__
        s2, _ = plif_multi_step_loop(x, torch.zeros(2, 3), torch.tensor(0.0))
        assert torch.equal(s1, s2)
    finally:
        plif_compiled.unavailable_reason.cache_clear()
        plif_compiled._notice.cache_clear()


@needs_numba
@pytest.mark.parametrize("soft_reset", [False, True])
def test_bfloat16_spikes_equal_float32_spikes_and_gradients(soft_reset):
    # spike_dtype=bfloat16 (PLIF.autocast_spikes under a bfloat16 training step): the same
    # 0/1 spikes and final membrane, and a bfloat16 spike gradient gives the same input,
    # state and w gradients as the same gradient handed over in float32.
    params = PLIFParameters(v_reset=None) if soft_reset else PLIFParameters()
    g = torch.Generator().manual_seed(4)
    x = torch.randn(30, 3, 40, generator=g).requires_grad_()
    v0 = torch.zeros(3, 40)
    w = torch.tensor(0.3, requires_grad=True)
    mask = torch.ones(30, 3, dtype=torch.bool)
    mask[20:, 1] = False
    grad = torch.randn(30, 3, 40, generator=g).bfloat16()
    results = {}
    for spike_dtype in (None, torch.bfloat16):
        spikes, v = plif_multi_step_compiled(x, v0, w, params, mask=mask,
                                             spike_dtype=spike_dtype)
        assert spikes.dtype == (spike_dtype or torch.float32)
        upstream = grad if spike_dtype is not None else grad.float()
        grads = torch.autograd.grad((spikes, v), (x, w), (upstream, torch.ones_like(v)))
        results[spike_dtype] = (spikes.float(), v, *grads)
    for a, b in zip(results[None], results[torch.bfloat16], strict=True):
        assert torch.equal(a, b)


def test_kernels_run_is_the_one_probe_of_every_kernel_family(monkeypatch):
    calls = []

    def trial() -> None:  # a backward pass, as the probes run, even under inference mode
        calls.append(1)
        x = torch.ones(3, requires_grad=True)
        (x * 2).sum().backward()

    with torch.inference_mode():
        assert plif_compiled.kernels_run(trial) and calls == [1]

    def broken() -> None:
        raise RuntimeError("LLVM could not lower the kernel")

    assert not plif_compiled.kernels_run(broken)
    monkeypatch.setattr(plif_compiled, "available", lambda: False)
    assert not plif_compiled.kernels_run(trial) and calls == [1]  # not even tried
