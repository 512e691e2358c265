"""Spiking Sparse Linear Attention (SSLA): prompt queries gather the context of a spike sequence.

Design choice: **Q(KᵀV)-style linear attention, evaluated query-first**, rather than the
Spike-driven Transformer's SDSA ``Q ⊙ SN(Σ_t K ⊙ V)``.

- SDSA mixes no channels: every query would read the same per-channel K–V co-firing vector,
  gated only by its own spikes, so M prompts could not ask M different questions.
  ``Q(KᵀV)`` gives each prompt its own read of the head-wise K–V co-firing matrix.
- No softmax: with binary Q, K, V the products are AND-and-count, i.e. additions only (the
  "sparse" in SSLA: work scales with the number of spikes).
- Cost linear in T. The queries are M learned prompts (M = 4), so the query-first order
  ``a[t] = Q·K[t]ᵀ`` (``[M, H]`` per frame) then ``Σ_t a[t]·V[t]`` costs ``O(T·M·D)``: less than
  forming ``KᵀV`` (``O(T·D·D/H)``) whenever ``M < D/H``; the result is the same.
- Causal form for streaming: the context is a running sum ``Σ_{τ≤t} a[τ]·V[τ]`` divided by
  the running count of real frames, a ``[B, M, D]`` state; the offline ("global") form is the
  same sum over the whole utterance. Normalising by the frame count (a mean, not a sum) keeps
  the scale independent of the utterance length.

Shapes: sequence ``x [T, B, D]`` (spikes), queries ``[M, D]`` (shared) , mask ``[T, B]``.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from ptssnn.errors import ModelConfigError
from ptssnn.snn.neurons import feeds_products, make_neuron
from ptssnn.snn.norm import make_norm
from ptssnn.snn.norm_plif import layer_norm_plif
from ptssnn.snn.spike_linear import spike_linear
from ptssnn.snn.surrogate import spike_function

__all__ = ["SpikingSparseLinearAttention", "context_sum", "head_queries"]


def head_queries(q: torch.Tensor, heads: int) -> torch.Tensor:
    """Queries ``[M, D]`` as a block-diagonal ``[D, M·H]`` matrix: column ``(m, h)`` reads head
    ``h`` of query ``m`` only, so one matrix product gives every query-head score."""
    m_count, dim = q.shape
    eye = torch.eye(heads, dtype=q.dtype, device=q.device)
    blocks = q.reshape(m_count, heads, dim // heads).permute(1, 2, 0)[..., None] * eye[
        :, None, None, :]
    return blocks.reshape(dim, m_count * heads)


def context_sum(k: torch.Tensor, v: torch.Tensor, q_blocks: torch.Tensor, heads: int,
                mask: torch.Tensor | None) -> torch.Tensor:
    """``Σ_t (Q[m,h]·K[t,h] / d) · V[t,h]`` over real frames: keys and values ``[T, B, D]``,
    queries from :func:`head_queries` → ``[B, M, D]``.

    One batched product per utterance computes every query-head against every value head
    (``[M·H, T] × [T, D]``) and keeps the matching heads: H times the products of a per-head
    product, but those are tiny, while a per-head layout needs transposed copies of K and V
    in its backward that cost more than the whole attention (two thirds of it on the CPU at
    T=250, B=32, D=256)."""
    steps, batch, dim = k.shape
    d = dim // heads
    kb = k.transpose(0, 1).contiguous()  # [B, T, D]: every utterance one plain matrix
    vb = v.transpose(0, 1).contiguous()
    scores = (kb.reshape(batch * steps, dim) @ q_blocks).reshape(batch, steps, -1) / d
    if mask is not None:
        scores = scores * mask.t().to(scores.dtype)[:, :, None]
    every_head = torch.bmm(scores.transpose(1, 2), vb)  # [B, M·H, D]
    m_count = q_blocks.shape[1] // heads
    matching = every_head.reshape(batch, m_count, heads, heads, d).diagonal(dim1=2, dim2=3)
    return matching.permute(0, 1, 3, 2).reshape(batch, m_count, dim)


class SpikingSparseLinearAttention(nn.Module):
    """Softmax-free spiking attention of M query tokens over a spike sequence.

    ``K = SN(LN(W_K x))``, ``V = SN(LN(W_V x))`` per frame (SN = the neuron layer, PLIF by
    default), ``Q = H(LN(W_Q queries))`` (a threshold unit at 0: the queries are static
    learned tokens, one step, no membrane to integrate), per head ``h`` of width ``d``:
    ``context[m, h] = mean_t (Q[m,h]·K[t,h] / d) · V[t,h]`` over real frames, then
    ``out = LN(W_O context)``.

    Args:
        dim: channel width D.
        heads: number of heads H (D must be divisible by H).
        neuron: ``"plif"`` (spikes) or ``"gelu"`` (the ANN twin; Q then uses GELU too).
        neuron_options: :func:`~ptssnn.snn.neurons.make_neuron` keywords (``params``,
            ``backend``).
        norm: normalisation of the key and value currents (``"layer"``, or ``"batch"``,
            which folds into the key/value ``Linear`` at export); the per-utterance query and
            output norms stay LayerNorms.

    Set ``record = True`` to accumulate the attention's operation counts in ``op_counts``
    (``{"qk": [dense, active], "av": [dense, active]}`` over real frames; ``active`` counts
    accumulations triggered by a K or V spike). ``binary`` says whether K and V are spikes.
    """

    def __init__(
        self,
        dim: int,
        heads: int = 8,
        neuron: str = "plif",
        neuron_options: dict | None = None,
        norm: str = "layer",
    ) -> None:
        super().__init__()
        if dim % heads:
            raise ModelConfigError(f"width {dim} is not divisible by attention_heads {heads}")
        options = neuron_options or {}
        self.dim, self.heads, self.neuron_kind = dim, heads, neuron
        self.query = nn.Linear(dim, dim)
        self.query_norm = nn.LayerNorm(dim)
        self.key = nn.Linear(dim, dim)
        self.key_norm = make_norm(norm, dim)
        self.key_neuron = feeds_products(make_neuron(neuron, **options))
        self.value = nn.Linear(dim, dim)
        self.value_norm = make_norm(norm, dim)
        self.value_neuron = feeds_products(make_neuron(neuron, **options))
        self.out = nn.Linear(dim, dim)
        self.out_norm = nn.LayerNorm(dim)
        # Per-utterance layers (not applied per frame), for the energy accounting.
        for layer in (self.query, self.out):
            layer.per_utterance = True  # type: ignore[attr-defined]
            layer.fed_by_spikes = False  # type: ignore[attr-defined]
        for layer in (self.key, self.value):
            layer.fed_by_spikes = neuron == "plif"  # type: ignore[attr-defined]
        self.record = False
        self.op_counts: dict[str, list[int]] = {}
        self.binary = neuron == "plif"

    def queries_to_spikes(self, queries: torch.Tensor) -> torch.Tensor:
        """``[M, D]`` query tokens → ``[M, D]`` spike (or GELU) queries."""
        q = self.query_norm(self.query(queries))
        if self.neuron_kind == "gelu":
            return F.gelu(q)
        return spike_function(q, "sigmoid", 4.0)

    def forward(
        self,
        x: torch.Tensor,
        queries: torch.Tensor,
        mask: torch.Tensor | None = None,
        causal: bool = False,
        state: dict[str, torch.Tensor | None] | None = None,
        sparse: bool = False,
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor | None]]:
        """Aggregate the sequence's context into the queries.

        Args:
            x: spike sequence ``[T, B, D]``.
            queries: query tokens ``[M, D]``.
            mask: ``[T, B]`` bool, True = real frame.
            causal: return the running context after every frame instead of the total.
            state: running sums from the previous chunk of a stream (``None`` = start).
            sparse: ``x`` comes from a compiled PLIF layer, so the key and value layers may
                train through the sparse spike kernels (:func:`~ptssnn.snn.spike_linear.
                spike_linear`).

        Returns:
            ``(out, state)``: ``out`` is ``[B, M, D]`` (context of all frames seen so far, this
            chunk included) or ``[T, B, M, D]`` when ``causal``; ``state`` holds the K/V
            membranes, the running sum ``[B, M, D]`` and the real-frame count ``[B]``.
        """
        steps, batch, _ = x.shape
        state = state or {}
        shared: dict = {}  # the keys and values read the same spikes: positions found once
        k, k_state = layer_norm_plif(self.key_norm, self.key_neuron,
                                     spike_linear(self.key, x, sparse, shared), mask,
                                     state.get("key"))
        v, v_state = layer_norm_plif(self.value_norm, self.value_neuron,
                                     spike_linear(self.value, x, sparse, shared), mask,
                                     state.get("value"))
        q = self.queries_to_spikes(queries)
        m_count, d = q.shape[0], self.dim // self.heads
        q_blocks = head_queries(q, self.heads)
        # Sums and counts in at least float32 (bfloat16 spikes, see PLIF.autocast_spikes).
        acc = torch.float32 if x.dtype in (torch.bfloat16, torch.float16) else x.dtype
        frames = (mask.to(acc) if mask is not None
                  else torch.ones(steps, batch, dtype=acc, device=x.device))
        total = state.get("sum")
        count = state.get("count")
        if total is None:
            total = x.new_zeros(batch, m_count, self.dim, dtype=acc)
            count = x.new_zeros(batch, dtype=acc)
        if causal:
            scores = (k.reshape(steps * batch, self.dim) @ q_blocks).reshape(
                steps, batch, m_count, self.heads) / d
            if mask is not None:
                scores = scores * mask.to(scores.dtype)[:, :, None, None]
            vh = v.reshape(steps, batch, self.heads, d)
            per_frame = (scores[..., None] * vh[:, :, None]).reshape(steps, batch, m_count, -1)
            sums = total + per_frame.cumsum(0)
            counts = count + frames.cumsum(0)
            context = sums / counts.clamp(min=1.0)[:, :, None, None]
            new_total, new_count = sums[-1], counts[-1]
        else:
            new_total = total + context_sum(k, v, q_blocks, self.heads, mask)
            new_count = count + frames.sum(0)
            context = new_total / new_count.clamp(min=1.0)[:, None, None]
        if self.record:
            self._record(k, v, mask, m_count)
        out = self.out_norm(self.out(context))
        new_state = {"key": k_state, "value": v_state, "sum": new_total, "count": new_count}
        return out, new_state

    def _record(self, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None,
                m_count: int) -> None:
        real = k.shape[0] * k.shape[1] if mask is None else int(mask.sum())
        dense = real * m_count * self.dim
        for name, spikes in (("qk", k), ("av", v)):
            active = int(torch.count_nonzero(spikes.detach())) * m_count  # padded steps are 0
            counts = self.op_counts.setdefault(name, [0, 0])
            counts[0] += dense
            counts[1] += active
