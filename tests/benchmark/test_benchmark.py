"""Benchmark runner pieces and the report, without training (the end-to-end runs are in
tests/cli/test_run_cli.py)."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from ptssnn.benchmark import BenchmarkError, limit_utterances, render_report, results_table
from ptssnn.benchmark.corpus import find_corpus_root
from ptssnn.benchmark.settings import validate_models
from ptssnn.benchmark.summaries import average_analyses


@dataclass(frozen=True)
class Utt:
    id: str
    speaker: str
    label: str


def test_limit_keeps_first_ids_per_speaker_and_label():
    utts = [Utt(f"{s}-{e}-{i}", s, e) for s in "ab" for e in ("x", "y") for i in range(5)]
    kept = limit_utterances(list(reversed(utts)), 2)
    assert len(kept) == 8
    assert {u.id for u in kept if u.speaker == "a" and u.label == "x"} == {"a-x-0", "a-x-1"}
    with pytest.raises(BenchmarkError):
        limit_utterances(utts, 0)


def test_unknown_model_names_the_valid_ones():
    assert validate_models(["pts-snn", "probe", "pts-snn"]) == ("pts-snn", "probe")
    with pytest.raises(BenchmarkError, match="vanilla-snn"):
        validate_models(["transformer"])


def test_corpus_root_resolution(tmp_path):
    (tmp_path / "casia").mkdir()
    assert find_corpus_root(tmp_path, "casia") == tmp_path / "casia"
    with pytest.raises(BenchmarkError, match="emovo"):
        find_corpus_root(tmp_path, "emovo")
    lone = tmp_path / "my-copy"
    lone.mkdir()
    assert find_corpus_root(lone, "emovo") == lone  # the corpus folder itself


def test_average_analyses_means_numbers_and_lists():
    merged = average_analyses([
        {"energy": 1.0, "calibrated": {"mean_rate": 0.2, "layers": {"a": 0.1}},
         "histograms": {"x": {"counts": [1, 3]}}},
        {"energy": 3.0, "calibrated": {"mean_rate": 0.4, "layers": {"a": 0.3}},
         "histograms": {"x": {"counts": [3, 5]}}},
    ])
    assert merged["energy"] == 2.0
    assert merged["calibrated"]["mean_rate"] == pytest.approx(0.3)
    assert merged["calibrated"]["layers"]["a"] == pytest.approx(0.2)
    assert merged["histograms"]["x"]["counts"] == [2.0, 4.0]


def fake_results(synthetic: bool) -> dict:
    fold = {"fold": "loso-a", "test": {"ua": 0.5, "wa": 0.6}, "fit": {}}
    metric = {"mean": 0.5, "std": 0.1, "values": [0.4, 0.6]}
    return {
        "synthetic": synthetic,
        "settings": {"backbone": "fbank", "seeds": [0], "models": ["pts-snn", "probe"],
                     "train": {"lr": 5e-4, "weight_decay": 0.05, "batch_size": 32,
                               "max_epochs": 3, "patience": 2, "warmup_epochs": 1,
                               "label_smoothing": 0.1, "layers": "auto", "frame_pool": 4}},
        "validation_policy": "validation speakers",
        "environment": {"cpu_count": 2, "platform": "x", "torch": "t", "scikit_learn": "s",
                        "ptssnn": "p"},
        "timings": {"total_s": 120.0},
        "peak_memory_mb": 500.0,
        "command": ["ptssnn", "benchmark", "casia"],
        "corpora": {"casia": {
            "synthetic": synthetic, "num_utterances": 10, "num_speakers": 2,
            "label_names": ["angry", "sad"], "protocol": "loso",
            "folds": [{"name": "loso-a", "validation_policy": "speakers"}],
            "backbone_energy": {"macs_per_sample": 2.5e9, "energy_mj_per_sample": 11.5},
            "models": {
                name: {"metrics": {k: metric for k in ("wa", "ua", "macro_f1", "weighted_f1")},
                       "num_parameters": params, "layers": ["3"], "epochs": {"mean": 2.0},
                       "efficiency": eff, "runs": {"0": {"folds": [fold]}}}
                for name, params, eff in [
                    ("probe", 966, None),
                    ("pts-snn", 1_160_150, {"energy_mj_per_sample": 0.0123,
                                            "calibrated": {"mean_rate": 0.1,
                                                           "silent_fraction": 0.05,
                                                           "saturated_fraction": 0.0},
                                            "uncalibrated": {"silent_fraction": 0.4,
                                                             "saturated_fraction": 0.1}}),
                ]},
        }},
    }


def test_report_has_one_row_per_model_in_ladder_order():
    text = render_report(fake_results(False), {"casia": ["[x](plots/x.png)"]})
    rows = [line for line in text.splitlines() if line.startswith("| pts-snn") or
            line.startswith("| probe")]
    assert rows[0].startswith("| pts-snn") and rows[1].startswith("| probe")
    assert "50.0 ± 10.0" in rows[0] and "1.16 M" in rows[0] and "0.0123" in rows[0]
    assert "40.0 / 10.0" in rows[0]  # silent / saturated without calibration
    assert "SYNTHETIC" not in text
    assert "2,500.0 M MAC/sample" in text and "[x](plots/x.png)" in text
    assert "SYNTHETIC DATA" in render_report(fake_results(True))
    assert "Head options" not in text  # results written before head defaults existed


def test_report_names_the_heads_options_and_where_they_come_from():
    results = fake_results(False)
    results["settings"]["head_defaults"] = {"saturation_norm": False}
    assert ("Head options: `saturation_norm=False` (the `fbank` backbone's default)."
            in render_report(results))
    results["settings"]["model_overrides"] = {"saturation_norm": True, "dropout": 0.2}
    assert ("Head options: `saturation_norm=True`, `dropout=0.2`."
            in render_report(results))


def test_results_table_rows():
    rows = results_table(fake_results(True))
    assert {r["model"] for r in rows} == {"pts-snn", "probe"}
    assert all(r["corpus"] == "casia (SYNTHETIC)" for r in rows)


def test_results_json_is_strict_json_with_null_for_nan(tmp_path):
    import json

    import numpy as np

    from ptssnn.benchmark.report import write_outputs

    results = fake_results(False)
    metrics = results["corpora"]["casia"]["models"]["probe"]["metrics"]
    metrics["ua"] = {"mean": 0.5, "std": float("nan"), "values": np.array([0.5])}
    write_outputs(results, tmp_path, plots=False)

    def refuse(name):
        raise ValueError(f"bare {name}")

    written = json.loads((tmp_path / "results.json").read_text(), parse_constant=refuse)
    assert written["corpora"]["casia"]["models"]["probe"]["metrics"]["ua"] == {
        "mean": 0.5, "std": None, "values": [0.5]}


def test_progress_bar_fits_80_columns_without_cutting():
    import io

    from rich.console import Console

    from ptssnn.benchmark.progress import RunProgress

    out = io.StringIO()
    console = Console(file=out, width=80)
    progress = RunProgress(1234, True, console=console)
    progress.describe("casia: 4 heads × 3 seed(s) × 4 folds (speaker-independent loso)")
    progress.advance(12)
    console.print(progress._progress.make_tasks_table(progress._progress.tasks))
    text = out.getvalue()
    assert "…" not in text and "12/1234" in text and "ETA" in text
    assert "speaker-independent loso" in " ".join(text.split())


def test_benchmark_defaults_are_the_deployable_protocol():
    from ptssnn.training.config import benchmark_train_config

    config = benchmark_train_config()
    # No test-speaker information: training-split moments only; refit on train + validation.
    assert config.normalisation == "global" and config.refit and config.refit_epochs == "auto"
    assert config.layers == "all" and config.layer_mix_lr_scale > 1
    assert config.augment_space == "standardised"
    assert config.mixup_alpha > 0


def test_report_names_the_recipe_of_the_run():
    from ptssnn.benchmark.report import _average_note, _layer_mix_note, _refit_note

    train = {"layers": "all", "layer_mix_lr_scale": 30.0, "refit": True, "refit_epochs": "max",
             "max_epochs": 8, "weight_average_epochs": 0.0}
    assert "30× the learning rate" in _layer_mix_note(train)
    assert "for all 8 epochs" in _refit_note(train)
    assert _average_note(train) == ""
    older = {"layers": "middle", "refit": True}  # results.json of earlier versions
    assert _layer_mix_note(older) == "" and "selected epoch count" in _refit_note(older)
    assert "horizon 1 epochs" in _average_note({"weight_average_epochs": 1.0})
    assert "≥ 5 training + validation speakers" in _refit_note({**train, "refit_epochs": "auto"})
    enrolled = {**train, "refit_epochs": "auto", "normalisation": "enrolled"}
    assert _refit_note(enrolled) == ", refit on training + validation for all 8 epochs"
    from ptssnn.benchmark.settings import validation_policy
    from ptssnn.training.config import benchmark_train_config

    assert "≥ 5 speakers" in validation_policy(benchmark_train_config())
    policy = validation_policy(benchmark_train_config(normalisation="enrolled"))
    assert "whole schedule (8 epochs), and scored" in policy


def test_report_pairs_each_head_with_the_probe_over_folds():
    from ptssnn.benchmark.report import paired_table

    folds = ["loso-a", "loso-b", "loso-c"]

    def runs(values_by_seed):
        return {seed: {"folds": [{"fold": f, "test": {"ua": v}} for f, v in zip(
            folds, values, strict=True)]} for seed, values in values_by_seed.items()}

    entry = {"models": {
        "probe": {"runs": runs({"0": [0.50, 0.40, 0.60], "1": [0.50, 0.40, 0.60]})},
        # seeds average to +2, +4, +6 points over the probe
        "pts-snn": {"runs": runs({"0": [0.51, 0.45, 0.65], "1": [0.53, 0.43, 0.67]})},
        "ann": {"runs": runs({"0": [0.49, 0.40, 0.61]})},
    }}
    lines = paired_table(entry, ["pts-snn", "ann", "probe"], folds)
    row = next(line for line in lines if line.startswith("| pts-snn"))
    # mean +4.0, sd 2.0, t(0.975, 2) = 4.303 → half-width 4.97
    assert row == "| pts-snn | +4.0 | [-1.0, +9.0] | 3 / 0 of 3 |"
    assert next(line for line in lines if line.startswith("| ann")).endswith("1 / 1 of 3 |")
    assert paired_table(entry, ["pts-snn", "ann"], folds) == []  # no probe, no pairs


def test_report_pairs_each_enrolment_size_with_no_profile_over_folds():
    from ptssnn.benchmark.report import enrolment_gain_table

    def fold(name, k0, k5):
        return {"fold": name, "enrolment": {"0": {"ua": k0}, "5": {"ua": k5},
                                            "all": {"ua": 0.9}}}

    entry = {"models": {"pts-snn": {"runs": {
        "0": {"folds": [fold("a", 0.50, 0.52), fold("b", 0.60, 0.57), fold("c", 0.40, 0.46)]},
        "1": {"folds": [fold("a", 0.50, 0.54), fold("b", 0.60, 0.57), fold("c", 0.40, 0.46)]},
    }}}}
    lines = enrolment_gain_table(entry, ["pts-snn"], ["0", "5", "all"])
    # per fold +3, -3, +6 points: mean +2, sd 4.58, t(0.975, 2) = 4.303 → ±11.4
    assert lines[-1] == ("| pts-snn | +2.0 [-9.4, +13.4]; 1 of 3 folds > 1 point below |")
    assert "K = 5 − K = 0" in lines[-3] and "all" not in lines[-3]
    assert enrolment_gain_table(entry, ["pts-snn"], ["5", "all"]) == []
