"""Mean validation UA per epoch of the pts-snn validation runs of two committed enrolment
runs (CASIA, 3 seeds x 4 folds), and how many runs reached each epoch (early stopping ends
the others). Run from the repository root:

    python benchmarks/results/thirteenth-session-exploration/validation_curves.py
"""

import json
from pathlib import Path

import numpy as np

RUNS = ("enrolment-whisper-base-enrolled-s13-casia-3seeds",
        "enrolment-whisper-base-global-s13-3seeds")

for name in RUNS:
    results = json.loads((Path("benchmarks/results") / name / "results.json").read_text())
    runs = results["corpora"]["casia"]["models"]["pts-snn"]["runs"]
    folds = [fold for run in runs.values() for fold in run["folds"]]
    curves = [[epoch["val_ua"] for epoch in fold["fit"]["history"]] for fold in folds]
    longest = max(map(len, curves))
    table = np.array([c + [np.nan] * (longest - len(c)) for c in curves]) * 100
    print(name)
    print("  mean validation UA by epoch:", np.round(np.nanmean(table, 0), 1).tolist())
    print("  runs reaching each epoch:   ", (~np.isnan(table)).sum(0).tolist())
    print("  chosen epochs:", [fold["fit"]["best_epoch"] for fold in folds])
