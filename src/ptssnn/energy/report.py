"""Measure or estimate the operations and energy of a head's forward pass."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn

from ptssnn.errors import ModelConfigError
from ptssnn.snn.attention import SpikingSparseLinearAttention
from ptssnn.snn.plif import PLIF

__all__ = [
    "COUNTED",
    "EXCLUDED",
    "E_AC_PJ",
    "E_MAC_PJ",
    "EfficiencyReport",
    "LayerCost",
    "NeuronStats",
    "estimate",
    "measure",
]

E_MAC_PJ = 4.6  # 32-bit float multiply-accumulate, 45 nm (Horowitz 2014)
E_AC_PJ = 0.9  # 32-bit float accumulate, 45 nm (Horowitz 2014)
SILENT_BELOW = 0.01
SATURATED_ABOVE = 0.99

COUNTED = (
    "Every linear layer (MACs = in_features x out_features per frame, biases not counted) and "
    "the two SSLA attention products (Q.K^T and (QK^T).V, M x D per frame each), over real "
    "(unpadded) frames only. Layers fed by real values cost MACs x E_MAC (4.6 pJ); layers fed "
    "by spikes cost SOPs x E_AC (0.9 pJ), SOPs = nonzero inputs x fan-out = input firing rate "
    "x MACs. FLOPs are reported as 2 x MACs."
)
EXCLUDED = (
    "Not counted: normalisation (input standardisation, LayerNorm), the tanh soft saturation, "
    "neuron state updates (charge, fire, reset), the temporal shift (a memory move), the "
    "softmax layer weighting, pooling sums and memory traffic. The frozen backbone is NOT "
    "included: report it separately (Backbone.macs(num_samples) x E_MAC)."
)


@dataclass
class LayerCost:
    """Operations of one layer, summed over the batch's real frames.

    Attributes:
        name: module path (attention products get ``.qk`` / ``.av``).
        fed_by: ``"spikes"`` or ``"real"``.
        macs: dense multiply-accumulates.
        sops: synaptic operations actually triggered (spike-fed layers; 0 otherwise).
        input_firing_rate: fraction of nonzero inputs (spike-fed layers), else None.
        energy_pj: ``macs x E_MAC`` or ``sops x E_AC``.
    """

    name: str
    fed_by: str
    macs: int
    sops: int
    input_firing_rate: float | None
    energy_pj: float


@dataclass
class NeuronStats:
    """Firing statistics of one PLIF layer over the real frames of the batch.

    Attributes:
        name: module path.
        neurons: number of neurons (channels).
        firing_rate: mean spikes per neuron per real frame.
        silent_fraction: neurons firing on < 1% of the frames.
        saturated_fraction: neurons firing on > 99% of the frames.
    """

    name: str
    neurons: int
    firing_rate: float
    silent_fraction: float
    saturated_fraction: float


@dataclass
class EfficiencyReport:
    """Operations and energy of the head's forward pass, per sample.

    Attributes:
        preset: model preset name (or ``"custom"``).
        trainable_parameters: total trainable parameters.
        modules: trainable parameters per top-level module.
        samples: number of utterances measured (1 for estimates).
        frames_per_sample: mean number of real frames per utterance.
        firing_rate_source: ``"measured"`` or ``"assumed <rate>"``.
        layers: per-layer operation counts (batch totals).
        neurons: per-layer firing statistics (empty for estimates and for the ANN).
        macs_per_sample: dense MACs per utterance (all counted layers).
        flops_per_sample: 2 x MACs.
        sops_per_sample: synaptic operations per utterance (spike-fed layers).
        energy_pj_per_sample: energy per utterance in pJ.
        e_mac_pj, e_ac_pj: the unit energies used.
        counted, excluded: what the numbers include and leave out.
    """

    preset: str
    trainable_parameters: int
    modules: dict[str, int]
    samples: int
    frames_per_sample: float
    firing_rate_source: str
    layers: list[LayerCost] = field(default_factory=list)
    neurons: list[NeuronStats] = field(default_factory=list)
    macs_per_sample: float = 0.0
    flops_per_sample: float = 0.0
    sops_per_sample: float = 0.0
    energy_pj_per_sample: float = 0.0
    e_mac_pj: float = E_MAC_PJ
    e_ac_pj: float = E_AC_PJ
    counted: str = COUNTED
    excluded: str = EXCLUDED

    @property
    def energy_mj_per_sample(self) -> float:
        """Energy per utterance in millijoules."""
        return self.energy_pj_per_sample * 1e-9

    @property
    def mean_firing_rate(self) -> float | None:
        """Neuron-weighted mean firing rate over all PLIF layers (None without measurements)."""
        total = sum(n.neurons for n in self.neurons)
        if not total:
            return None
        return sum(n.firing_rate * n.neurons for n in self.neurons) / total

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (includes ``energy_mj_per_sample`` and ``mean_firing_rate``)."""
        data = asdict(self)
        data["energy_mj_per_sample"] = self.energy_mj_per_sample
        data["mean_firing_rate"] = self.mean_firing_rate
        return data

    def _finish(self) -> EfficiencyReport:
        n = max(self.samples, 1)
        macs = sum(layer.macs for layer in self.layers)
        self.macs_per_sample = macs / n
        self.flops_per_sample = 2 * macs / n
        self.sops_per_sample = sum(layer.sops for layer in self.layers) / n
        self.energy_pj_per_sample = sum(layer.energy_pj for layer in self.layers) / n
        return self


# --------------------------------------------------------------------------- counting
class _Counter:
    """Forward hooks on linear layers + record flags on neurons and attention."""

    def __init__(self, model: nn.Module, mask: torch.Tensor | None) -> None:
        self.model = model
        self.mask = mask  # [T, B] time first, as seen inside the model
        self.linear: dict[str, list[float]] = {}  # name -> [macs, nnz, fed_by_spikes]

    def _rows(self, module: nn.Module, x: torch.Tensor) -> torch.Tensor:
        """Bool ``[rows]`` of input rows that are real frames."""
        rows = x.reshape(-1, x.shape[-1])
        m = self.mask
        per_utterance = getattr(module, "per_utterance", False)
        framed = m is not None and x.dim() >= 3 and tuple(x.shape[:2]) == tuple(m.shape)
        if framed and not (per_utterance and x.dim() == 3):
            keep = m.reshape(*m.shape, *([1] * (x.dim() - 3))).expand(x.shape[:-1])
            return keep.reshape(-1)
        return torch.ones(rows.shape[0], dtype=torch.bool, device=x.device)

    def _hook(self, name: str):
        def hook(module: nn.Linear, inputs: tuple[torch.Tensor, ...], _output: Any) -> None:
            x = inputs[0].detach()
            keep = self._rows(module, x)
            rows = x.reshape(-1, x.shape[-1])[keep]
            spiking = getattr(module, "fed_by_spikes", None)
            if spiking is None:  # not declared: decide from the data, as SpikingJelly does
                spiking = bool(((rows == 0) | (rows == 1)).all())
            macs = rows.shape[0] * module.in_features * module.out_features
            nnz = int(torch.count_nonzero(rows)) * module.out_features
            entry = self.linear.setdefault(name, [0, 0, float(spiking)])
            entry[0] += macs
            entry[1] += nnz
        return hook

    @contextlib.contextmanager
    def attached(self) -> Iterator[None]:
        handles = []
        saved: list[tuple[nn.Module, bool]] = []
        try:
            for name, module in self.model.named_modules():
                if isinstance(module, nn.Linear):
                    handles.append(module.register_forward_hook(self._hook(name)))
                elif isinstance(module, PLIF | SpikingSparseLinearAttention):
                    saved.append((module, module.record))
                    module.record = True
                    if isinstance(module, PLIF):
                        module.reset_statistics()
                    else:
                        module.op_counts = {}
            yield
        finally:
            for handle in handles:
                handle.remove()
            for module, flag in saved:
                module.record = flag

    def layers(self, assumed_rate: float | None = None) -> list[LayerCost]:
        costs = []
        for name, (macs, nnz, spiking) in self.linear.items():
            costs.append(_cost(name, bool(spiking), int(macs), int(nnz), assumed_rate))
        for name, module in self.model.named_modules():
            if isinstance(module, SpikingSparseLinearAttention):
                for product, (dense, active) in module.op_counts.items():
                    costs.append(_cost(f"{name}.{product}", module.binary, dense, active,
                                       assumed_rate))
        return costs

    def neurons(self) -> list[NeuronStats]:
        stats = []
        for name, module in self.model.named_modules():
            if isinstance(module, PLIF) and module.spike_count is not None:
                steps = max(module.step_count, 1)
                rate = (module.spike_count / steps).flatten()
                stats.append(NeuronStats(
                    name=name, neurons=rate.numel(), firing_rate=float(rate.mean()),
                    silent_fraction=float((rate < SILENT_BELOW).double().mean()),
                    saturated_fraction=float((rate > SATURATED_ABOVE).double().mean())))
        return stats


def _cost(name: str, spiking: bool, macs: int, active: int,
          assumed_rate: float | None) -> LayerCost:
    if not spiking:
        return LayerCost(name, "real", macs, 0, None, macs * E_MAC_PJ)
    sops = active if assumed_rate is None else round(assumed_rate * macs)
    rate = sops / macs if macs else 0.0
    return LayerCost(name, "spikes", macs, sops, rate, sops * E_AC_PJ)


def _describe(model: nn.Module) -> tuple[str, int, dict[str, int]]:
    config = getattr(model, "config", None)
    preset = getattr(config, "preset", "custom") if config is not None else "custom"
    total = sum(p.numel() for p in model.parameters() if p.requires_grad)
    if hasattr(model, "parameter_counts"):
        modules = model.parameter_counts()
    else:
        modules = {}
        for name, p in model.named_parameters():
            if p.requires_grad:
                top = name.split(".")[0]
                modules[top] = modules.get(top, 0) + p.numel()
    return preset, total, modules


@torch.no_grad()
def measure(model: nn.Module, features: torch.Tensor,
            mask: torch.Tensor | None = None) -> EfficiencyReport:
    """Run ``model(features, mask)`` once (eval mode) and count what happened.

    Args:
        model: a :class:`~ptssnn.models.PTSSNN` (or any module taking ``(features, mask)`` that
            works time first inside, as ``ptssnn.snn`` does).
        features: ``[B, T, D_in]`` (or ``[B, L, T, D_in]``).
        mask: ``[B, T]`` bool, True = real frame (None = all real).

    Returns:
        The report; firing statistics and SOPs are measured, padded frames excluded.
    """
    batch = features.shape[0]
    steps = features.shape[-2]
    if mask is None:
        mask = torch.ones(batch, steps, dtype=torch.bool, device=features.device)
    if mask.shape != (batch, steps):
        raise ModelConfigError(f"mask must be [B, T] = {(batch, steps)}, got {tuple(mask.shape)}")
    counter = _Counter(model, mask.transpose(0, 1).to(torch.bool))
    was_training = model.training
    model.eval()
    try:
        with counter.attached():
            model(features, mask)
    finally:
        model.train(was_training)
    preset, total, modules = _describe(model)
    report = EfficiencyReport(
        preset=preset, trainable_parameters=total, modules=modules, samples=batch,
        frames_per_sample=float(mask.sum()) / batch, firing_rate_source="measured",
        layers=counter.layers(), neurons=counter.neurons())
    return report._finish()


@torch.no_grad()
def estimate(config: Any, input_dim: int | None = None, frames: int = 250,
             firing_rate: float = 0.1, num_classes: int | None = None) -> EfficiencyReport:
    """Operations and energy per utterance without data, at an assumed firing rate.

    MACs follow from the architecture (one forward pass on random features of ``frames``
    frames); every spike-fed layer is charged ``firing_rate x MACs`` SOPs.

    Args:
        config: a :class:`~ptssnn.models.PTSSNNConfig` or a preset name.
        input_dim: feature width (overrides the config's).
        frames: frames per utterance (50 per second of audio).
        firing_rate: assumed fraction of neurons firing per frame, in [0, 1].
        num_classes: number of classes (overrides the config's).

    Raises:
        ModelConfigError: unknown preset, bad rate or frame count.
    """
    from ptssnn.models import PTSSNN, PTSSNNConfig, get_preset

    if not 0.0 <= firing_rate <= 1.0:
        raise ModelConfigError(f"firing rate must be in [0, 1], got {firing_rate}")
    if frames < 1:
        raise ModelConfigError(f"frames must be >= 1, got {frames}")
    changes = {k: v for k, v in (("input_dim", input_dim), ("num_classes", num_classes))
               if v is not None}
    if isinstance(config, str):
        config = get_preset(config, **changes)
    elif isinstance(config, PTSSNNConfig):
        config = config.replace(**changes)
    else:
        raise ModelConfigError("config must be a PTSSNNConfig or a preset name")
    model = PTSSNN(config).eval()
    shape = (1, config.input_layers, frames, config.input_dim) if config.input_layers > 1 \
        else (1, frames, config.input_dim)
    features = torch.randn(*shape, generator=torch.Generator().manual_seed(0))
    mask = torch.ones(1, frames, dtype=torch.bool)
    counter = _Counter(model, mask.transpose(0, 1))
    with counter.attached():
        model(features, mask)
    preset, total, modules = _describe(model)
    spiking = config.neuron == "plif"
    report = EfficiencyReport(
        preset=preset, trainable_parameters=total, modules=modules, samples=1,
        frames_per_sample=float(frames),
        firing_rate_source=f"assumed {firing_rate:g}" if spiking else "none (ANN)",
        layers=counter.layers(assumed_rate=firing_rate))
    return report._finish()
