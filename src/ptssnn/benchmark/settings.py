"""What a benchmark run is: head names, settings, the validation policy, the environment."""

from __future__ import annotations

import os
import platform
import resource
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ptssnn.backbones.registry import head_defaults
from ptssnn.errors import PtssnnError
from ptssnn.training.config import (
    REFIT_MAX_MIN_SPEAKERS,
    TrainConfig,
    benchmark_train_config,
    refit_policy,
)
from ptssnn.training.enrolment import EnrolmentProtocol

#: Head names the benchmark knows besides the model presets.
PROBE = "probe"
#: The paper's ladder, in report order.
MODEL_ORDER = ("pts-snn", "+ssla", "+shift", "+saturation", "+standardise", "vanilla-snn",
               "ann", PROBE)
DEFAULT_MODELS = ("pts-snn", "vanilla-snn", "ann", PROBE)


class BenchmarkError(PtssnnError):
    """A benchmark that cannot run as asked (unknown model, no corpus found, bad limit)."""


@dataclass
class BenchmarkSettings:
    """Everything a benchmark run depends on (saved in ``results.json``).

    Attributes:
        backbone: Backbone registry name.
        models: Heads to run: presets of ``ptssnn.models`` and/or ``"probe"``.
        seeds: Seeds 0..seeds-1 (each reruns every fold).
        train: Training hyper-parameters (``seed`` is overridden per run).
        model_overrides: Extra ``create_model`` keyword arguments for every neural head.
        cache: Feature cache folder (``None``: the feature store's default).
        out: Output folder.
        resume: Reuse finished folds and continue interrupted ones.
        analysis_items: Test items per fold used for energy and firing statistics.
        plots: Write PNG figures.
        threads: ``torch.set_num_threads`` per process (``None``: 1).
        jobs: Worker processes training folds side by side (``None``: one per core).
        cross_corpus: Also train on each corpus and test on each other one (shared classes).
        multi_corpus: Each corpus's training splits also hold every utterance of the run's
            other corpora (:mod:`ptssnn.benchmark.multicorpus`); validation, test and the
            scored classes stay the corpus's own.
        enrolment: Also score every head's test speakers (the probe's too) with profiles from K
            of their unlabelled clips (``ptssnn.training.enrolment``); ``None``: not.
        speed_perturb: Speed factors (e.g. ``(0.9, 1.1)``) whose perturbed copies of each
            fold's training clips join its training split, for every head alike
            (:mod:`ptssnn.benchmark.augmentation`); empty: none.
    """

    backbone: str = "whisper-base"
    models: tuple[str, ...] = DEFAULT_MODELS
    seeds: int = 1
    train: TrainConfig = field(default_factory=benchmark_train_config)
    model_overrides: dict[str, Any] = field(default_factory=dict)
    cache: Path | None = None
    out: Path = Path("benchmark-out")
    resume: bool = False
    analysis_items: int = 64
    plots: bool = True
    threads: int | None = None
    jobs: int | None = None
    cross_corpus: bool = False
    multi_corpus: bool = False
    enrolment: EnrolmentProtocol | None = None
    speed_perturb: tuple[float, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return {
            "backbone": self.backbone,
            "models": list(self.models),
            "seeds": list(range(self.seeds)),
            "train": self.train.to_dict(),
            "model_overrides": self.model_overrides,
            "head_defaults": head_defaults(self.backbone),
            "cache": str(self.cache) if self.cache else None,
            "out": str(self.out),
            "resume": self.resume,
            "analysis_items": self.analysis_items,
            "threads": self.threads,
            "jobs": self.jobs,
            "cross_corpus": self.cross_corpus,
            "multi_corpus": self.multi_corpus,
            "enrolment": self.enrolment.to_dict() if self.enrolment else None,
            "speed_perturb": list(self.speed_perturb),
        }

    @property
    def head_options(self) -> dict[str, Any]:
        """What every neural head is built with: the backbone's head defaults
        (:func:`ptssnn.backbones.head_defaults`), then ``model_overrides``."""
        return {**head_defaults(self.backbone), **self.model_overrides}

    def result_settings(self) -> dict[str, Any]:
        """The settings that change a fold's numbers (``--resume`` must match them).

        Not in it: which models and how many seeds (each has its own folder), the output
        and cache folders, threads and worker processes, plots.
        """
        train = self.train.to_dict()
        del train["seed"]  # per run; each seed has its own folder
        train.pop("num_threads", None)
        return {"backbone": self.backbone, "train": train,
                "model_overrides": dict(self.model_overrides),
                # Empty for encoder backbones, so their earlier run folders still resume.
                "head_defaults": head_defaults(self.backbone),
                "analysis_items": self.analysis_items,
                # Finished folds hold the scores of the protocol they were run with.
                **({"enrolment": self.enrolment.to_dict()} if self.enrolment else {}),
                # Absent when off, so run folders made before the option still resume.
                **({"speed_perturb": list(self.speed_perturb)} if self.speed_perturb else {})}


def validate_models(models: Sequence[str]) -> tuple[str, ...]:
    """Check head names against the model presets (and ``probe``).

    Raises:
        BenchmarkError: An unknown name, with the valid ones.
    """
    from ptssnn.models import list_presets

    known = [*list_presets(), PROBE]
    unknown = [m for m in models if m not in known]
    if unknown:
        raise BenchmarkError(f"unknown model(s) {unknown}; choose from {', '.join(known)}")
    if not models:
        raise BenchmarkError("no model to run; pass e.g. --models pts-snn,ann,probe")
    return tuple(dict.fromkeys(models))


def _smoothing(config: TrainConfig) -> str:
    return ("" if config.refit_smoothing == 1 else
            f" (averaged over {config.refit_smoothing} neighbouring epochs)")


def validation_policy(config: TrainConfig) -> str:
    """How models are selected, in words (for results.json and the report)."""
    text = ("model selection and early stopping on validation speakers carved from the "
            "training side of each fold (metric: UA)")
    if config.refit and config.refit_epochs in ("max", "auto"):
        # Speakers unknown: "max" here means the whole schedule whatever the fold holds.
        always = refit_policy(config.refit_epochs, None, config.normalisation) == "max"
        when = ("" if always else
                f" when training + validation hold ≥ {REFIT_MAX_MIN_SPEAKERS} speakers, else for "
                f"the epoch count with the best validation UA{_smoothing(config)}")
        return ("a validation run with early stopping on speakers carved from the training "
                "side of each fold (metric: UA; the probe chooses C there, and the hidden "
                "state where the heads do not read a fixed one); then a fresh head (same "
                "seed) is trained on training + validation data for the whole schedule "
                f"({config.max_epochs} epochs){when}, and scored once on the test fold")
    if config.refit:
        return text + ("; then a fresh head (same seed) is trained on training + validation "
                       f"data for the selected number of epochs{_smoothing(config)} and scored "
                       "once on the test fold")
    return text + "; the test fold is scored once, with the selected model"


def environment() -> dict[str, Any]:
    """Versions and machine facts for ``results.json``."""
    import sklearn

    import ptssnn

    return {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "scikit_learn": sklearn.__version__,
        "ptssnn": ptssnn.__version__,
    }


def peak_memory_mb() -> float:
    """Peak resident memory of this process, MiB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux reports KiB


def process_peak_mb(status: str = "/proc/self/status") -> float | None:
    """This process's own peak resident memory (``VmHWM``), MiB; ``None`` where unknown.

    Not ``getrusage``: on Linux its high-water mark also holds the memory a spawned worker
    shared with its parent between fork and exec (the parent's whole table), so a worker
    smaller than its parent reported the parent's size.
    """
    try:
        with open(status) as handle:
            for line in handle:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0  # kB
    except (OSError, ValueError, IndexError):
        return None
    return None
