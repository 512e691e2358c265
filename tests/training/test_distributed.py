"""DDP: one fold trained by two CPU processes under torchrun (gloo)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ptssnn.training import LabelledFeatures, TrainConfig
from ptssnn.training.distributed import read_fold_job, run_fold_job, write_fold_job

HERE = Path(__file__).resolve().parent


class TinyHead(nn.Module):
    """Stand-in head (module-level so the torchrun workers can import it)."""

    def __init__(self, input_dim: int, num_classes: int) -> None:
        super().__init__()
        self.proj = nn.Linear(input_dim, 8)
        self.out = nn.Linear(8, num_classes)

    def forward(self, features: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        m = mask.unsqueeze(-1).float()
        hidden = torch.tanh(self.proj(features))
        return self.out((hidden * m).sum(1) / m.sum(1).clamp(min=1))


def tiny_factory(input_dim: int, num_classes: int, input_layers: int) -> nn.Module:
    return TinyHead(input_dim, num_classes)


# Defined here, not imported from tests/folds.py: the torchrun workers import this module
# by file path, without the tests folder on sys.path.
@dataclass(frozen=True)
class Fold:
    name: str
    train: tuple[str, ...]
    validation: tuple[str, ...]
    test: tuple[str, ...]


def make_job(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    items = []
    for i in range(48):
        label = i % 2
        x = rng.standard_normal((int(rng.integers(6, 14)), 4)).astype(np.float32)
        x[:, label] += 1.5
        items.append((f"u{i:02d}", x, "ab"[label]))
    table = LabelledFeatures.from_arrays(items, ["a", "b"])
    ids = table.ids
    fold = Fold("f1", ids[:32], ids[32:40], ids[40:])
    config = TrainConfig(max_epochs=6, patience=6, batch_size=4, lr=3e-2, warmup_epochs=0,
                         layers="0", time_masks=0, feature_masks=0)
    return write_fold_job(tmp_path / "job", table, fold,
                          {"factory": "test_distributed:tiny_factory"}, config)


def test_job_roundtrip(tmp_path):
    job_dir = make_job(tmp_path)
    job, table = read_fold_job(job_dir)
    assert len(table) == 48 and table.label_names == ("a", "b")
    assert job["fold"] == "f1" and len(job["test"]) == 8


def test_single_process_job(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(HERE))
    job_dir = make_job(tmp_path)
    summary = run_fold_job(job_dir)
    assert summary["world_size"] == 1
    assert (job_dir / "result.json").exists() and (job_dir / "model.safetensors").exists()
    # The one per-fold path ran: resolved pipeline and the benchmark's fold record.
    assert (summary["layers"], summary["normalisation"]) == ("0", "global")
    record = json.loads((job_dir / "f1" / "result.json").read_text())
    assert record["test"] == summary["test"] and record["fold"] == "f1"


def test_two_cpu_processes_train_one_fold(tmp_path):
    job_dir = make_job(tmp_path)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(HERE), *filter(None, [os.environ.get("PYTHONPATH")])]), OMP_NUM_THREADS="1")
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone",
               "--nproc_per_node", "2", "-m", "ptssnn", "fold-job", str(job_dir),
               "--threads", "1"]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    ranks = [json.loads((job_dir / f"rank{r}.json").read_text()) for r in range(2)]
    assert [r["world_size"] for r in ranks] == [2, 2]
    # Both processes hold the same (DDP-synchronised) model: same validation curve, same test.
    assert ranks[0]["fit"]["history"][-1]["val_ua"] == ranks[1]["fit"]["history"][-1]["val_ua"]
    assert ranks[0]["test"] == ranks[1]["test"]
    result = json.loads((job_dir / "result.json").read_text())
    assert result["fit"]["epochs_run"] == 6
    assert len(result["test"]["confusion"]) == 2
    assert result["test"]["num_samples"] == 8
    assert 0.0 <= result["test"]["ua"] <= 1.0
    assert result["fit"]["best_validation"]["ua"] >= 0.75  # the offset is easy to learn
    # each process took half of the 8 batches per epoch: loss is averaged over its share
    assert all(np.isfinite(h["train_loss"]) for h in result["fit"]["history"])
