"""PTSSNNConfig, the preset registry, create_model and safetensors checkpoints."""

from __future__ import annotations

import json

import pytest
import torch

from ptssnn.errors import CheckpointError, ModelConfigError, PtssnnError
from ptssnn.models import (
    PTSSNNConfig,
    create_model,
    get_preset,
    list_presets,
    load_pretrained,
    save_pretrained,
)

SMALL = dict(width=32, block_hidden=48, attention_heads=4)


def test_paper_defaults():
    c = PTSSNNConfig()
    assert (c.width, c.num_blocks, c.num_prompts) == (256, 2, 4)
    assert (c.shift_later, c.shift_earlier) == (0.125, 0.125)
    assert (c.init_tau, c.v_threshold, c.v_reset, c.decay_input) == (2.0, 1.0, 0.0, True)
    assert (c.surrogate, c.neuron, c.pooling, c.context) == ("sigmoid", "plif", "spikes", "bias")


def test_presets_registry():
    assert list(list_presets()) == ["vanilla-snn", "+standardise", "+saturation", "+shift",
                                    "+ssla", "pts-snn", "ann", "neuromorphic"]
    assert get_preset("neuromorphic").norm == "batch" and not get_preset("neuromorphic").saturation
    assert not get_preset("vanilla-snn").standardise_input
    assert get_preset("+standardise").standardise_input
    assert all(isinstance(d, str) and d for d in list_presets().values())
    assert get_preset("ann").neuron == "gelu" and get_preset("ann").preset == "ann"
    with pytest.raises(ModelConfigError, match="pts-snn"):
        get_preset("pts_snn")


def test_round_trip_and_validation():
    c = get_preset("+ssla", input_dim=512, num_classes=6, pooling="membrane", v_reset=None)
    assert PTSSNNConfig.from_dict(json.loads(json.dumps(c.to_dict()))) == c
    with pytest.raises(ModelConfigError, match="unknown model config field"):
        PTSSNNConfig.from_dict({**c.to_dict(), "colour": "red"})
    for bad in ({"width": 0}, {"neuron": "lif"}, {"pooling": "max"}, {"dropout": 1.0},
                {"shift_later": 0.8, "shift_earlier": 0.5}, {"width": 30},
                {"surrogate": "erf"}, {"context": "bias", "num_blocks": 0}):
        with pytest.raises(ModelConfigError):
            c.replace(**bad)
    with pytest.raises(ModelConfigError, match="unknown model option"):
        create_model("pts-snn", 16, 3, widht=64)
    assert issubclass(ModelConfigError, PtssnnError)


def test_membrane_pooling_and_soft_reset_models_run():
    model = create_model("pts-snn", 16, 3, pooling="membrane", v_reset=None, surrogate="atan",
                         **SMALL)
    out = model(torch.randn(2, 9, 16))
    out.sum().backward()
    assert out.shape == (2, 3)


def test_save_and_load_round_trip(tmp_path):
    model = create_model("pts-snn", 16, 3, input_layers=2, **SMALL).eval()
    with torch.no_grad():
        model.calibration.projection.weight.normal_()
    metadata = {"labels": ["angry", "neutral", "sad"], "backbone": {"name": "fbank"}}
    directory = save_pretrained(model, tmp_path / "head", metadata)
    assert sorted(p.name for p in directory.iterdir()) == ["config.json", "model.safetensors"]
    loaded, meta = load_pretrained(directory)
    assert meta == metadata and loaded.config == model.config and not loaded.training
    x = torch.randn(2, 2, 11, 16)
    assert torch.equal(loaded(x), model(x))


def test_load_errors_are_clear(tmp_path):
    with pytest.raises(CheckpointError, match="no such model directory"):
        load_pretrained(tmp_path / "absent")
    model = create_model("pts-snn", 16, 3, **SMALL)
    directory = save_pretrained(model, tmp_path / "head", {})
    (directory / "model.safetensors").rename(directory / "weights.bin")
    with pytest.raises(CheckpointError, match=r"model\.safetensors"):
        load_pretrained(directory)
    (directory / "weights.bin").rename(directory / "model.safetensors")
    config_path = directory / "config.json"
    document = json.loads(config_path.read_text())
    document["config"]["width"] = 64  # inconsistent with the weights
    config_path.write_text(json.dumps(document))
    with pytest.raises(CheckpointError, match=r"shape|do not match"):
        load_pretrained(directory)
    document["config"]["width"] = 32
    document["config"]["neuron"] = "spiky"
    config_path.write_text(json.dumps(document))
    with pytest.raises(CheckpointError, match="invalid model config"):
        load_pretrained(directory)
    config_path.write_text("{not json")
    with pytest.raises(CheckpointError, match="not valid JSON"):
        load_pretrained(directory)
    (directory / "model.safetensors").write_bytes(b"garbage")
    config_path.write_text(json.dumps({**document, "config": {**document["config"],
                                                             "neuron": "plif"}}))
    with pytest.raises(CheckpointError, match="unreadable weights"):
        load_pretrained(directory)
    with pytest.raises(CheckpointError, match="JSON-serialisable"):
        save_pretrained(model, tmp_path / "other", {"bad": object()})
