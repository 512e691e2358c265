"""Temporal shift (TSM, Lin et al. ICCV 2019): move some channels one step along time.

Parameter-free and cost-free (a memory move): a fraction of the channels of frame ``t`` is
taken from frame ``t - 1`` ("later": information moves one step later in time), another
fraction from frame ``t + 1`` ("earlier"), the rest stay. Edges are zero-filled.

Mask-aware: padded frames are zeroed before the shift (so they never leak into a real
frame) and after it (so padded frames carry nothing).
"""

from __future__ import annotations

import torch
from torch import nn

from ptssnn.errors import ModelConfigError

__all__ = ["TemporalShift", "shift_channels"]


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
                zero_padded: bool = False) -> torch.Tensor:
        """Shift ``x [T, B, ..., C]`` along time; ``mask [T, B]`` (True = real frame).

        ``zero_padded``: ``x`` is already zero on padded frames (a neuron layer's output),
        so it is not masked again before the shift.

        Returns:
            ``[T, B, ..., C]``; padded frames are zero.
        """
        n_later, n_earlier = shift_channels(x.shape[-1], self.later, self.earlier)
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
