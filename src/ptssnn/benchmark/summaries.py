"""Summaries of finished runs: mean ± std over folds and seeds, efficiency averages."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ptssnn.evaluation.metrics import mean_std, pooled_confusion, summarise_folds
from ptssnn.training.crossval import CrossValResult, FoldResult


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
    if folds and all(f.enrolment for f in folds):
        out["enrolment"] = summarise_enrolment(folds)
    return out


def summarise_enrolment(folds: Sequence[FoldResult]) -> dict[str, Any]:
    """Per enrolment K: UA and WA mean ± std over every (seed, fold) run."""
    ks = [k for k in folds[0].enrolment if all(k in f.enrolment for f in folds)]
    return {k: {"ua": mean_std(f.enrolment[k]["ua"] for f in folds).to_dict(),
                "wa": mean_std(f.enrolment[k]["wa"] for f in folds).to_dict(),
                "scored": int(sum(f.enrolment[k]["scored"] for f in folds))}
            for k in ks}


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
