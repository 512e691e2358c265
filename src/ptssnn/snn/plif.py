"""Parametric leaky integrate-and-fire (PLIF) neurons: pure dynamics, named backends, a thin module.

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

The options live in one frozen dataclass, :class:`~ptssnn.snn.plif_parameters.PLIFParameters`.
Four named backends compute the same multi-step function (:data:`BACKENDS`), chosen
explicitly per layer (``PLIF(backend=...)``, ``PTSSNNConfig.plif_backend``, or for a whole
model :func:`use_backend`):

- ``compiled``: :func:`~ptssnn.snn.plif_compiled.plif_multi_step_compiled`, numba kernels
  for forward and backward (training and inference on the CPU; the default). Where numba is
  missing or cannot build them it runs ``fused`` and says so once (a warning); CUDA and
  half-precision inputs go to ``fused`` too. Under tracing it runs the loop;
- ``loop``: :func:`plif_multi_step_loop`, a Python loop of :func:`plif_step`, differentiated
  by autograd (the reference);
- ``fused``: :func:`~ptssnn.snn.plif_fused.plif_multi_step_fused`, a custom autograd
  function (training and inference, any device). Under tracing it runs the loop, so a
  traced graph holds standard operators only;
- ``script``: :func:`~ptssnn.snn.plif_script.plif_multi_step_script`, a TorchScript loop
  that ONNX export turns into one ``Loop`` over a dynamic time axis (inference only).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import nn

from ptssnn.snn import plif_compiled
from ptssnn.snn.plif_compiled import plif_multi_step_compiled
from ptssnn.snn.plif_fused import FusedPLIF, plif_multi_step_fused
from ptssnn.snn.plif_parameters import (
    BACKENDS,
    DEFAULT_BACKEND,
    DEFAULT_PARAMETERS,
    PLIFParameters,
    check_backend,
    expand_mask,
    init_w,
)
from ptssnn.snn.plif_script import plif_multi_step_script
from ptssnn.snn.surrogate import spike_function

__all__ = [
    "BACKENDS",
    "PLIF",
    "FusedPLIF",
    "PLIFParameters",
    "init_w",
    "plif_multi_step",
    "plif_multi_step_compiled",
    "plif_multi_step_fused",
    "plif_multi_step_loop",
    "plif_multi_step_script",
    "plif_step",
    "use_backend",
]


def plif_step(
    x: torch.Tensor,
    v: torch.Tensor,
    w: torch.Tensor,
    params: PLIFParameters = DEFAULT_PARAMETERS,
    *,
    mask: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One PLIF time step.

    Args:
        x: input current (bias already added) ``[B, *N]``.
        v: membrane potential before the step ``[B, *N]``.
        w: learnable scalar, ``1/τ = sigmoid(w)``.
        params: the neuron's options.
        mask: ``[B]`` bool, True = real step; masked samples keep ``v`` and emit nothing.

    Returns:
        ``(spike, v_next)``, both ``[B, *N]``; spikes are floats in {0, 1}.
    """
    q = torch.sigmoid(w)
    reset, v_threshold = params.reset_value, params.v_threshold
    h = v + (x - (v - reset)) * q if params.decay_input else v - (v - reset) * q + x
    m = None
    if mask is not None:
        m = expand_mask(mask, x.dim(), x.dtype)
        h = torch.where(m.bool(), h, v)
    spike = spike_function(h - v_threshold, params.surrogate, params.alpha)
    if m is not None:
        spike = spike * m
    s = spike.detach() if params.detach_reset else spike
    v_next = h - s * v_threshold if params.soft_reset else s * reset + (1.0 - s) * h
    return spike, v_next


def plif_multi_step_loop(
    x: torch.Tensor,
    v: torch.Tensor,
    w: torch.Tensor,
    params: PLIFParameters = DEFAULT_PARAMETERS,
    *,
    mask: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Multi-step PLIF as a plain loop of :func:`plif_step` (the reference implementation).

    Args:
        x: input current ``[T, B, *N]``.
        v: initial membrane ``[B, *N]``.
        w: learnable scalar.
        params: the neuron's options.
        mask: ``[T, B]`` bool or None.

    Returns:
        ``(spikes [T, B, *N], v_final [B, *N])``.
    """
    spikes = []
    for t in range(x.shape[0]):
        spike, v = plif_step(x[t], v, w, params, mask=None if mask is None else mask[t])
        spikes.append(spike)
    return torch.stack(spikes), v


def _tracing() -> bool:
    """True under TorchScript tracing, ONNX export or torch.compile."""
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
    params: PLIFParameters = DEFAULT_PARAMETERS,
    *,
    mask: torch.Tensor | None = None,
    backend: str = DEFAULT_BACKEND,
    spike_dtype: torch.dtype | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Multi-step PLIF with the named backend: ``(spikes [T, B, *N], v_final [B, *N])``.

    ``spike_dtype`` (``torch.bfloat16`` or ``None`` = ``x``'s dtype) is honoured by the
    ``compiled`` backend only (:attr:`PLIF.autocast_spikes`); spikes are 0/1 in either.

    ``compiled`` and ``fused`` run the loop while tracing (a custom autograd function cannot
    be traced), and ``compiled`` runs ``fused`` where its kernels cannot run
    (:func:`~ptssnn.snn.plif_compiled.usable`); ``loop`` and ``script`` always run as named.
    See :func:`plif_step` for the arguments.

    Raises:
        ModelConfigError: unknown backend.
    """
    check_backend(backend)
    if backend == "script":
        return plif_multi_step_script(x, v, w, params, mask=mask)
    if backend == "loop" or _tracing():
        return plif_multi_step_loop(x, v, w, params, mask=mask)
    if backend == "compiled" and plif_compiled.usable(x):
        return plif_multi_step_compiled(x, v, w, params, mask=mask, spike_dtype=spike_dtype)
    return plif_multi_step_fused(x, v, w, params, mask=mask)


def _at_least_parameter_precision(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """``x`` in ``w``'s dtype when ``x`` is the less precise (a bfloat16 current from a
    mixed-precision forward): the membrane integrates and compares with the threshold in
    the parameters' precision, so spikes do not depend on ``TrainConfig.precision``'s
    rounding of the recursion, and the compiled kernels (float32/64) still run."""
    if x.is_floating_point() and torch.finfo(x.dtype).bits < torch.finfo(w.dtype).bits:
        return x.to(w.dtype)
    return x


class PLIF(nn.Module):
    """A layer of parametric LIF neurons (thin holder of ``w``, its parameters and backend).

    Args:
        params: the neuron's options (default :class:`PLIFParameters`).
        backend: ``"compiled"`` (default), ``"fused"``, ``"loop"`` or ``"script"`` (see
            :data:`BACKENDS`).
        **options: shorthand for ``params=PLIFParameters(**options)``
            (e.g. ``PLIF(init_tau=3.0)``); not together with ``params``.

    Set ``record = True`` to accumulate firing statistics (used by :mod:`ptssnn.energy`):
    ``spike_count`` (spikes per neuron over real steps), ``step_count`` (real (t, b) pairs).
    The mask is respected: padded steps emit no spikes and are not counted.

    ``autocast_spikes = True`` (set by the models on neurons whose spikes only feed matrix
    products): while training under a bfloat16 CPU autocast (``TrainConfig.precision =
    "bf16"``) on the ``compiled`` backend, the spikes are emitted in bfloat16, which holds 0
    and 1 exactly. The products then read them without a cast, and their input gradients
    (bfloat16 products) come back without a cast either: the same numbers as float32
    spikes, half the bytes. Otherwise (evaluation, float32 training, other backends) the
    spikes are in the current's dtype.
    """

    def __init__(self, params: PLIFParameters | None = None, *, backend: str = DEFAULT_BACKEND,
                 **options: object) -> None:
        super().__init__()
        if params is not None and options:
            raise TypeError("give PLIF either params or keyword options, not both")
        self.params = params if params is not None else PLIFParameters(**options)  # type: ignore[arg-type]
        self.w = nn.Parameter(torch.tensor(init_w(self.params.init_tau)))
        self.backend = check_backend(backend)
        self.autocast_spikes = False
        self.record = False
        self.reset_statistics()

    @property
    def tau(self) -> float:
        """Current membrane time constant τ = 1 / sigmoid(w), in steps."""
        return float(1.0 / torch.sigmoid(self.w.detach()))

    @property
    def v_threshold(self) -> float:
        """Firing threshold (read by the efficiency report)."""
        return self.params.v_threshold

    @property
    def v_reset(self) -> float | None:
        """Hard-reset voltage, or None for soft reset."""
        return self.params.v_reset

    def reset_statistics(self) -> None:
        """Clear the recorded firing statistics."""
        self.spike_count: torch.Tensor | None = None
        self.step_count = 0

    def initial_state(self, like: torch.Tensor) -> torch.Tensor:
        """Resting membrane for one step of ``like`` (``[B, *N]``): V_reset, or 0 for soft reset."""
        return torch.full_like(like, self.params.reset_value)

    def _record(self, spikes: torch.Tensor, mask: torch.Tensor | None) -> None:
        counts = spikes.detach().sum(dim=(0, 1), dtype=torch.float64)
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
        x = _at_least_parameter_precision(x, self.w)
        empty = not _tracing() and x.shape[0] == 0  # an empty chunk of a stream
        if v is None:
            v = self.initial_state(x.new_zeros(x.shape[1:]) if empty else x[0])
        if empty:
            return (x.clone(), v) if return_state else x.clone()
        spikes, v_final = plif_multi_step(x, v, self.w, self.params, mask=mask,
                                          backend=self.backend,
                                          spike_dtype=self._spike_dtype())
        if self.record:
            self._record(spikes, mask)
        return (spikes, v_final) if return_state else spikes

    def _spike_dtype(self) -> torch.dtype | None:
        """bfloat16 under a bfloat16 CPU autocast while training, when ``autocast_spikes``."""
        if (self.autocast_spikes and torch.is_grad_enabled()
                and torch.is_autocast_enabled("cpu")
                and torch.get_autocast_dtype("cpu") == torch.bfloat16):
            return torch.bfloat16
        return None

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
        x = _at_least_parameter_precision(x, self.w)
        if v is None:
            v = self.initial_state(x)
        spike, v_next = plif_step(x, v, self.w, self.params, mask=mask)
        if self.record:
            self._record(spike.unsqueeze(0), None if mask is None else mask.unsqueeze(0))
        return spike, v_next

    def extra_repr(self) -> str:
        p = self.params
        reset = "soft" if p.soft_reset else f"v_reset={p.v_reset}"
        return (
            f"tau={self.tau:.3f}, v_threshold={p.v_threshold}, {reset}, "
            f"decay_input={p.decay_input}, detach_reset={p.detach_reset}, "
            f"surrogate={p.surrogate}(alpha={p.alpha}), backend={self.backend}"
        )


@contextlib.contextmanager
def use_backend(module: nn.Module, backend: str) -> Iterator[nn.Module]:
    """Within the block every :class:`PLIF` in ``module`` runs ``backend``; restored on exit.

    The explicit switch for export (``with use_backend(model, "script"): torch.onnx.export(...)``)
    or benchmarking: it sets an attribute of the model's own layers, nothing global.

    Raises:
        ModelConfigError: unknown backend.
    """
    check_backend(backend)
    layers = [m for m in module.modules() if isinstance(m, PLIF)]
    before = [layer.backend for layer in layers]
    for layer in layers:
        layer.backend = backend
    try:
        yield module
    finally:
        for layer, name in zip(layers, before, strict=True):
            layer.backend = name
