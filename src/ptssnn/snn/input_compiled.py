"""The head's input path in one pass each way (training on the CPU): the standardisation and
layer sum of the frozen features, and the soft saturation ``tanh(ξ·LayerNorm(x))``.

Standardisation and layer sum: PyTorch makes a standardised copy of every hidden state
(``[B, L, T, D]``: two passes), sums them (an ``einsum``, and its backward for the layer
weights) and transposes the result to time-major; at 50 Hz that is ~10 % of a training
step. :func:`~ptssnn.snn.plif_kernels.standardised_sum_kernel` reads the hidden states once
and writes the time-major sum; its backward reads them once more for the layer weights'
gradient (the features themselves never need one in training). One layer is the
standardisation alone, bit for bit.

Soft saturation: PyTorch runs it as three operators (LayerNorm, a multiply, ``tanh``) and
as many passes over the ``[T, B, D_in]`` input in each direction; its CPU ``tanh`` alone (a
1-ulp vector library routine) took 10 ms per [250, 32, 512] batch.
:func:`~ptssnn.snn.plif_kernels.saturation_forward_kernel` and its backward do it row by row
in one pass, with the row's LayerNorm moments kept for the backward and ``tanh`` as Eigen's
rational approximation (float32, within a few ulp of ``torch.tanh``; the tests bound the
difference). Under a bfloat16 autocast (``TrainConfig.precision = "bf16"``) it writes its
result in bfloat16, rounded as autocast would round it for the projection, and its backward
recomputes ``tanh`` instead of reading a float32 copy. The results equal the PyTorch form up
to float rounding, not bit for bit.

These kernels run where the sparse spike kernels do: under autograd, on the CPU, in float32,
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

__all__ = ["CompiledLayerSum", "CompiledSaturation", "input_kernels_available",
           "soft_saturation", "standardised_layer_sum"]


class CompiledLayerSum(torch.autograd.Function):
    """``apply(features [B, L, T, D], mean [L, D], std [L, D], weights [L])`` → time-major
    ``[T, B, D]``: ``Σ_l weights[l]·(features[:, l] - mean[l]) / std[l]``, transposed.
    Gradient for ``weights`` only (features and moments are data and buffers)."""

    @staticmethod
    def forward(ctx, features: torch.Tensor, mean: torch.Tensor,  # type: ignore[override]
                std: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        x = features.detach().contiguous()
        mean, std = mean.detach().contiguous(), std.detach().contiguous()
        batch, _, steps, width = x.shape
        out = x.new_empty(steps, batch, width)
        plif_compiled._kernels().standardised_sum_kernel(
            x.numpy(), mean.numpy(), std.numpy(), weights.detach().contiguous().numpy(),
            out.numpy())
        ctx.save_for_backward(x, mean, std)
        return out

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):  # type: ignore[override]
        if not ctx.needs_input_grad[3]:
            return None, None, None, None
        x, mean, std = ctx.saved_tensors
        partial = torch.zeros(mean.shape, dtype=torch.float64)
        plif_compiled._kernels().standardised_sum_weight_grad_kernel(
            x.numpy(), mean.numpy(), std.numpy(), grad_out.contiguous().numpy(),
            partial.numpy())
        return None, None, None, partial.sum(1).to(x.dtype)


def standardised_layer_sum(features: torch.Tensor, mean: torch.Tensor, std: torch.Tensor,
                           weights: torch.Tensor | None, compiled: bool) -> torch.Tensor | None:
    """Time-major ``[T, B, D]`` standardised (layer-summed) features through
    :class:`CompiledLayerSum`, or None where the kernel does not apply and the caller runs
    the PyTorch form: not ``compiled``, no autograd, tracing, a gradient wanted for the
    features, other dtypes or devices, or shapes that are not ``[B, L, T, D]`` (``[B, T, D]``
    for one layer) against ``mean``/``std`` ``[L, D]`` and ``weights`` ``[L]`` (None: one
    layer)."""
    if features.dim() == 3:
        features = features[:, None]
    layers = mean.shape[0]
    if weights is None:
        weights = mean.new_ones(1)
    if not (compiled and torch.is_grad_enabled() and not features.requires_grad
            and not (torch.jit.is_tracing() or torch.compiler.is_compiling())
            and features.dim() == 4 and features.shape[1] == layers == weights.numel()
            and features.shape[-1] == mean.shape[-1] and mean.shape == std.shape
            and all(t.dtype == torch.float32 and t.device.type == "cpu"
                    for t in (features, mean, std, weights))
            and input_kernels_available()):
        return None
    return CompiledLayerSum.apply(features, mean, std, weights)


class CompiledSaturation(torch.autograd.Function):
    """``apply(x [..., D], weight [D] or None, bias [D] or None, xi, eps, to_bfloat16=False)``:
    the kernel form of ``tanh(xi · layer_norm(x, weight, bias, eps))`` (``weight is None``:
    ``tanh(xi·x)``). ``to_bfloat16``: the result is written in bfloat16 (what a bfloat16
    autocast would cast it to, for the next product), and the backward recomputes ``tanh``
    from ``x`` instead of keeping a float32 copy."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor | None,  # type: ignore[override]
                bias: torch.Tensor | None, xi: float, eps: float,
                to_bfloat16: bool = False) -> torch.Tensor:
        kernels = plif_compiled._kernels()
        rows = x.detach().reshape(-1, x.shape[-1]).contiguous()
        norm = weight is not None
        y = rows.new_empty(0, rows.shape[1]) if to_bfloat16 else torch.empty_like(rows)
        low = torch.empty(rows.shape if to_bfloat16 else (0, rows.shape[1]),
                          dtype=torch.bfloat16)
        mean = rows.new_empty(rows.shape[0] if norm else 0)
        rstd = torch.empty_like(mean)
        w = weight.detach() if norm else rows.new_empty(0)
        b = bias.detach() if bias is not None else torch.zeros_like(w)
        kernels.saturation_forward_kernel(rows.numpy(), norm, w.numpy(), b.numpy(),
                                          np.float32(xi), np.float32(eps), y.numpy(),
                                          mean.numpy(), rstd.numpy(), to_bfloat16,
                                          plif_compiled.bits(low))
        ctx.save_for_backward(rows, y, mean, rstd, w, b)
        ctx.norm, ctx.xi, ctx.has_bias = norm, xi, bias is not None
        return (low if to_bfloat16 else y).reshape(x.shape)

    @staticmethod
    def backward(ctx, grad_y: torch.Tensor):  # type: ignore[override]
        rows, y, mean, rstd, w, b = ctx.saved_tensors
        want_x, want_w, want_b = ctx.needs_input_grad[:3]
        grad_rows = grad_y.reshape(rows.shape).contiguous()
        if grad_rows.dtype == torch.bfloat16:
            grad_np = plif_compiled.bits(grad_rows)  # read as bfloat16 bits
        else:
            grad_np = grad_rows.to(rows.dtype).numpy()
        grad_x = torch.empty_like(rows) if want_x else rows.new_empty(0, rows.shape[1])
        width = rows.shape[1]
        grad_w = torch.zeros(width if ctx.norm else 0, dtype=torch.float64)
        grad_b = torch.zeros_like(grad_w)
        scratch = rows.new_empty(width)
        plif_compiled._kernels().saturation_backward_kernel(
            grad_np, y.numpy(), rows.numpy(), ctx.norm, mean.numpy(), rstd.numpy(), w.numpy(),
            b.numpy(), np.float32(ctx.xi), want_x, grad_x.numpy(), grad_w.numpy(),
            grad_b.numpy(), scratch.numpy())
        return (grad_x.reshape(grad_y.shape) if want_x else None,
                grad_w.to(rows.dtype) if want_w and ctx.norm else None,
                grad_b.to(rows.dtype) if want_b and ctx.has_bias else None, None, None, None)


@functools.cache
def input_kernels_available() -> bool:
    """Whether the input kernels build and run here (checked once per process on a tiny
    input; numba compiles them, or loads them from its on-disk cache)."""
    def trial() -> None:
        x = torch.linspace(-2, 2, 6).reshape(2, 3).requires_grad_()
        weight = torch.ones(3, requires_grad=True)
        for to_bfloat16 in (False, True):
            CompiledSaturation.apply(x, weight, torch.zeros(3), 1.0, 1e-5,
                                     to_bfloat16).sum().backward()
            CompiledSaturation.apply(x, None, None, 1.0, 1e-5, to_bfloat16).sum().backward()
        w = torch.ones(1, requires_grad=True)
        CompiledLayerSum.apply(x[None, None], torch.zeros(1, 3), torch.ones(1, 3),
                               w).sum().backward()

    return plif_compiled.kernels_run(trial)  # False: the PyTorch form is used


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
    if fits and input_kernels_available():
        # Under a bfloat16 autocast the next layer reads the result in bfloat16: written so.
        low = (torch.is_autocast_enabled("cpu")
               and torch.get_autocast_dtype("cpu") == torch.bfloat16)
        if layer_norm:
            return CompiledSaturation.apply(x, norm.weight, norm.bias, float(xi), norm.eps, low)
        return CompiledSaturation.apply(x, None, None, float(xi), 0.0, low)
    return torch.tanh(xi * norm(x))
