"""The benchmark: every fold of every corpus for every head and seed, on cached features.

``run_benchmark`` takes prepared corpora (:class:`CorpusTask`: utterances, folds, label
order) so the same runner serves real corpora (:func:`prepare_corpus`: scan + protocol) and
the synthetic demo corpus. Per corpus it extracts or reuses the backbone features, loads them
into RAM once, and runs :func:`ptssnn.training.cross_validate` (neural heads) or the linear
probe per model and seed. Every finished fold is on disk, so ``resume`` picks up where an
interrupted run stopped; ``results.json`` and ``report.md`` are rewritten after every model.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import os
import platform
import resource
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ptssnn.errors import PtssnnError
from ptssnn.evaluation.metrics import mean_std, pooled_confusion, summarise_folds
from ptssnn.training.config import TrainConfig
from ptssnn.training.crossval import (
    CrossValResult,
    FoldResult,
    LayerViews,
    cross_validate,
    select_layers,
    select_normalisation,
    train_fold,
)
from ptssnn.training.data import LabelledFeatures

#: Head names the benchmark knows besides the model presets.
PROBE = "probe"
#: The paper's ladder, in report order.
MODEL_ORDER = ("pts-snn", "+ssla", "+shift", "+saturation", "+standardise", "vanilla-snn",
               "ann", PROBE)
DEFAULT_MODELS = ("pts-snn", "vanilla-snn", "ann", PROBE)
#: Corpus folder names that mark a data root holding several corpora.
_KNOWN = ("casia", "emovo", "urdu", "emodb", "ravdess", "iemocap")
#: Energy per 32-bit float multiply-accumulate (Horowitz, ISSCC 2014, 45 nm), joules.
E_MAC_J = 4.6e-12


def benchmark_train_config(**changes: Any) -> TrainConfig:
    """The benchmark's training defaults: :class:`TrainConfig`'s (global standardisation with
    the training split's moments: no test-speaker information, what a deployed head gets),
    plus the refit on training + validation data once the epoch count is chosen on
    validation. ``normalisation="auto"``/``"speaker"`` (per-speaker z-normalisation, which
    reads the unlabelled audio of the test speakers: transductive) stay available."""
    return TrainConfig(**{"refit": True, "normalisation": "global", **changes})


class BenchmarkError(PtssnnError):
    """A benchmark that cannot run as asked (unknown model, no corpus found, bad limit)."""


@dataclass(frozen=True)
class CorpusTask:
    """One corpus, ready to run.

    Attributes:
        name: Corpus name (results key).
        utterances: Records with ``id``, ``label``, ``speaker``, ``path``, ``duration``.
        folds: Folds with ``name``, ``train``, ``validation``, ``test`` (and optionally
            ``protocol``, ``validation_policy``).
        label_names: Class order.
        protocol: Protocol name, as reported.
        synthetic: True for generated data (labelled so in every output).
        problems: Files the scan could not use (reported, never guessed around).
    """

    name: str
    utterances: tuple[Any, ...]
    folds: tuple[Any, ...]
    label_names: tuple[str, ...]
    protocol: str
    synthetic: bool = False
    problems: tuple[str, ...] = ()


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

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return {
            "backbone": self.backbone,
            "models": list(self.models),
            "seeds": list(range(self.seeds)),
            "train": self.train.to_dict(),
            "model_overrides": self.model_overrides,
            "cache": str(self.cache) if self.cache else None,
            "out": str(self.out),
            "resume": self.resume,
            "analysis_items": self.analysis_items,
            "threads": self.threads,
            "jobs": self.jobs,
            "cross_corpus": self.cross_corpus,
        }


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


def limit_utterances(utterances: Sequence[Any], per_speaker_label: int) -> list[Any]:
    """Keep the first ``per_speaker_label`` utterances (by id) of every speaker × label.

    Used for smoke tests on a tiny real subset; the folds are made afterwards.
    """
    if per_speaker_label < 1:
        raise BenchmarkError(f"--limit must be >= 1 (got {per_speaker_label})")
    kept: dict[tuple[str, str], int] = {}
    out = []
    for utterance in sorted(utterances, key=lambda u: u.id):
        key = (utterance.speaker, utterance.label)
        if kept.get(key, 0) < per_speaker_label:
            kept[key] = kept.get(key, 0) + 1
            out.append(utterance)
    return out


def find_corpus_root(data_root: Path, corpus: str) -> Path:
    """``data_root/<corpus>`` when it exists (a data folder of several corpora), else
    ``data_root`` itself (the corpus folder was given).

    Raises:
        BenchmarkError: When neither exists.
    """
    for candidate in (data_root / corpus, data_root / corpus.upper()):
        if candidate.is_dir():
            return candidate
    if data_root.is_dir() and not any((data_root / other).is_dir() for other in _KNOWN):
        return data_root  # the corpus folder itself; the scan checks its layout
    raise BenchmarkError(
        f"no folder for corpus {corpus!r} under {data_root}; expected {data_root / corpus}"
    )


def prepare_corpus(
    corpus: str,
    data_root: str | Path,
    *,
    protocol: str | None = None,
    limit: int | None = None,
    fold_seed: int = 0,
) -> CorpusTask:
    """Scan a real corpus and make its folds.

    Args:
        corpus: Registry name (``casia``, ``emovo``, ``urdu``...).
        data_root: A folder holding ``<corpus>/`` (or the corpus folder itself).
        protocol: Protocol name; ``None`` = the corpus's honest speaker-independent default.
        limit: Keep at most this many utterances per speaker × label (smoke tests).
        fold_seed: Seed of the validation-speaker choice (test folds do not depend on it).
    """
    from ptssnn.corpora import get_corpus, make_folds, scan_corpus

    spec = get_corpus(corpus)
    root = find_corpus_root(Path(data_root).expanduser(), spec.name)
    scan = scan_corpus(spec.name, root)
    utterances = list(scan.utterances)
    if limit is not None:
        utterances = limit_utterances(utterances, limit)
    if not utterances:
        raise BenchmarkError(f"no usable {spec.name} utterance under {root}")
    folds = make_folds(spec.name, utterances, protocol, seed=fold_seed)
    present = {u.label for u in utterances}
    labels = tuple(label for label in spec.labels if label in present)
    return CorpusTask(
        name=spec.name,
        utterances=tuple(utterances),
        folds=tuple(folds),
        label_names=labels,
        protocol=folds[0].protocol if folds else (protocol or spec.default_protocol),
        problems=tuple(f"{p.path}: {p.reason}" for p in scan.problems),
    )


def validation_policy(config: TrainConfig) -> str:
    """How models are selected, in words (for results.json and the report)."""
    text = ("model selection and early stopping on validation speakers carved from the "
            "training side of each fold (metric: UA)")
    if config.refit:
        return text + ("; then a fresh head (same seed) is trained on training + validation "
                       "data for the selected number of epochs and scored once on the test "
                       "fold")
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


def peak_worker_memory_mb() -> float:
    """Largest peak resident memory of any finished worker process, MiB."""
    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024.0


def _model_factory(preset: str, overrides: dict[str, Any]) -> Callable[[int, int, int], Any]:
    from ptssnn.models import create_model

    def factory(input_dim: int, num_classes: int, input_layers: int) -> Any:
        extra = dict(overrides)
        if input_layers > 1:
            extra["input_layers"] = input_layers
        return create_model(preset, input_dim, num_classes, **extra)

    return factory


def _backbone_energy(task: CorpusTask, backbone: Any, test_ids: set[str]) -> dict[str, float]:
    sample_rate = int(getattr(backbone, "sample_rate", 16000))
    macs = [backbone.macs(round(u.duration * sample_rate)) for u in task.utterances
            if u.id in test_ids]
    mean_macs = float(np.mean(macs)) if macs else 0.0
    return {"macs_per_sample": mean_macs, "energy_mj_per_sample": mean_macs * E_MAC_J * 1e3}


def run_probe_folds(
    views: LayerViews,
    folds: Sequence[Any],
    *,
    seed: int,
    out_dir: Path,
    resume: bool,
    fold_hook: Callable[[FoldResult], None] | None = None,
    normalisation: str = "global",
    layers: str = "auto",
) -> CrossValResult:
    """The ``probe`` head on every fold (same records as the neural heads), reading the
    features normalised as ``normalisation`` says (``"auto"``: chosen per fold on validation,
    as for the neural heads). Layers: when the heads read one fixed hidden state (``layers``
    ``"middle"`` or an index) the probe reads the same one; otherwise (``"all"``, ``"auto"``)
    it chooses among every hidden state and their mean on validation."""
    from ptssnn.evaluation.probe import run_probe

    labels = views.table.labels.numpy()
    results = []
    for fold in folds:
        path = out_dir / str(fold.name) / "result.json"
        if resume and path.exists():
            result = FoldResult.from_dict(json.loads(path.read_text()))
        else:
            started = time.perf_counter()
            norm, norm_scores = select_normalisation(views, fold, normalisation)
            stats, candidates = views.pooled(norm)
            test_rows = views.rows(fold.test)
            # Fair to the neural heads: layer and C on validation, refit on train + val.
            fixed, _ = select_layers(views, fold, layers if layers != "auto" else "all")
            probe = run_probe(stats, labels, candidates, views.rows(fold.train),
                              views.rows(fold.validation), test_rows,
                              len(views.table.label_names), seed=seed,
                              only=fixed if fixed in candidates else None)
            result = FoldResult(
                fold=str(fold.name),
                layers=probe.layer,
                layer_scores=probe.validation_scores,
                test=probe.test,
                fit={"best_validation_ua": probe.validation_scores[probe.layer],
                     "c": probe.c, "refit": probe.refit},
                num_parameters=probe.num_parameters,
                predictions={
                    "ids": list(fold.test),
                    "references": labels[test_rows].tolist(),
                    "predictions": [int(p) for p in probe.predictions],
                },
                seconds=time.perf_counter() - started,
                normalisation=norm,
                normalisation_scores=norm_scores,
            )
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(result.to_dict(), indent=1))
        results.append(result)
        if fold_hook is not None:
            fold_hook(result)
    return CrossValResult(results, views.table.label_names)


def summarise_model(runs: dict[int, CrossValResult]) -> dict[str, Any]:
    """Mean ± std over every (seed, fold) run of a head, plus efficiency means."""
    folds = [f for run in runs.values() for f in run.folds]
    summary = {k: v.to_dict() for k, v in summarise_folds([f.test.to_dict() for f in folds]
                                                          ).items()}
    seed_means = {
        str(seed): {k: v.mean for k, v in run.summary.items()} for seed, run in runs.items()
    }
    out: dict[str, Any] = {
        "metrics": summary,
        "seed_means": seed_means,
        "seed_spread": {
            name: mean_std(means[name] for means in seed_means.values()).to_dict()
            for name in summary
        },
        "num_parameters": int(np.median([f.num_parameters for f in folds])) if folds else 0,
        "confusion": pooled_confusion([f.test.to_dict() for f in folds]),
        "layers": sorted({f.layers for f in folds}),
        # How many fold runs read globally / speaker-standardised / raw features.
        "normalisation": {norm: sum(f.normalisation == norm for f in folds)
                          for norm in sorted({f.normalisation for f in folds})},
        "epochs": mean_std(f.fit.get("best_epoch", float("nan")) for f in folds).to_dict(),
        "seconds": float(sum(f.seconds for f in folds)),
    }
    analyses = [f.analysis for f in folds if f.analysis]
    if analyses:
        out["efficiency"] = average_analyses(analyses)
    return out


def average_analyses(analyses: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Mean over folds of every numeric leaf of the analysis dicts (lists element-wise)."""

    def merge(values: list[Any]) -> Any:
        first = values[0]
        if isinstance(first, dict):
            keys = [k for k in first if all(isinstance(v, dict) and k in v for v in values)]
            return {k: merge([v[k] for v in values]) for k in keys}
        if isinstance(first, bool) or first is None or isinstance(first, str):
            return first
        if isinstance(first, int | float):
            return float(np.mean([float(v) for v in values]))
        same_shape = all(isinstance(v, list) and len(v) == len(first) for v in values)
        if (isinstance(first, list) and same_shape
                and all(isinstance(x, int | float) for v in values for x in v)):
            return np.asarray(values, dtype=np.float64).mean(0).tolist()
        return first

    return merge(list(analyses))


class _Progress:
    """Rich progress over the whole run: one unit per epoch (probe fold = one unit)."""

    def __init__(self, total: int, enabled: bool) -> None:
        self.enabled = enabled
        self.total = total
        self._progress = None
        if enabled:
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )

            self._progress = Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("elapsed"),
                TimeElapsedColumn(),
                TextColumn("ETA"),
                TimeRemainingColumn(),
                transient=False,
            )
            self._task = self._progress.add_task("benchmark", total=total)

    def __enter__(self) -> _Progress:
        if self._progress is not None:
            self._progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.stop()

    def describe(self, text: str) -> None:
        if self._progress is not None:
            self._progress.update(self._task, description=text)

    def advance(self, units: float) -> None:
        if self._progress is not None:
            self._progress.advance(self._task, units)

    def print(self, text: str) -> None:
        if self._progress is not None:
            self._progress.console.print(text, highlight=False)
        else:
            print(text, flush=True)


def extract_corpus_features(
    task: CorpusTask, backbone: Any, cache: Path | None, *, progress: bool = True
) -> tuple[CorpusTask, Any, float]:
    """Extract (or reuse from the cache) every hidden state of every utterance.

    Utterances whose audio cannot be decoded are dropped from the task (and its folds) and
    listed among its problems.

    Returns:
        ``(task restricted to the utterances with features, FeatureSet, seconds)``.
    """
    from ptssnn.features import FeatureStore, extract_features

    started = time.perf_counter()
    store = FeatureStore(cache) if cache is not None else FeatureStore()
    feature_set = extract_features(list(task.utterances), backbone, "all", store,
                                   progress=progress)
    seconds = time.perf_counter() - started
    if len(feature_set) == len(task.utterances):
        return task, feature_set, seconds
    kept = set(feature_set.ids)
    folds = tuple(
        dataclasses.replace(
            fold,
            train=tuple(i for i in fold.train if i in kept),
            validation=tuple(i for i in fold.validation if i in kept),
            test=tuple(i for i in fold.test if i in kept),
        )
        for fold in task.folds
    )
    failures = tuple(f"{f.path}: {f.reason}" for f in feature_set.failures)
    task = dataclasses.replace(
        task,
        utterances=tuple(u for u in task.utterances if u.id in kept),
        folds=folds,
        problems=task.problems + failures,
    )
    return task, feature_set, seconds


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

    # Phase 1: features (their own progress bar); phase 2: training (one bar, whole-run ETA).
    prepared = []
    say = log or (lambda text: print(text, flush=True))
    for task in tasks:
        label = " (SYNTHETIC)" if task.synthetic else ""
        say(f"{task.name}{label}: {len(task.utterances)} utterances, {len(task.folds)} "
            f"folds ({task.protocol}), {len(task.label_names)} classes; features from "
            f"{settings.backbone}")
        task, feature_set, feature_seconds = extract_corpus_features(
            task, backbone, settings.cache, progress=show_progress)
        prepared.append((task, feature_set, feature_seconds))

    # Progress units: one per epoch (twice the epochs with the refit), one per probe fold.
    epochs = settings.train.max_epochs * (2 if settings.train.refit else 1)
    units_per_fold = {m: (epochs if m != PROBE else 1) for m in models}
    total = sum(units_per_fold[m] * len(t.folds) * settings.seeds
                for t, _, _ in prepared for m in models)
    pairs = ([(a, b) for a in range(len(prepared)) for b in range(len(prepared)) if a != b]
             if settings.cross_corpus else [])
    total += sum(units_per_fold[m] * settings.seeds for m in models) * len(pairs)
    tables: dict[str, LabelledFeatures] = {}
    with _Progress(total, show_progress) as progress:
        say = log or progress.print
        for task, feature_set, feature_seconds in prepared:
            progress.describe(f"{task.name}: loading features")
            load_started = time.perf_counter()
            table = LabelledFeatures.from_feature_set(feature_set, task.utterances,
                                                      task.label_names)
            views = LayerViews(table, speakers=_speakers(task))
            load_seconds = time.perf_counter() - load_started
            test_ids = {i for fold in task.folds for i in fold.test}
            corpus_entry: dict[str, Any] = {
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
                "backbone_energy": _backbone_energy(task, backbone, test_ids),
                "timings": {"features_s": feature_seconds, "load_s": load_seconds},
                "models": {},
            }
            results["corpora"][task.name] = corpus_entry
            corpus_started = time.perf_counter()
            runs = run_corpus_heads(task, feature_set, views, models, settings, progress,
                                    units_per_fold, out)
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
            if pairs:
                tables[task.name] = table
            del views, table
        for a, b in pairs:
            source, target = prepared[a][0], prepared[b][0]
            results.setdefault("cross_corpus", {})
            entry = run_cross_corpus(source, target, tables, models, settings, progress,
                                     units_per_fold, out)
            results["cross_corpus"][entry["name"]] = entry
            say(f"  {entry['name']} ({', '.join(entry['labels'])}): " + ", ".join(
                f"{m} UA {100 * e['metrics']['ua']['mean']:.1f}"
                for m, e in entry["models"].items()))
            write_outputs(results, out, plots=False)
    results["timings"]["total_s"] = time.perf_counter() - started
    results["timings"]["neural_heads"] = neural
    results["peak_memory_mb"] = peak_memory_mb()
    results["peak_worker_memory_mb"] = peak_worker_memory_mb()
    write_outputs(results, out, plots=settings.plots)
    return results


def _speakers(task: CorpusTask) -> dict[str, str]:
    return {u.id: u.speaker for u in task.utterances}


#: State of a worker process (set once by :func:`_worker_init`).
_WORKER: dict[str, Any] = {}


def _worker_init(task: CorpusTask, feature_set: Any, rankings: dict, settings: BenchmarkSettings,
                 queue: Any) -> None:
    torch.set_num_threads(settings.threads or 1)
    table = LabelledFeatures.from_feature_set(feature_set, task.utterances, task.label_names)
    views = LayerViews(table, speakers=_speakers(task))
    views.adopt_rankings(rankings)
    _WORKER.update(task=task, views=views, settings=settings, queue=queue)


def _train_unit(model: str, seed: int, fold_index: int, out: Path
                ) -> tuple[dict[str, Any], int]:
    """One head × seed × fold in a worker (or in this process when ``_WORKER`` is local).

    Returns:
        ``(fold result dict, epochs trained in this call)``.
    """
    task, views, settings, queue = (_WORKER[k] for k in ("task", "views", "settings", "queue"))
    fold = task.folds[fold_index]
    run_dir = out / "runs" / task.name / model / f"seed{seed}"
    run_dir.mkdir(parents=True, exist_ok=True)
    config = settings.train.replace(seed=seed)
    config.save(run_dir / "config.json")
    trained = [0]

    def on_epoch(record: dict[str, Any]) -> None:
        trained[0] += 1
        queue.put(("epoch", model))

    result, _ = train_fold(
        views, fold, _model_factory(model, {"seed": seed, **settings.model_overrides}), config,
        out_dir=run_dir, resume=settings.resume, epoch_hook=on_epoch,
        analyse=make_analyser(model, settings.analysis_items),
    )
    return result.to_dict(), trained[0]


def run_corpus_heads(
    task: CorpusTask,
    feature_set: Any,
    views: LayerViews,
    models: Sequence[str],
    settings: BenchmarkSettings,
    progress: _Progress,
    units_per_fold: dict[str, int],
    out: Path,
) -> dict[str, dict[int, CrossValResult]]:
    """Every head × seed × fold of one corpus; neural units spread over worker processes.

    The probe (and the per-fold layer ranking that ``layers="auto"`` uses) runs here first;
    then each (head, seed, fold) is one unit for a pool of ``settings.jobs`` processes, each
    with its own copy of the features (read from the cache) and one torch thread.
    """
    import multiprocessing
    import queue as queue_module
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

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
                normalisation=settings.train.normalisation, layers=settings.train.layers)
    units = [(m, seed, k) for seed in range(settings.seeds) for m in neural
             for k in range(len(task.folds))]
    done_units: dict[tuple[str, int, int], dict[str, Any]] = {}
    def drain(events: Any) -> None:
        while True:
            try:
                kind, _model = events.get_nowait()
            except queue_module.Empty:
                return
            if kind == "epoch":
                progress.advance(1)

    def settle(unit: tuple[str, int, int], outcome: tuple[dict[str, Any], int]) -> None:
        # Early stopping (or a resumed fold) leaves some of the unit's epochs unspent.
        result, trained = outcome
        progress.advance(max(0, units_per_fold[unit[0]] - trained))
        done_units[unit] = result

    jobs = max(1, min(settings.jobs or os.cpu_count() or 1, len(units)))
    progress.describe(f"{task.name}: {len(neural)} heads × {settings.seeds} seed(s) × "
                      f"{len(task.folds)} folds on {jobs} process(es)")
    if jobs == 1:
        local: queue_module.SimpleQueue = queue_module.SimpleQueue()
        _WORKER.update(task=task, views=views, settings=settings, queue=local)
        try:
            for unit in units:
                outcome = _train_unit(*unit, out)
                drain(local)
                settle(unit, outcome)
        finally:
            _WORKER.clear()
    elif units:
        context = multiprocessing.get_context("spawn")
        events = context.Queue()
        with ProcessPoolExecutor(
            max_workers=jobs, mp_context=context, initializer=_worker_init,
            initargs=(task, feature_set, views.share_rankings(), settings, events),
        ) as pool:
            futures = {pool.submit(_train_unit, *unit, out): unit for unit in units}
            pending = set(futures)
            while pending:
                finished, pending = wait(pending, timeout=0.5, return_when=FIRST_COMPLETED)
                drain(events)
                for future in finished:
                    settle(futures[future], future.result())
            drain(events)
    for model in neural:
        for seed in range(settings.seeds):
            folds = [FoldResult.from_dict(done_units[(model, seed, k)])
                     for k in range(len(task.folds))]
            runs[model][seed] = CrossValResult(folds, task.label_names)
    return runs


def run_cross_corpus(
    source: CorpusTask,
    target: CorpusTask,
    tables: dict[str, LabelledFeatures],
    models: Sequence[str],
    settings: BenchmarkSettings,
    progress: _Progress,
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
                                             normalisation=settings.train.normalisation,
                                             layers=settings.train.layers)
            else:
                runs[seed] = cross_validate(
                    views, [fold],
                    _model_factory(model, {"seed": seed, **settings.model_overrides}),
                    settings.train.replace(seed=seed), out_dir=run_dir,
                    resume=settings.resume, epoch_hook=on_epoch, fold_hook=on_fold)
        summary = summarise_model(runs)
        summary["runs"] = {str(seed): run.to_dict() for seed, run in runs.items()}
        entry["models"][model] = summary
    return entry


def make_analyser(preset: str, max_items: int) -> Callable[[Any, LabelledFeatures], dict] | None:
    """Per-fold efficiency analysis of a trained head (energy, firing statistics)."""
    from ptssnn.evaluation.efficiency import analyse_head

    def analyse(model: Any, test: LabelledFeatures) -> dict[str, Any]:
        return analyse_head(model, test, max_items=max_items)

    return analyse


def settings_from_dict(data: dict[str, Any]) -> BenchmarkSettings:
    """Rebuild settings from ``results.json``'s ``settings`` (for reruns)."""
    values = dict(data)
    values["train"] = TrainConfig.from_dict(values["train"])
    values["seeds"] = len(values["seeds"])
    values["models"] = tuple(values["models"])
    values["cache"] = Path(values["cache"]) if values.get("cache") else None
    values["out"] = Path(values["out"])
    names = {f.name for f in dataclasses.fields(BenchmarkSettings)}
    return BenchmarkSettings(**{k: v for k, v in values.items() if k in names})
