"""``--speed-perturb`` on the command line: ``features extract`` caches the copies,
``train`` trains on them (on copies of its validation clips in the final refit only), bad
factors are refused."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from corpora.synthetic_trees import build_emodb_tree
from features.feature_helpers import build_casia_tree
from ptssnn.cli import app
from ptssnn.errors import PtssnnError

runner = CliRunner()


def invoke(*args: str):
    return runner.invoke(app, list(args), env={"COLUMNS": "200"})


def test_features_extract_caches_each_factor(tmp_path: Path) -> None:
    root = tmp_path / "casia"
    ids = build_casia_tree(root)
    cache, summary = tmp_path / "cache", tmp_path / "summary.json"
    args = ["features", "extract", "casia", str(root), "--backbone", "fbank", "--cache",
            str(cache), "--no-progress", "--speed-perturb", "0.9,1.1", "--summary-json",
            str(summary)]
    first = invoke(*args)
    assert first.exit_code == 0, first.output
    assert first.output.count(f"extracted {len(ids)}, cached 0, failed 0") == 3
    assert "speed-perturbed copies ×0.9" in first.output and "copies ×1.1" in first.output
    assert len(list(cache.glob("*/namespace.json"))) == 3
    assert json.loads((tmp_path / "summary-speed0.9.json").read_text())["speed"] == 0.9
    assert json.loads(summary.read_text())["speed"] == 1.0
    again = invoke(*args)
    assert again.output.count(f"extracted 0, cached {len(ids)}") == 3


@pytest.mark.parametrize("command", ["features", "train", "benchmark"])
def test_a_bad_factor_is_a_clear_error(command: str, tmp_path: Path) -> None:
    args = {"features": ["features", "extract", "casia", str(tmp_path)],
            "train": ["train", "casia", "--data-root", str(tmp_path), "--out",
                      str(tmp_path / "m")],
            "benchmark": ["benchmark", "casia", "--data-root", str(tmp_path)]}[command]
    result = invoke(*args, "--speed-perturb", "0.9,3")
    # A PtssnnError: `ptssnn` prints it as one line and exits 2 (tests/cli/test_startup.py).
    assert isinstance(result.exception, PtssnnError), result.output
    assert "--speed-perturb '0.9,3': speed factor 3 is outside [0.5, 2]" in str(
        result.exception)
    assert not (tmp_path / "m").exists()  # refused before any work


def test_train_adds_copies_of_the_training_clips_only(tmp_path: Path) -> None:
    root = tmp_path / "data"
    build_emodb_tree(root / "emodb")
    plain, copied = tmp_path / "plain", tmp_path / "copied"
    common = ["train", "emodb", "--data-root", str(root), "--backbone", "fbank", "--epochs",
              "1", "--cache", str(tmp_path / "cache")]
    assert invoke(*common, "--out", str(plain)).exit_code == 0
    result = invoke(*common, "--out", str(copied), "--speed-perturb", "1.1,0.9")
    assert result.exit_code == 0, result.output
    before = json.loads((plain / "training_summary.json").read_text())
    after = json.loads((copied / "training_summary.json").read_text())
    n_train, n_val = before["num_train"], before["num_validation"]
    assert after["speed_perturb"] == {"factors": [0.9, 1.1], "copies": 2 * (n_train + n_val)}
    assert after["num_train"] == 3 * n_train
    assert after["num_validation"] == n_val  # never perturbed
    assert before["speed_perturb"] == {"factors": [], "copies": 0}
    text = " ".join(result.output.split())
    assert f"{2 * n_train} of them speed-perturbed copies, and {2 * n_val} copies of the " \
        "validation clips join the final refit" in text
    predicted = invoke("predict", str(copied),
                       str(root / "emodb" / "wav" / "03a01Wa.wav"))
    assert predicted.exit_code == 0, predicted.output


@pytest.mark.parametrize(("command", "normalisation"),
                         [("train", "enrolled"), ("benchmark", "speaker"),
                          ("benchmark", "enrolled")])
def test_copies_work_under_a_per_speaker_normalisation(
        command: str, normalisation: str, tmp_path: Path) -> None:
    # Each speed of a speaker is standardised as a voice of its own
    # (ptssnn.audio.perturbation.normalisation_groups; tests/training/test_enrolment_protocol.py).
    build_emodb_tree(tmp_path / "data" / "emodb")
    args = {"train": ["train", "emodb", "--out", str(tmp_path / "m"), "--epochs", "1"],
            "benchmark": ["benchmark", "emodb", "--out", str(tmp_path / "run"), "--models",
                          "probe", "--no-plots"]}[command]
    result = invoke(*args, "--data-root", str(tmp_path / "data"), "--backbone", "fbank",
                    "--normalisation", normalisation, "--speed-perturb", "0.9",
                    "--cache", str(tmp_path / "cache"))
    assert result.exit_code == 0, result.output
    if command == "train":
        summary = json.loads((tmp_path / "m" / "training_summary.json").read_text())
        assert summary["speed_perturb"]["factors"] == [0.9]
        assert summary["normalisation"] == normalisation
    else:
        results = json.loads((tmp_path / "run" / "results.json").read_text())
        assert results["settings"]["speed_perturb"] == [0.9]
