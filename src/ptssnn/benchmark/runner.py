"""The benchmark: every fold of every corpus for every head and seed, on cached features.

``run_benchmark`` takes prepared corpora (:class:`~ptssnn.benchmark.corpus.CorpusTask`:
utterances, folds, label order) so the same runner serves real corpora
(:func:`~ptssnn.benchmark.corpus.prepare_corpus`: scan + protocol) and the synthetic demo
corpus. Per corpus it extracts or reuses the backbone features, loads them into RAM once, and
trains every head × seed × fold through :func:`ptssnn.training.train_fold` (the probe here,
neural heads through :mod:`~ptssnn.benchmark.scheduling`). Every finished fold is on disk, so
``resume`` picks up where an interrupted run stopped, provided the settings that change
results are those recorded in the run folder (:mod:`~ptssnn.benchmark.manifest`);
``results.json`` and ``report.md`` are rewritten after every corpus.
"""

from __future__ import annotations

import datetime as dt
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ptssnn.benchmark.augmentation import (
    copies_summary,
    copy_tables,
    extract_copies,
    with_copies,
)
from ptssnn.benchmark.corpus import (
    CorpusTask,
    backbone_energy,
    extract_corpus_features,
)
from ptssnn.benchmark.manifest import check_or_record, run_settings
from ptssnn.benchmark.multicorpus import added_summary, joint_views, with_partners
from ptssnn.benchmark.progress import RunProgress
from ptssnn.benchmark.scheduling import (
    CorpusRun,
    FoldUnit,
    check_table_fits,
    memory_capped_jobs,
    run_units,
    worker_pipeline,
)
from ptssnn.benchmark.settings import (
    PROBE,
    BenchmarkSettings,
    environment,
    peak_memory_mb,
    validate_models,
    validation_policy,
)
from ptssnn.benchmark.summaries import summarise_model
from ptssnn.corpora.protocols import speaker_label_dependence, speaker_label_warning
from ptssnn.corpora.records import left_out_summary
from ptssnn.features.table import LabelledFeatures
from ptssnn.models.factory import HeadSpec
from ptssnn.processes import available_memory, retain_freed_memory
from ptssnn.training.config import PER_SPEAKER_NORMALISATIONS, TrainConfig
from ptssnn.training.crossval import (
    PROBE_HEAD,
    CrossValResult,
    FoldResult,
    cross_validate,
)
from ptssnn.training.enrolment import EnrolmentProtocol
from ptssnn.training.views import LayerViews, select_normalisation


def run_benchmark(
    tasks: Sequence[CorpusTask],
    settings: BenchmarkSettings,
    *,
    show_progress: bool = True,
    log: Callable[[str], None] | None = None,
    command: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Run every head on every fold of every corpus for every seed; write the outputs.

    Args:
        tasks: Prepared corpora.
        settings: What to run and where.
        show_progress: Rich progress bar with ETA over the whole run.
        log: Line printer for milestones (default: the progress console).
        command: The command line to record.

    Returns:
        The ``results.json`` content.
    """
    from ptssnn.backbones import load_backbone
    from ptssnn.benchmark.report import write_outputs

    models = validate_models(settings.models)
    out = Path(settings.out)
    out.mkdir(parents=True, exist_ok=True)
    # One thread per process: OpenMP threads of two processes (or of other users) fighting
    # for two cores slow training by an order of magnitude; processes scale instead.
    torch.set_num_threads(settings.threads or 1)
    retain_freed_memory()  # large batches: no page faults every step (see its docstring)
    started = time.perf_counter()
    results: dict[str, Any] = {
        "kind": "ptssnn-benchmark",
        "synthetic": any(t.synthetic for t in tasks),
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "command": list(command) if command is not None else sys.argv,
        "settings": settings.to_dict(),
        "validation_policy": validation_policy(settings.train),
        "environment": environment(),
        "corpora": {},
        "timings": {},
    }
    neural = [m for m in models if m != PROBE]
    backbone = load_backbone(settings.backbone)
    results["backbone"] = backbone.identity()
    check_or_record(out, run_settings(settings, tasks, results["backbone"]),
                    resume=settings.resume)

    # Phase 1: features (their own progress bar); phase 2: training (one bar, whole-run ETA).
    prepared = []
    confounds: dict[str, tuple[float, str | None]] = {}  # per corpus: confound_warning's
    say = log or (lambda text: print(text, flush=True))
    for task in tasks:
        label = " (SYNTHETIC)" if task.synthetic else ""
        say(f"{task.name}{label}: {len(task.utterances)} utterances, {len(task.folds)} "
            f"folds ({task.protocol}), {len(task.label_names)} classes; features from "
            f"{settings.backbone}")
        task, feature_set, feature_seconds = extract_corpus_features(
            task, backbone, settings.cache, progress=show_progress)
        if task.problems:  # unreadable, mislabelled, too short, failed in the backbone
            say(f"  {task.name}: {left_out_summary(task.problems)} "
                "(all in report.md and results.json)")
        confounds[task.name] = confound_warning(task, settings)
        if confounds[task.name][1]:
            say(f"  {task.name}: {confounds[task.name][1]}")
        copies = []
        if settings.speed_perturb:
            say(f"  {task.name}: speed-perturbed copies ×"
                f"{', ×'.join(f'{f:g}' for f in settings.speed_perturb)} of the training clips")
            started_copies = time.perf_counter()
            copies = extract_copies(task, backbone, settings.cache, settings.speed_perturb,
                                    progress=show_progress)
            feature_seconds += time.perf_counter() - started_copies
        prepared.append((task, feature_set, feature_seconds, copies))

    # Progress units: one per epoch (twice the epochs with the refit), one per probe fold.
    epochs = settings.train.max_epochs * (2 if settings.train.refit else 1)
    units_per_fold = {m: (epochs if m != PROBE else 1) for m in models}
    total = sum(units_per_fold[m] * len(t.folds) * settings.seeds
                for t, _, _, _ in prepared for m in models)
    pairs = ([(a, b) for a in range(len(prepared)) for b in range(len(prepared)) if a != b]
             if settings.cross_corpus else [])
    total += sum(units_per_fold[m] * settings.seeds for m in models) * len(pairs)
    # Tables held beyond their own corpus: every one under --multi-corpus (each corpus trains
    # on all of them), the cross-corpus pairs' afterwards.
    keep_tables = settings.multi_corpus or bool(pairs)
    tables: dict[str, tuple[LabelledFeatures, float]] = {}
    worker_peaks: list[float] = []  # VmHWM of each corpus's largest worker, MiB
    with RunProgress(total, show_progress) as progress:
        say = log or progress.print
        if settings.multi_corpus:
            for task, feature_set, _, _ in prepared:
                progress.describe(f"{task.name}: loading features")
                tables[task.name] = _load_table(task, feature_set)
        for task, feature_set, feature_seconds, copies in prepared:
            needed = sum(fs.cache_bytes for _, fs in copies) + (
                0 if task.name in tables else feature_set.cache_bytes)
            check_table_fits(task.name, needed, available_memory(),
                             "features and their speed-perturbed copies" if copies
                             else "features")
            if task.name not in tables:
                progress.describe(f"{task.name}: loading features")
            table, load_seconds = tables.get(task.name) or _load_table(task, feature_set)
            partners = ([(t, fs) for t, fs, _, _ in prepared if t.name != task.name]
                        if settings.multi_corpus else [])
            views = joint_views(task, table, [(t, tables[t.name][0]) for t, _ in partners],
                                copy_tables(task, copies))
            corpus_entry = _corpus_entry(task, table, backbone, feature_seconds,
                                         load_seconds)
            dependence, warning = confounds[task.name]
            corpus_entry["speaker_label_dependence"] = dependence
            corpus_entry["warnings"] = [warning] if warning else []
            if settings.multi_corpus:
                corpus_entry["multi_corpus"] = added_summary([t for t, _ in partners],
                                                             views.table.label_names)
            if copies:
                corpus_entry["speed_perturb"] = copies_summary(task, copies)
            results["corpora"][task.name] = corpus_entry
            corpus_started = time.perf_counter()
            trained_on = with_copies(with_partners(task, [t for t, _ in partners]), copies)
            runs, worker_peak = run_corpus_heads(
                trained_on, feature_set, views, models, settings, progress, units_per_fold, out,
                partners=partners, copies=copies)
            if worker_peak is not None:
                worker_peaks.append(worker_peak)
            for model in models:
                entry = summarise_model(runs[model])
                entry["runs"] = {str(seed): run.to_dict() for seed, run in runs[model].items()}
                # Heads run interleaved across worker processes: their busy time, not wall.
                entry["wall_s"] = entry["seconds"]
                corpus_entry["models"][model] = entry
                metrics = entry["metrics"]
                say(f"  {task.name} {model:<12} UA {100 * metrics['ua']['mean']:.1f} ± "
                    f"{100 * metrics['ua']['std']:.1f}  WA {100 * metrics['wa']['mean']:.1f}  "
                    f"({entry['seconds']:.0f} s of training)")
            corpus_entry["timings"]["heads_wall_s"] = time.perf_counter() - corpus_started
            results["timings"]["total_s"] = time.perf_counter() - started
            results["peak_memory_mb"] = peak_memory_mb()
            write_outputs(results, out, plots=False)
            corpus_entry["timings"]["total_s"] = (
                corpus_entry["timings"]["heads_wall_s"] + feature_seconds + load_seconds)
            if keep_tables:
                tables[task.name] = (table, load_seconds)
            del views, table
        for a, b in pairs:
            source, target = prepared[a][0], prepared[b][0]
            results.setdefault("cross_corpus", {})
            entry = run_cross_corpus(source, target, {n: t for n, (t, _) in tables.items()},
                                     models, settings, progress, units_per_fold, out)
            results["cross_corpus"][entry["name"]] = entry
            say(f"  {entry['name']} ({', '.join(entry['labels'])}): " + ", ".join(
                f"{m} UA {100 * e['metrics']['ua']['mean']:.1f}"
                for m, e in entry["models"].items()))
            write_outputs(results, out, plots=False)
    results["timings"]["total_s"] = time.perf_counter() - started
    results["timings"]["neural_heads"] = neural
    results["peak_memory_mb"] = peak_memory_mb()
    results["peak_worker_memory_mb"] = max(worker_peaks) if worker_peaks else None
    write_outputs(results, out, plots=settings.plots)
    return results


def confound_warning(task: CorpusTask, settings: BenchmarkSettings) -> tuple[float, str | None]:
    """The corpus's speaker-label dependence, and a warning line when the run standardises
    speakers by their own clips (per-speaker normalisation, enrolment) and its speakers each
    recorded few of the emotions: there a speaker's moments hold the emotion as well as the
    voice."""
    dependence = speaker_label_dependence([u.speaker for u in task.utterances],
                                          [u.label for u in task.utterances])
    per_speaker = settings.train.normalisation in PER_SPEAKER_NORMALISATIONS
    if not per_speaker and settings.enrolment is None:
        return dependence, None
    return dependence, speaker_label_warning(dependence)


def _load_table(task: CorpusTask, feature_set: Any) -> tuple[LabelledFeatures, float]:
    """A corpus's features in RAM, and the seconds that took."""
    started = time.perf_counter()
    table = LabelledFeatures.from_feature_set(feature_set, task.utterances, task.label_names)
    return table, time.perf_counter() - started


def _corpus_entry(task: CorpusTask, table: LabelledFeatures, backbone: Any,
                  feature_seconds: float, load_seconds: float) -> dict[str, Any]:
    """The corpus's part of ``results.json`` before its heads run."""
    test_ids = {i for fold in task.folds for i in fold.test}
    return {
        "synthetic": task.synthetic,
        "protocol": task.protocol,
        "num_utterances": len(task.utterances),
        "num_speakers": len({u.speaker for u in task.utterances}),
        "label_names": list(task.label_names),
        "class_counts": table.class_counts().tolist(),
        "hidden_states": table.num_layers,
        "feature_dim": table.feature_dim,
        "mean_frames": float(np.mean(table.lengths())),
        "folds": [
            {
                "name": str(f.name),
                "train": len(f.train),
                "validation": len(f.validation),
                "test": len(f.test),
                "validation_policy": getattr(f, "validation_policy", "speakers"),
                "test_speakers": sorted({u.speaker for u in task.utterances
                                         if u.id in set(f.test)}),
            }
            for f in task.folds
        ],
        "problems": list(task.problems),
        "backbone_energy": backbone_energy(task, backbone, test_ids),
        "timings": {"features_s": feature_seconds, "load_s": load_seconds},
        "models": {},
    }


def run_probe_folds(
    views: LayerViews,
    folds: Sequence[Any],
    *,
    seed: int,
    out_dir: Path,
    resume: bool,
    fold_hook: Callable[[FoldResult], None] | None = None,
    train: TrainConfig | None = None,
    enrolment: EnrolmentProtocol | None = None,
) -> CrossValResult:
    """The ``probe`` head on every fold, through the one per-fold path (same records and
    resume as the neural heads), under the neural heads' training config ``train``: the
    same normalisation, the same layer selection and, with ``train.refit``, the refit on
    training + validation data (the fair baseline of issue 11); under the same enrolment
    protocol as the neural heads, when there is one."""
    config = (train or TrainConfig()).replace(seed=seed)
    return cross_validate(views, folds, PROBE_HEAD, config, out_dir=out_dir, resume=resume,
                          fold_hook=fold_hook, enrolment=enrolment)


def run_corpus_heads(
    task: CorpusTask,
    feature_set: Any,
    views: LayerViews,
    models: Sequence[str],
    settings: BenchmarkSettings,
    progress: RunProgress,
    units_per_fold: dict[str, int],
    out: Path,
    partners: Sequence[tuple[CorpusTask, Any]] = (),
    copies: Sequence[tuple[float, Any]] = (),
) -> tuple[dict[str, dict[int, CrossValResult]], float | None]:
    """Every head × seed × fold of one corpus; neural units spread over worker processes.

    Returns ``(runs per head and seed, the largest worker's peak memory in MiB or None)``.

    The probe (and the per-fold layer ranking that ``layers="auto"`` uses) runs here first;
    then each (head, seed, fold) is one unit for ``settings.jobs`` processes
    (:func:`~ptssnn.benchmark.scheduling.run_units`). Under ``--multi-corpus``, ``task``'s
    training splits name the ``partners``' utterances (``(task, feature set)``) and ``views``
    holds them too; every head, the probe included, trains on the same ids. Under
    ``--speed-perturb`` the same holds for the task's ``copies`` (``(factor, feature set)``).
    """
    runs: dict[str, dict[int, CrossValResult]] = {m: {} for m in models}
    neural = [m for m in models if m != PROBE]
    if settings.train.layers == "auto" or settings.train.normalisation == "auto" \
            or PROBE in models:
        progress.describe(f"{task.name}: ranking layers on validation")
        for fold in task.folds:
            norm, _ = select_normalisation(views, fold, settings.train.normalisation)
            views.layer_scores(fold, normalisation=norm)
    if PROBE in models:
        for seed in range(settings.seeds):
            progress.describe(f"{task.name} · probe · seed {seed}")
            runs[PROBE][seed] = run_probe_folds(
                views, task.folds, seed=seed,
                out_dir=out / "runs" / task.name / PROBE / f"seed{seed}",
                resume=settings.resume, fold_hook=lambda _r: progress.advance(1),
                train=settings.train, enrolment=settings.enrolment)
    units = [FoldUnit(m, seed, k) for seed in range(settings.seeds) for m in neural
             for k in range(len(task.folds))]
    done: dict[FoldUnit, dict[str, Any]] = {}

    def settle(unit: FoldUnit, result: dict[str, Any], trained: int) -> None:
        # Early stopping (or a resumed fold) leaves some of the unit's epochs unspent.
        progress.advance(max(0, units_per_fold[unit.model] - trained))
        done[unit] = result

    wanted = max(1, min(settings.jobs or os.cpu_count() or 1, len(units)))
    prepared = worker_pipeline(settings, views.num_layers)
    table_bytes = sum(f.numel() * f.element_size() for f in views.table.features)
    if prepared is not None:  # what a worker holds: the pipeline's layers, pooled frames
        table_bytes = round(table_bytes * prepared.input_layers(views.num_layers)
                            / views.num_layers / prepared.frame_pool)
    free = available_memory()
    jobs = memory_capped_jobs(wanted, table_bytes, free)
    if jobs < wanted and free is not None:
        progress.print(
            f"{task.name}: its features take {table_bytes / 1e9:.1f} GB in each worker process; "
            f"{jobs} process(es) instead of {wanted} fit in the {free / 1e9:.1f} GB of free "
            "memory")
    progress.describe(f"{task.name}: {len(neural)} heads × {settings.seeds} seed(s) × "
                      f"{len(task.folds)} folds on {jobs} process(es)")
    worker_peak = run_units(
        CorpusRun(task, settings, out, tuple(partners), tuple(copies), prepared), views,
        feature_set, units, jobs=jobs, on_epoch=lambda _model: progress.advance(1),
        on_done=settle)
    for model in neural:
        for seed in range(settings.seeds):
            folds = [FoldResult.from_dict(done[FoldUnit(model, seed, k)])
                     for k in range(len(task.folds))]
            runs[model][seed] = CrossValResult(folds, task.label_names)
    return runs, worker_peak


def run_cross_corpus(
    source: CorpusTask,
    target: CorpusTask,
    tables: dict[str, LabelledFeatures],
    models: Sequence[str],
    settings: BenchmarkSettings,
    progress: RunProgress,
    units_per_fold: dict[str, int],
    out: Path,
) -> dict[str, Any]:
    """Train every head on ``source`` (minus validation speakers), test on ``target``."""
    from ptssnn.evaluation.crosscorpus import cross_corpus_fold, cross_corpus_table

    fold = cross_corpus_fold(source.name, source.utterances, target.name, target.utterances)
    speakers = {u.id: f"{task.name}/{u.speaker}" for task in (source, target)
                for u in task.utterances}
    views = LayerViews(cross_corpus_table(tables[source.name], tables[target.name],
                                          fold.labels), speakers=speakers)
    entry: dict[str, Any] = {
        "name": fold.name, "labels": list(fold.labels), "train": len(fold.train),
        "validation": len(fold.validation), "test": len(fold.test), "models": {},
    }
    for model in models:
        runs: dict[int, CrossValResult] = {}
        for seed in range(settings.seeds):
            run_dir = out / "runs" / "cross-corpus" / fold.name.replace(">", "") / model
            run_dir = run_dir / f"seed{seed}"
            progress.describe(f"{fold.name} · {model} · seed {seed}")
            done = [0]

            def on_epoch(record: dict[str, Any], _done: list[int] = done) -> None:
                _done[0] += 1
                progress.advance(1)

            def on_fold(result: FoldResult, _done: list[int] = done,
                        _units: int = units_per_fold[model]) -> None:
                progress.advance(max(0, _units - _done[0]))

            if model == PROBE:
                runs[seed] = run_probe_folds(views, [fold], seed=seed, out_dir=run_dir,
                                             resume=settings.resume, fold_hook=on_fold,
                                             train=settings.train)
            else:
                runs[seed] = cross_validate(
                    views, [fold],
                    HeadSpec(model, {"seed": seed, **settings.head_options}),
                    settings.train.replace(seed=seed), out_dir=run_dir,
                    resume=settings.resume, epoch_hook=on_epoch, fold_hook=on_fold)
        summary = summarise_model(runs)
        summary["runs"] = {str(seed): run.to_dict() for seed, run in runs.items()}
        entry["models"][model] = summary
    return entry
