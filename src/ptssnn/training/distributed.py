"""Scale-out: one fold trained by several processes with DDP under ``torchrun``.

A *fold job* is a folder with everything the processes need, so they share no Python state:

- ``features.safetensors``: one tensor per item (``[T, D]`` or ``[L, T, D]``), keyed by index;
- ``job.json``: ids, labels, label names, the fold's train/validation/test ids, the head
  (``{"preset": name, "overrides": {...}}`` for :func:`ptssnn.models.create_model`, or
  ``{"factory": "module:function"}``), the training config and where to write.

Run it with::

    torchrun --standalone --nproc_per_node 2 -m ptssnn.training.distributed JOB_DIR

Each process takes every N-th batch (gloo on CPU, nccl when CUDA is present, one GPU per
process); gradients are averaged by DDP. Rank 0 writes ``result.json`` (fit summary and test
metrics), the model weights (``model.safetensors``) and the epoch checkpoints (so ``--resume``
works as in one process); every rank writes ``rank<k>.json`` with what it saw, for checks.
Folds can also simply run as separate processes, one job folder each.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from ptssnn.errors import PtssnnError
from ptssnn.training.config import TrainConfig
from ptssnn.training.data import LabelledFeatures
from ptssnn.training.trainer import evaluate, fit


class JobError(PtssnnError):
    """A fold job folder that is missing or incomplete."""


def write_fold_job(
    job_dir: str | Path,
    table: LabelledFeatures,
    fold: Any,
    model: dict[str, Any],
    config: TrainConfig,
) -> Path:
    """Write a fold job folder (see the module docstring).

    Args:
        job_dir: Folder to create.
        table: Items of the fold (layer mode already applied); only the fold's ids are kept.
        fold: Object with ``name``, ``train``, ``validation``, ``test``.
        model: ``{"preset": ..., "overrides": {...}}`` or ``{"factory": "module:function"}``.
        config: Training config.

    Returns:
        The job folder.
    """
    job_dir = Path(job_dir)
    job_dir.mkdir(parents=True, exist_ok=True)
    ids = list(dict.fromkeys([*fold.train, *fold.validation, *fold.test]))
    part = table.subset(ids)
    # Clones: items may be views of one larger tensor, which safetensors refuses.
    tensors = {str(i): f.clone().contiguous() for i, f in enumerate(part.features)}
    save_file(tensors, str(job_dir / "features.safetensors"))
    job = {
        "fold": str(fold.name),
        "ids": list(part.ids),
        "labels": part.labels.tolist(),
        "label_names": list(part.label_names),
        "train": list(fold.train),
        "validation": list(fold.validation),
        "test": list(fold.test),
        "model": model,
        "config": config.to_dict(),
    }
    (job_dir / "job.json").write_text(json.dumps(job, indent=1))
    return job_dir


def read_fold_job(job_dir: str | Path) -> tuple[dict[str, Any], LabelledFeatures]:
    """Read a job folder back: ``(job dict, whole table of its items)``."""
    job_dir = Path(job_dir)
    try:
        job = json.loads((job_dir / "job.json").read_text())
        tensors = load_file(str(job_dir / "features.safetensors"))
    except (OSError, json.JSONDecodeError) as error:
        raise JobError(f"{job_dir} is not a complete fold job ({error}); write it with "
                       "write_fold_job") from error
    features = tuple(tensors[str(i)] for i in range(len(job["ids"])))
    table = LabelledFeatures(tuple(job["ids"]), features,
                             torch.tensor(job["labels"], dtype=torch.long),
                             tuple(job["label_names"]))
    return job, table


def build_model(spec: dict[str, Any], input_dim: int, num_classes: int, input_layers: int
                ) -> nn.Module:
    """Build the head a job names."""
    if "factory" in spec:
        module, _, name = spec["factory"].partition(":")
        factory = getattr(importlib.import_module(module), name)
        return factory(input_dim, num_classes, input_layers)
    from ptssnn.models import create_model

    overrides = dict(spec.get("overrides", {}))
    if input_layers > 1:
        overrides["input_layers"] = input_layers
    return create_model(spec["preset"], input_dim, num_classes, **overrides)


def run_fold_job(job_dir: str | Path, *, resume: bool = False) -> dict[str, Any]:
    """Train and test the job's fold in this process (a member of the group if one is set up).

    Returns:
        This rank's summary (rank 0's is also ``result.json``).
    """
    job_dir = Path(job_dir)
    job, table = read_fold_job(job_dir)
    config = TrainConfig.from_dict(job["config"])
    rank = torch.distributed.get_rank() if torch.distributed.is_initialized() else 0
    world = torch.distributed.get_world_size() if torch.distributed.is_initialized() else 1
    device = torch.device("cpu")
    if torch.cuda.is_available() and world > 1:
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", rank)))
        torch.cuda.set_device(device)
    train, val, test = (table.subset(job["train"]), table.subset(job["validation"]),
                        table.subset(job["test"]))
    input_layers = table.num_layers if table.features[0].dim() == 3 else 1
    # Same seed on every rank: identical initial weights (DDP also broadcasts rank 0's).
    torch.manual_seed(config.seed)
    model = build_model(job["model"], table.feature_dim, len(table.label_names),
                        input_layers).to(device)
    result = fit(model, train, val, config, checkpoint=job_dir / "train_state", resume=resume)
    metrics, predictions = evaluate(model, test, config.eval_batch_size)
    summary = {
        "fold": job["fold"],
        "rank": rank,
        "world_size": world,
        "device": str(device),
        "fit": result.to_dict(),
        "test": metrics.to_dict(),
        "predictions": [int(p) for p in predictions],
    }
    (job_dir / f"rank{rank}.json").write_text(json.dumps(summary, indent=1))
    if rank == 0:
        (job_dir / "result.json").write_text(json.dumps(summary, indent=1))
        state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
        save_file(state, str(job_dir / "model.safetensors"))
    return summary


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``torchrun -m ptssnn.training.distributed JOB_DIR [--resume]``."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("job_dir", type=Path)
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads per process (default: cores / processes)")
    args = parser.parse_args(argv)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    threads = args.threads or max(1, (os.cpu_count() or 1) // world)
    torch.set_num_threads(threads)
    if world > 1 and not torch.distributed.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        torch.distributed.init_process_group(backend=backend)
    try:
        run_fold_job(args.job_dir, resume=args.resume)
    except PtssnnError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    finally:
        if torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
