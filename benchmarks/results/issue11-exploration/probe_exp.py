import sys

import numpy as np
from common import load, log
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

from ptssnn.evaluation.metrics import classification_metrics
from ptssnn.evaluation.probe import pooled_statistics


def fitpred(xtr, ytr, xte, c, balanced):
    sc = StandardScaler().fit(xtr)
    m = LogisticRegression(C=c, max_iter=2000, class_weight="balanced" if balanced else None)
    m.fit(sc.transform(xtr), ytr)
    return m.predict(sc.transform(xte))

for name in sys.argv[1].split(","):
    task, table, spk = load(name, 8)   # pooling frames by 8 changes std stats slightly; use pool 4? see below
    pool = int(sys.argv[2]) if len(sys.argv) > 2 else 8
    task, table, spk = load(name, pool)
    stats, cands = pooled_statistics(table)
    y = table.labels.numpy(); C = len(table.label_names)
    rows = {i: k for k, i in enumerate(table.ids)}
    R = lambda ids: np.array([rows[i] for i in ids])
    res = {}
    for variant in ["paper-old", "fair", "fair-fixed3", "fair-C"]:
        uas = []
        for fold in task.folds:
            tr, va, te = R(fold.train), R(fold.validation), R(fold.test)
            if variant == "paper-old":
                grid = [(k, 1.0, False) for k in range(len(cands))]
                refit = False
            elif variant == "fair":
                grid = [(k, c, True) for k in range(len(cands)) for c in (0.01, 0.1, 1.0)]
                refit = True
            elif variant == "fair-fixed3":
                grid = [(3, 0.5, True)]; refit = True
            else:
                grid = [(k, 1.0, True) for k in range(len(cands))]; refit = True
            best, bs = None, -1
            for k, c, b in grid:
                p = fitpred(stats[tr, k], y[tr], stats[va, k], c, b)
                s = classification_metrics(y[va], p, C).ua
                if s > bs: bs, best = s, (k, c, b)
            k, c, b = best
            fit_rows = np.concatenate([tr, va]) if refit else tr
            p = fitpred(stats[fit_rows, k], y[fit_rows], stats[te, k], c, b)
            uas.append(classification_metrics(y[te], p, C).ua)
            print(name, variant, fold.name, cands[k], c, round(bs, 3), round(uas[-1], 3), flush=True)
        print(name, variant, "UA", round(100*np.mean(uas), 1), flush=True)
        log({"corpus": name, "head": "probe-" + variant, "pool": pool, "ua": float(np.mean(uas)), "folds": uas})
