import numpy as np
from common import load
from probe_exp_lib import fitpred

from ptssnn.corpora.labels import EMOTIONS
from ptssnn.evaluation.metrics import classification_metrics
from ptssnn.evaluation.probe import pooled_statistics

data = {}
for c in ("casia", "emovo", "urdu"):
    task, table, spk = load(c, 8)
    st, cands = pooled_statistics(table)
    y = np.array([EMOTIONS.index(table.label_names[i]) for i in table.labels.tolist()])
    data[c] = (task, table, st, y)
for c in ("casia", "emovo", "urdu"):
    task, table, st, y = data[c]
    rows = {i: k for k, i in enumerate(table.ids)}
    R = lambda ids: np.array([rows[i] for i in ids])
    ox = np.concatenate([data[o][2] for o in data if o != c]); oy = np.concatenate([data[o][3] for o in data if o != c])
    classes = sorted(set(y))
    for variant in ("single", "multi"):
        uas = []
        for fold in task.folds:
            tr, va, te = R(fold.train), R(fold.validation), R(fold.test)
            best, bs = None, -1
            for k in range(st.shape[1]):
                for C in (0.01, 0.1, 1.0):
                    xtr, ytr = st[tr, k], y[tr]
                    if variant == "multi":
                        xtr, ytr = np.concatenate([xtr, ox[:, k]]), np.concatenate([ytr, oy])
                    p = fitpred(xtr, ytr, st[va, k], C, True)
                    s = classification_metrics(y[va], p, 7).ua
                    if s > bs: bs, best = s, (k, C)
            k, C = best
            fr = np.concatenate([tr, va]); xtr, ytr = st[fr, k], y[fr]
            if variant == "multi":
                xtr, ytr = np.concatenate([xtr, ox[:, k]]), np.concatenate([ytr, oy])
            uas.append(classification_metrics(y[te], fitpred(xtr, ytr, st[te, k], C, True), 7).ua)
        print(c, variant, round(100*np.mean(uas), 1), [round(100*u) for u in uas], flush=True)
