"""``ptssnn benchmark`` and ``ptssnn demo``: the cross-validated benchmark and the main job."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from ptssnn.cli.options import SPEED_PERTURB_HELP, parse_model_options, speed_factors_option


def _print_results(results: dict[str, Any], out: Path, console: Console) -> None:
    from ptssnn.benchmark import results_table

    rows = results_table(results)
    title = "Results (SYNTHETIC data)" if results.get("synthetic") else "Results"
    table = Table(title=title)
    for column in rows[0] if rows else []:
        table.add_column(column, justify="left" if column in ("corpus", "model") else "right")
    for row in rows:
        table.add_row(*row.values())
    console.print(table)
    total = results.get("timings", {}).get("total_s", 0.0)
    console.print(
        f"wall time {total / 60:.1f} min, peak memory {results.get('peak_memory_mb', 0):.0f} MiB"
    )
    console.print(f"report: {out / 'report.md'}   results: {out / 'results.json'}")


def benchmark(
    corpora: Annotated[list[str], typer.Argument(help="Corpora to run (casia emovo urdu ...).")],
    data_root: Annotated[
        Path | None,
        typer.Option("--data-root", help="Folder holding <corpus>/ folders (default "
                     "$PTSSNN_DATA)."),
    ] = None,
    backbone: Annotated[str, typer.Option("--backbone", "-b", help="Backbone name.")] = (
        "whisper-base"
    ),
    models: Annotated[
        str,
        typer.Option(help="Comma-separated heads: pts-snn, +ssla, +shift, +saturation, "
                     "+standardise, vanilla-snn, ann, probe."),
    ] = "pts-snn,vanilla-snn,ann,probe",
    protocol: Annotated[
        str | None, typer.Option(help="Fold protocol (default: each corpus's honest "
                                 "speaker-independent one).")
    ] = None,
    seeds: Annotated[int, typer.Option(min=1, help="Seeds 0..N-1 per head and fold.")] = 1,
    epochs: Annotated[int | None, typer.Option(min=1, help="Max epochs per fold.")] = None,
    patience: Annotated[int | None, typer.Option(min=1, help="Early-stopping patience.")] = None,
    layers: Annotated[
        str | None, typer.Option(help="Hidden states the neural heads read: middle (the "
                                 "default), auto, all, mean, "
                                 "mean:a-b or one index.")
    ] = None,
    normalisation: Annotated[
        str | None, typer.Option(help="Feature standardisation: global (training-split "
                                 "moments; the default, deployable), speaker or auto (per "
                                 "speaker or global, chosen per fold on validation; per-speaker "
                                 "moments read the test speakers' unlabelled audio: "
                                 "transductive) or none.")
    ] = None,
    precision: Annotated[
        str | None, typer.Option(help="Training arithmetic: fp32 (the default) or bf16 "
                                 "(mixed-precision steps; evaluation stays float32).")
    ] = None,
    config: Annotated[
        Path | None, typer.Option(help="Training config JSON (TrainConfig fields; replaces "
                                  "the benchmark defaults).")
    ] = None,
    model_option: Annotated[
        list[str] | None,
        typer.Option("--model-option", help="KEY=VALUE override for every neural head "
                     "(repeatable)."),
    ] = None,
    cache: Annotated[
        Path | None, typer.Option(help="Feature cache (default $PTSSNN_CACHE or "
                                  "~/.cache/ptssnn/features).")
    ] = None,
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder.")] = Path(
        "benchmark-out"
    ),
    resume: Annotated[bool, typer.Option(help="Reuse finished folds, continue the "
                                         "interrupted one.")] = False,
    limit: Annotated[
        int | None, typer.Option(min=1, help="Keep N utterances per speaker × emotion "
                                 "(smoke tests).")
    ] = None,
    threads: Annotated[int | None, typer.Option(min=1, help="Torch threads per process "
                                                "(default 1).")] = None,
    jobs: Annotated[int | None, typer.Option(min=1, help="Processes training folds side by "
                                             "side (default: one per core).")] = None,
    cross_corpus: Annotated[
        bool, typer.Option("--cross-corpus", help="Also train on each corpus and test on each "
                           "other one, over their shared classes.")
    ] = False,
    multi_corpus: Annotated[
        bool, typer.Option("--multi-corpus", help="Add every utterance (all speakers) of the "
                           "run's other corpora to each corpus's training splits; heads learn "
                           "the union of their harmonised classes. Validation and test stay "
                           "the corpus's own speakers (the same folds); predictions and "
                           "metrics are over its own classes.")
    ] = False,
    speed_perturb: Annotated[
        str | None, typer.Option("--speed-perturb", help=SPEED_PERTURB_HELP)
    ] = None,
    plots: Annotated[bool, typer.Option(help="Write PNG plots.")] = True,
    progress: Annotated[bool, typer.Option(help="Show progress bars.")] = True,
    enrolment: Annotated[
        list[str] | None,
        typer.Option("--enrolment", help="Also score each head (the probe too) with speaker "
                     "profiles from K unlabelled clips per test speaker (not scored); "
                     "repeatable, e.g. "
                     "--enrolment 0 --enrolment 5 --enrolment all."),
    ] = None,
    enrolment_draws: Annotated[int, typer.Option(
        min=1, help="Random draws of the enrolment clips per K and fold.")] = 3,
) -> None:
    """Cross-validate every head on every fold of every corpus; write results.json + report.md."""
    from ptssnn.benchmark import BenchmarkError, BenchmarkSettings, prepare_corpus, run_benchmark
    from ptssnn.training.config import TrainConfig, benchmark_train_config

    console = Console()
    root = data_root or (Path(os.environ["PTSSNN_DATA"]) if os.environ.get("PTSSNN_DATA")
                         else None)
    if root is None:
        raise BenchmarkError("no data: pass --data-root DIR (the folder holding casia/, "
                             "emovo/, ...) or set PTSSNN_DATA")
    factors = speed_factors_option(speed_perturb)  # checked before any corpus is scanned
    train = TrainConfig.load(config) if config else benchmark_train_config()
    changes: dict[str, Any] = {}
    if epochs is not None:
        changes["max_epochs"] = epochs
    if patience is not None:
        changes["patience"] = patience
    if layers is not None:
        changes["layers"] = layers
    if normalisation is not None:
        changes["normalisation"] = normalisation
    if precision is not None:
        changes["precision"] = precision
    if changes:
        train = train.replace(**changes)
    model_names = tuple(m.strip() for m in models.split(",") if m.strip())
    tasks = [prepare_corpus(name, root, protocol=protocol, limit=limit) for name in corpora]
    protocol_k = None
    if enrolment:
        from ptssnn.training.enrolment import EnrolmentProtocol

        # "--enrolment 0,5,20" works as well as repeating the option.
        protocol_k = EnrolmentProtocol(
            tuple(k for value in enrolment for k in value.split(",") if k.strip()),
            draws=enrolment_draws)
    settings = BenchmarkSettings(
        backbone=backbone, models=model_names, seeds=seeds, train=train,
        model_overrides=parse_model_options(model_option), cache=cache, out=out, resume=resume,
        plots=plots, threads=threads, jobs=jobs, cross_corpus=cross_corpus,
        multi_corpus=multi_corpus, enrolment=protocol_k,
        speed_perturb=factors,
    )
    results = run_benchmark(tasks, settings, show_progress=progress,
                            command=["ptssnn", *sys.argv[1:]])
    _print_results(results, out, console)


def demo(
    data_root: Annotated[
        Path | None,
        typer.Option("--data-root", help="Real corpora here (or $PTSSNN_DATA): run the real "
                     "benchmark instead of the synthetic demo."),
    ] = None,
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder.")] = Path("demo-out"),
    clips: Annotated[int, typer.Option(min=2, help="Synthetic clips per speaker × "
                                       "emotion.")] = 16,
    epochs: Annotated[int | None, typer.Option(min=1, help="Max epochs per fold.")] = None,
    progress: Annotated[bool, typer.Option(help="Show progress bars.")] = True,
) -> None:
    """The whole pipeline in a couple of minutes: SYNTHETIC corpus, fbank features, pts-snn +
    ANN + probe on speaker-independent folds; with real corpora, the real benchmark."""
    from ptssnn.demo import run_demo

    console = Console()
    real = data_root is not None or bool(os.environ.get("PTSSNN_DATA"))
    if not real:
        console.print("[bold yellow]SYNTHETIC demo[/]: generating a small emotional-prosody "
                      "corpus (4 classes × 4 speakers); no real speech is involved.")
    results = run_demo(out, data_root, clips_per_class=clips, epochs=epochs,
                       show_progress=progress)
    _print_results(results, out, console)


def fold_job(
    job_dir: Annotated[Path, typer.Argument(help="A fold job folder "
                                            "(ptssnn.training.distributed.write_fold_job).")],
    resume: Annotated[bool, typer.Option(help="Continue from the job's checkpoints.")] = False,
    threads: Annotated[int | None, typer.Option(min=1, help="Torch threads per process "
                                                "(default: cores / processes).")] = None,
) -> None:
    """Train one fold job, alone or as one of several DDP processes under torchrun:
    torchrun --standalone --nproc_per_node 2 -m ptssnn fold-job JOB_DIR"""
    from ptssnn.training.distributed import main

    raise typer.Exit(main(job_dir, resume=resume, threads=threads))


def register(app: typer.Typer) -> None:
    """Add ``benchmark``, ``demo`` and ``fold-job`` to the main app."""
    app.command("benchmark")(benchmark)
    app.command("demo")(demo)
    app.command("fold-job")(fold_job)
