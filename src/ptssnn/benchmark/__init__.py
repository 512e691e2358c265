"""``ptssnn benchmark``: every fold × corpus × head × seed on cached features, with a report.

Public API::

    from ptssnn.benchmark import BenchmarkSettings, prepare_corpus, run_benchmark
"""

from __future__ import annotations

from ptssnn.benchmark.report import render_report, results_table, write_outputs
from ptssnn.benchmark.runner import (
    DEFAULT_MODELS,
    MODEL_ORDER,
    PROBE,
    BenchmarkError,
    BenchmarkSettings,
    CorpusTask,
    limit_utterances,
    prepare_corpus,
    run_benchmark,
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
