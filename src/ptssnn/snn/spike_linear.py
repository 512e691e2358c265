"""Linear layers fed by spikes, with work proportional to the spikes (training on the CPU).

A layer whose input is a spike train (``fed_by_spikes``: the MLP of every spiking block) sees
a binary matrix that is ~90 % zeros (8 % mean firing rate in the trained heads, see the
benchmark reports). Two of the three matrix products of its training step only need the
non-zeros:

- forward ``Y = S·Wᵀ + b``: each spike adds one row of ``Wᵀ`` to its output row;
- weight gradient ``∂L/∂W = (∂L/∂Y)ᵀ·S``: row ``k`` of ``∂L/∂Wᵀ`` is the sum of the rows of
  ``∂L/∂Y`` where input ``k`` spiked;
- the input gradient ``∂L/∂S = ∂L/∂Y·W`` is dense (the surrogate gradient reaches every
  neuron), so it stays a BLAS product (in bfloat16 when the forward ran under a bfloat16
  autocast, ``TrainConfig.precision = "bf16"``).

The spikes' positions are found once per forward, on the values' bit patterns (CSR, 64-bit
words at a time: at a few percent firing most words are zero), and reused by the weight
gradient, which is formed in the same pass over ``∂L/∂Y`` as its bfloat16 copy and the
bias gradient (row by row: each spike adds the row, while it is in cache, to its input's
row of ``∂L/∂Wᵀ``). Binary spikes need no multiply, and the kernels
(:mod:`ptssnn.snn.plif_kernels`) add their rows four at a time; results equal the dense
product up to float rounding (not bit for bit: BLAS sums in another order). Spikes may come
in bfloat16 (:attr:`ptssnn.snn.PLIF.autocast_spikes`), and the input gradient is then handed
back in bfloat16, without a cast. Under a bfloat16 autocast the forward adds the
bfloat16-rounded weights in float32 (what autocast's product computes: bfloat16 inputs,
float32 accumulation, but the result is kept in float32), otherwise the float32 weights.
The kernels run
only where they pay and cannot change what a trained head computes later: under autograd on
the CPU, for layers whose spiking neurons use the ``compiled`` backend and that no forward
hook watches. Otherwise (evaluation, inference, tracing, export, the energy report's hooks)
the layer is called as the plain ``nn.Linear`` module.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from ptssnn.snn import plif_compiled

__all__ = ["SpikeLinear", "compiled_neuron", "spike_linear"]


#: Bit patterns of 1.0 per dtype, and how many values of it a 64-bit word holds.
_ONE_BITS = {torch.float32: (0x3F800000, 2), torch.bfloat16: (0x3F80, 4),
             torch.float64: (0x3FF0000000000000, 1)}


def _spike_positions(kernels, s: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, bool]:
    """CSR positions of the non-zeros of ``s [R, K]`` (float32, float64 or bfloat16):
    ``(indptr, indices, binary)``, found once per forward (the weight gradient walks them
    again) on the values' bit patterns."""
    rows, width = s.shape
    one, lanes = _ONE_BITS[s.dtype]
    indptr = torch.empty(rows + 1, dtype=torch.int64)
    room = torch.empty(rows * width, dtype=torch.int32)
    bits = plif_compiled.bits(s.detach())
    if lanes > 1 and width % lanes == 0:
        count, binary = kernels.spike_index_words_kernel(
            bits.view(np.uint64), lanes, np.uint64(one), indptr.numpy(), room.numpy())
    else:
        count, binary = kernels.spike_index_kernel(bits, bits.dtype.type(one), indptr.numpy(),
                                                   room.numpy())
    return indptr, room[:count].clone(), bool(binary)


class SpikeLinear(torch.autograd.Function):
    """``apply(s [R, K], weight [N, K], bias [N] or None, shared=None) -> s·weightᵀ + bias
    [R, N]`` (``shared``: see :func:`spike_linear`).

    ``s`` in the weight's dtype, or in bfloat16 (spikes of a neuron emitting the autocast
    dtype, see :attr:`ptssnn.snn.PLIF.autocast_spikes`); the output is in the weight's dtype.
    """

    @staticmethod
    def forward(ctx, s: torch.Tensor, weight: torch.Tensor,  # type: ignore[override]
                bias: torch.Tensor | None, shared: dict | None = None) -> torch.Tensor:
        kernels = plif_compiled._kernels()
        b = bias.detach() if bias is not None else weight.new_zeros(weight.shape[0])
        out = weight.new_empty(s.shape[0], weight.shape[0])
        positions = None if shared is None else shared.get("positions")
        if positions is None:
            positions = _spike_positions(kernels, s)
            if shared is not None:
                shared["positions"] = positions
        indptr, indices, binary = positions
        # Under mixed precision (TrainConfig.precision) the products run in the autocast
        # dtype, as nn.Linear's would: the dense input gradient in the backward, and here,
        # for binary spikes, the sum of the bfloat16-rounded weights in float32 (bfloat16
        # inputs, float32 accumulation; half the bytes to bring in per spike).
        ctx.gemm_dtype = (torch.get_autocast_dtype("cpu") if torch.is_autocast_enabled("cpu")
                          else None)
        low_weights = binary and ctx.gemm_dtype == torch.bfloat16
        weight_t = weight.detach().t().to(torch.bfloat16 if low_weights else weight.dtype)
        weight_t = weight_t.contiguous()
        weight_np = plif_compiled.bits(weight_t) if low_weights else weight_t.numpy()
        # Values are read (and kept for the backward) only when they are not all 1, then in
        # the weight's dtype; binary spikes are fully described by their positions.
        values = out if binary else s.detach().to(weight.dtype)  # binary: never read
        kernels.sparse_matmul_kernel(indptr.numpy(), indices.numpy(), binary, values.numpy(),
                                     weight_np, b.numpy(), out.numpy())
        ctx.save_for_backward(None if binary else values, weight, indptr, indices)
        ctx.binary, ctx.width = binary, s.shape[1]
        ctx.has_bias = bias is not None
        ctx.s_dtype = s.dtype
        return out

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):  # type: ignore[override]
        values, weight, indptr, indices = ctx.saved_tensors
        want_s, want_w, want_b = ctx.needs_input_grad[:3]
        grad_out = grad_out.contiguous()
        kernels = plif_compiled._kernels()
        low = ctx.gemm_dtype if want_s else None
        want_bias = want_b and ctx.has_bias
        # A float32 ∂L/∂Y is read once, row by row, for its bfloat16 copy (the dense
        # product's operand), the bias gradient and the weight gradient (each spike adds the
        # row, while it is in cache, to its input's row of ∂L/∂Wᵀ), instead of a cast, a sum
        # and a second pass over ∂L/∂Y by column.
        single = grad_out.dtype == torch.float32
        grad_low = (torch.empty(grad_out.shape, dtype=torch.bfloat16)
                    if single and low == torch.bfloat16 else None)
        sums = (torch.zeros(grad_out.shape[1], dtype=torch.float64)
                if single and want_bias else None)
        grad_w_t = (weight.new_empty(ctx.width, weight.shape[0]) if single and want_w
                    else None)
        if grad_low is not None or sums is not None or grad_w_t is not None:
            no_rows = np.zeros((0, grad_out.shape[1]), dtype=np.float32)
            kernels.gradient_epilogue_kernel(
                grad_out.numpy(), grad_low is not None,
                plif_compiled.bits(torch.empty(0, 0, dtype=torch.bfloat16)
                                      if grad_low is None else grad_low),
                np.zeros(0) if sums is None else sums.numpy(), indptr.numpy(),
                indices.numpy(), ctx.binary,
                no_rows if values is None else values.numpy(),  # binary: unread
                no_rows if grad_w_t is None else grad_w_t.numpy())
        grad_s = None
        if want_s:
            # Returned in the spikes' dtype: no cast back when they are bfloat16 themselves.
            if low is None:
                grad_s = grad_out.mm(weight)
            else:
                operand = grad_low if grad_low is not None else grad_out.to(low)
                grad_s = operand.mm(weight.to(low))
            grad_s = grad_s.to(ctx.s_dtype)
        grad_w = None
        if want_w and grad_w_t is None:  # float64: by column, from the positions' CSC form
            width = ctx.width
            colptr = torch.empty(width + 1, dtype=torch.int64)
            rows_of = torch.empty_like(indices)
            kernels.spike_columns_kernel(indptr.numpy(), indices.numpy(), width, colptr.numpy(),
                                         rows_of.numpy())
            grad_w_t = weight.new_empty(width, weight.shape[0])
            values_np = grad_w_t.numpy() if values is None else values.numpy()  # binary: unread
            kernels.sparse_weight_grad_kernel(colptr.numpy(), rows_of.numpy(), ctx.binary,
                                              values_np, grad_out.numpy(), grad_w_t.numpy())
        if want_w:
            grad_w = grad_w_t.t()
        grad_b = None
        if want_bias:
            grad_b = grad_out.sum(0) if sums is None else sums.to(grad_out.dtype)
        return grad_s, grad_w, grad_b, None


def compiled_neuron(neuron: nn.Module) -> bool:
    """Whether ``neuron`` is a PLIF layer on the ``compiled`` backend (its spikes may then go
    through the sparse training kernels of :func:`spike_linear`)."""
    return getattr(neuron, "backend", None) == "compiled"


def _hooked(layer: nn.Module) -> bool:
    """Whether forward (pre-)hooks watch ``layer`` (energy and efficiency reports do)."""
    return bool(layer._forward_hooks or layer._forward_pre_hooks)


def spike_linear(layer: nn.Linear, s: torch.Tensor, sparse: bool,
                 shared: dict | None = None) -> torch.Tensor:
    """``layer(s)`` for a spike input ``s [..., K]``; through :class:`SpikeLinear` when
    ``sparse`` (the caller's neurons run the compiled backend), autograd is recording, no
    hook watches the layer (hooks see the plain module call), nothing traces or compiles the
    model, and the kernels run for this input (CPU float32/float64 weights, spikes in their
    dtype or in bfloat16, numba available).

    ``shared``: a dict the caller passes to every layer it feeds with this same ``s`` (the
    SSLA's keys and values), so that the spikes' positions are found once."""
    tracing = torch.jit.is_tracing() or torch.compiler.is_compiling()
    weight = layer.weight
    spike_dtype_ok = s.dtype == weight.dtype or (s.dtype == torch.bfloat16
                                                 and weight.dtype == torch.float32)
    if not (sparse and torch.is_grad_enabled() and weight.requires_grad and not tracing
            and spike_dtype_ok and s.dim() >= 2 and not _hooked(layer)
            and s.device.type == "cpu" and plif_compiled.supports(weight)
            and plif_compiled.usable(weight)):
        return layer(s)
    rows = s.reshape(-1, s.shape[-1]).contiguous()
    out = SpikeLinear.apply(rows, layer.weight, layer.bias, shared)
    return out.reshape(*s.shape[:-1], out.shape[-1])
