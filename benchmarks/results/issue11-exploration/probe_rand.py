import sys

import numpy as np
import torch
from common import load
from probe_exp_lib import fitpred

from ptssnn.evaluation.metrics import classification_metrics

name = sys.argv[1]
task, table, spk = load(name, 8)
y = table.labels.numpy(); C = len(table.label_names)
rows = {i: k for k, i in enumerate(table.ids)}
R = lambda ids: np.array([rows[i] for i in ids])
allx = torch.cat([f[3].float() for f in table.features])
mu, sd = allx.mean(0), allx.std(0)
g = torch.Generator().manual_seed(0)
for width in (256, 1024):
    W = torch.randn(512, width, generator=g) / 512 ** 0.5
    for thr in (0.5, 1.0):
        for readout in ("mean", "mean+memstd"):
            out = []
            for f in table.features:
                z = (f[3].float() - mu) / sd
                u = torch.nn.functional.layer_norm(torch.tanh(z) @ W, (width,))
                s = (u > thr).float()
                feats = [s.mean(0)]
                if readout != "mean": feats += [u.mean(0), u.std(0)]
                out.append(torch.cat(feats).numpy())
            S = np.stack(out); uas = []
            for fold in task.folds:
                tr, va, te = R(fold.train), R(fold.validation), R(fold.test)
                fr = np.concatenate([tr, va])
                uas.append(classification_metrics(y[te], fitpred(S[fr], y[fr], S[te], 0.1, True), C).ua)
            print(name, width, thr, readout, round(100*np.mean(uas), 1), flush=True)
