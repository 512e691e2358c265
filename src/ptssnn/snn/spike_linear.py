"""Linear layers fed by spikes, with work proportional to the spikes (training on the CPU).

A layer whose input is a spike train (``fed_by_spikes``: the MLP of every spiking block) sees
a binary matrix that is ~90 % zeros (8 % mean firing rate in the trained heads, see the
benchmark reports). Two of the three matrix products of its training step only need the
non-zeros:

- forward ``Y = S·Wᵀ + b``: each spike adds one row of ``Wᵀ`` to its output row;
- weight gradient ``∂L/∂W = (∂L/∂Y)ᵀ·S``: each spike adds one row of ``∂L/∂Y`` to a row of
  ``∂L/∂Wᵀ``;
- the input gradient ``∂L/∂S = ∂L/∂Y·W`` is dense (the surrogate gradient reaches every
  neuron), so it stays a BLAS product (in bfloat16 when the forward ran under a bfloat16
  autocast, ``TrainConfig.precision = "bf16"``).

The kernels (:mod:`ptssnn.snn.plif_kernels`) add in increasing input index, so results equal
the dense product up to float rounding (not bit for bit: BLAS sums in another order). They
run only where they pay and cannot change what a trained head computes later: under
autograd on the CPU, for layers whose spiking neurons use the ``compiled`` backend and that
no forward hook watches. Otherwise (evaluation, inference, tracing, export, the energy
report's hooks) the layer is called as the plain ``nn.Linear`` module.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from ptssnn.snn import plif_compiled

__all__ = ["SpikeLinear", "spike_linear"]


def _spike_positions(kernels, s: np.ndarray) -> tuple[torch.Tensor, torch.Tensor, bool]:
    """CSR positions of the non-zeros of float32 ``s [R, K]``: ``(indptr, indices, binary)``,
    found once per forward (the weight gradient walks them again)."""
    rows, width = s.shape
    indptr = torch.empty(rows + 1, dtype=torch.int64)
    room = torch.empty(rows * width, dtype=torch.int32)
    if s.dtype == np.float32 and width % 2 == 0:
        count, binary = kernels.spike_index_pairs_kernel(
            s.view(np.uint64), indptr.numpy(), room.numpy())
    else:
        bits = s.view(np.uint32 if s.dtype == np.float32 else np.uint64)
        one = np.array(1.0, s.dtype).view(bits.dtype)[()]
        count, binary = kernels.spike_index_kernel(bits, one, indptr.numpy(), room.numpy())
    return indptr, room[:count].clone(), bool(binary)


class SpikeLinear(torch.autograd.Function):
    """``apply(s [R, K], weight [N, K], bias [N] or None) -> s·weightᵀ + bias [R, N]``."""

    @staticmethod
    def forward(ctx, s: torch.Tensor, weight: torch.Tensor,  # type: ignore[override]
                bias: torch.Tensor | None) -> torch.Tensor:
        kernels = plif_compiled._kernels()
        weight_t = weight.detach().t().contiguous()
        b = bias.detach() if bias is not None else weight.new_zeros(weight.shape[0])
        out = s.new_empty(s.shape[0], weight.shape[0])
        s_np = s.detach().numpy()
        indptr, indices, binary = _spike_positions(kernels, s_np)
        kernels.sparse_matmul_kernel(indptr.numpy(), indices.numpy(), binary, s_np,
                                     weight_t.numpy(), b.numpy(), out.numpy())
        ctx.save_for_backward(s, weight, indptr, indices)
        ctx.binary = binary
        ctx.has_bias = bias is not None
        # Under mixed precision (TrainConfig.precision) the dense input gradient runs in the
        # autocast dtype, as nn.Linear's backward would; the sparse kernels stay float32.
        ctx.gemm_dtype = (torch.get_autocast_dtype("cpu") if torch.is_autocast_enabled("cpu")
                          else None)
        return out

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):  # type: ignore[override]
        s, weight, indptr, indices = ctx.saved_tensors
        want_s, want_w, want_b = ctx.needs_input_grad
        grad_out = grad_out.contiguous()
        grad_s = None
        if want_s and ctx.gemm_dtype is not None:
            low = ctx.gemm_dtype
            grad_s = grad_out.to(low).mm(weight.to(low)).to(grad_out.dtype)
        elif want_s:
            grad_s = grad_out.mm(weight)
        grad_w = None
        if want_w:
            grad_w_t = weight.new_empty(weight.shape[1], weight.shape[0])
            plif_compiled._kernels().sparse_weight_grad_kernel(
                indptr.numpy(), indices.numpy(), ctx.binary, s.detach().numpy(),
                grad_out.numpy(), grad_w_t.numpy())
            grad_w = grad_w_t.t()
        grad_b = grad_out.sum(0) if want_b and ctx.has_bias else None
        return grad_s, grad_w, grad_b


def _hooked(layer: nn.Module) -> bool:
    """Whether forward (pre-)hooks watch ``layer`` (energy and efficiency reports do)."""
    return bool(layer._forward_hooks or layer._forward_pre_hooks)


def spike_linear(layer: nn.Linear, s: torch.Tensor, sparse: bool) -> torch.Tensor:
    """``layer(s)`` for a spike input ``s [..., K]``; through :class:`SpikeLinear` when
    ``sparse`` (the caller's neurons run the compiled backend), autograd is recording, no
    hook watches the layer (hooks see the plain module call), nothing traces or compiles the
    model, and the kernels run for this input (CPU float32/float64, numba available)."""
    tracing = torch.jit.is_tracing() or torch.compiler.is_compiling()
    if not (sparse and torch.is_grad_enabled() and layer.weight.requires_grad and not tracing
            and s.dtype == layer.weight.dtype and s.dim() >= 2 and not _hooked(layer)
            and plif_compiled.supports(s) and plif_compiled.usable(s)):
        return layer(s)
    rows = s.reshape(-1, s.shape[-1]).contiguous()
    out = SpikeLinear.apply(rows, layer.weight, layer.bias)
    return out.reshape(*s.shape[:-1], out.shape[-1])
