"""Spike functions with surrogate gradients.

Forward: the Heaviside step ``S = (x >= 0)``. Backward: the derivative of a smooth stand-in
(SpikingJelly's conventions, so that gradients match ``surrogate.Sigmoid`` / ``surrogate.ATan``):

- ``"sigmoid"``: ``g'(x) = α·sigmoid(αx)·(1 - sigmoid(αx))``, default α = 4;
- ``"atan"``: ``g'(x) = α / (2·(1 + (π/2·α·x)²))``, default α = 2.
"""

from __future__ import annotations

import math

import torch

from ptssnn.errors import ModelConfigError

SURROGATES: tuple[str, ...] = ("sigmoid", "atan")
DEFAULT_ALPHA: dict[str, float] = {"sigmoid": 4.0, "atan": 2.0}


def check_surrogate(name: str, alpha: float | None) -> float:
    """Validate a surrogate name and return its α (the default when ``alpha`` is None).

    Raises:
        ModelConfigError: unknown surrogate or non-positive α.
    """
    if name not in SURROGATES:
        raise ModelConfigError(
            f"unknown surrogate {name!r}; choose one of {', '.join(SURROGATES)}"
        )
    value = DEFAULT_ALPHA[name] if alpha is None else float(alpha)
    if not value > 0:
        raise ModelConfigError(f"surrogate alpha must be positive, got {alpha!r}")
    return value


def surrogate_gradient(x: torch.Tensor, name: str, alpha: float,
                       inplace: bool = False) -> torch.Tensor:
    """Derivative of the smooth stand-in for the Heaviside step, elementwise.

    Both derivatives are even functions, so ``x`` may be given with either sign.

    Args:
        x: membrane minus threshold, any shape.
        name: ``"sigmoid"`` or ``"atan"``.
        alpha: sharpness α.
        inplace: ``x`` is a scratch tensor that may be overwritten (saves a copy).

    Returns:
        ``g'(x)``, same shape and dtype as ``x``.
    """
    if name == "sigmoid":
        s = torch.sigmoid_(x.mul_(alpha)) if inplace else torch.sigmoid(alpha * x)
        # α·s·(1 - s) in one kernel.
        return torch.ops.aten.sigmoid_backward(
            torch.tensor(alpha, dtype=s.dtype, device=s.device).expand_as(s), s)
    if name == "atan":
        return (alpha / 2.0) / (1.0 + (math.pi / 2.0 * alpha * x).square())
    raise ModelConfigError(f"unknown surrogate {name!r}; choose one of {', '.join(SURROGATES)}")


class _Heaviside(torch.autograd.Function):
    """Heaviside forward, surrogate derivative backward."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, name: str, alpha: float) -> torch.Tensor:  # type: ignore[override]
        ctx.save_for_backward(x)
        ctx.name, ctx.alpha = name, alpha
        return (x >= 0).to(x.dtype)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):  # type: ignore[override]
        (x,) = ctx.saved_tensors
        return grad * surrogate_gradient(x, ctx.name, ctx.alpha), None, None


def spike_function(x: torch.Tensor, name: str = "sigmoid", alpha: float = 4.0) -> torch.Tensor:
    """Emit spikes ``(x >= 0)`` as floats; gradients use the named surrogate.

    Without autograd (inference, tracing for ONNX) this is a plain comparison, so exported
    graphs contain no custom operator.

    Args:
        x: membrane minus threshold, any shape.
        name: surrogate name (``"sigmoid"`` or ``"atan"``).
        alpha: surrogate sharpness.

    Returns:
        Spikes in {0, 1}, same shape and dtype as ``x``.
    """
    if torch.is_grad_enabled() and x.requires_grad:
        return _Heaviside.apply(x, name, alpha)
    return (x >= 0).to(x.dtype)
