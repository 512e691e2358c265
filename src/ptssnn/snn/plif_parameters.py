"""The one set of PLIF options (Norse ``LIFParameters``-style) and the backend names.

Every PLIF function, backend and module takes a :class:`PLIFParameters`; the model config
builds one (:meth:`ptssnn.models.PTSSNNConfig.plif_parameters`) and nothing else restates
the options.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from ptssnn.errors import ModelConfigError
from ptssnn.snn.surrogate import check_surrogate

__all__ = ["BACKENDS", "DEFAULT_BACKEND", "DEFAULT_PARAMETERS", "PLIFParameters",
           "check_backend", "init_w"]

#: Multi-step implementations, by name (see :func:`ptssnn.snn.plif.plif_multi_step`):
#: ``compiled`` (numba kernels, training and inference on the CPU; runs ``fused`` where they
#: cannot be built or for inputs they do not take), ``fused`` (custom autograd of PyTorch
#: ops, training and inference, any device), ``loop`` (autograd through a Python
#: loop of :func:`~ptssnn.snn.plif.plif_step`: the reference), ``script`` (a TorchScript
#: loop that the ONNX exporter turns into one ``Loop`` node over a dynamic time axis;
#: inference only).
BACKENDS: tuple[str, ...] = ("compiled", "fused", "loop", "script")

#: The backend layers get unless told otherwise.
DEFAULT_BACKEND = "compiled"


def check_backend(name: str) -> str:
    """Return ``name`` if it is a PLIF backend.

    Raises:
        ModelConfigError: unknown backend (the message lists the known ones).
    """
    if name not in BACKENDS:
        raise ModelConfigError(
            f"unknown PLIF backend {name!r}; choose one of {', '.join(BACKENDS)}")
    return name


def init_w(init_tau: float) -> float:
    """Initial ``w`` for a time constant τ0 (``1/τ0 = sigmoid(w0)``, so ``w0 = -ln(τ0 - 1)``).

    Raises:
        ModelConfigError: τ0 <= 1 (no leaky integrator has τ <= 1).
    """
    if not init_tau > 1.0:
        raise ModelConfigError(f"init_tau must be > 1 (got {init_tau}); PLIF uses 1/τ = sigmoid(w)")
    return -math.log(init_tau - 1.0)


@dataclass(frozen=True)
class PLIFParameters:
    """Options of a PLIF layer (validated on construction; ``alpha`` resolved to a number).

    Attributes:
        init_tau: initial membrane time constant τ0 in steps (``w0 = -ln(τ0 - 1)``).
        v_threshold: firing threshold V_th (fires on ``H >= V_th``).
        v_reset: hard-reset voltage, or None for soft reset (subtract V_th).
        decay_input: divide the input by τ as well (SpikingJelly's default).
        detach_reset: stop the gradient through the spike in the reset term.
        surrogate: ``"sigmoid"`` or ``"atan"``.
        alpha: surrogate sharpness; None = the surrogate's default (4 for sigmoid, 2 for atan).
    """

    init_tau: float = 2.0
    v_threshold: float = 1.0
    v_reset: float | None = 0.0
    decay_input: bool = True
    detach_reset: bool = False
    surrogate: str = "sigmoid"
    alpha: float | None = field(default=None)

    def __post_init__(self) -> None:
        init_w(self.init_tau)
        if self.v_reset is not None and not self.v_reset < self.v_threshold:
            raise ModelConfigError(
                f"v_reset ({self.v_reset}) must be below v_threshold ({self.v_threshold}), "
                "or None for soft reset")
        object.__setattr__(self, "alpha", check_surrogate(self.surrogate, self.alpha))
        object.__setattr__(self, "init_tau", float(self.init_tau))
        object.__setattr__(self, "v_threshold", float(self.v_threshold))
        if self.v_reset is not None:
            object.__setattr__(self, "v_reset", float(self.v_reset))

    @property
    def reset_value(self) -> float:
        """The voltage the membrane rests at and resets to (0 for soft reset)."""
        return 0.0 if self.v_reset is None else self.v_reset

    @property
    def soft_reset(self) -> bool:
        """Whether a spike subtracts V_th instead of resetting to ``v_reset``."""
        return self.v_reset is None


DEFAULT_PARAMETERS = PLIFParameters()


def expand_mask(mask: torch.Tensor, ndim: int, dtype: torch.dtype) -> torch.Tensor:
    """``[..., B]`` bool mask → float mask broadcastable to a tensor with ``ndim`` dims."""
    m = mask.to(dtype)
    return m.reshape(*m.shape, *([1] * (ndim - m.dim())))
