"""End-to-end tests of ``ptssnn features`` on a synthetic CASIA-layout tree (and real data)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from features.feature_helpers import build_casia_tree
from ptssnn.cli import app

runner = CliRunner()


def invoke(*args: str):
    return runner.invoke(app, list(args), env={"COLUMNS": "200"})


@pytest.fixture(scope="module")
def casia(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    root = tmp_path_factory.mktemp("features-cli") / "casia"
    return root, build_casia_tree(root)


def _entries(cache: Path) -> dict[str, np.ndarray]:
    return {p.name: np.load(p) for p in sorted(cache.glob("*/entries/*/*.npy"))}


def test_backbones_lists_the_registry() -> None:
    result = invoke("features", "backbones")
    assert result.exit_code == 0, result.output
    for name in ("whisper-base", "whisper-tiny.en", "fbank", "hf:"):
        assert name in result.output


def test_extract_then_cache_hit(casia: tuple[Path, list[str]], tmp_path: Path) -> None:
    root, ids = casia
    cache, summary = tmp_path / "cache", tmp_path / "summary.json"
    args = ["features", "extract", "casia", str(root), "--backbone", "fbank", "--cache", str(cache)]
    args += ["--no-progress", "--summary-json", str(summary)]
    first = invoke(*args)
    assert first.exit_code == 0, first.output
    assert f"extracted {len(ids)}, cached 0, failed 0" in first.output
    assert "per hour of audio" in first.output and "× real time" in first.output
    report = json.loads(summary.read_text())
    assert report["extracted"] == len(ids) == 12 and report["processes"] == 1
    assert report["cache_bytes_per_hour"] > 0 and report["shape"] == [1, "T", 80]

    second = invoke(*args)
    assert second.exit_code == 0, second.output
    assert f"extracted 0, cached {len(ids)}" in second.output
    assert "all from the cache" in second.output
    assert len(_entries(cache)) == len(ids)

    listing = invoke("features", "cache", "--cache", str(cache))
    assert listing.exit_code == 0 and "fbank" in listing.output and "12" in listing.output


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--backbone", "no-such-backbone"], "unknown backbone"),
        (["--backbone", "fbank", "--layers", "5"], "this backbone has 1 hidden states"),
        (["--backbone", "fbank", "--padding", "30s"], "Whisper backbones only"),
    ],
)
def test_user_errors_print_without_traceback(
    casia: tuple[Path, list[str]], tmp_path: Path, extra: list[str], message: str
) -> None:
    root, _ = casia
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "ptssnn",
            "features",
            "extract",
            "casia",
            str(root),
            "--cache",
            str(tmp_path),
            "--no-progress",
            *extra,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "COLUMNS": "200"},
    )
    assert result.returncode == 2, result.stderr
    assert message in result.stderr and "Traceback" not in result.stderr


def test_torchrun_two_processes_match_one(casia: tuple[Path, list[str]], tmp_path: Path) -> None:
    root, ids = casia
    summary = tmp_path / "summary.json"
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        "2",
        "-m",
        "ptssnn",
        "features",
        "extract",
        "casia",
        str(root),
        "--backbone",
        "fbank",
        "--cache",
        str(tmp_path / "two"),
        "--no-progress",
        "--summary-json",
        str(summary),
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(summary.read_text())
    assert report["processes"] == 2 and report["extracted"] == len(ids) and report["failed"] == 0

    single = invoke(
        "features",
        "extract",
        "casia",
        str(root),
        "--backbone",
        "fbank",
        "--cache",
        str(tmp_path / "one"),
        "--no-progress",
    )
    assert single.exit_code == 0, single.output
    two, one = _entries(tmp_path / "two"), _entries(tmp_path / "one")
    assert sorted(two) == sorted(one) and len(one) == len(ids)
    # Same keys, same namespace name; thread counts may change the last float bits only.
    assert [p.name for p in (tmp_path / "two").iterdir()] == [
        p.name for p in (tmp_path / "one").iterdir()
    ]
    for name, array in one.items():
        np.testing.assert_allclose(
            two[name].astype(np.float32), array.astype(np.float32), atol=2e-2
        )


def test_killed_extraction_resumes(tmp_path: Path) -> None:
    root = tmp_path / "casia"
    ids = build_casia_tree(root, per_class=6)  # 36 files
    cache = tmp_path / "cache"
    args = [
        "features",
        "extract",
        "casia",
        str(root),
        "--backbone",
        "whisper-tiny.en",
        "--cache",
        str(cache),
        "--no-progress",
        "--threads",
        "1",
    ]
    process = subprocess.Popen(
        [sys.executable, "-m", "ptssnn", *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 120
    while not list(cache.glob("*/entries/*/*.json")) and time.monotonic() < deadline:
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    written = len(list(cache.glob("*/entries/*/*.json")))
    assert 0 < written < len(ids), "the run was not interrupted mid-way"

    summary = tmp_path / "summary.json"
    resumed = invoke(*args, "--summary-json", str(summary))
    assert resumed.exit_code == 0, resumed.output
    report = json.loads(summary.read_text())
    assert report["cached"] >= written and report["extracted"] + report["cached"] == len(ids)
    assert report["failed"] == 0


def test_real_casia_subset(shared_data: Path, tmp_path: Path) -> None:
    casia = shared_data / "casia"
    if not casia.is_dir():
        pytest.skip(f"CASIA not found under {shared_data}")
    summary = tmp_path / "summary.json"
    result = invoke(
        "features",
        "extract",
        "casia",
        str(casia),
        "--backbone",
        "whisper-tiny.en",
        "--limit",
        "6",
        "--cache",
        str(tmp_path),
        "--no-progress",
        "--summary-json",
        str(summary),
    )
    assert result.exit_code == 0, result.output
    report = json.loads(summary.read_text())
    assert report["extracted"] == 6 and report["shape"] == [5, "T", 384]
    # float16, 5 layers × 384 × 50 frames/s: 5*384*2*50*3600 bytes per hour plus headers.
    assert 0.68e9 < report["cache_bytes_per_hour"] < 0.72e9


def test_extract_reports_cropped_recordings(tmp_path: Path) -> None:
    from features.feature_helpers import write_speechlike

    root = tmp_path / "casia"
    build_casia_tree(root)
    long = next(iter(sorted(root.rglob("*.wav"))))
    write_speechlike(long, 45.0, seed=3)
    summary = tmp_path / "summary.json"
    result = invoke(
        "features", "extract", "casia", str(root), "--backbone", "fbank",
        "--cache", str(tmp_path / "cache"), "--no-progress", "--summary-json", str(summary),
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    output = " ".join(result.output.split())
    assert "1 recording longer than 30 s was cropped to the first 30 s (0.2 min" in output
    report = json.loads(summary.read_text())
    assert report["cropped"] == 1 and report["cropped_away_seconds"] == pytest.approx(15.0)


def test_extract_reports_an_unreadable_folder_and_failed_utterances_exit_1(
    casia: tuple[Path, list[str]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root, ids = casia
    locked = root / "wangzhe" / "angry"
    real_iterdir = Path.iterdir

    # Simulated: the tests may run as root, whom chmod does not stop.
    def iterdir(self: Path):
        if self == locked:
            raise PermissionError(13, "Permission denied", str(self))
        return real_iterdir(self)

    monkeypatch.setattr(Path, "iterdir", iterdir)
    args = ["features", "extract", "casia", str(root), "--backbone", "fbank", "--no-progress",
            "--cache", str(tmp_path / "cache")]
    result = invoke(*args)
    assert result.exit_code == 0, result.output
    assert f"extracted {len(ids) - 2}, cached 0, failed 0" in result.output
    assert "permission denied" in result.output and "Traceback" not in result.output
    monkeypatch.undo()

    # An utterance that fails to decode: reported, the rest extracted, and the exit status says so.
    broken = tmp_path / "casia"
    build_casia_tree(broken, per_class=1)
    victim = broken / "wangzhe" / "sad" / "201.wav"
    import soundfile as sf

    sf.write(victim, np.zeros(16000, dtype=np.float32), 16000)  # a valid header, silent audio
    result = invoke(*args[:3], str(broken), *args[4:])
    assert result.exit_code == 1, result.output
    assert "failed 1" in result.output and "skipped casia-201-wangzhe-sad" in result.output


def test_read_only_cache_with_a_missing_entry_is_one_line(
    casia: tuple[Path, list[str]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ptssnn.errors import PtssnnError

    root, _ = casia
    cache = tmp_path / "cache"
    args = ["features", "extract", "casia", str(root), "--backbone", "fbank", "--no-progress",
            "--cache", str(cache)]
    assert invoke(*args).exit_code == 0
    next(cache.glob("*/entries/*/*.npy")).unlink()
    real_open = os.open

    # Simulated read-only folder (root ignores chmod): every file opened for writing is refused.
    def read_only_open(path, flags, *rest):
        if str(path).startswith(str(cache)) and flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT):
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path, flags, *rest)

    monkeypatch.setattr(os, "open", read_only_open)
    result = invoke(*args)
    assert isinstance(result.exception, PtssnnError), result.exception
    message = str(result.exception)
    assert "cannot be written (Permission denied)" in message and "--cache" in message
    assert "\n" not in message
