"""Normalisation layers of the head: LayerNorm, or a masked batch norm that folds into a Linear.

A LayerNorm divides each frame by its own standard deviation: not an affine map, so it cannot
run on a neuromorphic chip between an ``Affine`` and a ``LIF``. :class:`MaskedBatchNorm`
normalises with batch statistics while training (over real frames only) and with running
statistics at inference, where it is a fixed per-channel affine map ``x·scale + shift``
(:meth:`MaskedBatchNorm.affine`) that export folds into the preceding ``Linear``: the
``neuromorphic`` preset uses it so that its spiking path has no host operation between an
``Affine`` and the next ``LIF``.
"""

from __future__ import annotations

import torch
from torch import nn

from ptssnn.errors import ModelConfigError

__all__ = ["NORMS", "MaskedBatchNorm", "apply_norm", "make_norm"]

NORMS: tuple[str, ...] = ("layer", "batch")


class MaskedBatchNorm(nn.Module):
    """Batch normalisation over every leading dimension of ``x [..., D]``, padding excluded.

    Args:
        dim: channels D.
        momentum: running-statistics update rate (as ``nn.BatchNorm1d``).
        eps: added to the variance.
    """

    def __init__(self, dim: int, momentum: float = 0.1, eps: float = 1e-5) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.bias = nn.Parameter(torch.zeros(dim))
        self.register_buffer("running_mean", torch.zeros(dim))
        self.register_buffer("running_var", torch.ones(dim))
        self.momentum, self.eps = float(momentum), float(eps)

    def affine(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Inference as ``x·scale + shift`` (per channel): ``(scale, shift)``."""
        scale = self.weight / torch.sqrt(self.running_var + self.eps)
        return scale, self.bias - self.running_mean * scale

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """``x [T, B, ..., D]`` with ``mask [T, B]`` (True = real frame) → same shape."""
        if x.dtype in (torch.bfloat16, torch.float16):
            # A mixed-precision forward (autocast) hands over bfloat16 currents; statistics
            # and running moments stay float32, as autocast runs nn.BatchNorm.
            x = x.float()
        if not self.training:
            scale, shift = self.affine()
            return x * scale + shift
        flat = x.reshape(-1, x.shape[-1])
        if mask is not None:
            m = mask.reshape(*mask.shape, *([1] * (x.dim() - mask.dim())))
            flat = x.masked_select(m.expand_as(x).bool()).reshape(-1, x.shape[-1])
        if flat.shape[0] < 2:
            raise ModelConfigError("batch norm needs at least two real frames per batch")
        mean = flat.mean(0)
        var = flat.var(0, unbiased=False)
        with torch.no_grad():
            n = flat.shape[0]
            self.running_mean.lerp_(mean.detach(), self.momentum)
            self.running_var.lerp_(var.detach() * n / (n - 1), self.momentum)
        return (x - mean) / torch.sqrt(var + self.eps) * self.weight + self.bias


def make_norm(kind: str, dim: int) -> nn.Module:
    """``"layer"`` (``nn.LayerNorm``) or ``"batch"`` (:class:`MaskedBatchNorm`).

    Raises:
        ModelConfigError: unknown kind.
    """
    if kind == "layer":
        return nn.LayerNorm(dim)
    if kind == "batch":
        return MaskedBatchNorm(dim)
    raise ModelConfigError(f"unknown norm {kind!r}; choose one of {', '.join(NORMS)}")


def apply_norm(norm: nn.Module, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Call a norm layer; only the batch norm needs the mask (its statistics skip padding)."""
    return norm(x, mask) if isinstance(norm, MaskedBatchNorm) else norm(x)
