"""The ``script`` PLIF backend: a TorchScript loop over time, for export.

A traced Python loop is unrolled into a fixed number of steps; a scripted one is kept as a
loop, which the (TorchScript-based) ONNX exporter turns into one ``Loop`` node whose trip
count is the input's time length. The loop evaluates exactly the expressions of
:func:`ptssnn.snn.plif.plif_step`, in the same order, so spikes match the other backends bit
for bit. The spike is a plain comparison (no surrogate gradient): inference and export only.
"""

from __future__ import annotations

import functools
import warnings
from typing import Any

import torch

from ptssnn.errors import ModelConfigError
from ptssnn.snn.plif_parameters import DEFAULT_PARAMETERS, PLIFParameters

__all__ = ["plif_multi_step_script"]


def _plif_loop(
    x: torch.Tensor,
    v: torch.Tensor,
    q: torch.Tensor,
    mask: torch.Tensor,
    v_threshold: float,
    reset: float,
    soft_reset: bool,
    decay_input: bool,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``x [T, B, N]``, ``v [B, N]``, ``q`` (0-d), ``mask [T, B]`` float → (spikes, v_final).

    TorchScript compiles plain scalars only, hence the unpacked parameters.
    """
    spikes: list[torch.Tensor] = []
    for t in range(x.size(0)):
        xt = x[t]
        h = v + (xt - (v - reset)) * q if decay_input else v - (v - reset) * q + xt
        m = mask[t].unsqueeze(-1)
        h = torch.where(m > 0.5, h, v)
        s = (h - v_threshold >= 0).to(x.dtype) * m
        v = h - s * v_threshold if soft_reset else s * reset + (1.0 - s) * h
        spikes.append(s)
    return torch.stack(spikes), v


@functools.cache
def _scripted_loop() -> Any:
    """:func:`_plif_loop` compiled by TorchScript once, on first use (not at import)."""
    with warnings.catch_warnings():
        # TorchScript is deprecated in favour of torch.export, which cannot yet express a
        # loop over a dynamic time axis; the legacy ONNX exporter still turns it into Loop.
        warnings.simplefilter("ignore", DeprecationWarning)
        return torch.jit.script(_plif_loop)


def plif_multi_step_script(
    x: torch.Tensor,
    v: torch.Tensor,
    w: torch.Tensor,
    params: PLIFParameters = DEFAULT_PARAMETERS,
    *,
    mask: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Multi-step PLIF as one scripted loop: ``(spikes [T, B, *N], v_final [B, *N])``.

    Raises:
        ModelConfigError: called where a gradient is wanted (the loop has no surrogate).
    """
    if torch.is_grad_enabled() and (x.requires_grad or v.requires_grad or w.requires_grad):
        raise ModelConfigError(
            "the 'script' PLIF backend is for inference and export (no surrogate gradient); "
            "train with 'fused' or 'loop', or run it under torch.no_grad()")
    steps, batch = x.shape[0], x.shape[1]
    m = (torch.ones(x.shape[:2], dtype=x.dtype, device=x.device) if mask is None
         else mask.to(x.dtype))
    spikes, v_last = _scripted_loop()(
        x.reshape(steps, batch, -1),
        v.to(x.dtype).expand_as(x[0]).reshape(batch, -1),
        torch.sigmoid(w).to(x.dtype),
        m,
        params.v_threshold,
        params.reset_value,
        params.soft_reset,
        params.decay_input,
    )
    return spikes.reshape(x.shape), v_last.reshape(x.shape[1:])
