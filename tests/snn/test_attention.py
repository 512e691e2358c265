"""SSLA and MembraneCalibration: the Q(KᵀV) algebra, masking, causal form, zero-bias start."""

from __future__ import annotations

import pytest
import torch

from ptssnn.snn.attention import SpikingSparseLinearAttention
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
