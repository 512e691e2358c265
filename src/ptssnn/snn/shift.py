"""Temporal shift (TSM, Lin et al. ICCV 2019): move some channels one step along time.

Parameter-free and cost-free (a memory move): a fraction of the channels of frame ``t`` is
taken from frame ``t - 1`` ("later": information moves one step later in time), another
fraction from frame ``t + 1`` ("earlier"), the rest stay. Edges are zero-filled.

Mask-aware: padded frames are zeroed before the shift (so they never leak into a real
frame) and after it (so padded frames carry nothing).

In compiled training (the blocks' neurons on the ``compiled`` backend, under autograd, on
the CPU) the shift and its gradient are one pass each over the tensor
(:class:`CompiledShift`), instead of slices, concatenations and mask products; the values
are the same (a move of bit patterns; a masked value is +0).
"""

from __future__ import annotations

import functools

import torch
from torch import nn

from ptssnn.errors import ModelConfigError
from ptssnn.snn import plif_compiled
from ptssnn.snn.plif_compiled import BIT_DTYPES, bits

__all__ = ["CompiledShift", "TemporalShift", "shift_channels"]

class CompiledShift(torch.autograd.Function):
    """``apply(x [T, B, C], mask [T, B] bool, n_later, n_earlier, premask)``: the shift of
    :class:`TemporalShift` (``premask``: ``x`` is masked before the shift too) in one pass,
    and its gradient in one pass (:func:`~ptssnn.snn.plif_kernels.shift_kernel`)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, mask: torch.Tensor,  # type: ignore[override]
                n_later: int, n_earlier: int, premask: bool) -> torch.Tensor:
        x = x.detach().contiguous()
        mask = mask.to(torch.bool).contiguous()
        out = torch.empty_like(x)
        plif_compiled._kernels().shift_kernel(bits(x), mask.numpy(), n_later, n_earlier,
                                              True, premask, bits(out))
        ctx.save_for_backward(mask)
        ctx.shifts, ctx.premask = (n_later, n_earlier), premask
        return out

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):  # type: ignore[override]
        (mask,) = ctx.saved_tensors
        grad_out = grad_out.contiguous()
        grad_x = torch.empty_like(grad_out)
        plif_compiled._kernels().shift_kernel(bits(grad_out), mask.numpy(), *ctx.shifts,
                                              False, ctx.premask, bits(grad_x))
        return grad_x, None, None, None, None


@functools.cache
def compiled_shift_available() -> bool:
    """Whether the shift kernel builds and runs here (checked once per process)."""
    def trial() -> None:
        x = torch.ones(3, 1, 8, requires_grad=True)
        CompiledShift.apply(x, torch.ones(3, 1, dtype=torch.bool), 1, 1, False).sum().backward()

    return plif_compiled.kernels_run(trial)  # False: PyTorch operators are used


def shift_channels(channels: int, later: float, earlier: float) -> tuple[int, int]:
    """Number of channels moved later and earlier for ``channels`` channels.

    Raises:
        ModelConfigError: negative fractions or fractions summing above 1.
    """
    if later < 0 or earlier < 0 or later + earlier > 1:
        raise ModelConfigError(
            f"shift fractions must be >= 0 and sum to <= 1 (got later={later}, earlier={earlier})"
        )
    channels = int(channels)  # a traced shape is a tensor; the channel count is static
    n_later = round(channels * later)
    n_earlier = min(round(channels * earlier), channels - n_later)
    return n_later, n_earlier


class TemporalShift(nn.Module):
    """Shift ``later`` of the channels one step later and ``earlier`` one step earlier.

    Channels ``[0, n_later)`` come from the previous frame, ``[n_later, n_later + n_earlier)``
    from the next frame, the rest are unchanged (channels are the last dimension).

    Args:
        later: fraction of channels moved one step later (default 1/8).
        earlier: fraction of channels moved one step earlier (default 1/8).
    """

    def __init__(self, later: float = 0.125, earlier: float = 0.125) -> None:
        super().__init__()
        shift_channels(8, later, earlier)  # validates the fractions
        self.later = float(later)
        self.earlier = float(earlier)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None,
                zero_padded: bool = False, compiled: bool = False) -> torch.Tensor:
        """Shift ``x [T, B, ..., C]`` along time; ``mask [T, B]`` (True = real frame).

        ``zero_padded``: ``x`` is already zero on padded frames (a neuron layer's output),
        so it is not masked again before the shift. ``compiled``: the caller's neurons run
        the ``compiled`` backend; under autograd a CPU ``[T, B, C]`` input then goes through
        :class:`CompiledShift` (same values).

        Returns:
            ``[T, B, ..., C]``; padded frames are zero.
        """
        n_later, n_earlier = shift_channels(x.shape[-1], self.later, self.earlier)
        if (compiled and torch.is_grad_enabled() and x.dim() == 3 and x.device.type == "cpu"
                and x.dtype in BIT_DTYPES and x.shape[0] > 0 and (n_later or n_earlier)
                and not (torch.jit.is_tracing() or torch.compiler.is_compiling())
                and compiled_shift_available()):
            m = (torch.ones(x.shape[:2], dtype=torch.bool) if mask is None
                 else mask.to(torch.bool))
            return CompiledShift.apply(x, m, n_later, n_earlier,
                                       mask is not None and not zero_padded)
        if mask is not None:
            m = mask.to(x.dtype).reshape(*mask.shape, *([1] * (x.dim() - 2)))
            if not zero_padded:
                x = x * m
        if n_later == 0 and n_earlier == 0:
            return x
        zero = torch.zeros_like(x[:1])
        parts = []
        if n_later:
            parts.append(torch.cat([zero[..., :n_later], x[:-1, ..., :n_later]], dim=0))
        if n_earlier:
            stop = n_later + n_earlier
            parts.append(torch.cat([x[1:, ..., n_later:stop], zero[..., n_later:stop]], dim=0))
        parts.append(x[..., n_later + n_earlier:])
        out = torch.cat(parts, dim=-1)
        return out * m if mask is not None else out

    def extra_repr(self) -> str:
        return f"later={self.later}, earlier={self.earlier}"
