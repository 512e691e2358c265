"""Scale-out: one fold trained by several processes with DDP under ``torchrun``.

A *fold job* is a folder with everything the processes need, so they share no Python state:

- ``features.safetensors``: one tensor per item (``[T, D]`` or ``[L, T, D]``: every hidden
  state, as cached), keyed by index;
- ``job.json``: ids, labels, label names, speakers (optional, for per-speaker
  normalisation), the fold's train/validation/test ids, the head
  (:meth:`ptssnn.models.HeadSpec.to_dict`, or ``{"factory": "module:function"}``) and the
  training config.

Run it with::

    torchrun --standalone --nproc_per_node 2 -m ptssnn fold-job JOB_DIR

The fold is trained by the one per-fold path, :func:`ptssnn.training.train_fold` (layer and
normalisation choice, fit, refit, test), as in the benchmark. Each process takes every N-th
batch (gloo on CPU, nccl when CUDA is present, one GPU per process); gradients are averaged
by DDP. Rank 0 writes ``result.json`` (fit summary and test metrics), ``<fold>/result.json``
(the benchmark's fold record), the model weights (``model.safetensors``) and the epoch
checkpoints (so ``--resume`` works as in one process); every rank writes ``rank<k>.json``
with what it saw, for checks. Folds can also simply run as separate processes, one job
folder each.
"""

from __future__ import annotations

import importlib
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from ptssnn.errors import PtssnnError
from ptssnn.features.table import LabelledFeatures
from ptssnn.jsonio import dumps as strict_json
from ptssnn.processes import retain_freed_memory
from ptssnn.training.config import TrainConfig
from ptssnn.training.crossval import ModelFactory, train_fold
from ptssnn.training.views import LayerViews


class JobError(PtssnnError):
    """A fold job folder that is missing or incomplete."""


def write_fold_job(
    job_dir: str | Path,
    table: LabelledFeatures,
    fold: Any,
    model: dict[str, Any],
    config: TrainConfig,
    speakers: Mapping[str, str] | None = None,
) -> Path:
    """Write a fold job folder (see the module docstring).

    Args:
        job_dir: Folder to create.
        table: The corpus's items (every hidden state); only the fold's ids are kept.
        fold: Object with ``name``, ``train``, ``validation``, ``test``.
        model: ``HeadSpec(...).to_dict()`` or ``{"factory": "module:function"}``.
        config: Training config (``layers`` and ``normalisation`` may be ``"auto"``).
        speakers: Utterance id → speaker, for ``normalisation="speaker"``/``"auto"``.

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
        "speakers": ({i: speakers[i] for i in part.ids} if speakers is not None else None),
    }
    (job_dir / "job.json").write_text(strict_json(job, indent=1))
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


@dataclass(frozen=True)
class _Fold:
    name: str
    train: tuple[str, ...]
    validation: tuple[str, ...]
    test: tuple[str, ...]


def head_factory(spec: dict[str, Any]) -> ModelFactory:
    """The head a job names: a :class:`~ptssnn.models.HeadSpec` or ``module:function``."""
    if "factory" in spec:
        module, _, name = spec["factory"].partition(":")
        return getattr(importlib.import_module(module), name)
    from ptssnn.models import HeadSpec

    return HeadSpec.from_dict(spec)


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
    factory = head_factory(job["model"])

    def on_device(input_dim: int, num_classes: int, input_layers: int) -> torch.nn.Module:
        return factory(input_dim, num_classes, input_layers).to(device)

    fold = _Fold(job["fold"], tuple(job["train"]), tuple(job["validation"]), tuple(job["test"]))
    views = LayerViews(table, speakers=job.get("speakers"))
    result, model = train_fold(views, fold, on_device, config, out_dir=job_dir, resume=resume)
    summary = {
        "fold": job["fold"],
        "rank": rank,
        "world_size": world,
        "device": str(device),
        "layers": result.layers,
        "normalisation": result.normalisation,
        "fit": result.fit,
        "test": result.test.to_dict(),
        "predictions": result.predictions["predictions"],
    }
    (job_dir / f"rank{rank}.json").write_text(strict_json(summary, indent=1))
    if rank == 0:
        (job_dir / "result.json").write_text(strict_json(summary, indent=1))
        if model is not None:
            state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
            save_file(state, str(job_dir / "model.safetensors"))
    return summary


def main(job_dir: Path, *, resume: bool = False, threads: int | None = None) -> int:
    """What ``ptssnn fold-job JOB_DIR`` runs in each torchrun process.

    Returns:
        The exit status (2 for a :class:`~ptssnn.errors.PtssnnError`, printed in one line).
    """
    import sys

    world = int(os.environ.get("WORLD_SIZE", "1"))
    torch.set_num_threads(threads or max(1, (os.cpu_count() or 1) // world))
    retain_freed_memory()
    if world > 1 and not torch.distributed.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        torch.distributed.init_process_group(backend=backend)
    try:
        run_fold_job(job_dir, resume=resume)
    except PtssnnError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    finally:
        if torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()
    return 0
