import sys

import numpy as np
from probe_exp_lib import fitpred

from ptssnn.backbones import load_backbone
from ptssnn.benchmark.runner import extract_corpus_features, prepare_corpus
from ptssnn.evaluation.metrics import classification_metrics
from ptssnn.evaluation.probe import pooled_statistics
from ptssnn.training.data import LabelledFeatures

name = sys.argv[1]
task = prepare_corpus(name, "/work/shared/data")
task, fs, _ = extract_corpus_features(task, load_backbone("whisper-base"), None, progress=False)
table = LabelledFeatures.from_feature_set(fs, task.utterances, task.label_names)
for pool in (1, 2):
    stats, cands = pooled_statistics(table.pool_frames(pool))
    np.save(f"/work/scratch/acc/{name}_stats_p{pool}.npy", stats)
    y = table.labels.numpy(); C = len(table.label_names)
    rows = {i: k for k, i in enumerate(table.ids)}
    R = lambda ids: np.array([rows[i] for i in ids])
    for variant, grid, refit in [("paper-old", [(k, 1.0, False) for k in range(len(cands))], False),
                                 ("fair", [(k, c, True) for k in range(len(cands)) for c in (0.01, 0.1, 1.0)], True)]:
        uas = []
        for fold in task.folds:
            tr, va, te = R(fold.train), R(fold.validation), R(fold.test)
            best, bs = None, -1
            for k, c, b in grid:
                s = classification_metrics(y[va], fitpred(stats[tr, k], y[tr], stats[va, k], c, b), C).ua
                if s > bs: bs, best = s, (k, c, b)
            k, c, b = best
            fr = np.concatenate([tr, va]) if refit else tr
            uas.append(classification_metrics(y[te], fitpred(stats[fr, k], y[fr], stats[te, k], c, b), C).ua)
        print(name, "pool", pool, variant, round(100*np.mean(uas), 1), [round(100*u) for u in uas], flush=True)
