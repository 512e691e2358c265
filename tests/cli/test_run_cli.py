"""End-to-end: ``ptssnn benchmark`` on a tiny real CASIA subset, and ``ptssnn demo``."""

from __future__ import annotations

import json
import os

import pytest
from typer.testing import CliRunner

from ptssnn.cli import app
from ptssnn.errors import PtssnnError

runner = CliRunner()


def invoke(*args: str, env: dict[str, str] | None = None):
    return runner.invoke(app, list(args), env={"COLUMNS": "200", **(env or {})})


def test_benchmark_without_data_root_says_what_to_do(monkeypatch):
    monkeypatch.delenv("PTSSNN_DATA", raising=False)
    result = invoke("benchmark", "casia", "--out", "unused")
    assert isinstance(result.exception, PtssnnError)
    assert "--data-root" in str(result.exception)


def test_benchmark_precision_reaches_the_training_config(tmp_path):
    result = invoke("benchmark", "casia", "--data-root", str(tmp_path), "--precision", "fp16",
                    "--out", str(tmp_path / "out"))
    assert isinstance(result.exception, PtssnnError)
    assert "precision must be one of fp32, bf16" in str(result.exception)


@pytest.mark.slow
def test_benchmark_smoke_on_real_casia_subset_and_resume(shared_data, tmp_path):
    out = tmp_path / "out"
    args = ("benchmark", "casia", "--data-root", str(shared_data), "--backbone", "fbank",
            "--models", "pts-snn,ann,probe", "--epochs", "2", "--limit", "2",
            "--cache", str(tmp_path / "cache"), "--out", str(out), "--jobs", "2",
            "--normalisation", "auto", "--no-progress")
    result = invoke(*args)
    assert result.exit_code == 0, result.output + repr(result.exception)
    results = json.loads((out / "results.json").read_text())
    casia = results["corpora"]["casia"]
    assert casia["num_utterances"] == 4 * 6 * 2  # 4 speakers × 6 emotions × --limit 2
    assert [f["name"] for f in casia["folds"]] == [
        "loso-ZhaoZuoxiang", "loso-liuchanhg", "loso-wangzhe", "loso-zhaoquanyin"]
    for fold in casia["folds"]:  # speaker-independent with held-out validation speakers
        assert fold["validation_policy"] == "speakers" and fold["validation"] > 0
    assert set(casia["models"]) == {"pts-snn", "ann", "probe"}
    for name, model in casia["models"].items():
        folds = model["runs"]["0"]["folds"]
        assert len(folds) == 4
        for fold in folds:
            assert 0.0 <= fold["test"]["ua"] <= 1.0
            # Chosen per fold on validation speakers, for every head alike.
            assert fold["normalisation"] in ("global", "speaker")
            assert set(fold["normalisation_scores"]) == {"global", "speaker"}
            assert sum(map(sum, fold["test"]["confusion"])) == fold["test"]["num_samples"] == 12
            if name != "probe":
                assert 1 <= fold["fit"]["epochs_run"] <= 2
        assert model["num_parameters"] > 0
    pts = casia["models"]["pts-snn"]["efficiency"]
    assert pts["energy_mj_per_sample"] > 0 and "uncalibrated" in pts
    assert results["environment"]["torch"] and results["peak_memory_mb"] > 0
    assert results["settings"]["train"]["max_epochs"] == 2
    assert results["settings"]["train"]["normalisation"] == "auto"
    report = (out / "report.md").read_text()
    assert "| pts-snn |" in report and "| probe |" in report and "SYNTHETIC" not in report
    assert (out / "plots" / "casia-pts-snn-confusion.png").exists()
    assert "report.md" in result.output

    # Resume: every fold is finished, so nothing trains again and the numbers are the same.
    again = invoke(*args, "--resume")
    assert again.exit_code == 0, again.output
    rerun = json.loads((out / "results.json").read_text())
    for name in casia["models"]:
        assert rerun["corpora"]["casia"]["models"][name]["metrics"] == \
            casia["models"][name]["metrics"]


@pytest.mark.slow
def test_demo_runs_the_synthetic_pipeline(tmp_path, monkeypatch):
    monkeypatch.delenv("PTSSNN_DATA", raising=False)
    out = tmp_path / "demo"
    result = invoke("demo", "--out", str(out), "--clips", "3", "--epochs", "2",
                    "--no-progress", env={"PTSSNN_DATA": ""})
    assert result.exit_code == 0, result.output + repr(result.exception)
    assert "SYNTHETIC" in result.output and "report.md" in result.output
    results = json.loads((out / "results.json").read_text())
    assert results["synthetic"] is True
    corpus = results["corpora"]["synthetic"]
    assert corpus["num_utterances"] == 4 * 4 * 3
    assert set(corpus["models"]) == {"pts-snn", "ann", "probe"}
    assert len(corpus["folds"]) == 4
    # The benchmark's heads carry fbank's head default: no LayerNorm (2 × 80 parameters)
    # in the saturation.
    from ptssnn.models import create_model

    expected = create_model("pts-snn", 80, 4, saturation_norm=False).num_trainable_parameters()
    assert corpus["models"]["pts-snn"]["num_parameters"] == expected
    assert (out / "report.md").read_text().count("SYNTHETIC") >= 2
    assert os.path.isdir(out / "feature-cache")


def test_demo_with_a_data_root_without_corpora_is_a_clear_error(tmp_path):
    result = invoke("demo", "--data-root", str(tmp_path), "--out", str(tmp_path / "o"))
    assert isinstance(result.exception, PtssnnError)
    assert "no corpus folder" in str(result.exception)


@pytest.mark.slow
def test_benchmark_enrolment_protocol_on_real_casia_subset(shared_data, tmp_path):
    out = tmp_path / "out"
    result = invoke("benchmark", "casia", "--data-root", str(shared_data), "--backbone", "fbank",
                    "--models", "pts-snn", "--epochs", "1", "--limit", "2",
                    "--normalisation", "global", "--enrolment", "0", "--enrolment", "2,all",
                    "--enrolment-draws", "2", "--cache", str(tmp_path / "cache"),
                    "--out", str(out), "--jobs", "1", "--no-progress")
    assert result.exit_code == 0, result.output + repr(result.exception)
    results = json.loads((out / "results.json").read_text())
    assert results["settings"]["enrolment"]["ks"] == ["0", "2", "all"]
    model = results["corpora"]["casia"]["models"]["pts-snn"]
    for fold in model["runs"]["0"]["folds"]:
        # K = 0 is the plain test; K = 2 leaves 12 - 2 clips of the one test speaker.
        assert fold["enrolment"]["0"]["ua"] == pytest.approx(fold["test"]["ua"])
        assert fold["enrolment"]["2"]["scored"] == 10
        assert len(fold["enrolment"]["2"]["ua_draws"]) == 2
        assert fold["enrolment"]["all"]["scored"] == 12
    assert set(model["enrolment"]) == {"0", "2", "all"}
    assert len(model["enrolment"]["2"]["ua"]["values"]) == 4
    report = (out / "report.md").read_text()
    assert "| model | K = 0 | K = 2 | K = all |" in report and "Enrolment protocol" in report
    assert (out / "plots" / "casia-enrolment.png").exists()
