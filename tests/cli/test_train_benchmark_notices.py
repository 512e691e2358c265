"""What ``ptssnn train`` and ``ptssnn benchmark`` tell the user about their data: the files
a corpus scan or the backbone cannot use (on the console, in report.md and in the
summaries), and a validation split too small to choose on."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from corpora.synthetic_trees import build_emodb_tree
from ptssnn.cli import app
from ptssnn.cli.deploy import _train_report

runner = CliRunner()


@pytest.fixture(scope="module")
def emodb_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An EmoDB-layout tree with four unusable files (bad name, unknown label, too short,
    not audio) beside 34 good ones."""
    root = tmp_path_factory.mktemp("left-out")
    build_emodb_tree(root / "emodb")
    return root


UNUSABLE = ("03_a01_Wa.wav", "03a01Xa.wav", "08a04Wa.wav", "08a05Wa.wav")


def test_benchmark_names_the_files_it_left_out(emodb_root: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    result = runner.invoke(app, ["benchmark", "emodb", "--data-root", str(emodb_root),
                                 "--backbone", "fbank", "--models", "probe", "--seeds", "1",
                                 "--out", str(out), "--no-progress"])
    assert result.exit_code == 0, result.output
    assert "emodb: 4 file(s) left out:" in result.output
    assert "and 1 more (all in report.md and results.json)" in result.output
    report = (out / "report.md").read_text()
    assert "Files left out (4;" in report
    for name in UNUSABLE:
        assert name in report
    assert "cannot be decoded as audio" in report and "shorter than the minimum" in report
    problems = json.loads((out / "results.json").read_text())["corpora"]["emodb"]["problems"]
    assert sorted(Path(p.split(": ")[0]).name for p in problems) == sorted(UNUSABLE)


def test_train_names_the_files_it_left_out(emodb_root: Path, tmp_path: Path) -> None:
    out = tmp_path / "model"
    result = runner.invoke(app, ["train", "emodb", "--data-root", str(emodb_root),
                                 "--backbone", "fbank", "--epochs", "1", "--out", str(out)])
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())  # the console wraps long lines
    assert "4 file(s) left out:" in text and "and 1 more" in text
    # The validation side is the fold's that holds the most classes: one 8-clip speaker, not
    # the 2-clip one most folds carve. It still lacks the class only that small speaker
    # recorded: the user is told, and how to choose others.
    assert "validating on 8" in text
    assert "validation speakers hold only 8 utterance(s) of the 5 classes; no clip of happy" \
        in text
    assert "--validation-speakers" in text
    summary = json.loads((out / "training_summary.json").read_text())
    left_out = summary["corpora"]["emodb"]["left_out"]
    assert sorted(Path(p.split(": ")[0]).name for p in left_out) == sorted(UNUSABLE)


def test_train_report_counts_scan_and_feature_failures_together() -> None:
    summary = {"num_train": 10, "num_validation": 4, "labels": ["a", "b"], "num_held_out": 0,
               "validation": {"ua": 0.5}, "fit": {}, "held_out": None,
               "corpora": {"x": {"left_out": ["/d/a.wav: too short"]}},
               "failed_utterances": ["x-b: backbone failed"]}
    text = _train_report(summary, Path("m"))
    assert "2 file(s) left out: /d/a.wav: too short; x-b: backbone failed" in text
    assert "more" not in text  # two files: both are named
    assert "left out" not in _train_report({**summary, "corpora": {}, "failed_utterances": []},
                                           Path("m"))


def test_validation_warning_only_for_a_split_too_small_to_choose_on() -> None:
    import torch

    from ptssnn.features.table import LabelledFeatures
    from ptssnn.training.deployment import _validation_warning

    def table(labels: list[int]) -> LabelledFeatures:
        return LabelledFeatures(tuple(f"u{i}" for i in range(len(labels))),
                                tuple(torch.zeros(3, 4) for _ in labels),
                                torch.tensor(labels), ("a", "b", "c"))

    assert _validation_warning(table([0, 0, 1, 1, 2, 2])) is None
    assert "no clip of c" in _validation_warning(table([0, 0, 1, 1, 1, 1]))
    assert "only 5 utterance(s) of the 3 classes" in _validation_warning(table([0, 0, 1, 2, 2]))


@pytest.fixture(scope="module")
def one_emotion_per_speaker(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A URDU-layout tree of 8 speakers who each recorded one emotion (4 clips each)."""
    from corpora.synthetic_trees import write_tone

    root = tmp_path_factory.mktemp("confounded")
    folders = {"A": "Angry", "H": "Happy", "N": "Neutral", "S": "Sad"}
    for index, (code, folder) in enumerate(list(folders.items()) * 2):
        for n in range(4):
            write_tone(root / "urdu" / folder / f"SM{index + 1}_F{n + 1}_{code}{index}{n:02d}.wav")
    return root


@pytest.mark.parametrize("normalisation", ["speaker", "global"])
def test_benchmark_warns_when_per_speaker_normalisation_meets_one_emotion_speakers(
        one_emotion_per_speaker: Path, tmp_path: Path, normalisation: str) -> None:
    out = tmp_path / "run"
    result = runner.invoke(app, ["benchmark", "urdu", "--data-root", str(one_emotion_per_speaker),
                                 "--backbone", "fbank", "--models", "probe", "--seeds", "1",
                                 "--normalisation", normalisation, "--out", str(out),
                                 "--no-progress"])
    assert result.exit_code == 0, result.output
    entry = json.loads((out / "results.json").read_text())["corpora"]["urdu"]
    assert entry["speaker_label_dependence"] == pytest.approx(1.0)
    warned = "speaker-label dependence 1.00" in " ".join(result.output.split())
    # Global standardisation uses the training split's moments only: nothing to warn about.
    assert warned == (normalisation == "speaker") == bool(entry["warnings"])
    assert ("**Warning: the speakers give away" in (out / "report.md").read_text()) == warned


def test_train_warns_when_enrolled_training_meets_one_emotion_speakers(
        one_emotion_per_speaker: Path, tmp_path: Path) -> None:
    out = tmp_path / "model"
    result = runner.invoke(app, ["train", "urdu", "--data-root", str(one_emotion_per_speaker),
                                 "--backbone", "fbank", "--epochs", "1", "--normalisation",
                                 "enrolled", "--out", str(out)])
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "speaker-label dependence 1.00" in text and "--normalisation global" in text
    summary = json.loads((out / "training_summary.json").read_text())
    assert summary["speaker_label_dependence"] == pytest.approx(1.0)
