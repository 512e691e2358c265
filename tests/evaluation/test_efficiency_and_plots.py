"""Efficiency analysis of trained heads (with the calibration bias zeroed) and the figures."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ptssnn.evaluation.efficiency import (
    analyse_head,
    analysis_batches,
    firing_statistics,
    zero_calibration,
)
from ptssnn.evaluation.plots import (
    plot_confusion,
    plot_firing_rates,
    plot_histograms,
    plot_training_curves,
)
from ptssnn.models import create_model
from ptssnn.training import LabelledFeatures

PNG = b"\x89PNG\r\n\x1a\n"


def small(preset: str):
    torch.manual_seed(0)
    return create_model(preset, 6, 3, width=16, block_hidden=16, attention_heads=2)


def table(n: int = 10) -> LabelledFeatures:
    rng = np.random.default_rng(0)
    items = [(f"u{i}", rng.standard_normal((int(rng.integers(5, 12)), 6)).astype(np.float32),
              "abc"[i % 3]) for i in range(n)]
    return LabelledFeatures.from_arrays(items, ["a", "b", "c"])


def test_zero_calibration_copies_and_zeroes_only_bias_heads():
    model = small("pts-snn")
    with torch.no_grad():
        model.calibration.projection.weight.fill_(0.5)
    zeroed = zero_calibration(model)
    assert zeroed is not model
    assert not zeroed.calibration.projection.weight.detach().any()
    assert model.calibration.projection.weight.detach()[0, 0] == 0.5  # original untouched
    assert zero_calibration(small("vanilla-snn")) is None
    assert zero_calibration(small("+ssla")) is None  # context feeds the read-out, not a bias


def test_firing_statistics_count_real_steps_only():
    model = small("vanilla-snn")
    data = table()
    batches = analysis_batches(data, 64)
    stats = firing_statistics(model, batches)
    real_steps = sum(data.lengths())
    # every PLIF layer of this head is 16 neurons wide: one histogram entry per real step/neuron
    layers = len(stats["layers"])
    assert sum(stats["histogram"]["counts"]) == pytest.approx(real_steps * 16 * layers)
    assert 0.0 <= stats["silent_fraction"] <= 1.0
    assert 0.0 <= stats["mean_rate"] <= 1.0
    assert firing_statistics(small("ann"), batches) == {}


def test_analyse_head_reports_both_conditions():
    model = small("pts-snn")
    with torch.no_grad():
        model.calibration.projection.bias.fill_(3.0)  # a strong positive bias: more spikes
    out = analyse_head(model, table(), max_items=8)
    assert out["items"] == 8
    assert out["energy_mj_per_sample"] > 0
    assert set(out["histograms"]["input_current"]) == {"as trained", "calibration zeroed"}
    assert out["calibrated"]["mean_rate"] > out["uncalibrated"]["mean_rate"]
    ann = analyse_head(small("ann"), table(), max_items=4)
    assert "calibrated" not in ann and ann["energy_mj_per_sample"] > 0


def test_plots_write_png(tmp_path):
    paths = [
        plot_confusion([[3, 1], [0, 4]], ["a", "b"], tmp_path / "c.png"),
        plot_firing_rates({"x": {"l1": 0.1, "l2": 0.5}, "y": {"l1": 0.0}}, tmp_path / "f.png"),
        plot_histograms({"x": {"edges": [0, 1, 2], "counts": [3, 1]}}, tmp_path / "h.png"),
        plot_training_curves({"f1": [{"epoch": 1, "train_loss": 1.0, "val_ua": 0.4},
                                     {"epoch": 2, "train_loss": 0.8, "val_ua": 0.5}]},
                             tmp_path / "t.png"),
    ]
    for path in paths:
        assert path.read_bytes()[:8] == PNG
