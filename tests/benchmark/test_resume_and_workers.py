"""``--resume`` refuses other settings; worker processes die with the benchmark process."""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ptssnn.benchmark import BenchmarkError, BenchmarkSettings, run_benchmark
from ptssnn.benchmark.manifest import MANIFEST, differences
from ptssnn.demo import synthetic_task
from ptssnn.training import TrainConfig

REPO = Path(__file__).resolve().parents[2]


def test_differences_name_each_changed_setting() -> None:
    saved = {"train": {"max_epochs": 2, "lr": 1e-3}, "corpora": {"a": {"utterances": "x"},
                                                                  "b": {"utterances": "y"}}}
    current = {"train": {"max_epochs": 3, "lr": 1e-3}, "corpora": {"a": {"utterances": "z"},
                                                                    "c": {"utterances": "w"}}}
    assert differences(saved, current) == ["corpora.a.utterances: x → z",
                                           "train.max_epochs: 2 → 3"]
    assert differences(saved, saved) == []
    # A record made before TrainConfig.precision existed resumes as fp32, and only so.
    with_precision = {**saved, "train": {**saved["train"], "precision": "fp32"}}
    assert differences(saved, with_precision) == []
    bf16 = {**saved, "train": {**saved["train"], "precision": "bf16"}}
    assert differences(saved, bf16) == ["train.precision: fp32 → bf16"]
    # ... and before TrainConfig.refit_smoothing, as the raw argmax (1).
    assert differences(saved, {**saved, "train": {**saved["train"], "refit_smoothing": 1}}) == []
    smoothed = {**saved, "train": {**saved["train"], "refit_smoothing": 3}}
    assert differences(saved, smoothed) == ["train.refit_smoothing: 1 → 3"]


@pytest.fixture(scope="module")
def task(tmp_path_factory: pytest.TempPathFactory):
    return synthetic_task(tmp_path_factory.mktemp("synthetic"), clips_per_class=3)


def limited(task, per_speaker_label: int):
    """The task as ``--limit`` would make it: fewer utterances, folds restricted to them."""
    from ptssnn.benchmark import limit_utterances

    kept = tuple(limit_utterances(task.utterances, per_speaker_label))
    ids = {u.id for u in kept}
    folds = tuple(dataclasses.replace(
        f, train=tuple(i for i in f.train if i in ids),
        validation=tuple(i for i in f.validation if i in ids),
        test=tuple(i for i in f.test if i in ids)) for f in task.folds)
    return dataclasses.replace(task, utterances=kept, folds=folds)


def run(task, out: Path, cache: Path, *, resume: bool, models=("probe",), **train) -> dict:
    settings = BenchmarkSettings(
        backbone="fbank", models=models, train=TrainConfig(layers="0", frame_pool=4, **train),
        cache=cache, out=out, resume=resume, plots=False, jobs=1)
    return run_benchmark([task], settings, show_progress=False, log=lambda _: None)


def test_resume_refuses_results_made_with_other_settings(task, tmp_path: Path) -> None:
    out, cache = tmp_path / "out", tmp_path / "cache"
    first = run(limited(task, 2), out, cache, resume=False)
    assert (out / MANIFEST).exists()
    ua = first["corpora"]["synthetic"]["models"]["probe"]["metrics"]["ua"]["mean"]
    # Same settings: the finished folds are reused, numbers unchanged.
    again = run(limited(task, 2), out, cache, resume=True)
    assert again["corpora"]["synthetic"]["models"]["probe"]["metrics"]["ua"]["mean"] == ua
    # Another --limit (other utterances, other folds): refused, with what differs.
    with pytest.raises(BenchmarkError, match=r"other settings \(corpora\.synthetic"):
        run(limited(task, 1), out, cache, resume=True)
    # A training setting that changes results: refused.
    with pytest.raises(BenchmarkError, match=r"train\.max_epochs: 8 → 3"):
        run(limited(task, 2), out, cache, resume=True, max_epochs=3)
    # Without --resume it recomputes (and records the new settings).
    fresh = run(limited(task, 1), out, cache, resume=False)
    assert fresh["corpora"]["synthetic"]["num_utterances"] == 16
    run(limited(task, 1), out, cache, resume=True)


def test_the_probe_follows_the_heads_training_config(task, tmp_path: Path) -> None:
    # The fair baseline: refitted on training + validation when the heads are, and reading
    # the heads' layer selection (a regression: it once ran with TrainConfig's defaults).
    results = run(limited(task, 2), tmp_path / "out", tmp_path / "cache", resume=False,
                  refit=True)
    folds = results["corpora"]["synthetic"]["models"]["probe"]["runs"]["0"]["folds"]
    assert folds and all(f["fit"]["refit"] for f in folds)
    assert {f["layers"] for f in folds} == {"0"}
    plain = run(limited(task, 2), tmp_path / "out2", tmp_path / "cache", resume=False)
    folds = plain["corpora"]["synthetic"]["models"]["probe"]["runs"]["0"]["folds"]
    assert not any(f["fit"]["refit"] for f in folds)


def test_resume_refuses_results_without_a_record(task, tmp_path: Path) -> None:
    out, cache = tmp_path / "out", tmp_path / "cache"
    (out / "runs" / "synthetic").mkdir(parents=True)  # e.g. a run folder of an older ptssnn
    with pytest.raises(BenchmarkError, match=r"no record in run-settings\.json"):
        run(limited(task, 1), out, cache, resume=True)
    # A fresh run under other settings forgets the records of corpora it did not run, so
    # their stale fold results cannot be resumed later.
    other = dataclasses.replace(limited(task, 1), name="other")
    (out / "runs" / "synthetic").rmdir()
    run(other, out, cache, resume=False)
    run(limited(task, 1), out, cache, resume=False, max_epochs=3)
    with pytest.raises(BenchmarkError, match="fold results of other"):
        run(other, out, cache, resume=True, max_epochs=3)


# ---------------------------------------------------------------------- worker processes
def children(pid: int) -> list[int]:
    """PIDs whose parent is ``pid`` (Linux /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        # Field 4 of /proc/PID/stat, after the parenthesised command name.
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid and b"resource_tracker" not in cmdline:
            found.append(int(entry.name))
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
@pytest.mark.parametrize("how", [signal.SIGTERM, signal.SIGKILL])
def test_killing_the_benchmark_kills_its_workers(tmp_path: Path, how: signal.Signals) -> None:
    env = dict(os.environ, PYTHONPATH=str(REPO / "src"), OMP_NUM_THREADS="1", PTSSNN_DATA="")
    # The synthetic demo is the benchmark runner on generated data: two worker processes.
    parent = subprocess.Popen(
        [sys.executable, "-m", "ptssnn", "demo", "--out", str(tmp_path / "demo"), "--clips",
         "2", "--epochs", "40", "--no-progress"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    workers: list[int] = []
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and len(workers) < 2:
            assert parent.poll() is None, parent.stderr.read().decode()[-2000:]
            time.sleep(0.5)
            workers = children(parent.pid)
        assert len(workers) >= 2, "no worker processes appeared"
        runs = tmp_path / "demo" / "runs"
        while time.monotonic() < deadline and not list(runs.glob("*/*/*/*/train_state.json")):
            time.sleep(0.5)  # until the workers have trained an epoch
        assert list(runs.glob("*/*/*/*/train_state.json")), "the workers never trained"
        os.kill(parent.pid, how)
        parent.wait(timeout=60)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and any(alive(w) for w in workers):
            time.sleep(0.2)
        assert not [w for w in workers if alive(w)], "worker processes outlived the benchmark"
    finally:
        if parent.poll() is None:
            parent.kill()
        for worker in workers:
            if alive(worker):
                os.kill(worker, signal.SIGKILL)


# ---------------------------------------------------------------------- the worker pool
def echo_worker(factor: int, units, events) -> None:
    while (unit := units.get()) is not None:
        events.put(("done", unit, unit * factor))


def crashing_worker(factor: int, units, events) -> None:
    os._exit(3)


def idle_worker(factor: int, units, events) -> None:
    return


def test_worker_pool_runs_units_and_reports_dead_workers() -> None:
    from ptssnn.benchmark.scheduling import WorkerPool

    with WorkerPool(f"{__name__}:echo_worker", (10,), jobs=2) as pool:
        pool.submit([1, 2, 3])
        got = {}
        for kind, unit, value in pool.events(poll_s=0.2):
            assert kind == "done"
            got[unit] = value
            if len(got) == 3:
                break
    assert got == {1: 10, 2: 20, 3: 30}
    assert all(not p.is_alive() for p in pool.processes)
    for target, message in (("crashing_worker", "exit code 3"), ("idle_worker", "undone")):
        with pytest.raises(BenchmarkError, match=message), \
                WorkerPool(f"{__name__}:{target}", (10,), jobs=1) as pool:
            pool.submit([1])
            for _ in pool.events(poll_s=0.2):
                pass
