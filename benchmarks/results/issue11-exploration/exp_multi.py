"""Multi-corpus: train on target fold's train speakers + every utterance of the other corpora (union of harmonised labels)."""
import argparse
import dataclasses
import json
import time

import numpy as np
import torch
from common import load, log

from ptssnn.corpora.labels import EMOTIONS
from ptssnn.models import create_model
from ptssnn.training.config import TrainConfig
from ptssnn.training.crossval import LayerViews, train_fold
from ptssnn.training.data import LabelledFeatures

ap = argparse.ArgumentParser()
ap.add_argument("tag"); ap.add_argument("corpora")
ap.add_argument("--pool", type=int, default=8)
ap.add_argument("--preset", default="pts-snn")
ap.add_argument("--model", default="{}")
ap.add_argument("--train", default="{}")
ap.add_argument("--seed", type=int, default=0)
ap.add_argument("--others", default="casia,emovo,urdu")
a = ap.parse_args()
torch.set_num_threads(1)
mo, tr = json.loads(a.model), json.loads(a.train)
allc = a.others.split(",")
tables, spk, tasks = [], {}, {}
for c in sorted(set(allc) | set(a.corpora.split(","))):
    task, table, s = load(c, a.pool)
    tasks[c] = task
    names = tuple(e for e in EMOTIONS if e in set(table.label_names) or True)
    tables.append((c, table)); spk.update({k: f"{c}/{v}" for k, v in s.items()})
union = tuple(e for e in EMOTIONS if any(e in t.label_names for _, t in tables))
big = LabelledFeatures.concatenate([t.relabel(union) for _, t in tables])
views = LayerViews(big, speakers=spk)
for name in a.corpora.split(","):
    task = tasks[name]
    others = tuple(i for c, t in tables if c != name and c in allc for i in t.ids)
    cfg = TrainConfig(**{"refit": True, "normalisation": "global", "frame_pool": 1, "seed": a.seed, **tr})
    def factory(d, c, L):
        extra = dict(mo); extra["seed"] = a.seed
        if L > 1: extra["input_layers"] = L
        return create_model(a.preset, d, c, **extra)
    uas, eps, curves, t0 = [], [], [], time.time()
    for fold in task.folds:
        f = dataclasses.replace(fold, train=tuple(fold.train) + others)
        r, model = train_fold(views, f, factory, cfg)
        uas.append(r.test.ua); eps.append(r.fit["best_epoch"])
        curves.append([round(h.get("val_ua", 0), 3) for h in r.fit["history"]])
        print(f"{a.tag} {name} {fold.name} UA {100*r.test.ua:.1f} ep {r.fit['best_epoch']} val {100*r.fit['best_validation']['ua']:.1f}", flush=True)
    dt = time.time() - t0
    print(f"== {a.tag} {name} UA {100*np.mean(uas):.1f} ({dt:.0f}s)", flush=True)
    log({"tag": a.tag, "multi": allc, "corpus": name, "preset": a.preset, "pool": a.pool, "model": mo, "train": tr, "seed": a.seed, "ua": float(np.mean(uas)), "folds": uas, "epochs": eps, "curves": curves, "seconds": dt})
