"""``ptssnn demo``: the whole pipeline on a synthetic corpus, or the real benchmark.

Without data it generates the SYNTHETIC prosody corpus (:mod:`ptssnn.demo.synthetic`),
extracts ``fbank`` features (cached), makes leave-one-speaker-out folds (validation: another
held-out training speaker), trains and tests pts-snn, the ANN head and the linear probe, and
writes ``results.json`` + ``report.md``. With a data root holding real corpora it runs the
real benchmark on every corpus found there.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ptssnn.benchmark.corpus import CorpusTask, prepare_corpus
from ptssnn.benchmark.runner import run_benchmark
from ptssnn.benchmark.settings import PROBE, BenchmarkSettings
from ptssnn.demo.synthetic import CLASSES, CORPUS_NAME, SPEAKERS, generate_corpus
from ptssnn.errors import CorpusError
from ptssnn.training.config import TrainConfig, benchmark_train_config

#: Heads of the synthetic demo.
DEMO_MODELS = ("pts-snn", "ann", PROBE)
#: Heads of the real benchmark (the paper's ladder, the ANN head, the probe).
REAL_MODELS = ("pts-snn", "+ssla", "+shift", "+saturation", "+standardise", "vanilla-snn",
               "ann", PROBE)
#: Real corpora the demo looks for under a data root.
REAL_CORPORA = ("casia", "emovo", "urdu", "emodb", "ravdess", "iemocap")


def demo_train_config(epochs: int | None = None) -> TrainConfig:
    """The benchmark's recipe, sized for the demo's ~1–2 minutes on two CPU cores.

    30 epochs (patience 10): a fold trains on 128 clips, 8 updates an epoch, so 12 epochs
    were under 100 updates (3 seeds: pts-snn 68.4 at 12 epochs, 72.1 at 30;
    benchmarks/README.md, "The synthetic demo").
    """
    max_epochs = epochs or 30
    # fbank at 50 Hz pooled to 12.5 Hz: prosody (pitch contour, tempo) survives, cost / 4.
    return benchmark_train_config(max_epochs=max_epochs, patience=max(3, max_epochs // 3),
                                  layers="0", frame_pool=4, max_train_frames=None)


def synthetic_task(root: str | Path, *, clips_per_class: int = 16, seed: int = 0) -> CorpusTask:
    """Generate the synthetic corpus and its leave-one-speaker-out folds.

    Fold k tests speaker k, validates (model selection, early stopping) on speaker k+1 and
    trains on the other two: train, validation and test are speaker-disjoint.
    """
    from ptssnn.corpora import Fold, Utterance

    clips = generate_corpus(root, clips_per_class=clips_per_class, seed=seed)
    utterances = tuple(
        Utterance(id=c.id, corpus=CORPUS_NAME, path=c.path, speaker=c.speaker,
                  raw_label=c.label, label=c.label, duration=c.duration,
                  extras={"synthetic": True}, sample_rate=16000, channels=1)
        for c in clips
    )
    speakers = [s.name for s in SPEAKERS]
    folds = []
    for k, test_speaker in enumerate(speakers):
        val_speaker = speakers[(k + 1) % len(speakers)]

        def ids(keep: Callable[[str], bool]) -> tuple[str, ...]:
            return tuple(u.id for u in utterances if keep(u.speaker))

        folds.append(Fold(
            name=f"loso-{test_speaker}",
            train=ids(lambda s, t=test_speaker, v=val_speaker: s not in (t, v)),
            validation=ids(lambda s, v=val_speaker: s == v),
            test=ids(lambda s, t=test_speaker: s == t),
            protocol="loso",
            validation_policy="speakers",
        ))
    return CorpusTask(name=CORPUS_NAME, utterances=utterances, folds=tuple(folds),
                      label_names=CLASSES, protocol="loso", synthetic=True)


def find_real_corpora(data_root: Path) -> list[str]:
    """Registry corpora that have a folder under ``data_root``."""
    return [name for name in REAL_CORPORA if (data_root / name).is_dir()]


def run_demo(
    out: str | Path = "demo-out",
    data_root: str | Path | None = None,
    *,
    clips_per_class: int = 16,
    epochs: int | None = None,
    backbone: str | None = None,
    show_progress: bool = True,
    log: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Run the demo (synthetic) or, with real data, the real benchmark.

    Args:
        out: Output folder (``report.md``, ``results.json``, plots, runs, feature cache).
        data_root: Folder holding real corpora (default ``$PTSSNN_DATA``); ``None`` and no
            variable: synthetic demo.
        clips_per_class: Synthetic clips per speaker × class.
        epochs: Max epochs (default: 30 for the demo, the benchmark default for real data).
        backbone: Backbone name (default ``fbank`` for the demo, ``whisper-base`` for real).
        show_progress: Progress bars.
        log: Line printer.

    Returns:
        The ``results.json`` content.

    Raises:
        CorpusError: ``data_root`` given but no known corpus folder under it.
    """
    out = Path(out)
    root = data_root if data_root is not None else os.environ.get("PTSSNN_DATA")
    if root:
        root = Path(root).expanduser()
        corpora = find_real_corpora(root)
        if not corpora:
            raise CorpusError(
                f"no corpus folder ({', '.join(REAL_CORPORA)}) under {root}; point --data-root "
                "at the folder that holds them, or run `ptssnn demo` without it for the "
                "synthetic demo"
            )
        tasks = [prepare_corpus(name, root) for name in corpora]
        train = (benchmark_train_config() if epochs is None
                 else benchmark_train_config(max_epochs=epochs))
        settings = BenchmarkSettings(backbone=backbone or "whisper-base", models=REAL_MODELS,
                                     train=train, out=out, cache=None, resume=True)
        return run_benchmark(tasks, settings, show_progress=show_progress, log=log,
                             command=["ptssnn", "demo", "--data-root", str(root)])
    task = synthetic_task(out / "synthetic-corpus", clips_per_class=clips_per_class)
    settings = BenchmarkSettings(
        backbone=backbone or "fbank",
        models=DEMO_MODELS,
        train=demo_train_config(epochs),
        out=out,
        cache=out / "feature-cache",
        resume=False,
        analysis_items=32,
    )
    return run_benchmark([task], settings, show_progress=show_progress, log=log,
                         command=["ptssnn", "demo", "--out", str(out)])
