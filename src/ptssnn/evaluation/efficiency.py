"""Efficiency of a trained head: energy per sample, firing statistics, input-current
histograms, each with the calibration bias as trained and with it zeroed.

The paper's claim made measurable: frozen SSL features fed to threshold neurons leave many
neurons silent (never fire) or saturated (fire at every step); the context-driven bias
voltages pull them back into the responsive range. So for a head with a
:class:`~ptssnn.snn.calibration.MembraneCalibration`, every statistic is measured twice: as
trained, and on a copy whose bias projection is zeroed (bias exactly 0).

Energy comes from :func:`ptssnn.energy.measure` (head only; the frozen backbone is reported
separately by the benchmark). Firing statistics come from the PLIF layers' own recording
(``record = True``) and masked input currents from forward pre-hooks, so padded frames count
nowhere.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from ptssnn.features.table import Batch, LabelledFeatures, bucketed_batches

#: Below this rate (spikes per real step) a neuron counts as silent, above the other as
#: saturated: the thresholds of ``ptssnn.energy``'s neuron statistics.
SILENT_RATE = 0.01
SATURATED_RATE = 0.99
#: Histogram range of input currents (threshold 1.0 sits inside); outliers go to the end bins.
HISTOGRAM_EDGES = tuple(float(x) for x in np.linspace(-4.0, 4.0, 81))


def _plif_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    from ptssnn.snn.plif import PLIF

    return [(name, module) for name, module in model.named_modules() if isinstance(module, PLIF)]


def zero_calibration(model: nn.Module) -> nn.Module | None:
    """A copy of ``model`` whose calibration bias voltages are exactly zero.

    Returns:
        The copy, or ``None`` when the model's calibration does not drive bias voltages (no
        :class:`MembraneCalibration`, or one whose context feeds the read-out, as in the
        ``+ssla`` rung): nothing to zero.
    """
    from ptssnn.snn.calibration import MembraneCalibration

    config = getattr(model, "config", None)
    if config is not None and getattr(config, "context", "bias") != "bias":
        return None
    if not any(isinstance(m, MembraneCalibration) for m in model.modules()):
        return None
    clone = copy.deepcopy(model)
    with torch.no_grad():
        for module in clone.modules():
            if isinstance(module, MembraneCalibration):
                # bias = mixing · projection(prompts): a zero projection gives zero bias.
                module.projection.weight.zero_()
                module.projection.bias.zero_()
    return clone


def analysis_batches(data: LabelledFeatures, max_items: int, batch_size: int = 32
                     ) -> list[Batch]:
    """Up to ``max_items`` items (evenly spread over the split, deterministic), as batches."""
    count = len(data)
    if count == 0:
        return []
    picked = np.unique(np.linspace(0, count - 1, min(count, max_items)).round().astype(int))
    part = data.subset([data.ids[i] for i in picked])
    return [part.batch(idx) for idx in bucketed_batches(part.lengths(), batch_size)]


@torch.no_grad()
def firing_statistics(model: nn.Module, batches: Sequence[Batch],
                      edges: Sequence[float] = HISTOGRAM_EDGES) -> dict[str, Any]:
    """Firing rates, silent/saturated neurons and the input-current histogram of every PLIF.

    Args:
        model: A head; evaluated in eval mode.
        batches: Padded batches (features ``[B, T, D]`` or ``[B, L, T, D]``, mask ``[B, T]``).
        edges: Histogram bin edges (values outside go to the first/last bin).

    Returns:
        ``{}`` for a head without spiking neurons, else ``mean_rate`` (spikes per neuron per
        real step, over all layers), ``silent_fraction`` (rate < :data:`SILENT_RATE`),
        ``saturated_fraction`` (rate > :data:`SATURATED_RATE`), ``layers`` (rate per layer),
        ``histogram`` (``edges``, ``counts`` of input current + bias over real steps).
    """
    layers = _plif_layers(model)
    if not layers:
        return {}
    edges_t = torch.tensor(edges, dtype=torch.float64)
    counts = torch.zeros(len(edges) - 1, dtype=torch.float64)

    def pre_hook(module: nn.Module, args: tuple, kwargs: dict) -> None:
        x = args[0] if args else kwargs["x"]
        bias = kwargs.get("bias", args[1] if len(args) > 1 else None)
        mask = kwargs.get("mask", args[2] if len(args) > 2 else None)
        current = x if bias is None else x + (bias if bias.dim() == x.dim() else bias.unsqueeze(0))
        values = current.detach().to(torch.float64)
        if mask is not None:
            values = values[mask.bool()]  # [real steps, *N]
        values = values.reshape(-1).clamp(edges[0], edges[-1])
        counts.add_(torch.histc(values, bins=len(edges) - 1, min=edges[0], max=edges[-1]))

    was_training = model.training
    model.eval()
    handles = [m.register_forward_pre_hook(pre_hook, with_kwargs=True) for _, m in layers]
    for _, module in layers:
        module.reset_statistics()
        module.record = True
    try:
        for batch in batches:
            model(batch.features, batch.mask)
    finally:
        for handle in handles:
            handle.remove()
        for _, module in layers:
            module.record = False
        model.train(was_training)
    per_layer: dict[str, float] = {}
    rates = []
    for name, module in layers:
        if module.spike_count is None or module.step_count == 0:
            continue
        neuron_rates = (module.spike_count / module.step_count).reshape(-1)
        per_layer[name] = float(neuron_rates.mean())
        rates.append(neuron_rates)
        module.reset_statistics()
    if not rates:
        return {}
    every = torch.cat(rates)
    return {
        "mean_rate": float(every.mean()),
        "silent_fraction": float((every < SILENT_RATE).double().mean()),
        "saturated_fraction": float((every > SATURATED_RATE).double().mean()),
        "num_neurons": int(every.numel()),
        "layers": per_layer,
        "histogram": {"edges": [float(e) for e in edges_t], "counts": counts.tolist()},
    }


@torch.no_grad()
def head_energy(model: nn.Module, batches: Sequence[Batch]) -> dict[str, float]:
    """Energy per sample of the head (``ptssnn.energy.measure``), averaged over batches."""
    from ptssnn.energy import measure

    totals: dict[str, float] = {}
    items = 0
    for batch in batches:
        report = measure(model, batch.features, batch.mask)
        size = batch.features.shape[0]
        for key, value in _energy_numbers(report).items():
            totals[key] = totals.get(key, 0.0) + value * size
        items += size
    return {k: v / max(1, items) for k, v in totals.items()}


def _energy_numbers(report: Any) -> dict[str, float]:
    data = report.to_dict() if hasattr(report, "to_dict") else dict(vars(report))
    wanted = ("energy_mj_per_sample", "flops_per_sample", "sops_per_sample", "energy_mj",
              "flops", "sops")
    return {k: float(data[k]) for k in wanted if isinstance(data.get(k), int | float)}


def analyse_head(model: nn.Module, test: LabelledFeatures, *, max_items: int = 64
                 ) -> dict[str, Any]:
    """Energy, firing statistics and histograms of a trained head on (part of) a test split.

    Returns:
        ``energy_mj_per_sample`` (+ FLOPs/SOPs when reported), ``calibrated`` firing
        statistics (as trained), ``uncalibrated`` (bias zeroed; only for heads with a
        calibration), ``histograms.input_current`` per condition, ``threshold``.
    """
    batches = analysis_batches(test, max_items)
    out: dict[str, Any] = {"items": sum(b.features.shape[0] for b in batches)}
    out.update(head_energy(model, batches))
    stats = firing_statistics(model, batches)
    if not stats:
        return out
    layers = _plif_layers(model)
    out["threshold"] = float(layers[0][1].v_threshold) if layers else 1.0
    histograms = {"as trained": stats.pop("histogram")}
    out["calibrated"] = stats
    zeroed = zero_calibration(model)
    if zeroed is not None:
        plain = firing_statistics(zeroed, batches)
        histograms["calibration zeroed"] = plain.pop("histogram")
        out["uncalibrated"] = plain
        out["uncalibrated"].update(
            {f"{k}": v for k, v in head_energy(zeroed, batches).items()})
    out["histograms"] = {"input_current": histograms}
    return out
