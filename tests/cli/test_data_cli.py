"""End-to-end tests of ``ptssnn data corpora|scan|folds`` on synthetic trees (and real data)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from corpora.synthetic_trees import build_emodb_tree, build_iemocap_tree, build_ravdess_tree
from ptssnn.cli import app
from ptssnn.corpora import read_manifest
from ptssnn.errors import CorpusError, ProtocolError

runner = CliRunner()


@pytest.fixture(scope="module")
def emodb(tmp_path_factory):
    return build_emodb_tree(tmp_path_factory.mktemp("cli") / "emodb")


@pytest.fixture(scope="module")
def ravdess(tmp_path_factory):
    return build_ravdess_tree(tmp_path_factory.mktemp("cli") / "ravdess")


def invoke(*args: str):
    return runner.invoke(app, list(args), env={"COLUMNS": "200"})


def test_corpora_lists_the_registry():
    result = invoke("data", "corpora")
    assert result.exit_code == 0, result.output
    for name in ("casia", "emodb", "emovo", "iemocap", "ravdess", "urdu"):
        assert name in result.output
    entries = json.loads(invoke("data", "corpora", "--json").output)
    iemocap = next(e for e in entries if e["name"] == "iemocap")
    assert iemocap["default_protocol"] == "session"
    assert iemocap["labels"] == ["angry", "happy", "neutral", "sad"]


def test_scan_json_has_the_contract_fields(emodb):
    result = invoke("data", "scan", "emodb", str(emodb.root), "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    assert summary["corpus"] == "emodb"
    assert summary["num_utterances"] == len(emodb.ids)
    assert summary["speakers"] == ["03", "08", "09", "10", "11"]
    assert summary["labels"] == {"F": 1, "L": 8, "N": 8, "T": 8, "W": 9}
    assert {p["path"].rsplit("/", 1)[1] for p in summary["problems"]} == emodb.problems
    assert all(p["reason"] for p in summary["problems"])
    assert summary["sample_rates"] == {"16000": 33, "48000": 1}
    assert summary["channels"] == {"1": 33, "2": 1}
    assert summary["speaker_label_counts"]["03"] == {"angry": 2, "boredom": 2, "neutral": 2,
                                                     "sad": 2}  # fmt: skip
    assert summary["total_duration_s"] == pytest.approx(0.4 * len(emodb.ids))
    # Speakers 03-10 hold the same emotions twice each; 11 adds one angry and one happy clip.
    assert 0.0 < summary["speaker_label_dependence"] < 0.3


def test_scan_table_shows_counts_formats_and_problems(ravdess):
    result = invoke("data", "scan", "ravdess", str(ravdess.root))
    assert result.exit_code == 0, result.output
    assert "64 utterances, 8 speakers" in result.output
    assert "48000 Hz x64" in result.output and "2 x8" in result.output
    assert "7 problem files" in result.output
    assert "video-only" in result.output and "song" in result.output
    assert "Actor_08" in result.output
    assert "speaker-label dependence" in result.output


def test_scan_writes_a_manifest(emodb, tmp_path):
    out = tmp_path / "manifest.jsonl"
    result = invoke("data", "scan", "emodb", str(emodb.root), "--out", str(out))
    assert result.exit_code == 0, result.output
    assert {u.id for u in read_manifest(out)} == emodb.ids


def test_scan_strict_fails(emodb):
    result = invoke("data", "scan", "emodb", str(emodb.root), "--strict")
    assert result.exit_code != 0
    assert isinstance(result.exception, CorpusError)
    assert "03_a01_Wa.wav" in str(result.exception)  # the first problem in path order


def test_folds_json_lists_ids_and_speakers(ravdess):
    result = invoke("data", "folds", "ravdess", str(ravdess.root), "--json")
    assert result.exit_code == 0, result.output
    folds = json.loads(result.stdout)
    assert [f["name"] for f in folds] == ["actors-01-04", "actors-05-08"]
    for fold in folds:
        sides = {side: fold[side] for side in ("train", "validation", "test")}
        assert all(set(side) == {"ids", "speakers"} for side in sides.values())
        assert len(sides["test"]["speakers"]) == 4 and len(sides["test"]["ids"]) == 32
        speakers = [set(side["speakers"]) for side in sides.values()]
        assert not speakers[0] & speakers[1] and not speakers[0] & speakers[2]
        assert not speakers[1] & speakers[2]
        assert fold["validation_policy"] == "speakers"


def test_folds_table_protocol_option_and_manifest_input(emodb, tmp_path):
    table = invoke("data", "folds", "emodb", str(emodb.root))
    assert table.exit_code == 0, table.output
    assert "protocol loso, 5 folds" in table.output and "loso-11" in table.output
    assert "4 problem files left out" in table.output
    manifest = tmp_path / "m.jsonl"
    invoke("data", "scan", "emodb", str(emodb.root), "--out", str(manifest))
    result = invoke("data", "folds", "emodb", str(manifest), "--validation", "none", "--json")
    assert result.exit_code == 0, result.output
    assert all(f["validation"]["ids"] == [] for f in json.loads(result.stdout))


def test_folds_iemocap_sessions(tmp_path):
    tree = build_iemocap_tree(tmp_path / "iemocap", sessions=2)
    result = invoke("data", "folds", "iemocap", str(tree.root), "--json", "--seed", "3")
    folds = json.loads(result.stdout)
    assert [f["test"]["speakers"] for f in folds] == [["Ses01F", "Ses01M"], ["Ses02F", "Ses02M"]]


def test_folds_unknown_protocol(emodb):
    result = invoke("data", "folds", "emodb", str(emodb.root), "--protocol", "session")
    assert isinstance(result.exception, ProtocolError)
    assert "loso, emobox" in str(result.exception)


def test_layout_errors(tmp_path):
    result = invoke("data", "scan", "casia", str(tmp_path / "missing"))
    assert isinstance(result.exception, CorpusError)
    assert "does not exist" in str(result.exception)
    result = invoke("data", "scan", "casia", str(tmp_path))
    assert "expected layout <speaker>/<emotion>/<NNN>.wav" in str(result.exception)


def test_errors_are_printed_without_traceback(tmp_path):
    # Through the console-script entry point, which turns PtssnnError into a message + exit 2.
    code = "import sys; from ptssnn.cli import main; sys.argv[0] = 'ptssnn'; main()"
    done = subprocess.run(
        [sys.executable, "-c", code, "data", "scan", "tess", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2, done.stderr
    assert "unknown corpus 'tess'" in done.stderr and "Traceback" not in done.stderr


def test_scan_real_casia(shared_data):
    root = shared_data / "casia"
    if not root.is_dir():
        pytest.skip("casia audio not in the shared data")
    summary = json.loads(invoke("data", "scan", "casia", str(root), "--json").output)
    assert summary["num_utterances"] == 1200 and len(summary["speakers"]) == 4
    assert set(summary["labels"].values()) == {200} and summary["problems"] == []


def test_scan_reports_an_unreadable_folder_and_goes_on(ravdess, monkeypatch):
    # Simulated: the tests may run as root, whom chmod does not stop.
    from pathlib import Path

    locked = ravdess.root / "Audio_Speech_Actors_01-24" / "Actor_02"
    real_iterdir = Path.iterdir

    def iterdir(self):
        if self == locked:
            raise PermissionError(13, "Permission denied", str(self))
        return real_iterdir(self)

    monkeypatch.setattr(Path, "iterdir", iterdir)
    result = invoke("data", "scan", "ravdess", str(ravdess.root), "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    reasons = {p["path"]: p["reason"] for p in report["problems"]}
    assert "permission denied" in reasons[str(locked)]
    assert 0 < report["num_utterances"] < 64


def test_scan_lists_nan_filled_and_silent_files_as_problems(tmp_path):
    import numpy as np
    import soundfile as sf

    tree = build_emodb_tree(tmp_path / "emodb")
    nan = np.full(8000, np.nan, dtype=np.float32)
    sf.write(tmp_path / "emodb" / "wav" / "09a01Wa.wav", nan, 16000, subtype="FLOAT")
    sf.write(tmp_path / "emodb" / "wav" / "09b02Wa.wav", np.zeros(8000), 16000)
    result = invoke("data", "scan", "emodb", str(tree.root), "--json")
    assert result.exit_code == 0, result.output
    reasons = {p["path"].rsplit("/", 1)[1]: p["reason"] for p in json.loads(result.output)[
        "problems"]}
    assert "NaN" in reasons["09a01Wa.wav"] and "silence" in reasons["09b02Wa.wav"]
    assert set(reasons) == tree.problems | {"09a01Wa.wav", "09b02Wa.wav"}
    # The header-only scan (as before) does not decode, so it cannot tell.
    quick = invoke("data", "scan", "emodb", str(tree.root), "--json", "--header-only")
    assert {p["path"].rsplit("/", 1)[1] for p in json.loads(quick.output)["problems"]} == (
        tree.problems)
