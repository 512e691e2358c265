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
def stats(fn):
    out = []
    for f in table.features:
        x = fn(f[3].float())
        out.append(np.concatenate([x.mean(0).numpy(), x.std(0).numpy()]))
    return np.stack(out)
allx = torch.cat([f[3].float() for f in table.features])
mu, sd = allx.mean(0), allx.std(0)   # (transductive moments; only for this diagnostic)
variants = {
  "z": lambda x: (x - mu) / sd,
  "z-LN": lambda x: torch.nn.functional.layer_norm((x - mu) / sd, (512,)),
  "tanh-z-LN": lambda x: torch.tanh(torch.nn.functional.layer_norm((x - mu) / sd, (512,))),
  "tanh-z": lambda x: torch.tanh((x - mu) / sd),
  "z>0.5(spike-ish)": lambda x: (((x - mu) / sd) > 0.5).float(),
}
for v, fn in variants.items():
    S = stats(fn); uas = []
    for fold in task.folds:
        tr, va, te = R(fold.train), R(fold.validation), R(fold.test)
        fr = np.concatenate([tr, va])
        uas.append(classification_metrics(y[te], fitpred(S[fr], y[fr], S[te], 0.1, True), C).ua)
    print(name, v, round(100*np.mean(uas), 1), flush=True)
