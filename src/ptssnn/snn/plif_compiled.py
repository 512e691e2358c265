"""Compiled PLIF forward and backward for the CPU (numba), one pass over memory each.

Same dynamics and signature as :func:`ptssnn.snn.plif.plif_multi_step_fused`; the
difference is where the time loop runs. The fused path issues a few PyTorch kernels per step,
so at ``B·N`` = 8 k neurons its time is per-step dispatch. Here the whole sequence is one
machine-code loop over ``t``, then samples, then neurons, on zero-copy numpy views of the
tensors; the neuron loop is SIMD-vectorised by LLVM.

- Forward (per element: read ``X``, write the charge ``H`` and the spikes) evaluates the
  expressions of :func:`~ptssnn.snn.plif.plif_step` in the same order, in the input's dtype,
  without fused multiply-adds (numba does not contract without ``fastmath``), so spikes and
  membrane are bit-identical to the loop.
- Backward (read ``∂L/∂S``, ``H`` and ``X``, write ``∂L/∂X``) runs the recursion
  ``∂L/∂H[t] = ∂L/∂S[t]·σ'[t] + ∂L/∂V[t]·∂V[t]/∂H[t]``, ``∂L/∂V[t-1] = ∂L/∂H[t]·(1 - q)``
  in float64 registers, recomputing the spikes from ``H`` and ``V[t-1]`` from ``H[t-1]``.
  The sigmoid surrogate needs ``exp``, which LLVM cannot vectorise without a vector maths
  library, so it is evaluated as ``exp(-u) = exp(-u/64)^64`` with a degree-9 Taylor
  polynomial (relative error < 1e-11 for ``u ≤ 24``; beyond that σ' < 1e-10·α is taken at
  ``u = 24``). ``∂L/∂w`` is accumulated per neuron in float64 (no reduction in the
  vectorised loop) and summed at the end.

The kernels are compiled on first use and cached on disk (``cache=True``: next to this file,
or in numba's user cache directory when that is read-only). :func:`available` says whether
they can run here; :mod:`ptssnn.snn.plif` falls back to the fused path when they cannot.
They run on one thread, float32 and float64, CPU tensors only.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import torch

__all__ = ["CompiledPLIF", "available", "plif_multi_step_compiled", "unavailable_reason"]

_SURROGATE_CODES = {"sigmoid": 0, "atan": 1}
_DTYPES = (torch.float32, torch.float64)

try:  # numba is an optional dependency (the `fast` extra)
    from numba import njit
except ImportError as error:  # pragma: no cover - depends on the environment
    njit = None
    _IMPORT_ERROR: str | None = f"numba is not installed ({error})"
else:
    _IMPORT_ERROR = None


def _jit(fn):
    """``njit`` with the options every kernel needs, or the plain function without numba.

    ``error_model="numpy"`` drops Python's division-by-zero checks, which would otherwise
    keep LLVM from vectorising any loop containing a division.
    """
    if njit is None:
        return fn
    return njit(cache=True, nogil=True, error_model="numpy")(fn)


def _inline(fn):
    if njit is None:
        return fn
    return njit(inline="always", error_model="numpy")(fn)


@_inline
def _charge(v, x, q, v_reset, decay_input):
    """``H = V + (X - (V - V_reset))·q`` or ``V - (V - V_reset)·q + X`` (plif_step's order)."""
    if decay_input:
        return v + (x - (v - v_reset)) * q
    return v - (v - v_reset) * q + x


@_jit
def _forward_kernel(x, v, mask, params, decay_input, hard, keep, H, S):  # pragma: no cover
    """Run the neurons over ``x [T, B, K]`` from ``v [B, K]`` (updated in place to V[T-1]).

    ``params = [q, V_reset, V_th, 1, 0]`` in the dtype of ``x``; ``mask [T, B]`` bool.
    Writes the spikes into ``S`` and, when ``keep``, the charge into ``H`` (masked steps:
    ``H = V``, no spike, state unchanged).
    """
    q, v_reset, v_threshold, one, zero = params[0], params[1], params[2], params[3], params[4]
    steps, batch, width = x.shape
    for t in range(steps):
        for b in range(batch):
            if mask[t, b]:
                if hard:
                    for j in range(width):
                        h = _charge(v[b, j], x[t, b, j], q, v_reset, decay_input)
                        fired = h >= v_threshold
                        if keep:
                            H[t, b, j] = h
                        S[t, b, j] = one if fired else zero
                        v[b, j] = v_reset if fired else h
                else:
                    for j in range(width):
                        h = _charge(v[b, j], x[t, b, j], q, v_reset, decay_input)
                        fired = h >= v_threshold
                        if keep:
                            H[t, b, j] = h
                        S[t, b, j] = one if fired else zero
                        v[b, j] = h - v_threshold if fired else h
            else:
                for j in range(width):
                    if keep:
                        H[t, b, j] = v[b, j]
                    S[t, b, j] = zero


@_inline
def _exp_negative(u):
    """``exp(-u)`` in float32 for ``0 <= u <= 80``: Cephes' ``expf`` (about 1 ulp).

    Written out because LLVM cannot vectorise a call to libm's ``expf``: ``-u = n·ln2 + r``
    (Cody–Waite split of ln2), a degree-5 polynomial for ``exp(r)``, and ``2^n`` built from
    its exponent bits.
    """
    y = -u
    n = np.floor(y * np.float32(1.44269504088896341) + np.float32(0.5))
    r = y - n * np.float32(0.693359375) - n * np.float32(-2.12194440e-4)
    p = np.float32(1.9875691500e-4)
    p = p * r + np.float32(1.3981999507e-3)
    p = p * r + np.float32(8.3334519073e-3)
    p = p * r + np.float32(4.1665795894e-2)
    p = p * r + np.float32(1.6666665459e-1)
    p = p * r + np.float32(5.0000001201e-1)
    p = p * (r * r) + r + np.float32(1.0)
    scale = np.int32((np.int32(n) + np.int32(127)) << np.int32(23)).view(np.float32)
    return p * scale


@_inline
def _surrogate(z, alpha, code):
    """σ'(z) in float32: sigmoid ``α·e/(1+e)²`` with ``e = exp(-|αz|)`` (= α·s(1-s)), or
    atan ``α/2 / (1 + (π/2·α·z)²)``."""
    if code == 1:
        a = np.float32(0.5 * math.pi) * alpha * z
        return np.float32(0.5) * alpha / (np.float32(1.0) + a * a)
    u = abs(alpha * z)
    e = _exp_negative(u if u < np.float32(80.0) else np.float32(80.0))
    d = np.float32(1.0) + e
    return alpha * e / (d * d)


@_jit
def _backward_kernel(grad_spikes, spikes_mode, H, x, v0, mask, params, alpha, code,
                     decay_input, hard, detach_reset, want_w, grad_x, grad_v, acc
                     ):  # pragma: no cover
    """Backward through time. ``grad_v [B, K]``: in ∂L/∂V[T-1], out ∂L/∂V0.

    Writes ∂L/∂X into ``grad_x`` and adds ``Σ ∂L/∂H·∂H/∂q`` per neuron into ``acc [K]``
    (float64). ``params = [q, V_reset, V_th, 1, 0, 1 - q, g]`` in the dtype of ``H``.
    ``spikes_mode``: 0 = no gradient w.r.t. the spikes, 1 = ``grad_spikes [T, B, K]``,
    2 = the same value ``g`` everywhere (the gradient of a sum, which autograd passes as a
    broadcast scalar: not materialised).

    Each row ``(t, b)`` takes two short loops that each touch few arrays (so LLVM's
    run-time alias checks stay within its budget and both vectorise): σ' into a scratch row,
    then the recursion in the input's dtype.
    """
    q, v_reset, v_threshold = params[0], params[1], params[2]
    one, zero, decay, constant = params[3], params[4], params[5], params[6]
    alpha32, threshold32 = np.float32(alpha), np.float32(v_threshold)
    steps, batch, width = H.shape
    sg = np.empty(width, dtype=H.dtype)
    for t in range(steps - 1, -1, -1):
        for b in range(batch):
            if not mask[t, b]:  # masked: H = V, no spike, ∂L/∂V passes unchanged
                for j in range(width):
                    grad_x[t, b, j] = zero
                continue
            for j in range(width):
                sg[j] = _surrogate(np.float32(H[t, b, j]) - threshold32, alpha32, code)
            for j in range(width):
                h = H[t, b, j]
                if hard:
                    dv_dh = zero if h >= v_threshold else one
                    if not detach_reset:
                        dv_dh = dv_dh + (v_reset - h) * sg[j]
                else:
                    dv_dh = one if detach_reset else one - v_threshold * sg[j]
                gh = grad_v[b, j] * dv_dh
                if spikes_mode == 1:
                    gh = gh + grad_spikes[t, b, j] * sg[j]
                elif spikes_mode == 2:
                    gh = gh + constant * sg[j]
                grad_x[t, b, j] = gh  # scaled by ∂H/∂X below, after ∂L/∂w has used it
                grad_v[b, j] = gh * decay
            if want_w:
                previous_real = t > 0 and mask[t - 1, b]
                for j in range(width):
                    if t == 0:
                        v_prev = v0[b, j]
                    else:  # V[t-1] from H[t-1], exactly as the forward computed it
                        hp = H[t - 1, b, j]
                        if previous_real and hp >= v_threshold:
                            v_prev = v_reset if hard else hp - v_threshold
                        else:
                            v_prev = hp
                    dh_dq = x[t, b, j] - (v_prev - v_reset) if decay_input else v_reset - v_prev
                    acc[j] += np.float64(grad_x[t, b, j]) * np.float64(dh_dq)
            if decay_input:
                for j in range(width):
                    grad_x[t, b, j] = grad_x[t, b, j] * q


@functools.cache
def unavailable_reason() -> str | None:
    """Why the compiled kernels cannot run here (None when they can).

    Compiles (or loads from the cache) and runs both kernels once on a tiny input.
    """
    if _IMPORT_ERROR is not None:
        return _IMPORT_ERROR
    try:
        x = torch.ones(2, 1, 3, requires_grad=True)
        spikes, v = plif_multi_step_compiled(x, torch.zeros(1, 3), torch.tensor(0.0))
        (spikes.sum() + v.sum()).backward()
    except Exception as error:  # numba/LLVM failures have many types
        return f"numba could not compile the PLIF kernels ({type(error).__name__}: {error})"
    return None


def available() -> bool:
    """Whether the compiled kernels run here (numba importable and the kernels compile)."""
    return unavailable_reason() is None


def supports(x: torch.Tensor) -> bool:
    """Whether a tensor can go through the kernels: CPU, float32/float64, not a tracer."""
    return x.device.type == "cpu" and x.dtype in _DTYPES and x.layout == torch.strided


def _as_3d(x: torch.Tensor) -> torch.Tensor:
    """``[T, B, *N]`` → contiguous ``[T, B, K]``."""
    return x.contiguous().reshape(x.shape[0], x.shape[1], -1)


def _params(q: torch.Tensor, v_reset: float | None, v_threshold: float,
            grad: torch.Tensor | None = None) -> np.ndarray:
    """``[q, V_reset, V_th, 1, 0, 1 - q, grad]`` in q's dtype (rounded as PyTorch rounds them)."""
    reset = 0.0 if v_reset is None else v_reset
    constants = torch.tensor([reset, v_threshold, 1.0, 0.0], dtype=torch.float64).to(q.dtype)
    grad = q.new_zeros(1) if grad is None else grad.reshape(1).to(q.dtype)
    return torch.cat([q.reshape(1), constants, (1.0 - q).reshape(1), grad]).numpy()


def _forward(x: torch.Tensor, v0: torch.Tensor, q: torch.Tensor, mask: torch.Tensor,
             v_threshold: float, v_reset: float | None, decay_input: bool, keep: bool
             ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(spikes, H or an empty tensor, v_final)``, shapes of ``x`` / ``v0``."""
    x3 = _as_3d(x)
    v = v0.to(x.dtype).reshape(x3.shape[1:]).clone()
    spikes = torch.empty_like(x3)
    H = torch.empty_like(x3) if keep else x3.new_empty(1, 1, 1)
    params = _params(q, v_reset, v_threshold)
    _forward_kernel(x3.detach().numpy(), v.numpy(), mask.numpy(), params, decay_input,
                    v_reset is not None, keep, H.numpy(), spikes.numpy())
    return spikes.reshape(x.shape), H, v.reshape(v0.shape)


def _mask_2d(mask: torch.Tensor | None, x: torch.Tensor) -> torch.Tensor:
    if mask is None:
        return torch.ones(x.shape[:2], dtype=torch.bool)
    return mask.to(torch.bool).contiguous()


class CompiledPLIF(torch.autograd.Function):
    """Whole-sequence PLIF in compiled loops.

    ``apply(x, v0, w, mask_or_None, v_threshold, v_reset, decay_input, detach_reset,
    surrogate, alpha) -> (spikes [T, B, *N], v_final [B, *N])``; ``mask`` is ``[T, B]`` bool
    (the fused function takes it pre-expanded; here the kernel reads it per sample).
    """

    @staticmethod
    def forward(  # type: ignore[override]
        ctx,
        x: torch.Tensor,
        v0: torch.Tensor,
        w: torch.Tensor,
        mask: torch.Tensor | None,
        v_threshold: float,
        v_reset: float | None,
        decay_input: bool,
        detach_reset: bool,
        surrogate: str,
        alpha: float,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        q = torch.sigmoid(w.detach()).to(x.dtype)
        m = _mask_2d(mask, x)
        spikes, H, v_final = _forward(x, v0, q, m, v_threshold, v_reset, decay_input, True)
        ctx.save_for_backward(x, v0, q, m, H)
        ctx.options = (v_threshold, v_reset, decay_input, detach_reset, surrogate, alpha)
        ctx.w_dtype = w.dtype
        return spikes, v_final

    @staticmethod
    def backward(ctx, grad_spikes: torch.Tensor | None, grad_v: torch.Tensor | None):  # type: ignore[override]
        x, v0, q, m, H = ctx.saved_tensors
        v_threshold, v_reset, decay_input, detach_reset, surrogate, alpha = ctx.options
        want_x, want_v0, want_w = ctx.needs_input_grad[:3]
        x3 = _as_3d(x)
        grad_x = torch.empty_like(H)
        v_grad = (torch.zeros(H.shape[1:], dtype=H.dtype) if grad_v is None
                  else grad_v.to(H.dtype).reshape(H.shape[1:]).clone())
        gs, mode, constant = H, 0, None
        if grad_spikes is not None and grad_spikes.numel() and not any(grad_spikes.stride()):
            mode, constant = 2, grad_spikes.reshape(-1)[0]  # a broadcast scalar
        elif grad_spikes is not None:
            gs, mode = _as_3d(grad_spikes.to(H.dtype)), 1
        acc = np.zeros(H.shape[2], dtype=np.float64)
        params = _params(q, v_reset, v_threshold, constant)
        _backward_kernel(gs.numpy(), mode, H.numpy(), x3.detach().numpy(),
                         v0.to(H.dtype).reshape(H.shape[1:]).numpy(), m.numpy(), params,
                         float(alpha), _SURROGATE_CODES[surrogate], decay_input,
                         v_reset is not None, detach_reset, bool(want_w), grad_x.numpy(),
                         v_grad.numpy(), acc)
        grad_w = None
        if want_w:
            qv = float(q)
            grad_w = torch.tensor(float(acc.sum()) * qv * (1.0 - qv), dtype=ctx.w_dtype)
        return (grad_x.reshape(x.shape) if want_x else None,
                v_grad.reshape(v0.shape) if want_v0 else None,
                grad_w, None, None, None, None, None, None, None)


def plif_multi_step_compiled(
    x: torch.Tensor,
    v: torch.Tensor,
    w: torch.Tensor,
    *,
    mask: torch.Tensor | None = None,
    v_threshold: float = 1.0,
    v_reset: float | None = 0.0,
    decay_input: bool = True,
    detach_reset: bool = False,
    surrogate: str = "sigmoid",
    alpha: float = 4.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Multi-step PLIF through :class:`CompiledPLIF` (same signature as the loop version).

    Without autograd only the forward kernel runs, and the charge is not stored.
    """
    v = v.to(x.dtype).expand_as(x[0]).contiguous() if v.shape != x.shape[1:] else v
    needs_grad = torch.is_grad_enabled() and (x.requires_grad or v.requires_grad or w.requires_grad)
    if not needs_grad:
        q = torch.sigmoid(w).to(x.dtype)
        spikes, _, v_final = _forward(x, v, q, _mask_2d(mask, x), v_threshold, v_reset,
                                      decay_input, False)
        return spikes, v_final
    return CompiledPLIF.apply(
        x, v, w, mask, v_threshold, v_reset, decay_input, detach_reset, surrogate, alpha
    )
