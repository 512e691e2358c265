"""PLIF: the fused and compiled backends vs the plain step loop, vs SpikingJelly, the module."""

from __future__ import annotations

import itertools

import pytest
import torch

from ptssnn.errors import ModelConfigError
from ptssnn.snn import plif_compiled
from ptssnn.snn import plif_fused as plif_fused_module
from ptssnn.snn.plif import (
    BACKENDS,
    PLIF,
    PLIFParameters,
    init_w,
    plif_multi_step,
    plif_multi_step_compiled,
    plif_multi_step_fused,
    plif_multi_step_loop,
    plif_multi_step_script,
    plif_step,
    use_backend,
)

pytestmark = pytest.mark.usefixtures("one_thread")


T, B, D = 37, 3, 16

needs_numba = pytest.mark.skipif(
    not plif_compiled.available(),
    reason=f"compiled PLIF kernels unavailable: {plif_compiled.unavailable_reason()}")

# The hand-written-backward backends, each checked against the loop by the same tests.
MULTI_STEP = [
    pytest.param(plif_multi_step_fused, id="fused"),
    pytest.param(plif_multi_step_compiled, id="compiled", marks=needs_numba),
]


def _inputs(seed: int, masked: bool, bias_per_step: bool = False):
    g = torch.Generator().manual_seed(seed)
    x = (torch.randn(T, B, D, generator=g) * 1.5 + 0.6).requires_grad_()
    shape = (T, B, D) if bias_per_step else (B, D)
    bias = (torch.randn(*shape, generator=g) * 0.3).requires_grad_()
    v0 = torch.randn(B, D, generator=g) * 0.2
    mask = None
    if masked:
        mask = torch.rand(T, B, generator=g) > 0.25
        mask[:, 0] = True
        mask[25:, 1] = False  # trailing padding too
    return x, bias, v0, mask


def _run(fn, x, bias, v0, w, mask, options, seed=1):
    current = x + (bias if bias.dim() == 3 else bias.unsqueeze(0))
    spikes, v = fn(current, v0, w, PLIFParameters(**options), mask=mask)
    g = torch.Generator().manual_seed(seed)
    gs, gv = torch.randn(spikes.shape, generator=g), torch.randn(v.shape, generator=g)
    grads = torch.autograd.grad((spikes * gs).sum() + (v * gv).sum(), [x, bias, w])
    return spikes.detach(), v.detach(), grads


CASES = list(itertools.product(
    [True, False],          # decay_input
    [0.0, None, -0.3],      # v_reset (None = soft reset)
    [False, True],          # detach_reset
    [False, True],          # masked
))


@pytest.mark.parametrize(("decay_input", "v_reset", "detach_reset", "masked"), CASES)
@pytest.mark.parametrize(("multi_step", "chunk_elements"), [
    pytest.param(plif_multi_step_fused, 1 << 16, id="fused"),
    # Small chunks exercise the fused backward's chunk boundaries.
    pytest.param(plif_multi_step_fused, 3 * B * D, id="fused-small-chunks"),
    pytest.param(plif_multi_step_compiled, None, id="compiled", marks=needs_numba),
])
def test_backend_equals_loop(decay_input, v_reset, detach_reset, masked, multi_step,
                             chunk_elements, monkeypatch):
    if chunk_elements is not None:
        monkeypatch.setattr(plif_fused_module, "_CHUNK_ELEMENTS", chunk_elements)
    x, bias, v0, mask = _inputs(0, masked, bias_per_step=masked)
    w = torch.tensor(0.4, requires_grad=True)
    options = dict(decay_input=decay_input, v_reset=v_reset, detach_reset=detach_reset)
    s_loop, v_loop, g_loop = _run(plif_multi_step_loop, x, bias, v0, w, mask, options)
    s_fused, v_fused, g_fused = _run(multi_step, x, bias, v0, w, mask, options)
    assert 0.05 < s_loop.mean() < 0.6  # a regime where spikes and resets both happen
    assert torch.equal(s_loop, s_fused)
    torch.testing.assert_close(v_fused, v_loop, rtol=0, atol=1e-5)
    for name, a, b in zip(("x", "bias", "w"), g_fused, g_loop, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5, msg=f"gradient w.r.t. {name}")


@pytest.mark.parametrize("multi_step", MULTI_STEP)
@pytest.mark.parametrize("surrogate", ["sigmoid", "atan"])
def test_backend_equals_loop_surrogates_and_initial_state_gradient(surrogate, multi_step):
    x, _, v0, mask = _inputs(3, masked=True)
    v0 = v0.clone().requires_grad_()
    w = torch.tensor(-0.2, requires_grad=True)
    results = []
    for fn in (plif_multi_step_loop, multi_step):
        s, v = fn(x, v0, w, PLIFParameters(surrogate=surrogate, alpha=2.5), mask=mask)
        grads = torch.autograd.grad(s.sum() * 0.7 + (v ** 2).sum(), [x, v0, w])
        results.append((s, v, grads))
    assert torch.equal(results[0][0], results[1][0])
    for a, b in zip(results[0][2], results[1][2], strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("multi_step", MULTI_STEP)
def test_initial_state_above_threshold_under_a_mask(multi_step):
    # A masked first step with V0 >= V_th must not fire (the fused fast path cannot prove
    # that, so its general path runs); V[0] = V0 then feeds step 1 and ∂L/∂w.
    x, _, _, mask = _inputs(4, masked=True)
    mask[0] = False
    v0 = torch.full((B, D), 1.5)
    w = torch.tensor(0.0, requires_grad=True)
    s1, v1 = plif_multi_step_loop(x, v0, w, mask=mask)
    s2, v2 = multi_step(x, v0, w, mask=mask)
    assert s1[0].sum() == 0 and torch.equal(s1, s2)
    torch.testing.assert_close(v1, v2, rtol=0, atol=1e-5)
    g1, g2 = (torch.autograd.grad(s.sum() + v.sum(), [x, w]) for s, v in ((s1, v1), (s2, v2)))
    for a, b in zip(g1, g2, strict=True):
        torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-5)


def test_no_grad_path_and_float64():
    x, _, v0, mask = _inputs(5, masked=True)
    w = torch.tensor(0.1)
    with torch.no_grad():
        s1, v1 = plif_multi_step_loop(x.double(), v0.double(), w.double(), mask=mask)
        s2, v2 = plif_multi_step(x.double(), v0.double(), w.double(), mask=mask)
    assert s2.dtype == torch.float64 and torch.equal(s1, s2) and torch.equal(v1, v2)


@pytest.mark.parametrize("multi_step", MULTI_STEP)
def test_masked_steps_keep_state_and_do_not_fire(multi_step):
    x, _, v0, _ = _inputs(6, masked=False)
    w = torch.tensor(0.0)
    mask = torch.ones(T, B, dtype=torch.bool)
    mask[10:20, 0] = False
    s, _ = multi_step(x, v0, w, mask=mask)
    assert s[10:20, 0].sum() == 0
    # Removing the masked steps of sample 0 gives the same spikes on its real steps.
    keep = torch.cat([torch.arange(10), torch.arange(20, T)])
    s_short, v_short = plif_multi_step_loop(x[keep][:, :1], v0[:1], w)
    assert torch.equal(s[keep][:, 0], s_short[:, 0])
    _, v_full = plif_multi_step_loop(x, v0, w, mask=mask)
    torch.testing.assert_close(v_full[0], v_short[0])


@pytest.mark.parametrize("multi_step", MULTI_STEP)
def test_step_matches_multi_step_and_formula(multi_step):
    x, _, v0, _ = _inputs(7, masked=False)
    w = torch.tensor(0.0)  # τ = 2
    spikes, v = [], v0
    for t in range(T):
        s, v = plif_step(x[t].detach(), v, w)
        spikes.append(s)
    s_multi, v_multi = multi_step(x.detach(), v0, w)
    assert torch.equal(torch.stack(spikes), s_multi) and torch.equal(v, v_multi)
    # One step by hand: H = V + (X - V)/2, fire at >= 1, hard reset to 0.
    h = v0 + (x[0].detach() - v0) * 0.5
    s0, v1 = plif_step(x[0].detach(), v0, w)
    assert torch.equal(s0, (h >= 1).float())
    assert torch.equal(v1, torch.where(h >= 1, torch.zeros_like(h), h))


def test_plif_module_defaults_bias_mask_and_record():
    neuron = PLIF()
    assert neuron.w.item() == 0.0 and neuron.tau == pytest.approx(2.0)
    assert neuron.params == PLIFParameters() and neuron.params.alpha == 4.0
    assert (neuron.v_threshold, neuron.v_reset, neuron.params.decay_input) == (1.0, 0.0, True)
    assert PLIF(init_tau=3.0).params == PLIF(PLIFParameters(init_tau=3.0)).params
    assert init_w(3.0) == pytest.approx(-0.6931, abs=1e-4)
    x, bias, _, mask = _inputs(8, masked=True)
    x, bias = x.detach(), bias.detach()
    assert torch.equal(neuron(x, bias=bias), neuron(x + bias))
    assert torch.equal(neuron(x, bias=bias.expand(T, B, D)), neuron(x + bias))
    neuron.record = True
    out = neuron(x, mask=mask)
    assert torch.equal(neuron.spike_count, out.sum((0, 1)).double())
    assert neuron.step_count == int(mask.sum())
    assert out[~mask].sum() == 0
    spike, _ = neuron.step(x[0], mask=mask[0])
    assert torch.equal(spike, out[0])
    neuron.reset_statistics()
    assert neuron.spike_count is None and neuron.step_count == 0


@pytest.mark.parametrize("backend", ["compiled", "fused", "loop"])
def test_a_bfloat16_current_integrates_in_float32(backend):
    # Mixed-precision training (TrainConfig.precision = "bf16") hands the neurons bfloat16
    # currents: the membrane runs in the parameters' float32, on the same backend, so the
    # spikes are those of the float32 neuron on the rounded current, with gradients.
    neuron = PLIF(backend=backend)
    x = (torch.randn(T, B, D) * 2).to(torch.bfloat16).requires_grad_()
    spikes, v = neuron(x, return_state=True)
    assert spikes.dtype == v.dtype == torch.float32
    reference = PLIF(backend=backend)(x.detach().float())
    assert torch.equal(spikes, reference)
    spikes.sum().backward()
    assert x.grad is not None and x.grad.dtype == torch.bfloat16
    spike, _ = neuron.step(x[0].detach())
    assert spike.dtype == torch.float32 and torch.equal(spike, reference[0])


def test_plif_module_trains_tau():
    neuron = PLIF(init_tau=3.0)
    x = torch.rand(20, 2, 8) * 2
    neuron(x).sum().backward()
    assert neuron.w.grad is not None and neuron.w.grad.abs() > 0


def test_plif_rejects_bad_options():
    with pytest.raises(ModelConfigError, match="init_tau"):
        PLIF(init_tau=1.0)
    with pytest.raises(ModelConfigError, match="surrogate"):
        PLIF(surrogate="relu")
    with pytest.raises(ModelConfigError, match="backend"):
        PLIF(backend="cuda")
    with pytest.raises(ModelConfigError, match="v_reset"):
        PLIF(v_reset=2.0)
    with pytest.raises(ModelConfigError, match="v_reset"):
        PLIFParameters(v_reset=1.0)
    with pytest.raises(TypeError, match="either"):
        PLIF(PLIFParameters(), init_tau=3.0)
    with pytest.raises(ModelConfigError, match="backend"):
        plif_multi_step(torch.zeros(2, 1, 1), torch.zeros(1, 1), torch.tensor(0.0),
                        backend="cuda")


@pytest.mark.parametrize(("decay_input", "v_reset"),
                         list(itertools.product([True, False], [0.0, None, -0.3])))
def test_every_backend_gives_the_same_spikes(decay_input, v_reset):
    x, bias, v0, mask = _inputs(10, masked=True, bias_per_step=True)
    current = (x + bias).detach()
    w = torch.tensor(0.3)
    params = PLIFParameters(decay_input=decay_input, v_reset=v_reset)
    with torch.no_grad():
        results = {name: plif_multi_step(current, v0, w, params, mask=mask, backend=name)
                   for name in BACKENDS}
    s_ref, v_ref = results["loop"]
    assert 0.05 < s_ref.mean() < 0.6
    for name, (s, v) in results.items():
        assert torch.equal(s, s_ref), name
        torch.testing.assert_close(v, v_ref, rtol=0, atol=1e-5, msg=name)


def test_script_backend_refuses_gradients():
    x, _, v0, _ = _inputs(11, masked=False)
    with pytest.raises(ModelConfigError, match="script"):
        plif_multi_step_script(x, v0, torch.tensor(0.0))


def test_use_backend_switches_every_layer_and_restores_it_on_error():
    model = torch.nn.Sequential(PLIF(), PLIF(backend="loop"))
    with pytest.raises(RuntimeError), use_backend(model, "script"):
        assert [m.backend for m in model] == ["script", "script"]
        raise RuntimeError("boom")
    assert [m.backend for m in model] == ["compiled", "loop"]
    with pytest.raises(ModelConfigError, match="backend"), use_backend(model, "cuda"):
        pass


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_tracing_uses_plain_operators():
    neuron = PLIF().eval()
    x = torch.randn(6, 2, 4) * 2
    with torch.no_grad():
        traced = torch.jit.trace(neuron, (x,))
    assert torch.equal(traced(x), neuron(x))


# ----------------------------------------------------------------------------- SpikingJelly


@pytest.mark.parametrize(("decay_input", "v_reset", "detach_reset"),
                         list(itertools.product([True, False], [0.0, None], [False, True])))
def test_matches_spikingjelly_parametric_lif(decay_input, v_reset, detach_reset):
    sj = pytest.importorskip(
        "spikingjelly.activation_based.neuron",
        reason="spikingjelly 2.0.0 not installed (pip install --no-deps spikingjelly==2.0.0)")
    from spikingjelly.activation_based import functional, surrogate

    x, _, _, _ = _inputs(9, masked=False)
    ref = sj.ParametricLIFNode(init_tau=2.0, decay_input=decay_input, v_reset=v_reset,
                               detach_reset=detach_reset, surrogate_function=surrogate.Sigmoid(
                                   alpha=4.0), step_mode="m", store_v_seq=True)
    ours = PLIF(init_tau=2.0, decay_input=decay_input, v_reset=v_reset,
                detach_reset=detach_reset)
    with torch.no_grad():  # a learned τ, not just the initial one
        ref.w.fill_(0.37)
        ours.w.fill_(0.37)
    functional.reset_net(ref)
    x_ref = x.detach().clone().requires_grad_()
    s_ref = ref(x_ref)
    v_seq_ref = ref.v_seq
    s_ours, v_ours = ours(x, return_state=True)
    assert torch.equal(s_ours, s_ref)
    torch.testing.assert_close(v_ours, v_seq_ref[-1], rtol=0, atol=1e-6)
    # Membrane trajectory through the single-step API.
    v = ours.initial_state(x[0])
    for t in range(T):
        _, v = ours.step(x[t].detach(), v)
        torch.testing.assert_close(v, v_seq_ref[t].detach(), rtol=0, atol=1e-6)
    g = torch.Generator().manual_seed(2)
    gs = torch.randn(s_ref.shape, generator=g)
    (s_ref * gs).sum().backward()
    (s_ours * gs).sum().backward()
    torch.testing.assert_close(x.grad, x_ref.grad, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(ours.w.grad, ref.w.grad, rtol=1e-5, atol=1e-5)
