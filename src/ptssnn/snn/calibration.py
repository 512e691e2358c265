"""Context-aware membrane potential calibration: soft prompts → per-channel bias voltages.

M learnable soft prompts query the utterance through :class:`SpikingSparseLinearAttention`;
the updated prompts ``P' = P + SSLA(P, context spikes)`` are projected (one shared linear map
per prompt, then a learned mix of the M prompts per target layer) to bias voltages
``[B, n_targets, D]``, added to the input current of the PLIF neurons of the encoder blocks.
A bias shifts a neuron's steady-state potential (with decay_input it settles at ``X + b``), so
it can pull an utterance whose features sit below threshold (silent neurons) or far above it
(saturated neurons) back into the responsive range.

Where the context comes from (no circularity): the bias drives the encoder blocks, so the
context must not depend on them. It is read from the *projected, saturated input* (the
sequence that enters the first block), through a context PLIF layer of its own: one pass,
input → context → bias → blocks.

Initialisation: the projection's weight and bias start at zero, so a fresh model has exactly
zero bias (it starts as the uncalibrated network) while the projection still receives
gradient (``∂L/∂W = Σ ∂L/∂b · P'``) from the first step.

Online use: with ``causal=True`` the bias at frame t uses only frames ≤ t (running context),
``[T, B, n_targets, D]``; see :meth:`ptssnn.models.PTSSNN.stream_step`.
"""

from __future__ import annotations

import torch
from torch import nn

from ptssnn.snn.attention import SpikingSparseLinearAttention
from ptssnn.snn.neurons import feeds_products, make_neuron
from ptssnn.snn.spike_linear import compiled_neuron

__all__ = ["MembraneCalibration"]


class MembraneCalibration(nn.Module):
    """Soft prompts + SSLA + projection to bias voltages.

    Args:
        dim: channel width D.
        num_prompts: number of soft prompts M (default 4).
        num_targets: number of neuron layers that receive a bias (one ``[B, D]`` each).
        heads: SSLA heads.
        neuron: ``"plif"`` or ``"gelu"``.
        neuron_options: :func:`~ptssnn.snn.neurons.make_neuron` keywords (``params``,
            ``backend``).
        norm: normalisation of the key and value currents (``"layer"`` or ``"batch"``).
    """

    def __init__(
        self,
        dim: int,
        num_prompts: int = 4,
        num_targets: int = 1,
        heads: int = 8,
        neuron: str = "plif",
        neuron_options: dict | None = None,
        norm: str = "layer",
    ) -> None:
        super().__init__()
        options = neuron_options or {}
        self.prompts = nn.Parameter(torch.randn(num_prompts, dim) * 0.02)
        self.context_neuron = feeds_products(make_neuron(neuron, **options))
        self.attention = SpikingSparseLinearAttention(dim, heads, neuron, options, norm)
        self.projection = nn.Linear(dim, dim)
        self.projection.per_utterance = True  # type: ignore[attr-defined]
        self.projection.fed_by_spikes = False  # type: ignore[attr-defined]
        nn.init.zeros_(self.projection.weight)
        nn.init.zeros_(self.projection.bias)
        self.mixing = nn.Parameter(torch.full((num_targets, num_prompts), 1.0 / num_prompts))

    def forward(
        self,
        u: torch.Tensor,
        mask: torch.Tensor | None = None,
        causal: bool = False,
        state: dict | None = None,
    ) -> tuple[torch.Tensor, dict]:
        """Bias voltages from the context of ``u``.

        Args:
            u: projected, saturated input ``[T, B, D]`` (real-valued currents).
            mask: ``[T, B]`` bool, True = real frame.
            causal: per-frame running context instead of the whole sequence's.
            state: stream state from the previous chunk (``None`` = start of stream).

        Returns:
            ``(bias, state)``: ``bias`` is ``[B, n_targets, D]`` (context of all frames seen so
            far), or ``[T, B, n_targets, D]`` when ``causal``.
        """
        state = state or {}
        spikes, neuron_state = self.context_neuron(u, mask=mask, v=state.get("neuron"),
                                                   return_state=True)
        context, attention_state = self.attention(
            spikes, self.prompts, mask, causal, state.get("attention"),
            sparse=compiled_neuron(self.context_neuron))
        prompts = self.prompts + context  # [B, M, D] or [T, B, M, D]
        bias = torch.einsum("lm,...md->...ld", self.mixing, self.projection(prompts))
        return bias, {"neuron": neuron_state, "attention": attention_state}
