"""The ``compiled`` PLIF backend: forward and backward in machine code (numba), one pass each.

Same dynamics and signature as :func:`ptssnn.snn.plif_fused.plif_multi_step_fused`; the
difference is where the time loop runs. The fused path issues a few PyTorch kernels per step,
so at ``B·N`` = 8 k neurons its time is per-step dispatch. Here the whole sequence is one
machine-code loop over ``t``, then samples, then neurons, on zero-copy numpy views of the
tensors; the neuron loop is SIMD-vectorised by LLVM.

- Forward (per element: read ``X``, write the charge ``H`` and the spikes) evaluates the
  expressions of :func:`~ptssnn.snn.plif.plif_step` in the same order, in the input's dtype,
  without fused multiply-adds (numba does not contract without ``fastmath``), so spikes and
  membrane are bit-identical to the loop.
- Backward (read ``∂L/∂S`` and ``H``, write ``∂L/∂X``) runs the recursion
  ``∂L/∂H[t] = ∂L/∂S[t]·σ'[t] + ∂L/∂V[t]·∂V[t]/∂H[t]``, ``∂L/∂V[t-1] = ∂L/∂H[t]·(1 - q)``
  in the input's dtype, recomputing the spikes from ``H`` and ``V[t-1]`` from ``H[t-1]``
  (exactly as the forward computed them); ``∂H/∂q = (H - V[t-1])/q`` needs no ``X``, so ``X``
  is neither read nor kept for the backward. The sigmoid surrogate needs ``exp``, which LLVM
  cannot vectorise without a vector maths library, so it is Cephes' ``expf`` written out
  (about 1 ulp; σ' is evaluated in float32, also for float64 inputs). ``∂L/∂w`` is
  accumulated per neuron in float64 (no reduction in the vectorised loop) and summed at
  the end. A broadcast scalar ``∂L/∂S`` (the gradient of a sum) is not materialised.

The kernels are compiled on first use and cached on disk (``cache=True``: next to this file,
or in numba's user cache directory when that is read-only). :func:`available` says whether
they can run here; :mod:`ptssnn.snn.plif` falls back to the fused path when they cannot.
They run on one thread, float32 and float64, CPU tensors only (:func:`supports`). The
kernels themselves are in :mod:`ptssnn.snn.plif_kernels`, imported on first use so that
``import ptssnn`` does not load numba.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable
from types import ModuleType

import numpy as np
import torch

from ptssnn.snn.plif_parameters import DEFAULT_PARAMETERS, PLIFParameters

__all__ = ["CompiledPLIF", "available", "plif_multi_step_compiled", "supports",
           "unavailable_reason", "usable"]

_DTYPES = (torch.float32, torch.float64)


@functools.cache
def _kernels() -> ModuleType:
    from ptssnn.snn import plif_kernels

    return plif_kernels


@functools.cache
def unavailable_reason() -> str | None:
    """Why the compiled kernels cannot run here (None when they can).

    Imports numba, compiles the kernels (or loads them from the on-disk cache) and runs both
    once on a tiny input; the answer is kept for the life of the process.
    """
    try:
        _kernels()
    except ImportError as error:
        return f"numba is not installed ({error}); pip install 'ptssnn[fast]'"
    try:
        # The first caller may be inference (no_grad or inference_mode).
        with torch.inference_mode(False), torch.enable_grad():
            x = torch.ones(2, 1, 3, requires_grad=True)
            for spike_dtype in (None, torch.bfloat16):
                spikes, v = plif_multi_step_compiled(x, torch.zeros(1, 3), torch.tensor(0.0),
                                                     spike_dtype=spike_dtype)
                ((spikes * 2).sum() + v.sum()).backward()
    except Exception as error:  # numba/LLVM failures have many types
        return f"numba could not build the PLIF kernels ({type(error).__name__}: {error})"
    return None


def available() -> bool:
    """Whether the compiled kernels run here (numba importable and the kernels build)."""
    return unavailable_reason() is None


def kernels_run(trial: Callable[[], object]) -> bool:
    """Whether ``trial`` (a forward and backward of some kernels on a tiny input) runs here:
    the kernels build (numba compiles them, or loads its on-disk cache) and run. Callers
    cache the answer once per process and fall back to PyTorch operators on ``False``."""
    if not available():
        return False
    try:
        with torch.inference_mode(False), torch.enable_grad():
            trial()
    except Exception:  # numba/LLVM failures have many types
        return False
    return True


def supports(x: torch.Tensor) -> bool:
    """Whether the kernels take this input: a CPU float32/float64 strided tensor."""
    return x.device.type == "cpu" and x.dtype in _DTYPES and x.layout == torch.strided


@functools.cache
def _notice(reason: str) -> None:
    warnings.warn(f"PLIF backend 'compiled' unavailable, using 'fused': {reason}",
                  RuntimeWarning, stacklevel=4)


def usable(x: torch.Tensor) -> bool:
    """Whether the ``compiled`` backend runs for ``x``; else the caller uses ``fused``.

    Inputs the kernels do not take (CUDA, half precision) go to ``fused`` silently; a
    machine where the kernels cannot be built says so once per process (a warning).
    """
    if not supports(x):
        return False
    reason = unavailable_reason()
    if reason is not None:
        _notice(reason)
        return False
    return True


def _as_3d(x: torch.Tensor) -> torch.Tensor:
    """``[T, B, *N]`` → contiguous ``[T, B, K]``."""
    return x.contiguous().reshape(x.shape[0], x.shape[1], -1)


def _params(q: torch.Tensor, params: PLIFParameters,
            grad: torch.Tensor | None = None) -> np.ndarray:
    """``[q, V_reset, V_th, 1, 0, 1 - q, grad]`` in q's dtype (rounded as PyTorch rounds them)."""
    constants = torch.tensor([params.reset_value, params.v_threshold, 1.0, 0.0],
                             dtype=torch.float64).to(q.dtype)
    grad = q.new_zeros(1) if grad is None else grad.reshape(1).to(q.dtype)
    return torch.cat([q.reshape(1), constants, (1.0 - q).reshape(1), grad]).numpy()


def _mask_2d(mask: torch.Tensor | None, x: torch.Tensor) -> torch.Tensor:
    if mask is None:
        return torch.ones(x.shape[:2], dtype=torch.bool)
    return mask.to(torch.bool).contiguous()


#: bfloat16 1.0 and 0.0 as the kernels write them (into a ``uint16`` view).
_BFLOAT16_ONE, _BFLOAT16_ZERO = np.uint16(0x3F80), np.uint16(0)


def _spike_buffer(x3: torch.Tensor, spike_dtype: torch.dtype | None, constants: np.ndarray
                  ) -> tuple[torch.Tensor, np.ndarray, object, object]:
    """``(spikes, the array the kernel writes, its 1, its 0)``: spikes shaped like ``x3`` in
    ``spike_dtype`` (bfloat16: written as bits into a ``uint16`` view) or in ``x3``'s dtype."""
    if spike_dtype == torch.bfloat16:
        spikes = torch.empty(x3.shape, dtype=torch.bfloat16)
        return spikes, bits(spikes), _BFLOAT16_ONE, _BFLOAT16_ZERO
    spikes = torch.empty_like(x3)
    return spikes, spikes.numpy(), constants[3], constants[4]


def _forward(x: torch.Tensor, v0: torch.Tensor, q: torch.Tensor, mask: torch.Tensor,
             params: PLIFParameters, keep: bool, spike_dtype: torch.dtype | None = None
             ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(spikes, H [T, B, K] or a placeholder, v_final)``; ``q`` in the dtype of ``x``;
    spikes in ``spike_dtype`` (``None``: ``x``'s; ``torch.bfloat16``: exact 0/1 too)."""
    x3 = _as_3d(x)
    v = v0.to(x.dtype).reshape(x3.shape[1:]).clone()
    constants = _params(q, params)
    spikes, out, one, zero = _spike_buffer(x3, spike_dtype, constants)
    H = torch.empty_like(x3) if keep else x3.new_empty(1, 1, 1)
    _kernels().forward_kernel(x3.detach().numpy(), v.numpy(), mask.numpy(), constants,
                              params.decay_input, not params.soft_reset, keep, H.numpy(), out,
                              one, zero)
    return spikes.reshape(x.shape), H, v.reshape(v0.shape)


#: Per float dtype: the signed integer dtype of its width (torch), and the unsigned one (numpy).
BIT_DTYPES = {torch.bfloat16: (torch.int16, np.uint16), torch.float16: (torch.int16, np.uint16),
              torch.float32: (torch.int32, np.uint32), torch.float64: (torch.int64, np.uint64)}


def bits(t: torch.Tensor) -> np.ndarray:
    """An unsigned-integer numpy view of a contiguous float tensor's bit patterns (what the
    kernels read and write for bfloat16, and where they only move or test bits)."""
    signed, unsigned = BIT_DTYPES[t.dtype]
    return t.view(signed).numpy().view(unsigned)


class CompiledPLIF(torch.autograd.Function):
    """Whole-sequence PLIF in compiled loops.

    ``apply(x, v0, w, mask_or_None, params, spike_dtype_or_None) -> (spikes [T, B, *N],
    v_final [B, *N])``, like :class:`~ptssnn.snn.plif_fused.FusedPLIF`, except that ``mask``
    is the ``[T, B]`` bool mask itself (the kernels read it per sample), and spikes may be
    emitted in bfloat16 (their gradient is then read as bfloat16, without a cast).
    """

    @staticmethod
    def forward(  # type: ignore[override]
        ctx,
        x: torch.Tensor,
        v0: torch.Tensor,
        w: torch.Tensor,
        mask: torch.Tensor | None,
        params: PLIFParameters,
        spike_dtype: torch.dtype | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        q = torch.sigmoid(w.detach()).to(x.dtype)
        m = _mask_2d(mask, x)
        spikes, H, v_final = _forward(x, v0, q, m, params, keep=True, spike_dtype=spike_dtype)
        ctx.save_for_backward(v0, q, m, H)
        ctx.input_shape = x.shape
        ctx.params, ctx.w_dtype = params, w.dtype
        return spikes, v_final

    @staticmethod
    def backward(ctx, grad_spikes: torch.Tensor | None, grad_v: torch.Tensor | None):  # type: ignore[override]
        v0, q, m, H = ctx.saved_tensors
        want_x, want_v0, want_w = ctx.needs_input_grad[:3]
        grad_x, grad_state, grad_w = run_backward(grad_spikes, grad_v, H, v0, q, m, ctx.params,
                                                  bool(want_w), ctx.w_dtype)
        return (grad_x.reshape(ctx.input_shape) if want_x else None,
                grad_state.reshape(v0.shape) if want_v0 else None, grad_w, None, None, None)


def run_backward(grad_spikes: torch.Tensor | None, grad_v: torch.Tensor | None,
                 H: torch.Tensor, v0: torch.Tensor, q: torch.Tensor, m: torch.Tensor,
                 params: PLIFParameters, want_w: bool, w_dtype: torch.dtype,
                 norm: tuple[np.ndarray, ...] | None = None
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """The backward kernel on a forward's saved ``H [T, B, K]``: ``(∂L/∂X [T, B, K],
    ∂L/∂V0 [B, K], ∂L/∂w or None)``. ``norm``: the LayerNorm arrays of
    :mod:`ptssnn.snn.norm_plif` (``x, gamma, mean, rstd, norm_constants, grad_gamma,
    grad_beta``); ``∂L/∂X`` is then the gradient of the LayerNorm's input."""
    grad_x = torch.empty_like(H)
    grad_state = (torch.zeros(H.shape[1:], dtype=H.dtype) if grad_v is None
                  else grad_v.to(H.dtype).reshape(H.shape[1:]).clone())
    gs, mode, constant = H, 0, None  # H: a placeholder the kernel does not read
    if grad_spikes is not None and grad_spikes.numel() and not any(grad_spikes.stride()):
        mode, constant = 2, grad_spikes.reshape(-1)[0]  # a broadcast scalar
    elif grad_spikes is not None and grad_spikes.dtype == torch.bfloat16:
        gs, mode = bits(_as_3d(grad_spikes)), 1  # read as bfloat16 bits
    elif grad_spikes is not None:
        gs, mode = _as_3d(grad_spikes.to(H.dtype)), 1
    acc = np.zeros(H.shape[2], dtype=np.float64)
    with_norm = norm is not None
    if norm is None:  # placeholders of the right types, not read
        empty = np.zeros((1, 4), dtype=H.numpy().dtype)
        norm = (H.numpy(), empty[0], empty, empty, empty[0], acc[:0], acc[:0])
    kernels = _kernels()
    kernels.backward_kernel(
        gs if isinstance(gs, np.ndarray) else gs.numpy(), mode, H.numpy(),
        v0.to(H.dtype).reshape(H.shape[1:]).numpy(),
        m.numpy(), _params(q, params, constant),
        float(params.alpha), kernels.SURROGATE_CODES[params.surrogate], params.decay_input,
        not params.soft_reset, params.detach_reset, want_w, grad_x.numpy(),
        grad_state.numpy(), acc, with_norm, *norm)
    grad_w = None
    if want_w:
        qv = float(q)
        grad_q = float(acc.sum()) / (qv * qv if params.decay_input else 1.0)
        grad_w = torch.tensor(grad_q * qv * (1.0 - qv), dtype=w_dtype)
    return grad_x, grad_state, grad_w


def plif_multi_step_compiled(
    x: torch.Tensor,
    v: torch.Tensor,
    w: torch.Tensor,
    params: PLIFParameters = DEFAULT_PARAMETERS,
    *,
    mask: torch.Tensor | None = None,
    spike_dtype: torch.dtype | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Multi-step PLIF through :class:`CompiledPLIF` (same signature as the loop version;
    ``spike_dtype``: see :class:`CompiledPLIF`).

    Without autograd only the forward kernel runs, and the charge is not stored.
    """
    v = v.to(x.dtype).expand_as(x[0]).contiguous()
    needs_grad = torch.is_grad_enabled() and (x.requires_grad or v.requires_grad or w.requires_grad)
    if not needs_grad:
        q = torch.sigmoid(w).to(x.dtype)
        spikes, _, v_final = _forward(x, v, q, _mask_2d(mask, x), params, keep=False,
                                      spike_dtype=spike_dtype)
        return spikes, v_final
    return CompiledPLIF.apply(x, v, w, mask, params, spike_dtype)
