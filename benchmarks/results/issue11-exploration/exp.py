"""python exp.py TAG CORPORA [--pool 8] [--preset pts-snn] [--model JSON] [--train JSON] [--seed 0]"""
import argparse
import json
import time

import numpy as np
import torch
from common import load, log

from ptssnn.models import create_model
from ptssnn.training.config import TrainConfig
from ptssnn.training.crossval import LayerViews, train_fold

ap = argparse.ArgumentParser()
ap.add_argument("tag"); ap.add_argument("corpora")
ap.add_argument("--pool", type=int, default=8)
ap.add_argument("--preset", default="pts-snn")
ap.add_argument("--model", default="{}")
ap.add_argument("--train", default="{}")
ap.add_argument("--seed", type=int, default=0)
ap.add_argument("--folds", default=None)
a = ap.parse_args()
torch.set_num_threads(1)
mo, tr = json.loads(a.model), json.loads(a.train)
for name in a.corpora.split(","):
    task, table, spk = load(name, a.pool)
    views = LayerViews(table, speakers=spk)
    cfg = TrainConfig(**{"refit": True, "normalisation": "global", "frame_pool": 1, "seed": a.seed, **tr})
    def factory(d, c, L):
        extra = dict(mo); extra["seed"] = a.seed
        if L > 1: extra["input_layers"] = L
        return create_model(a.preset, d, c, **extra)
    uas, eps, curves, t0 = [], [], [], time.time()
    folds = task.folds if a.folds is None else [task.folds[int(k)] for k in a.folds.split(",")]
    for fold in folds:
        r, model = train_fold(views, fold, factory, cfg)
        uas.append(r.test.ua); eps.append(r.fit["best_epoch"])
        curves.append([round(h.get("val_ua", 0), 3) for h in r.fit["history"]] + [round(h["train_loss"], 3) for h in r.fit["history"]])
        print(f"{a.tag} {name} {fold.name} UA {100*r.test.ua:.1f} ep {r.fit['best_epoch']} val {100*r.fit['best_validation']['ua']:.1f} layers {r.layers}", flush=True)
    dt = time.time() - t0
    print(f"== {a.tag} {name} UA {100*np.mean(uas):.1f} ({dt:.0f}s)", flush=True)
    log({"tag": a.tag, "corpus": name, "preset": a.preset, "pool": a.pool, "model": mo, "train": tr, "seed": a.seed, "ua": float(np.mean(uas)), "folds": uas, "epochs": eps, "curves": curves, "seconds": dt})
