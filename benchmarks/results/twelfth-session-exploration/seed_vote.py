"""Majority vote of the three seeds' test predictions of each head, per fold, from a benchmark
run folder (`<out>/runs/<corpus>/<head>/seed<k>/<fold>/result.json`); ties go to seed 0's
label when it is among the tied ones. UA as the benchmark computes it
(`ptssnn.evaluation.metrics.classification_metrics`: over the classes present in the fold).

python benchmarks/results/twelfth-session-exploration/seed_vote.py RUN_FOLDER [CORPUS ...]
"""
import collections
import json
import sys
from pathlib import Path

import numpy as np

from ptssnn.evaluation.metrics import classification_metrics

root = Path(sys.argv[1])
corpora = sys.argv[2:] or sorted(p.name for p in (root / "runs").iterdir())
for corpus in corpora:
    for head_dir in sorted((root / "runs" / corpus).iterdir()):
        single, voted = [], []
        folds = sorted({p.parent.name for p in head_dir.glob("seed*/*/result.json")})
        for fold in folds:
            runs = [json.loads(p.read_text()) for p in sorted(head_dir.glob(f"seed*/{fold}/result.json"))]
            refs = np.array(runs[0]["predictions"]["references"])
            preds = np.stack([np.array(r["predictions"]["predictions"]) for r in runs])
            classes = int(max(refs.max(), preds.max())) + 1
            single += [classification_metrics(refs, p, classes).ua for p in preds]
            vote = []
            for column in preds.T:
                counts = collections.Counter(column.tolist()).most_common()
                tied = [label for label, n in counts if n == counts[0][1]]
                vote.append(column[0] if column[0] in tied else tied[0])
            voted.append(classification_metrics(refs, np.array(vote), classes).ua)
        print(f"{corpus} {head_dir.name}: mean of single runs {100 * np.mean(single):.1f}, "
              f"vote of {len(runs)} seeds {100 * np.mean(voted):.1f} ({len(folds)} folds)")
