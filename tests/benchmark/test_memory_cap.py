"""Worker processes are capped by free memory: each holds its own copy of the features."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from corpora.synthetic_trees import build_emodb_tree
from ptssnn.benchmark.scheduling import WORKER_BASE_BYTES, memory_capped_jobs
from ptssnn.cli import app
from ptssnn.processes import available_memory

GB = 10**9


def test_memory_capped_jobs() -> None:
    # CASIA's table (0.95 GB) on a 24 GB machine: no cap.
    assert memory_capped_jobs(2, int(0.95 * GB), 24 * GB) == 2
    # IEMOCAP's (about 9 GB): one worker's copy fits, two do not -> train in this process.
    assert memory_capped_jobs(2, 9 * GB, 24 * GB) == 1
    assert memory_capped_jobs(8, 2 * GB, 12 * GB) == 3
    # Never below one, never above the request; unknown free memory or one job: as asked.
    assert memory_capped_jobs(4, 100 * GB, 1 * GB) == 1
    assert memory_capped_jobs(2, 1, 10**15) == 2
    assert memory_capped_jobs(4, 9 * GB, None) == 4
    assert memory_capped_jobs(1, 9 * GB, WORKER_BASE_BYTES) == 1


def test_available_memory_reads_meminfo(tmp_path: Path) -> None:
    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemTotal:       24000000 kB\nMemAvailable:   20000000 kB\n")
    assert available_memory(str(meminfo)) == 20000000 * 1024
    meminfo.write_text("MemTotal:       24000000 kB\n")
    assert available_memory(str(meminfo)) is None
    assert available_memory(str(tmp_path / "missing")) is None
    if Path("/proc/meminfo").exists():
        assert (available_memory() or 0) > 0


def test_benchmark_runs_in_fewer_processes_when_memory_is_short(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    build_emodb_tree(tmp_path / "data" / "emodb")
    monkeypatch.setattr("ptssnn.benchmark.runner.available_memory", lambda: 100 * 2**20)
    result = CliRunner().invoke(app, [
        "benchmark", "emodb", "--data-root", str(tmp_path / "data"), "--backbone", "fbank",
        "--models", "pts-snn", "--seeds", "1", "--epochs", "1", "--jobs", "2",
        "--out", str(tmp_path / "run"), "--no-progress"])
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "1 process(es) instead of 2 fit in the 0.1 GB of free memory" in text
    assert (tmp_path / "run" / "report.md").exists()


def test_a_table_larger_than_free_memory_is_refused_before_loading(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from ptssnn.benchmark import BenchmarkError
    from ptssnn.benchmark.scheduling import check_table_fits

    check_table_fits("casia", 2 * GB, 3 * GB)
    check_table_fits("casia", 2 * GB, None)  # unknown: no check
    with pytest.raises(BenchmarkError, match=r"casia: its features take 2.0 GB in memory and "
                                             r"only 1.0 GB are free"):
        check_table_fits("casia", 2 * GB, 1 * GB)
    build_emodb_tree(tmp_path / "data" / "emodb")
    monkeypatch.setattr("ptssnn.benchmark.runner.available_memory", lambda: 1000)
    result = CliRunner().invoke(app, [
        "benchmark", "emodb", "--data-root", str(tmp_path / "data"), "--backbone", "fbank",
        "--models", "probe", "--seeds", "1", "--speed-perturb", "0.9",
        "--out", str(tmp_path / "run"), "--no-progress"])
    assert isinstance(result.exception, BenchmarkError)
    assert "features and their speed-perturbed copies take" in str(result.exception)
    assert not (tmp_path / "run" / "results.json").exists()  # nothing trained, nothing lost


def test_a_process_peak_is_read_from_its_own_status(tmp_path: Path) -> None:
    from ptssnn.benchmark.settings import process_peak_mb

    status = tmp_path / "status"
    status.write_text("Name:\tpython\nVmPeak:\t 9000 kB\nVmHWM:\t  204800 kB\n")
    assert process_peak_mb(str(status)) == 200.0
    status.write_text("Name:\tpython\n")
    assert process_peak_mb(str(status)) is None
    assert process_peak_mb(str(tmp_path / "missing")) is None
    if Path("/proc/self/status").exists():
        assert (process_peak_mb() or 0) > 0
