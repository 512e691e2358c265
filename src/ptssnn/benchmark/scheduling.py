"""Scheduling: the (head, seed, fold) units of one corpus, in this process or a worker pool.

Each unit is trained by :func:`ptssnn.training.train_fold` with the corpus table held by a
:class:`FoldTrainer` (one per process; no module-global state). With several jobs, a
:class:`WorkerPool` of spawned processes takes units from a queue; every worker reads the
features from the cache into its own table and uses one torch thread.

Workers die with their parent, however it ends (:mod:`ptssnn.processes`): on Linux the
kernel sends them SIGKILL when the parent dies (``PR_SET_PDEATHSIG``, set before the worker
imports torch), elsewhere (and as a second guard) a thread in each worker exits when its
parent process is gone; a SIGTERM to the parent is turned into an orderly stop that
terminates the workers before the parent exits.
"""

from __future__ import annotations

import multiprocessing
import os
import pickle
import queue as queue_module
import traceback
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ptssnn.benchmark.corpus import CorpusTask
from ptssnn.benchmark.multicorpus import load_views
from ptssnn.benchmark.settings import BenchmarkError, BenchmarkSettings, process_peak_mb
from ptssnn.errors import PtssnnError
from ptssnn.features.layers import LayerSelection, middle_layer
from ptssnn.features.pipeline import FeaturePipeline
from ptssnn.features.table import LabelledFeatures
from ptssnn.models.factory import HeadSpec
from ptssnn.processes import child_main, retain_freed_memory, sigterm_as_exit
from ptssnn.training.crossval import Analyser, train_fold
from ptssnn.training.views import LayerViews

_PR_SET_PDEATHSIG = 1  # linux/prctl.h


@dataclass(frozen=True)
class FoldUnit:
    """One neural head × seed × fold of a corpus."""

    model: str
    seed: int
    fold_index: int


@dataclass(frozen=True)
class CorpusRun:
    """What every process needs to train units of one corpus (picklable).

    Attributes:
        task: The corpus (under ``--multi-corpus`` its folds' training splits already name
            the partners' utterances, :func:`~ptssnn.benchmark.multicorpus.with_partners`).
        settings: The run's settings.
        out: Output folder.
        partners: ``(task, feature set)`` of every other corpus whose utterances join the
            training splits (``--multi-corpus``); empty otherwise.
        copies: ``(speed factor, feature set)`` of the task's speed-perturbed copies
            (``--speed-perturb``; the folds already name them); empty otherwise.
    """

    task: CorpusTask
    settings: BenchmarkSettings
    out: Path
    partners: tuple[tuple[CorpusTask, Any], ...] = ()
    copies: tuple[tuple[float, Any], ...] = ()
    prepared: FeaturePipeline | None = None


def worker_pipeline(settings: BenchmarkSettings, num_layers: int) -> FeaturePipeline | None:
    """The one pipeline every neural head of the run reads, when it does not depend on the
    fold: global (or no) normalisation, a fixed layer mode (not ``"auto"``), no enrolment
    scoring. A worker then reads the features through it item by item (frame pooling by 8:
    an eighth of the memory) instead of holding the backbone-rate table; ``None``: the
    worker needs the whole table.
    """
    train = settings.train
    selection = LayerSelection.parse(train.layers)
    if (settings.enrolment is not None or train.normalisation not in ("global", "none")
            or selection.auto):
        return None
    layers = str(middle_layer(num_layers)) if selection.middle else train.layers
    return FeaturePipeline(layers=layers, frame_pool=train.frame_pool,
                           normalisation=train.normalisation)


def make_analyser(max_items: int) -> Analyser:
    """Per-fold efficiency analysis of a trained head (energy, firing statistics)."""
    from ptssnn.evaluation.efficiency import analyse_head

    def analyse(model: Any, test: LabelledFeatures) -> dict[str, Any]:
        return analyse_head(model, test, max_items=max_items)

    return analyse


class FoldTrainer:
    """Trains units of one corpus in one process, on a table it holds.

    Args:
        run: The corpus, the settings and the output folder.
        views: The corpus table.
        on_epoch: Called with the head name after every epoch (progress).
    """

    def __init__(self, run: CorpusRun, views: LayerViews,
                 on_epoch: Callable[[str], None]) -> None:
        self.run = run
        self.views = views
        self.on_epoch = on_epoch

    def train(self, unit: FoldUnit) -> tuple[dict[str, Any], int]:
        """Train (or, under resume, reuse) one unit.

        Returns:
            ``(fold result dict, epochs trained in this call)``.
        """
        task, settings = self.run.task, self.run.settings
        run_dir = self.run.out / "runs" / task.name / unit.model / f"seed{unit.seed}"
        run_dir.mkdir(parents=True, exist_ok=True)
        config = settings.train.replace(seed=unit.seed)
        config.save(run_dir / "config.json")
        trained = [0]

        def on_epoch(record: dict[str, Any]) -> None:
            trained[0] += 1
            self.on_epoch(unit.model)

        result, _ = train_fold(
            self.views, task.folds[unit.fold_index],
            HeadSpec(unit.model, {"seed": unit.seed, **settings.head_options}), config,
            out_dir=run_dir, resume=settings.resume, epoch_hook=on_epoch,
            analyse=make_analyser(settings.analysis_items),
            enrolment=settings.enrolment,
        )
        return result.to_dict(), trained[0]


def _worker_main(run: CorpusRun, feature_set: Any, rankings: dict, units: Any, events: Any
                 ) -> None:
    """A worker process (started by :func:`ptssnn.processes.child_main`, already tied to its
    parent): build the table once, then train units until the sentinel."""
    torch.set_num_threads(run.settings.threads or 1)
    views = load_views(run.task, feature_set, run.partners, run.copies, run.prepared)
    # After the load: its per-item temporaries (backbone-rate arrays) go back to the OS
    # instead of fragmenting the heap that training then keeps.
    retain_freed_memory()
    views.adopt_rankings(rankings)
    trainer = FoldTrainer(run, views, lambda model: events.put(("epoch", model)))
    while (unit := units.get()) is not None:
        try:
            result, trained = trainer.train(unit)
        except PtssnnError as error:  # a user-facing error: re-raised as is in the parent
            events.put(("failed", unit, error))
            return
        except BaseException:
            events.put(("failed", unit, traceback.format_exc()))
            return
        events.put(("done", unit, (result, trained), process_peak_mb()))


#: What a worker holds beside its copy of the features: interpreter, torch, kernels, heads.
WORKER_BASE_BYTES = 400 * 2**20
#: A worker's feature memory per byte of the corpus table: the table, plus the pooled views
#: and statistics the heads read (measured: 1.7 GiB per worker for CASIA's 0.95 GB table).
WORKER_TABLE_FACTOR = 1.5


def memory_capped_jobs(jobs: int, table_bytes: int, available: int | None) -> int:
    """``jobs``, or fewer so that every worker's own copy of the features fits in memory.

    Each worker reads the corpus table into its own memory: the 50 Hz table (IEMOCAP: about
    9 GB of whisper-base features), or what the heads read of it when one pipeline serves
    every fold (:func:`worker_pipeline`: an eighth at the default frame pooling). Below two
    workers the folds train in this process, which holds its table already.

    Args:
        jobs: Processes asked for.
        table_bytes: What one worker's table takes (every table a worker loads).
        available: Free memory in bytes (:func:`ptssnn.processes.available_memory`);
            ``None`` (unknown): no cap.
    """
    if jobs <= 1 or available is None:
        return jobs
    per_worker = WORKER_BASE_BYTES + WORKER_TABLE_FACTOR * table_bytes
    return max(1, min(jobs, int(0.9 * available // per_worker)))


def check_table_fits(corpus: str, table_bytes: int, available: int | None,
                     what: str = "features") -> None:
    """Refuse, with the sizes, a corpus table larger than the free memory: loading it would
    end in the kernel's out-of-memory kill, which loses the run without a word.

    Raises:
        BenchmarkError: ``table_bytes`` exceeds ``available`` (``None``: unknown, no check).
    """
    if available is not None and table_bytes > available:
        raise BenchmarkError(
            f"{corpus}: its {what} take {table_bytes / 1e9:.1f} GB in memory and only "
            f"{available / 1e9:.1f} GB are free; free memory or run fewer options that add "
            "data (--speed-perturb, --multi-corpus)")


class WorkerPool:
    """``jobs`` spawned processes running ``target(*args, units, events)`` (``target`` as
    ``"module:function"``; each child is tied to this process first, see
    :mod:`ptssnn.processes`).

    Units go in through :meth:`submit`; the workers put ``("epoch", ...)``, ``("done", unit,
    outcome)`` or ``("failed", unit, traceback)`` events; :meth:`events` yields them. Leaving
    the ``with`` block terminates every worker that is still alive.
    """

    def __init__(self, target: str, args: Sequence[Any], jobs: int) -> None:
        context = multiprocessing.get_context("spawn")
        self._units = context.Queue()
        self._events = context.Queue()
        # Pickled here, unpickled by the child only after it is tied to this process.
        payload = pickle.dumps(tuple(args))
        self.processes = [
            context.Process(target=child_main,
                            args=(os.getpid(), target, payload, self._units, self._events),
                            daemon=True, name=f"ptssnn-worker-{k}")
            for k in range(jobs)
        ]

    def __enter__(self) -> WorkerPool:
        for process in self.processes:
            process.start()
        return self

    def __exit__(self, *exc: object) -> None:
        for process in self.processes:
            if process.is_alive():
                process.terminate()
        for process in self.processes:
            process.join(timeout=5)
            if process.is_alive():
                process.kill()
                process.join()

    def submit(self, units: Sequence[Any]) -> None:
        """Queue these units, then one stop sentinel per worker."""
        for unit in units:
            self._units.put(unit)
        for _ in self.processes:
            self._units.put(None)

    def events(self, poll_s: float = 0.5) -> Iterator[tuple]:
        """Worker events until the caller stops; a worker that died silently is an error.

        Raises:
            BenchmarkError: A worker exited with a non-zero status without reporting, or
                every worker ended while the caller still waits.
        """
        quiet_after_exit = 0
        while True:
            try:
                yield self._events.get(timeout=poll_s)
                quiet_after_exit = 0
            except queue_module.Empty:
                dead = [p for p in self.processes if p.exitcode not in (None, 0)]
                if dead:
                    raise BenchmarkError(
                        f"worker process {dead[0].name} died (exit code {dead[0].exitcode}); "
                        "rerun with --resume to continue") from None
                # Every worker gone and nothing left to read (twice: their last events may
                # still be in flight once): the caller's units can no longer finish.
                if all(p.exitcode is not None for p in self.processes):
                    quiet_after_exit += 1
                    if quiet_after_exit > 1:
                        raise BenchmarkError("every worker process ended with units left "
                                             "undone; rerun with --resume to continue") from None


def run_units(
    run: CorpusRun,
    views: LayerViews,
    feature_set: Any,
    units: Sequence[FoldUnit],
    *,
    jobs: int,
    on_epoch: Callable[[str], None],
    on_done: Callable[[FoldUnit, dict[str, Any], int], None],
) -> float | None:
    """Train every unit, in this process (``jobs == 1``) or in a :class:`WorkerPool`.

    Args:
        run: Corpus, settings, output folder.
        views: The corpus table in this process (the workers build their own from
            ``feature_set``, and the partners' under ``--multi-corpus``, and adopt its layer
            rankings).
        feature_set: The corpus's cached features.
        units: What to train.
        jobs: Processes.
        on_epoch: Called with the head name after each epoch, in this process.
        on_done: Called with each unit, its fold result dict and its epochs trained.

    Returns:
        The largest peak resident memory (``VmHWM``, MiB) a worker reported; ``None`` when
        every unit trained in this process.

    Raises:
        BenchmarkError: A worker failed (its traceback is in the message) or died.
    """
    if jobs == 1:
        trainer = FoldTrainer(run, views, on_epoch)
        for unit in units:
            result, trained = trainer.train(unit)
            on_done(unit, result, trained)
        return None
    if not units:
        return None
    pending = set(units)
    peaks: list[float] = []
    target = f"{__name__}:_worker_main"
    with sigterm_as_exit(), WorkerPool(target, (run, feature_set, views.share_rankings()),
                                       jobs) as pool:
        pool.submit(list(units))
        for event in pool.events():
            kind, payload = event[0], event[1:]
            if kind == "epoch":
                on_epoch(payload[0])
            elif kind == "failed":
                unit, failure = payload
                if isinstance(failure, PtssnnError):
                    raise failure
                raise BenchmarkError(f"training {unit} failed in a worker process:\n{failure}")
            else:
                unit, (result, trained), peak = payload
                if peak is not None:
                    peaks.append(peak)
                pending.discard(unit)
                on_done(unit, result, trained)
                if not pending:
                    break
    return max(peaks) if peaks else None
