"""Speaker-shift augmentation: every training clip gets a random per-channel offset drawn from
the spread of the training speakers' means, as if another speaker had said it.

Scratch harness (issue 11, eighth session):

    PYTHONPATH=<repo>/src python speaker_shift.py CORPUS SEED SCALE [MODE]

Before the benchmark's own masks and mixup, each training clip's standardised features get
``SCALE · δ`` added on its real frames, ``δ ~ N(0, σ²_between)`` per hidden state and channel,
one draw per clip, constant over time; ``σ²_between`` is the variance over the fold's training
speakers of their mean (standardised) features. MODE ``shift`` (default) adds δ; ``scale``
also multiplies each channel by ``exp(SCALE · ε)``, ``ε ~ N(0, var over speakers of the log
std ratio)``. SCALE 0 is the benchmark's recipe. Everything else is the benchmark's per-fold
routine on cached whisper-base features. Appends one line per run to speaker_shift.jsonl.
"""
import dataclasses
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

torch.set_num_threads(1)
from ptssnn.backbones import load_backbone  # noqa: E402
from ptssnn.benchmark.corpus import extract_corpus_features, prepare_corpus  # noqa: E402
from ptssnn.features.table import LabelledFeatures  # noqa: E402
from ptssnn.models import create_model  # noqa: E402
from ptssnn.processes import retain_freed_memory  # noqa: E402
from ptssnn.training import crossval, trainer  # noqa: E402
from ptssnn.training.config import benchmark_train_config  # noqa: E402
from ptssnn.training.views import LayerViews  # noqa: E402

retain_freed_memory()
corpus, seed, scale = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
mode = sys.argv[4] if len(sys.argv) > 4 else "shift"
SPEAKERS: dict[str, str] = {}
SPREAD: dict[str, torch.Tensor] = {}


def speaker_spread(data: LabelledFeatures) -> tuple[torch.Tensor, torch.Tensor]:
    """Per [L, D]: std over speakers of their standardised mean, and of their log std ratio."""
    sums: dict[str, list] = {}
    for item_id, x in zip(data.ids, data.features, strict=True):
        x = x.float()
        if x.dim() == 2:
            x = x[None]
        s = sums.setdefault(SPEAKERS[item_id], [0, 0.0, 0.0])
        s[0] += x.shape[1]
        s[1] = s[1] + x.sum(1)
        s[2] = s[2] + (x * x).sum(1)
    n = sum(v[0] for v in sums.values())
    mean = sum(v[1] for v in sums.values()) / n
    var = sum(v[2] for v in sums.values()) / n - mean * mean
    std = var.clamp(min=1e-8).sqrt()
    means = torch.stack([(v[1] / v[0] - mean) / std for v in sums.values()])
    stds = torch.stack([((v[2] / v[0] - (v[1] / v[0]) ** 2).clamp(min=1e-8).sqrt() / std).log()
                        for v in sums.values()])
    return means.std(0), stds.std(0)


real_init = trainer._FitLoop.__init__


def init(self, model, train_data, *args, **kwargs):
    real_init(self, model, train_data, *args, **kwargs)
    SPREAD["shift"], SPREAD["scale"] = speaker_spread(train_data)


trainer._FitLoop.__init__ = init
real_augment = trainer.augment


def augment(batch, mean, std, augmentation, generator):
    if scale > 0:
        m, s = (mean[:, None, :], std[:, None, :]) if batch.features.dim() == 4 else (mean[0],
                                                                                    std[0])
        z = (batch.features - m) / s
        shape = (z.shape[0], *SPREAD["shift"].shape)  # [B, L, D]
        delta = scale * SPREAD["shift"] * torch.randn(shape, generator=generator)
        if z.dim() == 3:
            delta = delta[:, 0]
        frames = batch.mask[:, None, :, None] if z.dim() == 4 else batch.mask[:, :, None]
        delta = delta[..., None, :] * frames
        if mode == "scale":
            factor = (scale * SPREAD["scale"] * torch.randn(shape, generator=generator)).exp()
            if z.dim() == 3:
                factor = factor[:, 0]
            z = z * factor[..., None, :]
        z = z + delta
        batch = dataclasses.replace(batch, features=z * s + m)
    return real_augment(batch, mean, std, augmentation, generator)


trainer.augment = augment

backbone = load_backbone("whisper-base")
task = prepare_corpus(corpus, os.environ.get("PTSSNN_DATA", "../shared/data"))
task, feature_set, _ = extract_corpus_features(task, backbone, None, progress=False)
table = LabelledFeatures.from_feature_set(feature_set, task.utterances, task.label_names)
SPEAKERS.update({u.id: u.speaker for u in task.utterances})
views = LayerViews(table, speakers=dict(SPEAKERS))
config = benchmark_train_config(seed=seed)


def factory(dim, classes, layers):
    extra = {"seed": seed}
    if layers > 1:
        extra["input_layers"] = layers
    return create_model("pts-snn", dim, classes, **extra)


started = time.perf_counter()
uas = {}
for fold in task.folds:
    result, _ = crossval.train_fold(views, fold, factory, config)
    uas[fold.name] = result.test.ua
    print(f"{corpus} {mode} {scale} fold {fold.name}: {100 * result.test.ua:.1f}", flush=True)
record = {"corpus": corpus, "seed": seed, "scale": scale, "mode": mode,
          "ua": float(np.mean(list(uas.values()))), "folds": uas,
          "seconds": time.perf_counter() - started}
print(json.dumps(record), flush=True)
with open(Path(__file__).with_name("speaker_shift.jsonl"), "a") as out:
    out.write(json.dumps(record) + "\n")
