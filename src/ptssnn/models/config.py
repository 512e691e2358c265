"""Model configuration and the preset registry (the ablation ladder of the paper).

Every design number of ``paper.md`` "Our reconstruction" is a field here with its default.
"""

from __future__ import annotations

import dataclasses
import numbers
from dataclasses import dataclass, field
from typing import Any

from ptssnn.errors import ModelConfigError
from ptssnn.snn.neurons import NEURONS
from ptssnn.snn.norm import NORMS
from ptssnn.snn.plif_parameters import BACKENDS, DEFAULT_BACKEND, PLIFParameters

__all__ = ["PRESETS", "PTSSNNConfig", "get_preset", "list_presets"]

CONTEXT_MODES = ("none", "readout", "bias")
CALIBRATION_CONTEXTS = ("global", "causal")
POOLINGS = ("spikes", "membrane")
#: Upper bounds of the sizes, far above any real head (the paper's: width 256, 2 blocks), so a
#: corrupted or hostile config.json is refused before it asks for terabytes.
SIZE_BOUNDS = {"input_dim": 16384, "num_classes": 10000, "input_layers": 256, "width": 8192,
               "num_blocks": 64, "block_hidden": 65536, "num_prompts": 4096,
               "attention_heads": 1024}
READOUTS = ("mean", "mean_std")


@dataclass
class PTSSNNConfig:
    """Configuration of a PTS-SNN head (and of its ablations and ANN twin).

    Attributes:
        input_dim: feature width D_in of the frozen backbone.
        num_classes: number of emotion classes C.
        input_layers: L; when > 1 the features are ``[B, L, T, D_in]`` and a learned
            softmax-weighted sum over layers is taken first.
        layer_prior: initial layer weights of the learned sum: a Gaussian bump of this width
            (in hidden states) around the middle one; 0: uniform.
        width: channel width D of the spiking encoder (paper default 256).
        num_blocks: number of spiking temporal-shift blocks (2).
        block_hidden: hidden width of each block's MLP. 672 puts the default model at
            1.16 M (D_in 512) / 1.22 M (D_in 768) trainable parameters, the paper's 1.19 M ±3%.
        standardise_input: standardise every input channel with the training split's moments
            (``PTSSNN.set_input_statistics``, set by ``fit``) before anything else. Off only
            for ``vanilla-snn``, the paper's baseline on the raw features.
        saturation: soft saturation ``tanh(ξ·LayerNorm(x))`` of the input features.
        saturation_xi: ξ.
        saturation_norm: the per-frame LayerNorm inside the saturation (the paper's); off:
            ``tanh(ξ·x)`` on the standardised features.
        shift_later: fraction of channels shifted one step later (1/8, as TSM).
        shift_earlier: fraction of channels shifted one step earlier (1/8).
        context: ``"none"``; ``"readout"`` (SSLA context of the soft prompts added to the pooled
            read-out: the ``+ssla`` rung); ``"bias"`` (context-driven bias voltages for the
            blocks' input neurons: full PTS-SNN).
        calibration_context: ``"global"`` (whole utterance, as the paper) or ``"causal"``
            (running context up to each frame; streaming then equals ``forward`` exactly).
        num_prompts: M soft prompts (4).
        attention_heads: SSLA heads.
        pooling: masked mean over time of the output ``"spikes"`` or of the ``"membrane"``
            (the residual membrane stream feeding the output neurons).
        readout: statistics over time of the pooled signal fed to the classifier: ``"mean"``
            (D values) or ``"mean_std"`` (mean and standard deviation over the real frames,
            2·D values: statistics pooling, as the linear probe reads the features).
        neuron: ``"plif"`` or ``"gelu"`` (the ANN baseline).
        norm: normalisation of the currents inside the spiking path (after the projection,
            the blocks' ``fc1``/``fc2`` and the calibration's key/value maps): ``"layer"``
            (LayerNorm, per frame) or ``"batch"`` (masked batch norm: a fixed per-channel
            affine map at inference, folded into the preceding ``Affine`` by the NIR export;
            the ``neuromorphic`` preset).
        init_tau, v_threshold, v_reset, decay_input, detach_reset, surrogate,
            surrogate_alpha: the PLIF options, stored flat (the checkpoint format) and
            gathered into one :class:`~ptssnn.snn.PLIFParameters` by :meth:`plif_parameters`
            (``v_reset=None`` = soft reset; surrogate ``"sigmoid"`` α = 4 or ``"atan"`` α = 2,
            ``surrogate_alpha`` overrides α).
        plif_backend: ``"compiled"`` (numba kernels; ``fused`` where they cannot run),
            ``"fused"`` (custom autograd), ``"loop"`` (reference) or ``"script"``
            (TorchScript loop, inference/export only); see :data:`ptssnn.snn.BACKENDS`.
        dropout: dropout before the classifier.
        seed: parameters are initialised from this seed (deterministic construction).
        preset: name of the preset this config came from (informational).
    """

    input_dim: int = 768
    num_classes: int = 4
    input_layers: int = 1
    layer_prior: float = 0.0
    width: int = 256
    num_blocks: int = 2
    block_hidden: int = 672
    standardise_input: bool = True
    saturation: bool = True
    saturation_xi: float = 1.0
    saturation_norm: bool = True
    shift_later: float = 0.125
    shift_earlier: float = 0.125
    context: str = "bias"
    calibration_context: str = "global"
    num_prompts: int = 4
    attention_heads: int = 8
    pooling: str = "spikes"
    readout: str = "mean"
    neuron: str = "plif"
    norm: str = "layer"
    init_tau: float = 2.0
    v_threshold: float = 1.0
    v_reset: float | None = 0.0
    decay_input: bool = True
    detach_reset: bool = False
    surrogate: str = "sigmoid"
    surrogate_alpha: float | None = None
    plif_backend: str = DEFAULT_BACKEND
    dropout: float = 0.1
    seed: int = 0
    preset: str = "custom"

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Check every field.

        Raises:
            ModelConfigError: a value out of range or an unknown option, with the allowed ones.
        """
        positive = ("input_dim", "num_classes", "input_layers", "width", "block_hidden",
                    "num_prompts", "attention_heads")
        for name in (*positive, "num_blocks", "seed"):
            value = getattr(self, name)
            if not isinstance(value, numbers.Integral) or isinstance(value, bool):
                raise ModelConfigError(f"{name} must be an integer, got {value!r}")
            object.__setattr__(self, name, int(value))  # numpy integers → int (JSON-safe)
        for name in positive:
            if getattr(self, name) < 1:
                raise ModelConfigError(f"{name} must be positive, got {getattr(self, name)}")
        for name, bound in SIZE_BOUNDS.items():
            if getattr(self, name) > bound:
                raise ModelConfigError(
                    f"{name} = {getattr(self, name)} is beyond the sane bound {bound} (a "
                    "corrupted or hostile config.json?)")
        if self.num_blocks < 0:
            raise ModelConfigError(f"num_blocks must be >= 0, got {self.num_blocks}")
        choices = {"context": CONTEXT_MODES, "calibration_context": CALIBRATION_CONTEXTS,
                   "pooling": POOLINGS, "readout": READOUTS, "neuron": NEURONS, "norm": NORMS,
                   "plif_backend": BACKENDS}
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ModelConfigError(
                    f"{name} must be one of {', '.join(allowed)}, got {getattr(self, name)!r}")
        if self.context == "bias" and self.num_blocks == 0:
            raise ModelConfigError("context='bias' calibrates the blocks: needs num_blocks >= 1")
        if self.width % self.attention_heads:
            raise ModelConfigError(
                f"width {self.width} must be divisible by attention_heads {self.attention_heads}")
        if not 0.0 <= self.dropout < 1.0:
            raise ModelConfigError(f"dropout must be in [0, 1), got {self.dropout}")
        if self.shift_later < 0 or self.shift_earlier < 0 or \
                self.shift_later + self.shift_earlier > 1:
            raise ModelConfigError("shift fractions must be >= 0 and sum to <= 1")
        if self.layer_prior < 0:
            raise ModelConfigError(f"layer_prior must be >= 0, got {self.layer_prior}")
        if not self.saturation_xi > 0:
            raise ModelConfigError(f"saturation_xi must be positive, got {self.saturation_xi}")
        self.plif_parameters()  # validates the PLIF options

    def plif_parameters(self) -> PLIFParameters:
        """The PLIF options as one :class:`~ptssnn.snn.PLIFParameters`.

        Raises:
            ModelConfigError: an option out of range.
        """
        return PLIFParameters(
            init_tau=self.init_tau, v_threshold=self.v_threshold, v_reset=self.v_reset,
            decay_input=self.decay_input, detach_reset=self.detach_reset,
            surrogate=self.surrogate, alpha=self.surrogate_alpha)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict of every field."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PTSSNNConfig:
        """Inverse of :meth:`to_dict`.

        Raises:
            ModelConfigError: unknown keys (e.g. a config from a newer version).
        """
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ModelConfigError(
                f"unknown model config field(s): {', '.join(unknown)}; "
                f"known fields: {', '.join(sorted(known))}")
        return cls(**data)

    def replace(self, **changes: Any) -> PTSSNNConfig:
        """A copy with ``changes`` applied (validated).

        Raises:
            ModelConfigError: unknown field names.
        """
        known = {f.name for f in dataclasses.fields(self)}
        unknown = sorted(set(changes) - known)
        if unknown:
            raise ModelConfigError(
                f"unknown model option(s): {', '.join(unknown)}; "
                f"known options: {', '.join(sorted(known))}")
        return dataclasses.replace(self, **changes)


@dataclass(frozen=True)
class _Preset:
    description: str
    changes: dict[str, Any] = field(default_factory=dict)


# The ablation ladder (each rung adds one component to the previous one), then the ANN
# twin and the neuromorphic variant.
PRESETS: dict[str, _Preset] = {
    "vanilla-snn": _Preset(
        "projection + PLIF blocks on the raw features: no standardisation, no saturation, "
        "no temporal shift, no calibration",
        {"standardise_input": False, "saturation": False, "shift_later": 0.0,
         "shift_earlier": 0.0, "context": "none"}),
    "+standardise": _Preset(
        "vanilla-snn on standardised features (training-split moments, or per speaker)",
        {"saturation": False, "shift_later": 0.0, "shift_earlier": 0.0, "context": "none"}),
    "+saturation": _Preset(
        "+standardise + soft saturation tanh(ξ·LayerNorm(x))",
        {"shift_later": 0.0, "shift_earlier": 0.0, "context": "none"}),
    "+shift": _Preset(
        "+saturation + temporal shift in the blocks", {"context": "none"}),
    "+ssla": _Preset(
        "+shift + SSLA context of the soft prompts added to the read-out", {"context": "readout"}),
    "pts-snn": _Preset(
        "full PTS-SNN: SSLA context sets the bias voltages of the blocks' neurons", {}),
    "ann": _Preset(
        "pts-snn architecture with GELU units instead of PLIF neurons (non-spiking baseline)",
        {"neuron": "gelu"}),
    "neuromorphic": _Preset(
        "pts-snn for a neuromorphic chip: batch norm (folded into the Affines at export) "
        "instead of LayerNorm in the spiking path, no saturation (the standardisation folds "
        "into the projection)", {"norm": "batch", "saturation": False}),
}


def list_presets() -> dict[str, str]:
    """Preset names → one-line descriptions, in ladder order."""
    return {name: preset.description for name, preset in PRESETS.items()}


def get_preset(name: str, **changes: Any) -> PTSSNNConfig:
    """The config of preset ``name`` with ``changes`` applied.

    Raises:
        ModelConfigError: unknown preset (the message lists the known ones) or option.
    """
    if name not in PRESETS:
        raise ModelConfigError(
            f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
    return PTSSNNConfig(preset=name).replace(**{**PRESETS[name].changes, **changes})
