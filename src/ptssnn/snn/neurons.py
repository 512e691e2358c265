"""Neuron layers behind one interface, so that a model can swap PLIF for GELU (the ANN twin).

Both take ``x [T, B, *N]`` plus an optional bias voltage and padding mask, and return the
output sequence (and, on request, the state to carry to the next chunk of a stream).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from ptssnn.errors import ModelConfigError
from ptssnn.snn.plif import PLIF
from ptssnn.snn.plif_parameters import DEFAULT_BACKEND, PLIFParameters

__all__ = ["NEURONS", "GELUNeuron", "feeds_products", "make_neuron"]

NEURONS: tuple[str, ...] = ("plif", "gelu")


class GELUNeuron(nn.Module):
    """Stateless GELU with the :class:`PLIF` call signature (the non-spiking baseline).

    Padded steps output 0, like a PLIF that does not fire on them.
    """

    record = False

    def forward(
        self,
        x: torch.Tensor,
        bias: torch.Tensor | None = None,
        mask: torch.Tensor | None = None,
        v: torch.Tensor | None = None,
        return_state: bool = False,
    ) -> torch.Tensor | tuple[torch.Tensor, None]:
        """``x [T, B, *N]`` (+ bias ``[B, *N]`` or ``[T, B, *N]``) → ``GELU(x + bias)·mask``."""
        if bias is not None:
            x = x + (bias.unsqueeze(0) if bias.dim() == x.dim() - 1 else bias)
        out = F.gelu(x)
        if mask is not None:
            out = out * mask.to(out.dtype).reshape(*mask.shape, *([1] * (x.dim() - 2)))
        return (out, None) if return_state else out


def make_neuron(kind: str, params: PLIFParameters | None = None,
                backend: str = DEFAULT_BACKEND) -> nn.Module:
    """Build a neuron layer: ``"plif"`` (:class:`PLIF` with ``params`` and ``backend``) or
    ``"gelu"`` (which has no options).

    Raises:
        ModelConfigError: unknown kind or backend.
    """
    if kind == "plif":
        return PLIF(params or PLIFParameters(), backend=backend)
    if kind == "gelu":
        return GELUNeuron()
    raise ModelConfigError(f"unknown neuron {kind!r}; choose one of {', '.join(NEURONS)}")


def feeds_products(neuron: nn.Module) -> nn.Module:
    """Mark a neuron layer whose spikes only feed matrix products (Linear layers, the
    attention's einsums), so that a bfloat16 training step may emit them in bfloat16
    (:attr:`PLIF.autocast_spikes`); GELU layers are returned unchanged."""
    if isinstance(neuron, PLIF):
        neuron.autocast_spikes = True
    return neuron
