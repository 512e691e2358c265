"""Strict JSON everywhere: NaN/inf are written as null, never as bare NaN."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from ptssnn.jsonio import dumps, finite

SRC = Path(__file__).resolve().parents[1] / "src" / "ptssnn"


def strict_loads(text: str) -> object:
    def refuse(name: str) -> None:
        raise ValueError(f"bare {name} in JSON")

    return json.loads(text, parse_constant=refuse)


def test_non_finite_numbers_become_null() -> None:
    data = {"ua": float("nan"), "x": [1.0, float("inf"), np.float32("nan"), np.float64(0.5)],
            "t": (np.int64(3), -float("inf")), "s": "NaN", "ok": True}
    assert strict_loads(dumps(data)) == {"ua": None, "x": [1.0, None, None, 0.5],
                                         "t": [3, None], "s": "NaN", "ok": True}
    assert finite(np.array([1.0, np.nan]), default=lambda a: a.tolist()) == [1.0, None]
    with pytest.raises(TypeError):
        dumps({"x": object()})


def test_metrics_read_null_back_as_nan() -> None:
    from ptssnn.evaluation.metrics import ClassificationMetrics

    metrics = ClassificationMetrics.from_dict(
        {"wa": 0.5, "ua": None, "macro_f1": 0.1, "weighted_f1": 0.2, "confusion": [[1]],
         "num_samples": 1})
    assert math.isnan(metrics.ua)


def test_no_module_writes_json_with_plain_json_dumps() -> None:
    # Only cache keys and hashes (never written as results) may use json.dumps directly.
    allowed = {"features/store.py": 1, "features/pipeline.py": 1, "benchmark/corpus.py": 1,
               "features/profile.py": 1,  # the profile fingerprint
               "jsonio.py": 1}
    for path in SRC.rglob("*.py"):
        name = path.relative_to(SRC).as_posix()
        count = path.read_text().count("json.dumps(")
        assert count == allowed.get(name, 0), f"{name}: use ptssnn.jsonio.dumps"
