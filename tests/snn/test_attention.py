"""SSLA and MembraneCalibration: the Q(KᵀV) algebra, masking, causal form, zero-bias start."""

from __future__ import annotations

import pytest
import torch

from ptssnn.snn import plif_compiled
from ptssnn.snn.attention import SpikingSparseLinearAttention, context_sum, head_queries
from ptssnn.snn.calibration import MembraneCalibration

pytestmark = pytest.mark.usefixtures("one_thread")

D, H, M = 32, 4, 4


def _sequence(steps=15, batch=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = (torch.rand(steps, batch, D, generator=g) > 0.6).float()
    mask = torch.ones(steps, batch, dtype=torch.bool)
    mask[10:, 1] = False
    return x, mask


def test_equals_query_times_key_transpose_value():
    torch.manual_seed(0)
    attention = SpikingSparseLinearAttention(D, heads=H)
    queries = torch.randn(M, D)
    x, mask = _sequence()
    out, state = attention(x, queries, mask)
    # Reference: per head, context = Q (Σ_t Kᵀ V) / (d · n_real), on the same spikes.
    k = attention.key_neuron(attention.key_norm(attention.key(x)), mask=mask)
    v = attention.value_neuron(attention.value_norm(attention.value(x)), mask=mask)
    q = attention.queries_to_spikes(queries)
    assert set(k.unique().tolist()) <= {0.0, 1.0} and set(q.unique().tolist()) <= {0.0, 1.0}
    d = D // H
    n = mask.sum(0).float()
    context = torch.zeros(x.shape[1], M, D)
    for b in range(x.shape[1]):
        for h in range(H):
            sl = slice(h * d, (h + 1) * d)
            kv = k[:, b, sl].T @ v[:, b, sl]  # [d, d], co-firing counts
            context[b, :, sl] = q[:, sl] @ kv / (d * n[b])
    torch.testing.assert_close(out, attention.out_norm(attention.out(context)))
    assert state["count"].tolist() == n.tolist()


def _per_head_context(k, v, q, heads, mask):
    """The per-head einsum form of the context sum (the layout ``context_sum`` replaces)."""
    steps, batch, dim = k.shape
    d = dim // heads
    kh, vh = k.reshape(steps, batch, heads, d), v.reshape(steps, batch, heads, d)
    scores = torch.einsum("tbhd,mhd->tbmh", kh, q.reshape(-1, heads, d)) / d
    scores = scores * mask.to(scores.dtype)[:, :, None, None]
    return torch.einsum("tbmh,tbhd->bmhd", scores, vh).reshape(batch, -1, dim)


@pytest.mark.parametrize("heads", [1, 4, 8])
def test_context_sum_and_its_gradients_equal_the_per_head_form(heads):
    g = torch.Generator().manual_seed(heads)
    k = (torch.rand(20, 3, D, generator=g) > 0.7).float().requires_grad_()
    v = (torch.rand(20, 3, D, generator=g) > 0.7).float().requires_grad_()
    q = torch.randn(M, D, generator=g).requires_grad_()
    mask = torch.ones(20, 3, dtype=torch.bool)
    mask[13:, 0] = False
    weight = torch.randn(3, M, D, generator=g)
    results = []
    for form in (lambda: context_sum(k, v, head_queries(q, heads), heads, mask),
                 lambda: _per_head_context(k, v, q, heads, mask)):
        out = form()
        grads = torch.autograd.grad((out * weight).sum(), (k, v, q))
        results.append((out, *grads))
    for new, reference in zip(*results, strict=True):
        torch.testing.assert_close(new, reference)


@pytest.mark.skipif(not plif_compiled.available(), reason="compiled kernels unavailable")
def test_sparse_key_and_value_layers_train_like_dense_ones(monkeypatch):
    from ptssnn.snn import spike_linear

    calls, scans = [], []
    apply = spike_linear.SpikeLinear.apply
    monkeypatch.setattr(spike_linear.SpikeLinear, "apply",
                        lambda *args: calls.append(1) or apply(*args))
    positions = spike_linear._spike_positions
    monkeypatch.setattr(spike_linear, "_spike_positions",
                        lambda *args: scans.append(1) or positions(*args))
    torch.manual_seed(5)
    attention = SpikingSparseLinearAttention(D, heads=H, neuron_options={"backend": "compiled"})
    queries = torch.randn(M, D)
    x, mask = _sequence(steps=30, batch=4)
    runs = []
    for sparse in (True, False):
        attention.zero_grad()
        out, _ = attention(x, queries, mask, sparse=sparse)
        (out * torch.linspace(-1, 1, out.numel()).reshape(out.shape)).sum().backward()
        runs.append((out.detach(), attention.key.weight.grad.clone(),
                     attention.value.weight.grad.clone(), attention.value.bias.grad.clone()))
    assert len(calls) == 2 and runs[0][1].abs().sum() > 0  # key and value, sparse run only
    assert len(scans) == 1  # the same spikes: their positions are found once
    for sparse_result, dense_result in zip(*runs, strict=True):
        torch.testing.assert_close(sparse_result, dense_result, rtol=1e-5, atol=1e-5)


def test_padded_frames_do_not_matter():
    torch.manual_seed(1)
    attention = SpikingSparseLinearAttention(D, heads=H)
    queries = torch.randn(M, D)
    x, mask = _sequence()
    poisoned = x.clone()
    poisoned[~mask] = 1.0
    clean, dirty = attention(x, queries, mask)[0], attention(poisoned, queries, mask)[0]
    torch.testing.assert_close(clean, dirty)


def test_causal_form_and_chunked_state():
    torch.manual_seed(2)
    attention = SpikingSparseLinearAttention(D, heads=H)
    queries = torch.randn(M, D)
    x, mask = _sequence()
    full, _ = attention(x, queries, mask)
    causal, _ = attention(x, queries, mask, causal=True)
    assert causal.shape == (x.shape[0], x.shape[1], M, D)
    torch.testing.assert_close(causal[-1], full)
    # Prefix context equals the global context of the prefix.
    torch.testing.assert_close(causal[6], attention(x[:7], queries, mask[:7])[0])
    # Two chunks with carried state equal one pass.
    _, state = attention(x[:8], queries, mask[:8])
    second, _ = attention(x[8:], queries, mask[8:], state=state)
    torch.testing.assert_close(second, full)


def test_operation_counts_are_linear_in_time():
    attention = SpikingSparseLinearAttention(D, heads=H)
    attention.record = True
    x, _ = _sequence(steps=10, batch=2)
    attention(x, torch.randn(M, D))
    dense_10 = attention.op_counts["qk"][0]
    attention.op_counts = {}
    attention(torch.cat([x, x]), torch.randn(M, D))
    assert attention.op_counts["qk"][0] == 2 * dense_10 == 2 * 10 * 2 * M * D
    assert 0 <= attention.op_counts["av"][1] <= attention.op_counts["av"][0]


def test_calibration_starts_at_zero_bias_and_learns():
    torch.manual_seed(3)
    calibration = MembraneCalibration(D, num_prompts=M, num_targets=2, heads=H)
    u = torch.randn(12, 3, D) * 2
    mask = torch.ones(12, 3, dtype=torch.bool)
    bias, _ = calibration(u, mask)
    assert bias.shape == (3, 2, D) and bias.abs().max() == 0
    (bias * torch.randn_like(bias)).sum().backward()
    assert calibration.projection.weight.grad.abs().sum() > 0
    causal, _ = calibration(u, mask, causal=True)
    assert causal.shape == (12, 3, 2, D)


def test_calibration_bias_depends_on_the_utterance():
    torch.manual_seed(4)
    calibration = MembraneCalibration(D, num_prompts=M, num_targets=1, heads=H)
    torch.nn.init.normal_(calibration.projection.weight)
    u = torch.randn(12, 2, D) * 2
    u[:, 1] += 1.5  # a louder utterance
    bias, _ = calibration(u)
    assert not torch.allclose(bias[0], bias[1])
