"""Spiking primitives. Every tensor here is time first: ``[T, B, ...]``; masks are ``[T, B]``.

- :mod:`ptssnn.snn.plif`: PLIF dynamics as pure functions (:func:`plif_step`,
  :func:`plif_multi_step`) over one :class:`PLIFParameters`, four named backends
  (``compiled``, ``fused``, ``loop``, ``script``; :func:`use_backend` switches a whole
  model), and the
  :class:`PLIF` module.
- :class:`TemporalShift`: parameter-free channel shift along time, mask-aware.
- :class:`SpikingSparseLinearAttention`: softmax-free spiking attention of prompt queries over
  a spike sequence, linear in T, with a causal (streaming) form.
- :class:`MembraneCalibration`: soft prompts → SSLA context → per-channel bias voltages.
- :class:`GELUNeuron` / :func:`make_neuron`: the same call signature for the ANN twin.
"""

from ptssnn.snn.attention import SpikingSparseLinearAttention
from ptssnn.snn.calibration import MembraneCalibration
from ptssnn.snn.neurons import GELUNeuron, make_neuron
from ptssnn.snn.plif import (
    BACKENDS,
    PLIF,
    FusedPLIF,
    PLIFParameters,
    init_w,
    plif_multi_step,
    plif_multi_step_compiled,
    plif_multi_step_fused,
    plif_multi_step_loop,
    plif_multi_step_script,
    plif_step,
    use_backend,
)
from ptssnn.snn.shift import TemporalShift
from ptssnn.snn.surrogate import spike_function, surrogate_gradient

__all__ = [
    "BACKENDS",
    "PLIF",
    "FusedPLIF",
    "GELUNeuron",
    "MembraneCalibration",
    "PLIFParameters",
    "SpikingSparseLinearAttention",
    "TemporalShift",
    "init_w",
    "make_neuron",
    "plif_multi_step",
    "plif_multi_step_compiled",
    "plif_multi_step_fused",
    "plif_multi_step_loop",
    "plif_multi_step_script",
    "plif_step",
    "spike_function",
    "surrogate_gradient",
    "use_backend",
]
