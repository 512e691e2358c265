"""Parametric leaky integrate-and-fire (PLIF) neurons: pure dynamics and a thin module.

Dynamics (Fang et al., ICCV 2021; SpikingJelly ``ParametricLIFNode``), with
``q = 1/τ = sigmoid(w)`` and one learnable ``w`` per layer:

- charge, decay_input on:  ``H[t] = V[t-1] + (X[t] - (V[t-1] - V_reset)) · q``
- charge, decay_input off: ``H[t] = V[t-1] - (V[t-1] - V_reset) · q + X[t]``
- fire: ``S[t] = (H[t] >= V_th)``
- hard reset: ``V[t] = S·V_reset + (1 - S)·H``; soft reset (``v_reset=None``): ``V[t] = H - V_th·S``

``X`` may carry an extra bias voltage (``X + b``) and a padding mask: a masked step leaves the
membrane unchanged and emits no spike. The expressions are evaluated in exactly
SpikingJelly's order, so spikes are bit-identical to its reference.

Shapes: time first, ``x`` is ``[T, B, *N]`` (``N`` neuron dims), state ``v`` is ``[B, *N]``,
``mask`` is ``[T, B]`` (bool, True = real frame).

Two multi-step implementations compute the same function:

- :func:`plif_multi_step_loop`: a Python loop of :func:`plif_step`, differentiated by autograd.
- :class:`FusedPLIF`: a custom autograd function. Forward runs the loop with four kernels
  per step (hard reset: on the negated membrane, so fire-and-reset is one ``threshold``)
  into preallocated buffers and keeps only ``H`` and the spikes; backward is written by hand:
  the surrogate derivative and reset Jacobian are computed for chunks of steps at once,
  leaving a single ``addcmul`` per step for the backward-through-time recursion
  ``∂L/∂H[t] = A[t] + ∂L/∂H[t+1] · c[t]``. At T=256, B=32, D=256 on one CPU thread it is
  4.5× (min; 3.1× median) faster than SpikingJelly's CPU path and 20× faster than the loop
  (``benchmarks/README.md``).

Without autograd (inference) the fused forward runs alone; under tracing / ONNX export the
plain loop runs, so exported graphs contain standard operators only.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ptssnn.errors import ModelConfigError
from ptssnn.snn.surrogate import check_surrogate, spike_function, surrogate_gradient

__all__ = [
    "PLIF",
    "FusedPLIF",
    "init_w",
    "plif_multi_step",
    "plif_multi_step_fused",
    "plif_multi_step_loop",
    "plif_step",
]


def init_w(init_tau: float) -> float:
    """Initial ``w`` for a time constant τ0 (``1/τ0 = sigmoid(w0)``, so ``w0 = -ln(τ0 - 1)``).

    Raises:
        ModelConfigError: τ0 <= 1 (no leaky integrator has τ <= 1).
    """
    if not init_tau > 1.0:
        raise ModelConfigError(f"init_tau must be > 1 (got {init_tau}); PLIF uses 1/τ = sigmoid(w)")
    return -math.log(init_tau - 1.0)


def _expand_mask(mask: torch.Tensor, ndim: int, dtype: torch.dtype) -> torch.Tensor:
    """``[..., B]`` bool mask → float mask broadcastable to a tensor with ``ndim`` dims."""
    m = mask.to(dtype)
    return m.reshape(*m.shape, *([1] * (ndim - m.dim())))


def plif_step(
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
    """One PLIF time step.

    Args:
        x: input current (bias already added) ``[B, *N]``.
        v: membrane potential before the step ``[B, *N]``.
        w: learnable scalar, ``1/τ = sigmoid(w)``.
        mask: ``[B]`` bool, True = real step; masked samples keep ``v`` and emit nothing.
        v_threshold: firing threshold V_th.
        v_reset: hard-reset voltage, or None for soft reset (subtract V_th).
        decay_input: whether the input is divided by τ as well.
        detach_reset: stop the gradient through the spike in the reset term.
        surrogate: surrogate gradient name.
        alpha: surrogate sharpness.

    Returns:
        ``(spike, v_next)``, both ``[B, *N]``; spikes are floats in {0, 1}.
    """
    q = torch.sigmoid(w)
    reset = 0.0 if v_reset is None else v_reset
    h = v + (x - (v - reset)) * q if decay_input else v - (v - reset) * q + x
    m = None
    if mask is not None:
        m = _expand_mask(mask, x.dim(), x.dtype)
        h = torch.where(m.bool(), h, v)
    spike = spike_function(h - v_threshold, surrogate, alpha)
    if m is not None:
        spike = spike * m
    s = spike.detach() if detach_reset else spike
    v_next = h - s * v_threshold if v_reset is None else s * v_reset + (1.0 - s) * h
    return spike, v_next


def plif_multi_step_loop(
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
    """Multi-step PLIF as a plain loop of :func:`plif_step` (the reference implementation).

    Args:
        x: input current ``[T, B, *N]``.
        v: initial membrane ``[B, *N]``.
        w: learnable scalar.
        mask: ``[T, B]`` bool or None.
        v_threshold, v_reset, decay_input, detach_reset, surrogate, alpha: as in
            :func:`plif_step`.

    Returns:
        ``(spikes [T, B, *N], v_final [B, *N])``.
    """
    spikes = []
    for t in range(x.shape[0]):
        spike, v = plif_step(
            x[t], v, w,
            mask=None if mask is None else mask[t],
            v_threshold=v_threshold, v_reset=v_reset, decay_input=decay_input,
            detach_reset=detach_reset, surrogate=surrogate, alpha=alpha,
        )
        spikes.append(spike)
    return torch.stack(spikes), v


def _after_reset(h: torch.Tensor, fired: torch.Tensor, v_threshold: float,
                 v_reset: float | None, out: torch.Tensor | None = None) -> torch.Tensor:
    """``V = reset(H, S)``, elementwise; equals SpikingJelly's expression bit for bit."""
    if v_reset is None:
        return torch.where(fired, h - v_threshold, h, out=out)
    reset = torch.tensor(v_reset, dtype=h.dtype, device=h.device)
    return torch.where(fired, reset, h, out=out)


def _fused_forward_general(
    x: torch.Tensor,
    v0: torch.Tensor,
    q: torch.Tensor,
    m: torch.Tensor | None,
    v_threshold: float,
    v_reset: float | None,
    decay_input: bool,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Forward pass for any reset mode, writing into preallocated buffers (no autograd).

    Bit-identical to :func:`plif_step`: the same elementwise expressions, in the same order;
    the mask enters as ``q·m`` (and ``x·m``), exact for m ∈ {0, 1}, and as an infinite
    threshold on masked steps.

    Returns:
        ``(spikes [T, B, *N], H [T, B, *N], v_final [B, *N])``.
    """
    steps = x.shape[0]
    reset = 0.0 if v_reset is None else v_reset
    H = torch.empty(x.shape, dtype=x.dtype, device=x.device)
    fired = torch.empty(x.shape, dtype=torch.bool, device=x.device)
    if m is None:
        qs = [q] * steps
        thresholds: list[torch.Tensor | float] = [v_threshold] * steps
        xs = x.unbind(0)
    else:
        qs = (q * m).unbind(0)
        inf = torch.tensor(math.inf, dtype=x.dtype, device=x.device)
        threshold = torch.tensor(v_threshold, dtype=x.dtype, device=x.device)
        thresholds = list(torch.where(m.bool(), threshold, inf).unbind(0))
        xs = x.unbind(0) if decay_input else (x * m).unbind(0)
    Hs, Fs = H.unbind(0), fired.unbind(0)
    v = v0.to(x.dtype)
    tmp = torch.empty_like(v)
    reset_value = torch.tensor(reset, dtype=x.dtype, device=x.device)
    for t in range(steps):
        h = Hs[t]
        d = v if reset == 0.0 else torch.sub(v, reset_value, out=tmp)
        if decay_input:
            torch.sub(xs[t], d, out=tmp)  # X - (V - V_reset)
            torch.mul(tmp, qs[t], out=tmp)
            torch.add(v, tmp, out=h)
        else:
            torch.mul(d, qs[t], out=tmp)
            torch.sub(v, tmp, out=h)
            h.add_(xs[t])
        torch.ge(h, thresholds[t], out=Fs[t])
        v = _after_reset(h, Fs[t], v_threshold, v_reset)
    return fired.to(x.dtype), H, v


def _fused_forward_hard(
    x: torch.Tensor,
    v0: torch.Tensor,
    q: torch.Tensor,
    m: torch.Tensor | None,
    v_threshold: float,
    v_reset: float,
    decay_input: bool,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Hard-reset forward in four kernels per step, on the negated membrane.

    With ``nV = -V`` and ``nH = -H`` the charge is ``nH = nV - (X + (nV + V_reset))·q`` and
    fire-and-reset is one ``threshold`` kernel: ``nV = nH if nH > -V_th else -V_reset``.
    Negation is exact in IEEE arithmetic, so every value is the exact negative of the one
    :func:`plif_step` computes (bit-identical spikes and membrane). Masked steps get
    ``q·m = 0`` (and ``X·m = 0``), so ``H = V``; they cannot fire because ``V < V_th`` always
    holds after a hard reset (the caller checks it for the initial state).

    Returns:
        ``(spikes [T, B, *N], nH [T, B, *N] (negated charge), v_final [B, *N])``.
    """
    steps = x.shape[0]
    NH = torch.empty(x.shape, dtype=x.dtype, device=x.device)
    qs = [q] * steps if m is None else list((q * m).unbind(0))
    xs = (x if decay_input or m is None else x * m).unbind(0)
    NHs = NH.unbind(0)
    nv = torch.neg(v0.to(x.dtype))
    tmp = torch.empty_like(nv)
    neg_threshold, neg_reset = -v_threshold, -v_reset
    if decay_input and v_reset == 0.0:  # the default neuron: a tight loop
        for xt, qt, nh in zip(xs, qs, NHs, strict=True):
            torch.add(xt, nv, out=tmp)  # X - V
            torch.mul(tmp, qt, out=tmp)
            torch.sub(nv, tmp, out=nh)  # -(V + (X - V)·q)
            nv = torch.threshold(nh, neg_threshold, neg_reset)
    else:
        for t in range(steps):
            nh = NHs[t]
            if decay_input:
                if v_reset == 0.0:
                    torch.add(xs[t], nv, out=tmp)  # X - V
                else:
                    torch.add(nv, v_reset, out=tmp)
                    torch.add(xs[t], tmp, out=tmp)  # X - (V - V_reset)
                torch.mul(tmp, qs[t], out=tmp)
                torch.sub(nv, tmp, out=nh)  # -(V + (X - (V - V_reset))·q)
            else:
                if v_reset == 0.0:
                    torch.mul(nv, qs[t], out=tmp)  # -(V·q)
                else:
                    torch.add(nv, v_reset, out=tmp)
                    torch.mul(tmp, qs[t], out=tmp)  # -((V - V_reset)·q)
                torch.sub(nv, tmp, out=nh)  # -(V - (V - V_reset)·q)
                nh.sub_(xs[t])  # -(V - (V - V_reset)·q + X)
            nv = torch.threshold(nh, neg_threshold, neg_reset)
    spikes = torch.le(NH, neg_threshold, out=torch.empty_like(NH))
    return spikes, NH, torch.neg(nv)


def _fused_forward(
    x: torch.Tensor,
    v0: torch.Tensor,
    q: torch.Tensor,
    m: torch.Tensor | None,
    v_threshold: float,
    v_reset: float | None,
    decay_input: bool,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, bool]:
    """Pick the hard-reset fast path when it is exact, else the general path.

    Returns:
        ``(spikes, H or nH, v_final, negated)``.
    """
    fast = v_reset is not None and (m is None or bool((v0 < v_threshold).all()))
    if fast:
        return (*_fused_forward_hard(x, v0, q, m, v_threshold, v_reset, decay_input), True)
    return (*_fused_forward_general(x, v0, q, m, v_threshold, v_reset, decay_input), False)


# Elements per backward chunk: large enough to amortise dispatch, small enough for L2 cache.
_CHUNK_ELEMENTS = 1 << 16


class FusedPLIF(torch.autograd.Function):
    """Whole-sequence PLIF with a hand-written backward through time.

    ``apply(x, v0, w, mask_float_or_None, v_threshold, v_reset, decay_input, detach_reset,
    surrogate, alpha) -> (spikes [T, B, *N], v_final [B, *N])``.

    Backward walks time in chunks of a few steps (about 64 k elements, cache-resident): per
    chunk it computes the surrogate derivative, the reset Jacobian ``R = ∂V/∂H`` and the
    spike term for all its steps at once, then runs the recursion
    ``∂L/∂H[t] = ∂L/∂S[t]·σ'[t] + (∂L/∂H[t+1]·a[t+1]) · R[t]`` (``a = ∂H[t+1]/∂V[t] = 1 - q``)
    with one kernel per step, and finally the input and ``w`` gradients of the chunk.
    """

    @staticmethod
    def forward(  # type: ignore[override]
        ctx,
        x: torch.Tensor,
        v0: torch.Tensor,
        w: torch.Tensor,
        m: torch.Tensor | None,
        v_threshold: float,
        v_reset: float | None,
        decay_input: bool,
        detach_reset: bool,
        surrogate: str,
        alpha: float,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        q = torch.sigmoid(w.detach()).to(x.dtype)
        spikes, H, v_final, negated = _fused_forward(
            x, v0, q, m, v_threshold, v_reset, decay_input
        )
        ctx.save_for_backward(x, v0, q, m if m is not None else torch.empty(0), spikes, H)
        ctx.has_mask, ctx.negated = m is not None, negated
        ctx.options = (v_threshold, v_reset, decay_input, detach_reset, surrogate, alpha)
        ctx.w_dtype = w.dtype
        return spikes, v_final

    @staticmethod
    def backward(ctx, grad_spikes: torch.Tensor | None, grad_v: torch.Tensor | None):  # type: ignore[override]
        x, v0, q, m, spikes, H = ctx.saved_tensors
        m = m if ctx.has_mask else None
        negated = ctx.negated
        v_threshold, v_reset, decay_input, detach_reset, surrogate, alpha = ctx.options
        reset = 0.0 if v_reset is None else v_reset
        steps = H.shape[0]
        chunk = max(1, _CHUNK_ELEMENTS // max(1, H[0].numel()))
        want_x, want_v0, want_w = ctx.needs_input_grad[:3]
        grad_x = torch.empty_like(H) if want_x else None
        grad_q = torch.zeros((), dtype=torch.float64, device=H.device)
        # carry = ∂L/∂H[t+1] · a[t+1]: the gradient reaching V[t] from the future.
        carry = grad_v.to(H.dtype).clone() if grad_v is not None else torch.zeros_like(H[0])
        one_minus_q = 1.0 - q

        def reset_minus_v(start: int, stop: int) -> torch.Tensor:
            """``V_reset - V[t-1]`` for steps start..stop-1, recomputed from H and spikes."""
            lo = max(start, 1)
            if negated:  # -V = threshold(nH, -V_th, -V_reset), exactly as in the forward
                out = torch.threshold(H[lo - 1:stop - 1], -v_threshold, -reset)
            else:
                out = _after_reset(H[lo - 1:stop - 1], spikes[lo - 1:stop - 1].bool(),
                                   v_threshold, v_reset).neg_()
            if start == 0:
                out = torch.cat([torch.neg(v0.to(H.dtype))[None], out])
            return out.add_(reset) if reset != 0.0 else out

        for stop in range(steps, 0, -chunk):
            start = max(0, stop - chunk)
            h, s = H[start:stop], spikes[start:stop]
            mc = None if m is None else m[start:stop]
            # σ' is even: nH + V_th = -(H - V_th) gives the same derivative.
            sg = surrogate_gradient(torch.add(h, v_threshold) if negated
                                    else h - v_threshold, surrogate, alpha, inplace=True)
            if mc is not None:
                sg.mul_(mc)
            if v_reset is None:
                R = None if detach_reset else torch.mul(sg, -v_threshold).add_(1.0)
            else:
                R = torch.sub(1.0, s)
                if not detach_reset:  # + (V_reset - H)·σ'
                    if negated:
                        R.addcmul_(h if reset == 0.0 else torch.add(h, reset), sg)
                    else:
                        R.addcmul_(torch.sub(reset, h), sg)
            A = sg.mul_(grad_spikes[start:stop]) if grad_spikes is not None \
                else torch.zeros_like(h)
            a = None if mc is None else torch.mul(mc, -q).add_(1.0)
            n = stop - start
            gH = torch.empty_like(h)
            # The chunk's last step takes the gradient arriving from the next chunk.
            if R is None:
                torch.add(A[n - 1], carry, out=gH[n - 1])
            else:
                torch.addcmul(A[n - 1], carry, R[n - 1], out=gH[n - 1])
            if n > 1:
                # ∂L/∂H[i] = A[i] + ∂L/∂H[i+1]·a[i+1]·R[i]: one kernel per step.
                gHs, As = gH.unbind(0), A.unbind(0)
                if a is None and R is not None:  # a = 1 - q, a constant: fold it into `value`
                    Rs, value = R.unbind(0), float(one_minus_q)
                    for i in range(n - 2, -1, -1):
                        torch.addcmul(As[i], gHs[i + 1], Rs[i], value=value, out=gHs[i])
                else:
                    decay = one_minus_q.expand(h[:-1].shape) if a is None else a[1:]
                    c = decay.expand(h[:-1].shape) if R is None else R[:-1] * decay
                    cs = c.unbind(0)
                    for i in range(n - 2, -1, -1):
                        torch.addcmul(As[i], gHs[i + 1], cs[i], out=gHs[i])
            carry = gH[0] * (one_minus_q if a is None else a[0])
            if want_x:
                scale = q if mc is None else mc * q
                torch.mul(gH, scale if decay_input else (1.0 if mc is None else mc),
                          out=grad_x[start:stop])
            if want_w:
                dh_dq = reset_minus_v(start, stop)  # ∂H/∂q = (X) - (V[t-1] - V_reset)
                if decay_input:
                    dh_dq.add_(x[start:stop])
                if mc is not None:
                    dh_dq.mul_(mc)
                grad_q += torch.dot(gH.reshape(-1), dh_dq.reshape(-1)).to(torch.float64)
        grad_v0 = carry if want_v0 else None
        grad_w = (grad_q * q * (1.0 - q)).to(ctx.w_dtype) if want_w else None
        return grad_x, grad_v0, grad_w, None, None, None, None, None, None, None


def plif_multi_step_fused(
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
    """Multi-step PLIF through :class:`FusedPLIF` (same signature as the loop version).

    Without autograd the fused forward kernel runs directly (no graph is recorded).
    """
    m = None if mask is None else _expand_mask(mask, x.dim(), x.dtype)
    v = v.to(x.dtype).expand_as(x[0]).contiguous() if v.shape != x.shape[1:] else v
    needs_grad = torch.is_grad_enabled() and (x.requires_grad or v.requires_grad or w.requires_grad)
    if not needs_grad:
        q = torch.sigmoid(w).to(x.dtype)
        spikes, _, v_final, _ = _fused_forward(x, v, q, m, v_threshold, v_reset, decay_input)
        return spikes, v_final
    return FusedPLIF.apply(
        x.contiguous(), v, w, m, v_threshold, v_reset, decay_input, detach_reset, surrogate, alpha
    )


def _tracing() -> bool:
    """True under TorchScript tracing, ONNX export or torch.compile: use the plain loop."""
    return bool(
        torch.jit.is_tracing()
        or torch.jit.is_scripting()
        or torch.onnx.is_in_onnx_export()
        or torch.compiler.is_compiling()
    )


def plif_multi_step(
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
    backend: str = "fused",
) -> tuple[torch.Tensor, torch.Tensor]:
    """Multi-step PLIF: ``(spikes [T, B, *N], v_final [B, *N])``.

    ``backend="fused"`` uses :class:`FusedPLIF` (falls back to the loop while tracing or
    exporting, so graphs contain only standard operators); ``"loop"`` forces the loop.
    See :func:`plif_step` for the arguments.
    """
    options = dict(
        mask=mask, v_threshold=v_threshold, v_reset=v_reset, decay_input=decay_input,
        detach_reset=detach_reset, surrogate=surrogate, alpha=alpha,
    )
    if backend == "loop" or _tracing():
        return plif_multi_step_loop(x, v, w, **options)
    if backend != "fused":
        raise ModelConfigError(f"unknown PLIF backend {backend!r}; use 'fused' or 'loop'")
    return plif_multi_step_fused(x, v, w, **options)


class PLIF(nn.Module):
    """A layer of parametric LIF neurons (thin holder of ``w`` and options).

    Args:
        init_tau: initial membrane time constant τ0 (``w0 = -ln(τ0 - 1)``).
        v_threshold: firing threshold.
        v_reset: hard-reset voltage, or None for soft reset.
        decay_input: divide the input by τ as well (SpikingJelly's default).
        detach_reset: stop the gradient through the reset.
        surrogate: ``"sigmoid"`` (default) or ``"atan"``.
        alpha: surrogate sharpness (default 4 for sigmoid, 2 for atan).
        backend: ``"fused"`` or ``"loop"``.

    Set ``record = True`` to accumulate firing statistics (used by :mod:`ptssnn.energy`):
    ``spike_count`` (spikes per neuron over real steps), ``step_count`` (real (t, b) pairs).
    The mask is respected: padded steps emit no spikes and are not counted.
    """

    def __init__(
        self,
        init_tau: float = 2.0,
        v_threshold: float = 1.0,
        v_reset: float | None = 0.0,
        decay_input: bool = True,
        detach_reset: bool = False,
        surrogate: str = "sigmoid",
        alpha: float | None = None,
        backend: str = "fused",
    ) -> None:
        super().__init__()
        if v_reset is not None and not v_reset < v_threshold:
            raise ModelConfigError(f"v_reset ({v_reset}) must be below v_threshold ({v_threshold})")
        self.alpha = check_surrogate(surrogate, alpha)
        self.surrogate = surrogate
        self.init_tau = float(init_tau)
        self.w = nn.Parameter(torch.tensor(init_w(init_tau)))
        self.v_threshold = float(v_threshold)
        self.v_reset = None if v_reset is None else float(v_reset)
        self.decay_input = decay_input
        self.detach_reset = detach_reset
        if backend not in ("fused", "loop"):
            raise ModelConfigError(f"unknown PLIF backend {backend!r}; use 'fused' or 'loop'")
        self.backend = backend
        self.record = False
        self.reset_statistics()

    @property
    def tau(self) -> float:
        """Current membrane time constant τ = 1 / sigmoid(w)."""
        return float(1.0 / torch.sigmoid(self.w.detach()))

    def reset_statistics(self) -> None:
        """Clear the recorded firing statistics."""
        self.spike_count: torch.Tensor | None = None
        self.step_count = 0

    def _options(self) -> dict:
        return dict(
            v_threshold=self.v_threshold, v_reset=self.v_reset, decay_input=self.decay_input,
            detach_reset=self.detach_reset, surrogate=self.surrogate, alpha=self.alpha,
        )

    def initial_state(self, like: torch.Tensor) -> torch.Tensor:
        """Resting membrane for one step of ``like`` (``[B, *N]``): V_reset, or 0 for soft reset."""
        return torch.full_like(like, 0.0 if self.v_reset is None else self.v_reset)

    def _record(self, spikes: torch.Tensor, mask: torch.Tensor | None) -> None:
        counts = spikes.detach().sum(dim=(0, 1)).to(torch.float64)
        self.spike_count = counts if self.spike_count is None else self.spike_count + counts
        steps = spikes.shape[0] * spikes.shape[1] if mask is None else int(mask.sum())
        self.step_count += steps

    def forward(
        self,
        x: torch.Tensor,
        bias: torch.Tensor | None = None,
        mask: torch.Tensor | None = None,
        v: torch.Tensor | None = None,
        return_state: bool = False,
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Run the neurons over a sequence.

        Args:
            x: input current ``[T, B, *N]``.
            bias: extra bias voltage added to the input current, ``[B, *N]`` or ``[T, B, *N]``.
            mask: ``[T, B]`` bool, True = real step.
            v: initial membrane ``[B, *N]`` (default: resting).
            return_state: also return the final membrane.

        Returns:
            Spikes ``[T, B, *N]``, or ``(spikes, v_final [B, *N])`` with ``return_state``.
        """
        if bias is not None:
            x = x + (bias.unsqueeze(0) if bias.dim() == x.dim() - 1 else bias)
        empty = not _tracing() and x.shape[0] == 0  # an empty chunk of a stream
        if v is None:
            v = self.initial_state(x.new_zeros(x.shape[1:]) if empty else x[0])
        if empty:
            return (x.clone(), v) if return_state else x.clone()
        spikes, v_final = plif_multi_step(
            x, v, self.w, mask=mask, backend=self.backend, **self._options()
        )
        if self.record:
            self._record(spikes, mask)
        return (spikes, v_final) if return_state else spikes

    def step(
        self,
        x: torch.Tensor,
        v: torch.Tensor | None = None,
        bias: torch.Tensor | None = None,
        mask: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One step for streaming: ``x [B, *N]``, state ``v`` in → ``(spike, v_next)``."""
        if bias is not None:
            x = x + bias
        if v is None:
            v = self.initial_state(x)
        spike, v_next = plif_step(x, v, self.w, mask=mask, **self._options())
        if self.record:
            self._record(spike.unsqueeze(0), None if mask is None else mask.unsqueeze(0))
        return spike, v_next

    def extra_repr(self) -> str:
        reset = "soft" if self.v_reset is None else f"v_reset={self.v_reset}"
        return (
            f"tau={self.tau:.3f}, v_threshold={self.v_threshold}, {reset}, "
            f"decay_input={self.decay_input}, detach_reset={self.detach_reset}, "
            f"surrogate={self.surrogate}(alpha={self.alpha}), backend={self.backend}"
        )
