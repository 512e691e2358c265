"""PTSSNN: parameter budget, presets, masking, determinism, learning."""

from __future__ import annotations

import pytest
import torch
from torch.nn import functional as F

from ptssnn.errors import ModelConfigError
from ptssnn.models import PTSSNN, create_model, list_presets

pytestmark = pytest.mark.usefixtures("one_thread")

PAPER_PARAMETERS = 1.19e6


@pytest.mark.parametrize("input_dim", [512, 768])
def test_default_preset_has_the_papers_parameter_count(input_dim):
    model = create_model("pts-snn", input_dim=input_dim, num_classes=4)
    total = model.num_trainable_parameters()
    assert abs(total - PAPER_PARAMETERS) <= 0.10 * PAPER_PARAMETERS, total
    counts = model.parameter_counts()
    assert sum(counts.values()) == total
    assert {"projection", "calibration", "blocks.0", "blocks.1", "classifier"} <= set(counts)
    assert counts["projection"] == input_dim * 256 + 256


def _batch(batch=4, steps=18, dim=24, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, steps, dim, generator=g) * 3
    mask = torch.ones(batch, steps, dtype=torch.bool)
    mask[1, 12:] = False
    mask[3, 5:] = False
    return x, mask


SMALL = dict(width=32, block_hidden=48, attention_heads=4)


@pytest.mark.parametrize("preset", list(list_presets()))
def test_every_preset_runs_and_ignores_padding(preset):
    model = create_model(preset, 24, 5, **SMALL).eval()
    x, mask = _batch()
    logits = model(x, mask)
    assert logits.shape == (4, 5) and torch.isfinite(logits).all()
    poisoned = x.clone()
    poisoned[~mask] = 1e4
    torch.testing.assert_close(model(poisoned, mask), logits)
    # Padding a clip changes nothing either.
    padded = torch.cat([x, torch.randn(4, 6, 24)], dim=1)
    padded_mask = torch.cat([mask, torch.zeros(4, 6, dtype=torch.bool)], dim=1)
    torch.testing.assert_close(model(padded, padded_mask), logits)


def test_ladder_components():
    models = {p: create_model(p, 24, 3, **SMALL) for p in list_presets()}
    assert models["vanilla-snn"].saturation is None
    assert models["+saturation"].saturation is not None
    assert models["+saturation"].config.shift_later == 0 and models["+shift"].config.shift_later
    assert models["+shift"].calibration is None and models["+ssla"].calibration is not None
    assert models["+ssla"].config.context == "readout"
    assert models["pts-snn"].config.context == "bias"
    assert models["ann"].config.neuron == "gelu"
    # The ANN twin has the same architecture: same parameters up to the PLIF time constants.
    ann, snn = models["ann"].parameter_counts(), models["pts-snn"].parameter_counts()
    assert set(ann) - {"output_neuron"} == set(snn) - {"output_neuron"}


def test_weighted_layer_sum_input():
    model = create_model("pts-snn", 24, 3, input_layers=3, **SMALL).eval()
    x, mask = _batch()
    layers = torch.stack([x, x * 0.5, -x], dim=1)  # [B, L, T, D]
    assert model(layers, mask).shape == (4, 3)
    with torch.no_grad():  # a one-hot layer weighting selects that layer
        model.layer_weights.copy_(torch.tensor([0.0, 50.0, 0.0]))
    single = create_model("pts-snn", 24, 3, **SMALL).eval()
    skip = {"layer_weights", "input_mean", "input_std"}  # per-layer; identity here
    single.load_state_dict({k: v for k, v in model.state_dict().items() if k not in skip},
                           strict=False)
    torch.testing.assert_close(model(layers, mask), single(x * 0.5, mask), atol=1e-4, rtol=1e-4)
    with pytest.raises(ModelConfigError, match="input_layers"):
        model(x, mask)


def test_input_statistics_standardise_every_channel():
    model = create_model("pts-snn", 24, 3, **SMALL).eval()
    x, mask = _batch()
    scale, shift = torch.linspace(0.5, 300.0, 24), torch.linspace(-50.0, 50.0, 24)
    reference = model(x, mask)
    model.set_input_statistics(shift, scale)  # [D] is accepted for one layer
    torch.testing.assert_close(model(x * scale + shift, mask), reference, atol=1e-4, rtol=1e-4)
    layered = create_model("pts-snn", 24, 3, input_layers=2, **SMALL).eval()
    stack = torch.stack([x, x], dim=1)
    before = layered(stack, mask)
    layered.set_input_statistics(torch.stack([shift, -shift]), torch.stack([scale, 2 * scale]))
    moved = torch.stack([x * scale + shift, x * 2 * scale - shift], dim=1)
    torch.testing.assert_close(layered(moved, mask), before, atol=1e-4, rtol=1e-4)
    with pytest.raises(ModelConfigError, match="input statistics"):
        model.set_input_statistics(torch.zeros(5), torch.ones(5))
    with pytest.raises(ModelConfigError, match="> 0"):
        model.set_input_statistics(torch.zeros(24), torch.zeros(24))
    with pytest.raises(ModelConfigError, match="input_layers"):
        layered(torch.stack([x, x, x], dim=1), mask)
    with pytest.raises(ModelConfigError, match="input_layers"):
        layered(x[:, None], mask)  # one layer must not broadcast against two


def test_input_errors_are_typed():
    model = create_model("pts-snn", 24, 3, **SMALL)
    with pytest.raises(ModelConfigError, match="input_dim"):
        model(torch.randn(2, 5, 10))
    with pytest.raises(ModelConfigError, match="mask"):
        model(torch.randn(2, 5, 24), torch.ones(2, 4, dtype=torch.bool))


def test_deterministic_given_a_seed():
    a = create_model("pts-snn", 24, 3, seed=7, **SMALL)
    torch.manual_seed(123)  # the global RNG must not matter
    b = create_model("pts-snn", 24, 3, seed=7, **SMALL)
    c = create_model("pts-snn", 24, 3, seed=8, **SMALL)
    for (name, pa), pb in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        assert torch.equal(pa, pb), name
    assert not torch.equal(a.projection.weight, c.projection.weight)
    x, mask = _batch()
    a.eval(), b.eval()
    assert torch.equal(a(x, mask), b(x, mask))


def test_fused_and_loop_backends_agree_on_the_model():
    x, mask = _batch()
    fused = create_model("pts-snn", 24, 3, **SMALL)
    loop = create_model("pts-snn", 24, 3, plif_backend="loop", **SMALL)
    loop.load_state_dict(fused.state_dict())
    fused.eval(), loop.eval()
    out_f, out_l = fused(x, mask), loop(x, mask)
    torch.testing.assert_close(out_f, out_l, rtol=1e-5, atol=1e-5)
    out_f.sum().backward()
    out_l.sum().backward()
    for (name, pf), pl in zip(fused.named_parameters(), loop.parameters(), strict=True):
        torch.testing.assert_close(pf.grad, pl.grad, rtol=1e-4, atol=1e-5, msg=name)


def test_full_model_overfits_a_tiny_batch():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(16, 30, 64, generator=g)
    y = torch.arange(16) % 4
    mask = torch.ones(16, 30, dtype=torch.bool)
    mask[::3, 20:] = False
    model = create_model("pts-snn", 64, 4, seed=0)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    for _ in range(60):
        model.train()
        optimizer.zero_grad()
        F.cross_entropy(model(x, mask), y).backward()
        optimizer.step()
        model.eval()
        with torch.no_grad():
            logits = model(x, mask)
        if F.cross_entropy(logits, y) < 0.1:
            break
    assert (logits.argmax(1) == y).all()
    assert F.cross_entropy(logits, y) < 0.1
    # The calibration has left its zero start: the bias voltages are being used.
    assert model.calibration.projection.weight.abs().sum() > 0


@pytest.mark.parametrize("preset", list(list_presets()))
def test_every_preset_trains(preset):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(8, 16, 24, generator=g) * 2
    y = torch.arange(8) % 3
    model = create_model(preset, 24, 3, dropout=0.0, **SMALL)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(12):
        optimizer.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0] - 0.05, losses
    assert sum(losses[-3:]) < sum(losses[:3]), losses


def test_model_is_a_plain_module():
    model = PTSSNN(create_model("pts-snn", 24, 3, **SMALL).config)
    assert isinstance(model, torch.nn.Module)
    assert "PLIF" in repr(model)


@pytest.mark.filterwarnings("ignore")
def test_forward_is_traceable():
    # ONNX export traces the forward: it must run with plain operators and give the same result.
    model = create_model("pts-snn", 24, 3, **SMALL).eval()
    with torch.no_grad():
        model.calibration.projection.weight.normal_()
    x, mask = _batch()
    with torch.no_grad():
        traced = torch.jit.trace(model, (x, mask))
        torch.testing.assert_close(traced(x, mask), model(x, mask))


def test_mean_std_readout_reads_the_spread_over_time():
    model = create_model("ann", 24, 3, **SMALL, readout="mean_std",
                         pooling="membrane").eval()
    assert model.classifier.in_features == 2 * SMALL["width"]
    x, mask = _batch()
    logits = model(x, mask)
    padded = torch.cat([x, torch.randn(4, 6, 24)], dim=1)
    padded_mask = torch.cat([mask, torch.zeros(4, 6, dtype=torch.bool)], dim=1)
    torch.testing.assert_close(model(padded, padded_mask), logits)
    # The features the classifier sees: [mean, std] of the membrane over the real frames.
    seen = {}
    model.classifier.register_forward_hook(lambda m, i, o: seen.update(x=i[0]))
    one = x[:1, :5]
    model(one, None)
    u = model._embed(model._prepare(one, None)[0], None)
    bias, _ = model.calibration(u, None)
    for i, block in enumerate(model.blocks):
        u = block(u, bias[..., i, :], None)
    torch.testing.assert_close(seen["x"][0, :SMALL["width"]], u[:, 0].mean(0))
    torch.testing.assert_close(seen["x"][0, SMALL["width"]:], u[:, 0].std(0, unbiased=False),
                               atol=1e-4, rtol=1e-4)


def test_saturation_without_layer_norm_keeps_the_frame_level():
    plain = create_model("pts-snn", 24, 3, **SMALL, saturation_norm=False)
    normed = create_model("pts-snn", 24, 3, **SMALL)
    x = torch.randn(2, 5, 24)
    torch.testing.assert_close(plain.saturation(x), torch.tanh(x))
    # A louder frame (every channel up by the same amount) is invisible after LayerNorm.
    louder = x + 2.0
    torch.testing.assert_close(normed.saturation(louder), normed.saturation(x))
    assert not torch.allclose(plain.saturation(louder), plain.saturation(x))


def test_layer_prior_centres_the_initial_layer_mix_on_the_middle_state():
    from ptssnn.models.ptssnn import layer_prior_logits

    uniform = create_model("pts-snn", 24, 3, **SMALL, input_layers=7)
    assert torch.equal(uniform.layer_weights.detach(), torch.zeros(7))
    prior = create_model("pts-snn", 24, 3, **SMALL, input_layers=7, layer_prior=1.0)
    weights = torch.softmax(prior.layer_weights.detach(), 0)
    assert int(weights.argmax()) == 3 and torch.allclose(weights, weights.flip(0))
    assert float(weights[3]) > 0.35 and float(weights[0]) < 0.01
    assert int(layer_prior_logits(4, 1.0).argmax()) == 2
    with pytest.raises(ModelConfigError, match="layer_prior"):
        create_model("pts-snn", 24, 3, layer_prior=-1.0)
