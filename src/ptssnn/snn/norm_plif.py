"""A LayerNorm feeding a PLIF layer, as one compiled pass each way (training on the CPU).

Three times in the head a LayerNorm's output is nothing but a PLIF layer's input current:
the block MLP's hidden layer (``PLIF(LN(W1·s))``) and the SSLA keys and values. As two
operators the normalised current is written to memory by the LayerNorm and read back by
the neurons, and in the backward the neurons write its gradient for the LayerNorm to read,
each time for a whole ``[T, B, K]`` tensor that has long left the cache.
:func:`~ptssnn.snn.plif_kernels.norm_forward_kernel` normalises each row ``(t, b)`` into a
row-sized scratch buffer and runs the neurons on it at once; the backward kernel takes
each row's current gradient through the LayerNorm's backward while the row is still in
cache. The normalised current and its gradient never reach memory.

Same values: the current is ``((x - mean)·rstd)·gamma + beta`` with the row's moments,
evaluated in that order without FMAs, and the neurons are the compiled PLIF's, so the
spikes and charge equal those of the compiled PLIF on that current bit for bit (tested);
the moments and every gradient equal ``nn.LayerNorm`` + PLIF up to float rounding.

Where it runs: under autograd, for a :class:`~ptssnn.snn.plif.PLIF` on the ``compiled``
backend after an ``nn.LayerNorm`` over the last dimension (with weight and bias), float32
or float64 CPU currents ``[T, B, K]``, nothing tracing the model and no hook on either
layer. Everything else (evaluation, inference, export, streaming, other backends or norms)
calls the two layers as before, so a trained head computes the same thing everywhere.
"""

from __future__ import annotations

import functools

import numpy as np
import torch
from torch import nn

from ptssnn.snn import plif_compiled
from ptssnn.snn.norm import apply_norm
from ptssnn.snn.plif import PLIF
from ptssnn.snn.plif_compiled import _as_3d, _mask_2d, _params, _spike_buffer, run_backward
from ptssnn.snn.plif_parameters import PLIFParameters

__all__ = ["CompiledNormPLIF", "layer_norm_plif", "norm_plif_available"]


def _norm_constants(dtype: torch.dtype, eps: float, width: int) -> np.ndarray:
    return torch.tensor([eps, width, 0.0, 1.0], dtype=torch.float64).to(dtype).numpy()


class CompiledNormPLIF(torch.autograd.Function):
    """``apply(x [T, B, K], v0 [B, K], w, gamma [K], beta [K], mask [T, B] or None, params,
    eps, spike_dtype_or_None) -> (spikes [T, B, K], v_final [B, K])``: PLIF neurons on
    ``layer_norm(x, (K,), gamma, beta, eps)``; gradients for ``x``, ``v0``, ``w``, ``gamma``
    and ``beta``."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, v0: torch.Tensor,  # type: ignore[override]
                w: torch.Tensor, gamma: torch.Tensor, beta: torch.Tensor,
                mask: torch.Tensor | None, params: PLIFParameters, eps: float,
                spike_dtype: torch.dtype | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        x3 = _as_3d(x.detach())
        steps, batch, width = x3.shape
        q = torch.sigmoid(w.detach()).to(x.dtype)
        m = _mask_2d(mask, x)
        v = v0.detach().to(x.dtype).reshape(batch, width).clone()
        constants = _params(q, params)
        spikes, out, one, zero = _spike_buffer(x3, spike_dtype, constants)
        H = torch.empty_like(x3)
        mean = x3.new_empty(steps, batch)
        rstd = torch.empty_like(mean)
        ctx.norm_dtype = gamma.dtype  # the affine parameters' gradients are returned in it
        gamma = gamma.detach().to(x.dtype).contiguous()
        beta = beta.detach().to(x.dtype).contiguous()
        plif_compiled._kernels().norm_forward_kernel(
            x3.numpy(), v.numpy(), m.numpy(), constants, _norm_constants(x.dtype, eps, width),
            gamma.numpy(), beta.numpy(), params.decay_input, not params.soft_reset, H.numpy(),
            out, one, zero, x3.new_empty(width).numpy(), mean.numpy(), rstd.numpy())
        ctx.save_for_backward(x3, v0, q, m, H, gamma, mean, rstd)
        ctx.params, ctx.eps, ctx.w_dtype = params, eps, w.dtype
        ctx.input_shape = x.shape
        return spikes.reshape(x.shape), v.reshape(v0.shape)

    @staticmethod
    def backward(ctx, grad_spikes: torch.Tensor | None,  # type: ignore[override]
                 grad_v: torch.Tensor | None):
        x3, v0, q, m, H, gamma, mean, rstd = ctx.saved_tensors
        want_x, want_v0, want_w, want_gamma, want_beta = ctx.needs_input_grad[:5]
        width = x3.shape[2]
        grad_gamma = torch.zeros(width, dtype=torch.float64)
        grad_beta = torch.zeros(width, dtype=torch.float64)
        norm = (x3.numpy(), gamma.numpy(), mean.numpy(), rstd.numpy(),
                _norm_constants(x3.dtype, ctx.eps, width), grad_gamma.numpy(),
                grad_beta.numpy())
        grad_x, grad_state, grad_w = run_backward(grad_spikes, grad_v, H, v0, q, m, ctx.params,
                                                  bool(want_w), ctx.w_dtype, norm)
        return (grad_x.reshape(ctx.input_shape) if want_x else None,
                grad_state.reshape(v0.shape) if want_v0 else None, grad_w,
                grad_gamma.to(ctx.norm_dtype) if want_gamma else None,
                grad_beta.to(ctx.norm_dtype) if want_beta else None, None, None, None, None)


@functools.cache
def norm_plif_available() -> bool:
    """Whether the fused kernels build and run here (checked once per process on a tiny
    input; numba compiles them, or loads them from its on-disk cache)."""
    def trial() -> None:
        x = torch.linspace(-2, 2, 6).reshape(2, 1, 3).requires_grad_()
        w = torch.zeros((), requires_grad=True)
        gamma = torch.ones(3, requires_grad=True)
        for spike_dtype in (None, torch.bfloat16):
            spikes, v = CompiledNormPLIF.apply(x, torch.zeros(1, 3), w, gamma, torch.zeros(3),
                                               None, PLIF().params, 1e-5, spike_dtype)
            ((spikes * 2).sum() + v.sum()).backward()

    return plif_compiled.kernels_run(trial)  # False: the two layers are called


def _hooked(module: nn.Module) -> bool:
    return bool(module._forward_hooks or module._forward_pre_hooks)


def layer_norm_plif(norm: nn.Module, neuron: nn.Module, current: torch.Tensor,
                    mask: torch.Tensor | None = None, v: torch.Tensor | None = None
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """``neuron(norm(current), mask=mask, v=v, return_state=True)``: ``(spikes [T, B, K],
    v_final [B, K])``, through :class:`CompiledNormPLIF` where it applies (see the module
    notes), else by calling the two layers."""
    fused = (isinstance(neuron, PLIF) and neuron.backend == "compiled"
             and isinstance(norm, nn.LayerNorm)
             and norm.normalized_shape == (current.shape[-1],)
             and norm.weight is not None and norm.bias is not None
             and torch.is_grad_enabled()
             and not (torch.jit.is_tracing() or torch.compiler.is_compiling())
             and current.dim() == 3 and current.shape[0] > 0
             and current.dtype == neuron.w.dtype == norm.weight.dtype
             and plif_compiled.supports(current)
             and not (_hooked(norm) or _hooked(neuron)))
    if not (fused and plif_compiled.usable(current) and norm_plif_available()):
        return neuron(apply_norm(norm, current, mask), mask=mask, v=v, return_state=True)
    v = (neuron.initial_state(current[0]) if v is None
         else v.to(current.dtype).expand_as(current[0]).contiguous())
    spikes, v_final = CompiledNormPLIF.apply(current, v, neuron.w, norm.weight, norm.bias,
                                             mask, neuron.params, norm.eps,
                                             neuron._spike_dtype())
    if neuron.record:
        neuron._record(spikes, mask)
    return spikes, v_final
