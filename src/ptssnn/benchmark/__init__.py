"""``ptssnn benchmark``: every fold × corpus × head × seed on cached features, with a report.

Modules: :mod:`.settings` (what a run is), :mod:`.corpus` (corpus tasks and their features),
:mod:`.manifest` (the settings ``--resume`` checks), :mod:`.scheduling` (units over worker
processes), :mod:`.runner` (the run), :mod:`.summaries` and :mod:`.report` (outputs).

Public API::

    from ptssnn.benchmark import BenchmarkSettings, prepare_corpus, run_benchmark
"""

from __future__ import annotations

from ptssnn.benchmark.corpus import CorpusTask, limit_utterances, prepare_corpus
from ptssnn.benchmark.report import render_report, results_table, write_outputs
from ptssnn.benchmark.runner import run_benchmark
from ptssnn.benchmark.settings import (
    DEFAULT_MODELS,
    MODEL_ORDER,
    PROBE,
    BenchmarkError,
    BenchmarkSettings,
)

__all__ = [
    "DEFAULT_MODELS",
    "MODEL_ORDER",
    "PROBE",
    "BenchmarkError",
    "BenchmarkSettings",
    "CorpusTask",
    "limit_utterances",
    "prepare_corpus",
    "render_report",
    "results_table",
    "run_benchmark",
    "write_outputs",
]
