"""``ptssnn model presets|summary`` through typer's CliRunner."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from ptssnn.cli import app
from ptssnn.errors import ModelConfigError
from ptssnn.models import create_model, list_presets, save_pretrained

runner = CliRunner()


def invoke(*args: str):
    return runner.invoke(app, list(args), env={"COLUMNS": "200"})


def test_presets():
    result = invoke("model", "presets")
    assert result.exit_code == 0, result.output
    for name in list_presets():
        assert name in result.output
    entries = json.loads(invoke("model", "presets", "--json").output)
    assert [e["name"] for e in entries] == list(list_presets())


@pytest.mark.parametrize("input_dim", [512, 768])
def test_summary_json_estimate(input_dim):
    result = invoke("model", "summary", "--preset", "pts-snn", "--input-dim", str(input_dim),
                    "--frames", "250", "--firing-rate", "0.1", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["preset"] == "pts-snn"
    assert isinstance(data["trainable_parameters"], int)
    assert abs(data["trainable_parameters"] - 1.19e6) < 0.1 * 1.19e6
    assert sum(data["modules"].values()) == data["trainable_parameters"]
    assert data["modules"]["projection"] == input_dim * 256 + 256
    assert 0 < data["energy_mj_per_sample"] < 10
    assert data["firing_rate_source"] == "assumed 0.1"
    assert "backbone" in data["excluded"]


def test_summary_table_and_rate_dependence():
    result = invoke("model", "summary", "--preset", "vanilla-snn", "--input-dim", "512",
                    "--frames", "100")
    assert result.exit_code == 0, result.output
    for text in ("vanilla-snn", "module", "total", "blocks.0.fc1", "mJ", "Counted"):
        assert text in result.output
    low = json.loads(invoke("model", "summary", "--input-dim", "64", "--frames", "50",
                            "--firing-rate", "0.05", "--json").output)
    high = json.loads(invoke("model", "summary", "--input-dim", "64", "--frames", "50",
                             "--firing-rate", "0.3", "--json").output)
    assert high["energy_mj_per_sample"] > low["energy_mj_per_sample"]


def test_summary_measured_on_features_and_checkpoint(tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / "utt.npy"
    np.save(path, rng.normal(size=(3, 40, 32)).astype(np.float16))  # [L, T, D] as cached
    result = invoke("model", "summary", "--preset", "pts-snn", "--features", str(path),
                    "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["firing_rate_source"] == "measured" and data["frames_per_sample"] == 40
    assert data["modules"]["layer_weights"] == 3
    assert data["neurons"] and 0 <= data["mean_firing_rate"] <= 1
    table = invoke("model", "summary", "--features", str(path))
    assert "firing statistics" in table.output
    model = create_model("+ssla", 32, 3, width=64)
    save_pretrained(model, tmp_path / "head", {"labels": ["a", "b", "c"]})
    np.save(tmp_path / "one.npy", rng.normal(size=(25, 32)).astype(np.float32))
    data = json.loads(invoke("model", "summary", "--checkpoint", str(tmp_path / "head"),
                             "--features", str(tmp_path / "one.npy"), "--json").output)
    assert data["preset"] == "+ssla"
    assert data["trainable_parameters"] == model.num_trainable_parameters()


def test_summary_errors():
    result = invoke("model", "summary", "--preset", "nope", "--input-dim", "64")
    assert result.exit_code != 0 and isinstance(result.exception, ModelConfigError)
    assert "pts-snn" in str(result.exception)
    result = invoke("model", "summary", "--preset", "pts-snn")
    assert result.exit_code == 2 and "--input-dim" in result.output
    result = invoke("model", "summary", "--features", "/nonexistent/x.npy")
    assert result.exit_code == 2 and "no such file" in result.output
