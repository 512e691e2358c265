"""Numba kernels of the ``compiled`` PLIF backend (imported lazily: numba is optional).

See :mod:`ptssnn.snn.plif_compiled` for the design. Arrays are numpy views of contiguous
tensors: inputs and states ``[T, B, K]`` / ``[B, K]`` (``K`` = neurons per sample), the mask
``[T, B]`` bool. Every loop over ``K`` is written so that LLVM vectorises it: no calls,
selects instead of branches, and few arrays per loop (its run-time alias checks have a
budget).
"""

import math

import numpy as np
from numba import njit

__all__ = ["SURROGATE_CODES", "backward_kernel", "forward_kernel"]

SURROGATE_CODES = {"sigmoid": 0, "atan": 1}

# error_model="numpy" drops Python's division-by-zero checks, which would otherwise keep LLVM
# from vectorising any loop containing a division. No fastmath: no contraction into FMAs.
_jit = njit(cache=True, nogil=True, error_model="numpy")
_inline = njit(inline="always", error_model="numpy")


@_inline
def _charge(v, x, q, v_reset, decay_input):
    """``H = V + (X - (V - V_reset))·q`` or ``V - (V - V_reset)·q + X`` (plif_step's order)."""
    if decay_input:
        return v + (x - (v - v_reset)) * q
    return v - (v - v_reset) * q + x


@_jit
def forward_kernel(x, v, mask, params, decay_input, hard, keep, H, S):  # pragma: no cover
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
def backward_kernel(grad_spikes, spikes_mode, H, v0, mask, params, alpha, code,
                     decay_input, hard, detach_reset, want_w, grad_x, grad_v, acc
                     ):  # pragma: no cover
    """Backward through time. ``grad_v [B, K]``: in ∂L/∂V[T-1], out ∂L/∂V0.

    Writes ∂L/∂X into ``grad_x`` and adds ``Σ ∂L/∂H·∂H/∂q`` per neuron into ``acc [K]``
    (float64; each step's sum over the batch is formed in the input's dtype), times ``q``
    when ``decay_input`` (the caller divides by it).
    ``params = [q, V_reset, V_th, 1, 0, 1 - q, g]`` in the dtype of ``H``.
    ``spikes_mode``: 0 = no gradient w.r.t. the spikes, 1 = ``grad_spikes [T, B, K]``,
    2 = the same value ``g`` everywhere (the gradient of a sum, which autograd passes as a
    broadcast scalar: not materialised).

    Each row ``(t, b)`` takes short loops that each touch few arrays (so LLVM's run-time
    alias checks stay within their budget and every loop vectorises): the recursion, then
    the ``∂L/∂w`` terms, then the ``∂H/∂X`` scaling.
    """
    q, v_reset, v_threshold = params[0], params[1], params[2]
    one, zero, decay, constant = params[3], params[4], params[5], params[6]
    alpha32, threshold32 = np.float32(alpha), np.float32(v_threshold)
    steps, batch, width = H.shape
    step_sum = np.zeros(width, dtype=H.dtype)
    for t in range(steps - 1, -1, -1):
        for b in range(batch):
            if not mask[t, b]:  # masked: H = V, no spike, ∂L/∂V passes unchanged
                for j in range(width):
                    grad_x[t, b, j] = zero
                continue
            for j in range(width):
                h = H[t, b, j]
                sg = _surrogate(np.float32(h) - threshold32, alpha32, code)
                if hard:
                    dv_dh = zero if h >= v_threshold else one
                    if not detach_reset:
                        dv_dh = dv_dh + (v_reset - h) * sg
                else:
                    dv_dh = one if detach_reset else one - v_threshold * sg
                gh = grad_v[b, j] * dv_dh
                if spikes_mode == 1:
                    gh = gh + grad_spikes[t, b, j] * sg
                elif spikes_mode == 2:
                    gh = gh + constant * sg
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
                    # ∂H/∂q = X - (V[t-1] - V_reset) = (H - V[t-1]) / q with decay_input (the
                    # 1/q is applied to the total by the caller: X is never read), else
                    # V_reset - V[t-1].
                    dh_dq = H[t, b, j] - v_prev if decay_input else v_reset - v_prev
                    step_sum[j] += grad_x[t, b, j] * dh_dq
            if decay_input:
                for j in range(width):
                    grad_x[t, b, j] = grad_x[t, b, j] * q
        if want_w:  # one float64 addition per neuron and step (B products summed in dtype)
            for j in range(width):
                acc[j] += np.float64(step_sum[j])
                step_sum[j] = zero


@_jit
def _active(row, index, values):  # pragma: no cover
    """Gather the non-zero entries of ``row`` into ``index``/``values``; return their count."""
    count = 0
    for k in range(row.shape[0]):  # branch-free compaction (the count advances on non-zeros)
        index[count] = k
        values[count] = row[k]
        count += row[k] != 0
    return count


@_jit
def sparse_matmul_kernel(s, weight_t, bias, out):  # pragma: no cover
    """``out = s @ weight_t + bias`` for a sparse ``s [R, K]`` (spikes), ``weight_t [K, N]``.

    Work is proportional to the non-zeros of ``s``: each adds one row of ``weight_t`` (in L2)
    into the output row (in L1), in increasing ``k``.
    """
    rows, width = s.shape
    n_out = weight_t.shape[1]
    index = np.empty(width, np.int64)
    values = np.empty(width, s.dtype)
    acc = np.empty(n_out, out.dtype)
    for r in range(rows):
        count = _active(s[r], index, values)
        for n in range(n_out):
            acc[n] = bias[n]
        for i in range(count):
            k, value = index[i], values[i]
            for n in range(n_out):
                acc[n] += value * weight_t[k, n]
        for n in range(n_out):
            out[r, n] = acc[n]


@_jit
def sparse_weight_grad_kernel(s, grad_out, grad_weight_t):  # pragma: no cover
    """``grad_weight_t [K, N] = s.T @ grad_out`` for a sparse ``s [R, K]``, ``grad_out [R, N]``."""
    rows, width = s.shape
    n_out = grad_out.shape[1]
    index = np.empty(width, np.int64)
    values = np.empty(width, s.dtype)
    for k in range(width):
        for n in range(n_out):
            grad_weight_t[k, n] = 0.0
    for r in range(rows):
        count = _active(s[r], index, values)
        for i in range(count):
            k, value = index[i], values[i]
            for n in range(n_out):
                grad_weight_t[k, n] += value * grad_out[r, n]
