"""Numba kernels of the ``compiled`` backend (imported lazily: numba is optional).

See :mod:`ptssnn.snn.plif_compiled` for the design. Arrays are numpy views of contiguous
tensors: inputs and states ``[T, B, K]`` / ``[B, K]`` (``K`` = neurons per sample), the mask
``[T, B]`` bool. Every loop over ``K`` is written so that LLVM vectorises it: no calls,
selects instead of branches, and few arrays per loop (its run-time alias checks have a
budget). bfloat16 tensors (spikes and their gradients under a bfloat16 training step) arrive
as ``uint16`` views of their bits. Also here: the training kernels of the spike-fed Linear
layers (:mod:`ptssnn.snn.spike_linear`): spike positions, sparse product, weight gradient;
and the soft saturation's LayerNorm + tanh (:mod:`ptssnn.snn.input_compiled`).
"""

import math

import numpy as np
from numba import njit, types
from numba.extending import overload

__all__ = ["SURROGATE_CODES", "backward_kernel", "forward_kernel"]

SURROGATE_CODES = {"sigmoid": 0, "atan": 1}

# error_model="numpy" drops Python's division-by-zero checks, which would otherwise keep LLVM
# from vectorising any loop containing a division. No fastmath: no contraction into FMAs.
_jit = njit(cache=True, nogil=True, error_model="numpy")
_inline = njit(inline="always", error_model="numpy")
# Kernels that need not match PyTorch bit for bit (LayerNorm moments and gradients, the soft
# saturation) may reassociate sums, so that LLVM vectorises the row reductions, and contract
# into FMAs. An exact kernel may call a ``_jit_fast`` function (not inlined by numba: it is
# compiled with its own flags, which its instructions keep wherever LLVM puts them).
_jit_fast = njit(cache=True, nogil=True, error_model="numpy",
                 fastmath={"reassoc", "nsz", "contract"})
_inline_fast = njit(inline="always", error_model="numpy", fastmath={"reassoc", "nsz", "contract"})


@_inline
def _charge(v, x, q, v_reset, decay_input):
    """``H = V + (X - (V - V_reset))·q`` or ``V - (V - V_reset)·q + X`` (plif_step's order)."""
    if decay_input:
        return v + (x - (v - v_reset)) * q
    return v - (v - v_reset) * q + x


@_jit
def forward_kernel(x, v, mask, params, decay_input, hard, keep, H, S, one,
                   zero):  # pragma: no cover
    """Run the neurons over ``x [T, B, K]`` from ``v [B, K]`` (updated in place to V[T-1]).

    ``params = [q, V_reset, V_th, ...]`` in the dtype of ``x``; ``mask [T, B]`` bool.
    Writes the spikes into ``S`` as ``one`` / ``zero`` (of ``S``'s dtype: the bit patterns
    of bfloat16 1 and 0 for a ``uint16`` view of a bfloat16 tensor) and, when ``keep``, the
    charge into ``H`` (masked steps: ``H = V``, no spike, state unchanged).
    """
    q, v_reset, v_threshold = params[0], params[1], params[2]
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
def _bfloat16_value(bits):
    """The float32 value of bfloat16 ``bits`` (``uint16``): its upper half."""
    return np.uint32(np.uint32(bits) << np.uint32(16)).view(np.float32)


@_inline
def _bfloat16_bits(u):
    """float32 bits ``u`` (``uint32``) → bfloat16 bits (``uint16``), rounded to nearest even
    as PyTorch rounds (NaN stays NaN)."""
    rounded = (u + np.uint32(0x7FFF) + ((u >> np.uint32(16)) & np.uint32(1))) >> np.uint32(16)
    nan = (u & np.uint32(0x7FFFFFFF)) > np.uint32(0x7F800000)
    return np.uint16(np.uint32(0x7FC0) if nan else rounded)


def _element(values, j):  # pragma: no cover - replaced by the overload in compiled code
    """``values[j]`` as a float: bfloat16 bits (``uint16``) are decoded."""
    raise NotImplementedError


@overload(_element, inline="always")
def _element_for(values, j):  # pragma: no cover
    # Chosen per array type at compile time, so a uint16 array is never read as an integer
    # (which would promote the arithmetic around it to float64).
    if values.dtype == types.uint16:
        return lambda values, j: _bfloat16_value(values[j])
    return lambda values, j: values[j]


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
                     decay_input, hard, detach_reset, want_w, grad_x, grad_v, acc,
                     norm, x, gamma, mean, rstd, norm_constants, grad_gamma, grad_beta
                     ):  # pragma: no cover
    """Backward through time. ``grad_v [B, K]``: in ∂L/∂V[T-1], out ∂L/∂V0.

    Writes ∂L/∂X into ``grad_x`` and adds ``Σ ∂L/∂X·(H - V[t-1])`` (``decay_input``: that is
    ``q²·Σ ∂L/∂H·∂H/∂q``, the caller divides by ``q²``) or ``Σ ∂L/∂H·(V_reset - V[t-1])``
    (``= Σ ∂L/∂H·∂H/∂q``) per neuron into ``acc [K]`` (float64; each step's sum over the batch
    is formed in the input's dtype).
    ``params = [q, V_reset, V_th, 1, 0, 1 - q, g]`` in the dtype of ``H``.
    ``spikes_mode``: 0 = no gradient w.r.t. the spikes, 1 = ``grad_spikes [T, B, K]`` (in
    ``H``'s dtype, or bfloat16 bits as ``uint16``: spikes emitted in bfloat16, whose gradient
    is read without a cast), 2 = the same value ``g`` everywhere (the gradient of a sum,
    which autograd passes as a broadcast scalar: not materialised).

    Each row ``(t, b)`` is one pass over 1-D row views (the recursion, ``∂L/∂X =
    ∂L/∂H·∂H/∂X`` and the ``∂L/∂w`` terms together), which LLVM vectorises.

    ``norm``: the current was ``LayerNorm(x)`` (:func:`norm_forward_kernel`); each row's
    ``∂L/∂X`` is then taken through the LayerNorm's backward while the row is in cache
    (:func:`_norm_row_backward`): ``grad_x`` receives ``∂L/∂x``, and ``grad_gamma`` /
    ``grad_beta`` (float64) accumulate the affine parameters' gradients (each step's batch
    summed in the input's dtype first, as for ``w``). Otherwise those arrays are not read.
    """
    q, v_reset, v_threshold = params[0], params[1], params[2]
    one, zero, decay, constant = params[3], params[4], params[5], params[6]
    alpha32, threshold32 = np.float32(alpha), np.float32(v_threshold)
    steps, batch, width = H.shape
    step_sum = np.zeros(width, dtype=H.dtype)
    # The LayerNorm's affine gradients: each step's batch summed in dtype, then float64.
    norm_width = width if norm else 0
    step_gamma = np.zeros(norm_width, dtype=H.dtype)
    step_beta = np.zeros(norm_width, dtype=H.dtype)
    for t in range(steps - 1, -1, -1):
        for b in range(batch):
            gx = grad_x[t, b]
            if not mask[t, b]:  # masked: H = V, no spike, ∂L/∂V passes unchanged
                for j in range(width):
                    gx[j] = zero
                continue
            # Row views: the loop below then sees a few 1-D arrays (LLVM's run-time alias
            # checks stay within their budget, and the loop vectorises).
            h_row, gv = H[t, b], grad_v[b]
            gs = grad_spikes[t, b] if spikes_mode == 1 else grad_spikes[0, 0]
            if t > 0:  # V[t-1] from H[t-1], exactly as the forward computed it
                prev, previous_real = H[t - 1, b], mask[t - 1, b]
            else:
                prev, previous_real = v0[b], False
            for j in range(width):
                h = h_row[j]
                sg = _surrogate(np.float32(h) - threshold32, alpha32, code)
                if hard:
                    dv_dh = zero if h >= v_threshold else one
                    if not detach_reset:
                        dv_dh = dv_dh + (v_reset - h) * sg
                else:
                    dv_dh = one if detach_reset else one - v_threshold * sg
                gh = gv[j] * dv_dh
                if spikes_mode == 1:
                    gh = gh + _element(gs, j) * sg
                elif spikes_mode == 2:
                    gh = gh + constant * sg
                g = gh * q if decay_input else gh  # ∂L/∂X = ∂L/∂H·∂H/∂X (q, or 1)
                gx[j] = g
                gv[j] = gh * decay
                if want_w:
                    hp = prev[j]
                    if previous_real and hp >= v_threshold:
                        v_prev = v_reset if hard else hp - v_threshold
                    else:
                        v_prev = hp
                    # ∂H/∂q = X - (V[t-1] - V_reset) = (H - V[t-1]) / q with decay_input (g
                    # holds q·∂L/∂H; the caller divides the total by q²: X is never read),
                    # else V_reset - V[t-1].
                    dh_dq = h - v_prev if decay_input else v_reset - v_prev
                    step_sum[j] += g * dh_dq
            if norm:
                _norm_row_backward(gx, x[t, b], gamma, mean[t, b], rstd[t, b], norm_constants,
                                   step_gamma, step_beta)
        if norm:
            for j in range(width):
                grad_gamma[j] += np.float64(step_gamma[j])
                grad_beta[j] += np.float64(step_beta[j])
                step_gamma[j] = zero
                step_beta[j] = zero
        if want_w:  # one float64 addition per neuron and step (B products summed in dtype)
            for j in range(width):
                acc[j] += np.float64(step_sum[j])
                step_sum[j] = zero


# ----------------------------------------------------------------- LayerNorm → PLIF
# A LayerNorm whose output is a PLIF layer's current (the block MLP's hidden layer, the SSLA
# keys and values) fused into the PLIF kernels (:mod:`ptssnn.snn.norm_plif`): the normalised
# current and its gradient never reach memory. ``norm_constants = [eps, width, 0, 1]`` in the
# current's dtype.
@_jit_fast
def _row_moments(row, norm_constants):  # pragma: no cover
    """``(mean, 1 / sqrt(var + eps))`` of one row (biased variance, as ``nn.LayerNorm``)."""
    eps, width, zero = norm_constants[0], norm_constants[1], norm_constants[2]
    total = zero
    for j in range(row.shape[0]):
        total += row[j]
    m = total / width
    square = zero
    for j in range(row.shape[0]):
        centred = row[j] - m
        square += centred * centred
    return m, norm_constants[3] / np.sqrt(square / width + eps)


@_jit_fast
def _norm_row_backward(g, row, gamma, m, rs, norm_constants, grad_gamma,
                       grad_beta):  # pragma: no cover
    """LayerNorm backward of one row in place: ``g`` holds ``∂L/∂y`` in, ``∂L/∂x`` out;
    ``x̂ = (x - mean)·rstd`` recomputed from the row; ``grad_gamma += g·x̂`` and
    ``grad_beta += g`` (the caller's per-step sums, in the row's dtype)."""
    width, zero = norm_constants[1], norm_constants[2]
    sum_g = zero
    sum_gx = zero
    for j in range(g.shape[0]):
        x_hat = (row[j] - m) * rs
        gj = g[j]
        grad_gamma[j] += gj * x_hat
        grad_beta[j] += gj
        scaled = gj * gamma[j]
        sum_g += scaled
        sum_gx += scaled * x_hat
    sum_g /= width
    sum_gx /= width
    for j in range(g.shape[0]):
        g[j] = rs * (g[j] * gamma[j] - sum_g - (row[j] - m) * rs * sum_gx)


@_jit
def norm_forward_kernel(x, v, mask, params, norm_constants, gamma, beta, decay_input, hard, H,
                        S, one, zero, scratch, mean, rstd):  # pragma: no cover
    """:func:`forward_kernel` (with the charge kept) on ``LayerNorm(x)`` over the last
    dimension of ``x [T, B, K]``, one row at a time: the row's moments (written to ``mean``
    and ``rstd [T, B]``), then its current ``((x - mean)·rstd)·gamma + beta`` into
    ``scratch [K]`` (evaluated in that order, without FMAs: the PyTorch expression with
    these moments gives the same current), then the neurons. Masked rows are not
    normalised (their current is not read: ``H = V``, no spike)."""
    q, v_reset, v_threshold = params[0], params[1], params[2]
    steps, batch, width = x.shape
    for t in range(steps):
        for b in range(batch):
            vr, hr, sr = v[b], H[t, b], S[t, b]
            if not mask[t, b]:
                mean[t, b] = norm_constants[2]
                rstd[t, b] = norm_constants[2]
                for j in range(width):
                    hr[j] = vr[j]
                    sr[j] = zero
                continue
            row = x[t, b]
            m, rs = _row_moments(row, norm_constants)
            mean[t, b], rstd[t, b] = m, rs
            for j in range(width):
                scratch[j] = (row[j] - m) * rs * gamma[j] + beta[j]
            if hard:
                for j in range(width):
                    h = _charge(vr[j], scratch[j], q, v_reset, decay_input)
                    fired = h >= v_threshold
                    hr[j] = h
                    sr[j] = one if fired else zero
                    vr[j] = v_reset if fired else h
            else:
                for j in range(width):
                    h = _charge(vr[j], scratch[j], q, v_reset, decay_input)
                    fired = h >= v_threshold
                    hr[j] = h
                    sr[j] = one if fired else zero
                    vr[j] = h - v_threshold if fired else h


@_jit
def spike_index_kernel(bits, one, indptr, indices):  # pragma: no cover
    """CSR positions of the non-zeros of ``s [R, K]`` given as its bit patterns ``bits``
    (``uint16`` for bfloat16, ``uint32`` for float32, ``uint64`` for float64; ``one`` = the
    bits of 1.0): row
    pointers into ``indptr [R + 1]``, column indices (in increasing ``k``) into ``indices``
    (room for ``R·K``). Returns ``(count, binary)``: ``binary`` when every non-zero is 1.0
    (spikes: the product kernels then skip the multiply). ``-0.0`` counts as a non-zero.
    """
    rows, width = bits.shape
    count = 0
    not_one = 0
    for r in range(rows):
        indptr[r] = count
        for k in range(width):
            x = bits[r, k]
            if x != 0:
                indices[count] = k
                count += 1
                not_one += x != one
    indptr[rows] = count
    return count, not_one == 0


@_inline
def _index_lane(value, one, column, indices, count):
    """Record one lane of a word: ``(count after, 1 if the value is a non-zero other than
    1.0)``. Branch-free: the column is always written at ``count`` (a zero lane's entry is
    overwritten by the next non-zero; ``count`` never passes the lanes seen, so it stays in
    bounds), a quarter faster than a branch per lane at a few percent firing."""
    indices[count] = column
    non_zero = value != 0
    return count + non_zero, non_zero and value != one


@_jit
def spike_index_words_kernel(words, lanes, one, indptr, indices):  # pragma: no cover
    """:func:`spike_index_kernel` on 64-bit words holding ``lanes`` (2 or 4) values each
    (``uint64 [R, K / lanes]``: two float32 or four bfloat16, little-endian, the first value
    in the low bits; ``one`` = the bits of 1.0 in one lane). At a few percent firing most
    words are zero and are skipped with one test; the lanes of the others are unrolled."""
    rows, count_words = words.shape
    count = 0
    not_one = 0
    if lanes == 2:
        low = np.uint64(0xFFFFFFFF)
        for r in range(rows):
            indptr[r] = count
            for w in range(count_words):
                x = words[r, w]
                if x != 0:
                    count, odd = _index_lane(x & low, one, 2 * w, indices, count)
                    not_one += odd
                    count, odd = _index_lane(x >> np.uint64(32), one, 2 * w + 1, indices, count)
                    not_one += odd
    else:
        low = np.uint64(0xFFFF)
        for r in range(rows):
            indptr[r] = count
            for w in range(count_words):
                x = words[r, w]
                if x != 0:
                    base = 4 * w
                    count, odd = _index_lane(x & low, one, base, indices, count)
                    not_one += odd
                    count, odd = _index_lane((x >> np.uint64(16)) & low, one, base + 1,
                                             indices, count)
                    not_one += odd
                    count, odd = _index_lane((x >> np.uint64(32)) & low, one, base + 2,
                                             indices, count)
                    not_one += odd
                    count, odd = _index_lane(x >> np.uint64(48), one, base + 3, indices, count)
                    not_one += odd
    indptr[rows] = count
    return count, not_one == 0


@_inline
def _add_rows(row, source, selected, start, end):
    """``row += Σ source[selected[i]]`` for ``i`` in ``[start, end)``, four rows at a time
    (``(r0 + r1) + (r2 + r3)``): one pass over ``row`` per four rows, which is what bounds
    the spike-fed kernels. ``source`` may hold bfloat16 bits (``uint16``): half the bytes
    to bring in from L2, each value widened to float32 exactly."""
    n_out = row.shape[0]
    i = start
    while i + 4 <= end:
        r0, r1 = source[selected[i]], source[selected[i + 1]]
        r2, r3 = source[selected[i + 2]], source[selected[i + 3]]
        for n in range(n_out):
            row[n] += (_element(r0, n) + _element(r1, n)) + (_element(r2, n) + _element(r3, n))
        i += 4
    while i < end:
        r0 = source[selected[i]]
        for n in range(n_out):
            row[n] += _element(r0, n)
        i += 1


@_jit
def sparse_matmul_kernel(indptr, indices, binary, s, weight_t, bias, out):  # pragma: no cover
    """``out = s @ weight_t + bias`` for a sparse ``s [R, K]`` (spikes; CSR ``indptr``,
    ``indices``), ``weight_t [K, N]`` (float, or bfloat16 bits as ``uint16`` for binary
    spikes under a bfloat16 autocast: the sum of the bfloat16 weights in float32, what a
    bfloat16 product with float32 accumulation computes).

    Work is proportional to the non-zeros of ``s``: each adds one row of ``weight_t`` (in L2)
    into the output row (in L1). Binary spikes need no multiply (``s`` is not read) and their
    rows are added four at a time (:func:`_add_rows`).
    """
    n_out = weight_t.shape[1]
    for r in range(out.shape[0]):
        row = out[r]
        for n in range(n_out):
            row[n] = bias[n]
        if binary:
            _add_rows(row, weight_t, indices, indptr[r], indptr[r + 1])
        else:
            for i in range(indptr[r], indptr[r + 1]):
                k = indices[i]
                value, w0 = s[r, k], weight_t[k]
                for n in range(n_out):
                    row[n] += value * _element(w0, n)


@_jit
def spike_columns_kernel(indptr, indices, width, colptr, rows_of):  # pragma: no cover
    """The same positions by column (CSC): ``colptr [K + 1]``, and in ``rows_of`` the rows
    of each column's non-zeros in increasing order (a counting sort of the CSR)."""
    rows = indptr.shape[0] - 1
    next_slot = np.zeros(width + 1, np.int64)
    for i in range(indptr[rows]):
        next_slot[indices[i] + 1] += 1
    for k in range(width):
        next_slot[k + 1] += next_slot[k]
    for k in range(width + 1):
        colptr[k] = next_slot[k]
    for r in range(rows):
        for i in range(indptr[r], indptr[r + 1]):
            k = indices[i]
            rows_of[next_slot[k]] = r
            next_slot[k] += 1


@_jit
def sparse_weight_grad_kernel(colptr, rows_of, binary, s, grad_out,
                              grad_weight_t):  # pragma: no cover
    """``grad_weight_t [K, N] = s.T @ grad_out`` for a sparse ``s [R, K]`` given by column
    (CSC ``colptr``, ``rows_of``), ``grad_out [R, N]``: each row of the gradient is the sum
    of the ``grad_out`` rows where that input spiked (binary spikes: :func:`_add_rows`,
    ``s`` not read)."""
    n_out = grad_out.shape[1]
    for k in range(grad_weight_t.shape[0]):
        row = grad_weight_t[k]
        for n in range(n_out):
            row[n] = 0.0
        if binary:
            _add_rows(row, grad_out, rows_of, colptr[k], colptr[k + 1])
        else:
            for i in range(colptr[k], colptr[k + 1]):
                r = rows_of[i]
                value, g0 = s[r, k], grad_out[r]
                for n in range(n_out):
                    row[n] += value * g0[n]


# ----------------------------------------------------------------- soft saturation
# tanh(ξ·LayerNorm(x)) row by row (:mod:`ptssnn.snn.input_compiled`), with ``_jit_fast``.

#: Beyond this |z| the float32 tanh is ±1 (Eigen's clamp for the approximation below).
_TANH_CLAMP = np.float32(7.90531110763549805)


@_inline_fast
def _tanh(z):
    """float32 ``tanh(z)``: Eigen's rational approximation (odd degree-13 over even
    degree-6 polynomial, within a few ulp; measured against ``torch.tanh`` in the tests).
    Written out because LLVM cannot vectorise a call to libm's ``tanhf``."""
    z = min(max(z, -_TANH_CLAMP), _TANH_CLAMP)
    z2 = z * z
    p = z2 * np.float32(-2.76076847742355e-16) + np.float32(2.00018790482477e-13)
    p = p * z2 + np.float32(-8.60467152213735e-11)
    p = p * z2 + np.float32(5.12229709037114e-08)
    p = p * z2 + np.float32(1.48572235717979e-05)
    p = p * z2 + np.float32(6.37261928875436e-04)
    p = p * z2 + np.float32(4.89352455891786e-03)
    q = z2 * np.float32(1.19825839466702e-06) + np.float32(1.18534705686654e-04)
    q = q * z2 + np.float32(2.26843463243900e-03)
    q = q * z2 + np.float32(4.89352518554385e-03)
    return z * p / q




@_inline_fast
def _saturate(row, j, norm, m, rs, weight, bias, xi):
    """One saturated value ``tanh(ξ·(x̂·weight + bias))`` (``norm``) or ``tanh(ξ·x)``."""
    if norm:
        return _tanh(((row[j] - m) * rs * weight[j] + bias[j]) * xi)
    return _tanh(row[j] * xi)


@_jit_fast
def saturation_forward_kernel(x, norm, weight, bias, xi, eps, y, mean, rstd, to_bfloat16,
                              y_bits):  # pragma: no cover
    """``y = tanh(ξ·(x̂·weight + bias))`` per row of ``x [R, D]`` (float32), with
    ``x̂ = (x - mean)·rstd`` the row's LayerNorm (biased variance, as ``nn.LayerNorm``);
    writes each row's ``mean`` and ``rstd`` for the backward. ``norm=False``: ``tanh(ξ·x)``.
    ``to_bfloat16``: ``y`` is written as bfloat16 bits into ``y_bits [R, D]`` (``uint16``)
    instead (the operand of a bfloat16 product: one pass instead of a float32 ``y`` and a
    cast), and ``y`` is not touched."""
    rows, width = x.shape
    m = np.float32(0.0)
    rs = np.float32(1.0)
    for r in range(rows):
        row = x[r]
        if norm:
            total = np.float32(0.0)
            for j in range(width):
                total += row[j]
            m = total / np.float32(width)
            square = np.float32(0.0)
            for j in range(width):
                centred = row[j] - m
                square += centred * centred
            rs = np.float32(1.0) / np.sqrt(square / np.float32(width) + eps)
            mean[r], rstd[r] = m, rs
        if to_bfloat16:
            bits = y_bits[r]
            for j in range(width):
                value = np.float32(_saturate(row, j, norm, m, rs, weight, bias, xi))
                bits[j] = _bfloat16_bits(value.view(np.uint32))
        else:
            out = y[r]
            for j in range(width):
                out[j] = _saturate(row, j, norm, m, rs, weight, bias, xi)


@_jit_fast
def saturation_backward_kernel(grad_y, y, x, norm, mean, rstd, weight, bias, xi, want_x,
                               grad_x, grad_weight, grad_bias, scratch):  # pragma: no cover
    """Gradients of :func:`saturation_forward_kernel`: ``grad_x [R, D]`` (when ``want_x``)
    and, with ``norm``, ``grad_weight`` / ``grad_bias [D]`` accumulated in float64.
    ``tanh' = 1 - y²``; ``x̂`` is recomputed from ``x`` and the row's moments, and ``y`` too
    when it was not kept (``y`` empty: the forward wrote bfloat16). ``grad_y`` may be
    bfloat16 bits (``uint16``). Each case is its own loop, so that each vectorises."""
    rows, width = x.shape
    kept = y.shape[0] > 0
    for r in range(rows):
        dy, row = grad_y[r], x[r]
        m = mean[r] if norm else np.float32(0.0)
        rs = rstd[r] if norm else np.float32(1.0)
        # ∂L/∂z (z = the tanh's argument over ξ) into scratch
        if kept:
            out = y[r]
            for j in range(width):
                scratch[j] = _element(dy, j) * (np.float32(1.0) - out[j] * out[j]) * xi
        elif norm:
            for j in range(width):
                value = _tanh(((row[j] - m) * rs * weight[j] + bias[j]) * xi)
                scratch[j] = _element(dy, j) * (np.float32(1.0) - value * value) * xi
        else:
            for j in range(width):
                value = _tanh(row[j] * xi)
                scratch[j] = _element(dy, j) * (np.float32(1.0) - value * value) * xi
        if not norm:
            if want_x:
                target = grad_x[r]
                for j in range(width):
                    target[j] = scratch[j]
            continue
        sum_g = np.float32(0.0)
        sum_gx = np.float32(0.0)
        for j in range(width):
            dz = scratch[j]
            x_hat = (row[j] - m) * rs
            grad_weight[j] += dz * x_hat
            grad_bias[j] += dz
            g = dz * weight[j]
            scratch[j] = g
            sum_g += g
            sum_gx += g * x_hat
        if want_x:
            sum_g /= np.float32(width)
            sum_gx /= np.float32(width)
            target = grad_x[r]
            for j in range(width):
                target[j] = rs * (scratch[j] - sum_g - (row[j] - m) * rs * sum_gx)


@_jit
def gradient_epilogue_kernel(grad, to_bfloat16, low_bits, sums, indptr, indices, binary, s,
                             grad_weight_t):  # pragma: no cover
    """One pass over a spike-fed layer's output gradient ``grad [R, N]`` (float32), row by
    row: its bfloat16 copy for the dense input-gradient product (``low_bits``, ``uint16``,
    rounded to nearest even as PyTorch rounds; when ``to_bfloat16``), when ``sums`` is not
    empty its column sums (the bias gradient, float64), and when ``grad_weight_t [K, N]`` is
    not empty the weight gradient ``sᵀ·grad``: each spike of row ``r`` (CSR ``indptr``,
    ``indices`` of ``s [R, K]``; binary spikes: ``s`` not read) adds the row, while it is in
    cache, to its input's row of ``grad_weight_t`` (``K·N`` floats, which stay in L2 for
    the head's layers; reading ``grad`` again by column cost more)."""
    rows, width = grad.shape
    bits = grad.view(np.uint32)
    with_sums = sums.shape[0] > 0
    with_weight = grad_weight_t.shape[0] > 0
    if with_weight:
        for k in range(grad_weight_t.shape[0]):
            target = grad_weight_t[k]
            for n in range(width):
                target[n] = 0.0
    for r in range(rows):
        if to_bfloat16:
            row, low = bits[r], low_bits[r]
            for n in range(width):
                low[n] = _bfloat16_bits(row[n])
        values = grad[r]
        if with_sums:
            for n in range(width):
                sums[n] += values[n]
        if with_weight:
            for i in range(indptr[r], indptr[r + 1]):
                k = indices[i]
                target = grad_weight_t[k]
                if binary:
                    for n in range(width):
                        target[n] += values[n]
                else:
                    value = s[r, k]
                    for n in range(width):
                        target[n] += value * values[n]


# ----------------------------------------------------------------- input layer sum
@_jit
def standardised_sum_kernel(x, mean, std, weights, out):  # pragma: no cover
    """``out[t, b] = Σ_l weights[l]·(x[b, l, t] - mean[l]) / std[l]``: the head's input
    standardisation and layer sum in one pass over ``x [B, L, T, D]`` (float32), written
    time-major ``[T, B, D]``. One layer with weight 1 is the standardisation alone, bit for
    bit as PyTorch's ``(x - mean) / std``."""
    batch, layers, steps, width = x.shape
    for b in range(batch):
        for t in range(steps):
            row = out[t, b]
            if layers == 1 and weights[0] == 1.0:
                source, m, s = x[b, 0, t], mean[0], std[0]
                for d in range(width):
                    row[d] = (source[d] - m[d]) / s[d]
                continue
            for d in range(width):
                row[d] = 0.0
            for layer in range(layers):
                source, m, s, w = x[b, layer, t], mean[layer], std[layer], weights[layer]
                for d in range(width):
                    row[d] += w * ((source[d] - m[d]) / s[d])


@_jit
def standardised_sum_weight_grad_kernel(x, mean, std, grad_out, partial):  # pragma: no cover
    """``partial[l, d] += Σ_{b,t} (x[b, l, t, d] - mean[l, d]) / std[l, d] · grad_out[t, b, d]``
    (float64): summed over ``d`` by the caller, the gradient of the layer weights."""
    batch, layers, steps, width = x.shape
    for b in range(batch):
        for layer in range(layers):
            acc, m, s = partial[layer], mean[layer], std[layer]
            for t in range(steps):
                source, g = x[b, layer, t], grad_out[t, b]
                for d in range(width):
                    acc[d] += ((source[d] - m[d]) / s[d]) * g[d]


# ----------------------------------------------------------------- temporal shift
@_inline
def _copy_or_zero(row, source, start, end, keep):
    """``row[start:end] = source[start:end]`` when ``keep``, else zeros. The loops run over
    slices from 0: with a run-time start numba would check every index for wraparound,
    which keeps LLVM from turning the loop into a block copy (15× slower)."""
    target = row[start:end]
    if keep:
        values = source[start:end]
        for c in range(target.shape[0]):
            target[c] = values[c]
    else:
        for c in range(target.shape[0]):
            target[c] = 0


@_jit
def shift_kernel(source, mask, n_later, n_earlier, forward, premask,
                 out):  # pragma: no cover
    """The temporal shift of :mod:`ptssnn.snn.shift` (``forward``) or its gradient, on the
    bit patterns of ``[T, B, C]`` tensors (unsigned integers of the element size: a pure
    move, any float dtype). Forward: channels ``[0, n_later)`` of frame ``t`` come from
    frame ``t - 1``, ``[n_later, n_later + n_earlier)`` from ``t + 1``, the rest from ``t``;
    a value is kept when its output frame is real (and, with ``premask``, its source frame
    too), else it is zero, as are the edges. Backward: each gradient goes back to the frame
    it was read from, kept under the same condition."""
    steps, batch, width = source.shape
    stop = n_later + n_earlier
    first = -1 if forward else 1  # where the first group is read from, relative to t
    for t in range(steps):
        for b in range(batch):
            row = out[t, b]
            for start, end, offset in ((0, n_later, first), (n_later, stop, -first),
                                       (stop, width, 0)):
                other = t + offset
                keep = start < end and 0 <= other < steps
                if keep:
                    written, read = (t, other) if forward else (other, t)
                    keep = mask[written, b] and (not premask or mask[read, b])
                _copy_or_zero(row, source[other if keep else t, b], start, end, keep)
