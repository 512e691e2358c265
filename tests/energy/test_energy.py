"""Efficiency accounting: a hand count, SpikingJelly's op counter, and the full head."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from ptssnn.energy import COUNTED, E_AC_PJ, E_MAC_PJ, EXCLUDED, estimate, measure
from ptssnn.errors import ModelConfigError
from ptssnn.models import create_model
from ptssnn.snn import PLIF

pytestmark = pytest.mark.usefixtures("one_thread")


class Tiny(nn.Module):
    """Linear(2→3) → PLIF → Linear(3→2), time first inside, mean over time."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(2, 3, bias=False)
        self.neuron = PLIF()
        self.fc2 = nn.Linear(3, 2, bias=False)
        with torch.no_grad():
            # Input currents: +10 (always fires), -10 (never), 1.5 (fires every other step).
            self.fc1.weight.copy_(torch.tensor([[10.0, 0.0], [-10.0, 0.0], [1.5, 0.0]]))
            self.fc2.weight.fill_(1.0)

    def forward(self, features, mask):
        x = features.transpose(0, 1)
        s = self.neuron(self.fc1(x), mask=mask.transpose(0, 1))
        return self.fc2(s).mean(0)


def test_hand_count_on_a_tiny_network():
    features = torch.tensor([[1.0, 0.3]]).expand(2, 4, 2).clone()  # B=2, T=4
    mask = torch.tensor([[True] * 4, [True, True, True, False]])
    features[1, 3] = 99.0  # padding: must count nowhere
    report = measure(Tiny(), features, mask)
    # 7 real frames. Neuron 0 fires 7 times, neuron 1 never, neuron 2 at t = 1, 3 (sample 0)
    # and t = 1 (sample 1): H = 0.75, 1.125 (fire), 0.75, 1.125 (fire).
    [stats] = report.neurons
    assert stats.neurons == 3
    assert stats.firing_rate == pytest.approx(10 / 21)
    assert stats.silent_fraction == pytest.approx(1 / 3)
    assert stats.saturated_fraction == pytest.approx(1 / 3)
    fc1, fc2 = report.layers
    assert (fc1.name, fc1.fed_by, fc1.macs, fc1.sops) == ("fc1", "real", 7 * 2 * 3, 0)
    assert (fc2.name, fc2.fed_by, fc2.macs, fc2.sops) == ("fc2", "spikes", 7 * 3 * 2, 10 * 2)
    assert fc2.input_firing_rate == pytest.approx(20 / 42)
    assert report.macs_per_sample == pytest.approx(84 / 2)
    assert report.flops_per_sample == pytest.approx(84)
    assert report.sops_per_sample == pytest.approx(10)
    expected_pj = (42 * E_MAC_PJ + 20 * E_AC_PJ) / 2
    assert report.energy_pj_per_sample == pytest.approx(expected_pj)
    assert report.energy_mj_per_sample == pytest.approx(expected_pj * 1e-9)
    assert report.frames_per_sample == 3.5 and report.samples == 2
    assert report.trainable_parameters == 6 + 1 + 6


def test_cross_check_with_spikingjelly_op_counter():
    pytest.importorskip("spikingjelly.activation_based.op_counter",
                        reason="spikingjelly 2.0.0 not installed (test extra)")
    from spikingjelly.activation_based.op_counter import estimate_simple_energy

    # The shift ladder rung has no attention (whose products SpikingJelly counts differently);
    # no padding, since SpikingJelly counts every frame.
    model = create_model("+shift", 40, 4, width=64, block_hidden=96).eval()
    features = torch.randn(3, 25, 40) * 2
    ours = measure(model, features)
    with torch.no_grad():
        sj = estimate_simple_energy(model, (features,))
    real = sum(layer.macs for layer in ours.layers if layer.fed_by == "real")
    sops = sum(layer.sops for layer in ours.layers)
    assert sj.counts["mac"] == real
    assert sj.counts["synop"] == sops
    assert sops > 0
    sj_pj = sj.energy_mac_pj + sj.counts["synop"] * sj.config.cost_config.e_ac_pj
    assert ours.energy_pj_per_sample * 3 == pytest.approx(sj_pj, rel=1e-9)


def test_measure_full_head_ignores_padding_and_reports_every_layer():
    model = create_model("pts-snn", 24, 4, width=32, block_hidden=48, attention_heads=4)
    features = torch.randn(2, 20, 24) * 2
    mask = torch.ones(2, 20, dtype=torch.bool)
    mask[1, 14:] = False
    report = measure(model, features, mask)
    padded = torch.cat([features, torch.randn(2, 7, 24) * 50], dim=1)
    padded_mask = torch.cat([mask, torch.zeros(2, 7, dtype=torch.bool)], dim=1)
    again = measure(model, padded, padded_mask)
    assert again.to_dict() == report.to_dict()
    names = {n.name for n in report.neurons}
    assert {"blocks.0.neuron_in", "blocks.1.neuron_hidden", "output_neuron",
            "calibration.context_neuron", "calibration.attention.key_neuron"} <= names
    for n in report.neurons:
        assert 0 <= n.silent_fraction <= 1 and 0 <= n.saturated_fraction <= 1
        assert 0 <= n.firing_rate <= 1
    kinds = {layer.name: layer.fed_by for layer in report.layers}
    assert kinds["projection"] == "real" and kinds["blocks.0.fc1"] == "spikes"
    assert kinds["calibration.attention.qk"] == "spikes"
    assert report.energy_pj_per_sample == pytest.approx(
        sum(layer.energy_pj for layer in report.layers) / 2)
    assert "LayerNorm" in EXCLUDED and "backbone" in EXCLUDED and "SOPs" in COUNTED
    assert report.to_dict()["energy_mj_per_sample"] == report.energy_mj_per_sample
    assert model.blocks[0].neuron_in.record is False  # recording switched off again


def test_estimate_matches_measure_in_macs_and_scales_with_rate():
    model = create_model("pts-snn", 24, 4, width=32, block_hidden=48, attention_heads=4)
    measured = measure(model, torch.randn(1, 30, 24))
    low = estimate(model.config, frames=30, firing_rate=0.1)
    high = estimate(model.config, frames=30, firing_rate=0.2)
    assert estimate(model.config, frames=30, firing_rate=0.1).macs_per_sample == \
        measured.macs_per_sample
    spike_sops_low = low.sops_per_sample
    assert high.sops_per_sample == pytest.approx(2 * spike_sops_low, rel=1e-3)
    assert high.energy_pj_per_sample > low.energy_pj_per_sample
    ann = estimate("ann", input_dim=24, frames=30)
    assert ann.sops_per_sample == 0 and ann.firing_rate_source == "none (ANN)"
    assert ann.energy_pj_per_sample > low.energy_pj_per_sample
    with pytest.raises(ModelConfigError):
        estimate("pts-snn", input_dim=24, firing_rate=1.5)


def test_default_model_energy_is_in_the_papers_range():
    # 0.35 mJ per sample is the paper's figure; at a 10% rate and 5 s of audio we should be
    # within an order of magnitude of it (the exact value depends on rates and duration).
    report = estimate("pts-snn", input_dim=768, frames=250, firing_rate=0.1)
    assert 0.035 < report.energy_mj_per_sample < 3.5
    assert abs(report.trainable_parameters - 1.19e6) < 0.1 * 1.19e6
