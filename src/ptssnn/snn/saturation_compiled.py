"""The soft saturation ``tanh(ξ·LayerNorm(x))`` in one pass each way (training on the CPU).

PyTorch runs it as three operators (LayerNorm, a multiply, ``tanh``) and as many passes
over the ``[T, B, D_in]`` input in each direction; its CPU ``tanh`` alone (a 1-ulp vector
library routine) took 10 ms per [250, 32, 512] batch, a third of the step's non-product time
outside the spiking layers. :func:`~ptssnn.snn.plif_kernels.saturation_forward_kernel` and its
backward do it row by row in one pass, with the row's LayerNorm moments kept for the
backward and ``tanh`` as Eigen's rational approximation (float32, within a few ulp of
``torch.tanh``; the tests bound the difference). The results equal the PyTorch form up to
float rounding, not bit for bit.

The kernel runs where the sparse spike kernels do: under autograd, on the CPU, in float32,
for models whose neurons run the ``compiled`` backend, with nothing tracing the model; every
other call (evaluation, inference, export, the ANN twin) is the PyTorch form, so a trained
head computes the same thing everywhere it is deployed.
"""

from __future__ import annotations

import functools

import numpy as np
import torch
from torch import nn

from ptssnn.snn import plif_compiled

__all__ = ["CompiledSaturation", "compiled_saturation_available", "soft_saturation"]


class CompiledSaturation(torch.autograd.Function):
    """``apply(x [..., D], weight [D] or None, bias [D] or None, xi, eps)``: the kernel form
    of ``tanh(xi · layer_norm(x, weight, bias, eps))`` (``weight is None``: ``tanh(xi·x)``)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor | None,  # type: ignore[override]
                bias: torch.Tensor | None, xi: float, eps: float) -> torch.Tensor:
        kernels = plif_compiled._kernels()
        rows = x.detach().reshape(-1, x.shape[-1]).contiguous()
        norm = weight is not None
        y = torch.empty_like(rows)
        mean = rows.new_empty(rows.shape[0] if norm else 0)
        rstd = torch.empty_like(mean)
        w = weight.detach() if norm else rows.new_empty(0)
        b = bias.detach() if bias is not None else torch.zeros_like(w)
        kernels.saturation_forward_kernel(rows.numpy(), norm, w.numpy(), b.numpy(),
                                          np.float32(xi), np.float32(eps), y.numpy(),
                                          mean.numpy(), rstd.numpy())
        ctx.save_for_backward(rows, y, mean, rstd, w)
        ctx.norm, ctx.xi, ctx.has_bias = norm, xi, bias is not None
        return y.reshape(x.shape)

    @staticmethod
    def backward(ctx, grad_y: torch.Tensor):  # type: ignore[override]
        rows, y, mean, rstd, w = ctx.saved_tensors
        want_x, want_w, want_b = ctx.needs_input_grad[:3]
        grad_rows = grad_y.reshape(rows.shape).contiguous()
        grad_x = torch.empty_like(rows) if want_x else rows.new_empty(0, rows.shape[1])
        width = rows.shape[1]
        grad_w = torch.zeros(width if ctx.norm else 0, dtype=torch.float64)
        grad_b = torch.zeros_like(grad_w)
        scratch = rows.new_empty(width)
        plif_compiled._kernels().saturation_backward_kernel(
            grad_rows.numpy(), y.numpy(), rows.numpy(), ctx.norm, mean.numpy(), rstd.numpy(),
            w.numpy(), np.float32(ctx.xi), want_x, grad_x.numpy(), grad_w.numpy(),
            grad_b.numpy(), scratch.numpy())
        return (grad_x.reshape(grad_y.shape) if want_x else None,
                grad_w.to(rows.dtype) if want_w and ctx.norm else None,
                grad_b.to(rows.dtype) if want_b and ctx.has_bias else None, None, None)


@functools.cache
def compiled_saturation_available() -> bool:
    """Whether the saturation kernels build and run here (checked once per process on a tiny
    input; numba compiles them, or loads them from its on-disk cache)."""
    if not plif_compiled.available():
        return False
    try:
        with torch.inference_mode(False), torch.enable_grad():
            x = torch.linspace(-2, 2, 6).reshape(2, 3).requires_grad_()
            weight = torch.ones(3, requires_grad=True)
            CompiledSaturation.apply(x, weight, torch.zeros(3), 1.0, 1e-5).sum().backward()
            CompiledSaturation.apply(x, None, None, 1.0, 1e-5).sum().backward()
    except Exception:  # numba/LLVM failures have many types; the PyTorch form is used
        return False
    return True


def soft_saturation(x: torch.Tensor, norm: nn.Module, xi: float, compiled: bool) -> torch.Tensor:
    """``tanh(xi · norm(x))`` with ``norm`` an ``nn.LayerNorm`` over the last dimension or
    ``nn.Identity``: through :class:`CompiledSaturation` when ``compiled`` (the model's
    neurons run the ``compiled`` backend) and the kernel applies (see the module notes),
    else as PyTorch operators."""
    layer_norm = isinstance(norm, nn.LayerNorm)
    fits = (compiled and torch.is_grad_enabled() and x.dtype == torch.float32
            and x.device.type == "cpu" and x.dim() >= 2
            and not (torch.jit.is_tracing() or torch.compiler.is_compiling())
            and (isinstance(norm, nn.Identity)
                 or (layer_norm and len(norm.normalized_shape) == 1
                     and norm.weight is not None and norm.weight.dtype == torch.float32)))
    if fits and compiled_saturation_available():
        if layer_norm:
            return CompiledSaturation.apply(x, norm.weight, norm.bias, float(xi), norm.eps)
        return CompiledSaturation.apply(x, None, None, float(xi), 0.0)
    return torch.tanh(xi * norm(x))
