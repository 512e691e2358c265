"""Pretrain on the other corpora, then adapt to the target corpus's training speakers.

Scratch harness (issue 11, eighth session):

    PYTHONPATH=<repo>/src python adapt.py TARGET SEED [PRE_EPOCHS] [LR_SCALE]

For TARGET (casia or emovo), a pts-snn head over the union of the harmonised classes is
trained on every utterance of the two other corpora (none of TARGET's speakers), PRE_EPOCHS
epochs, no validation. Every fold of TARGET then runs the benchmark's own routine
(validation run with early stopping on the fold's validation speakers, refit on training +
validation), its heads starting from the pretrained weights instead of a fresh
initialisation, trained on TARGET's training speakers only (LR_SCALE × the learning rate),
scored over TARGET's own classes. Appends one line per run to pretrain_adapt.jsonl beside this file.
"""
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
from ptssnn.benchmark.multicorpus import joint_views, partner_id  # noqa: E402
from ptssnn.features.pipeline import FeaturePipeline  # noqa: E402
from ptssnn.features.table import LabelledFeatures  # noqa: E402
from ptssnn.models import create_model  # noqa: E402
from ptssnn.processes import retain_freed_memory  # noqa: E402
from ptssnn.training import crossval  # noqa: E402
from ptssnn.training.config import benchmark_train_config  # noqa: E402
from ptssnn.training.trainer import fit  # noqa: E402

retain_freed_memory()
target, seed = sys.argv[1], int(sys.argv[2])
pre_epochs = int(sys.argv[3]) if len(sys.argv) > 3 else 8
lr_scale = float(sys.argv[4]) if len(sys.argv) > 4 else 1.0
root = os.environ.get("PTSSNN_DATA", "../shared/data")
backbone = load_backbone("whisper-base")


def load(name):
    task = prepare_corpus(name, root)
    task, feature_set, _ = extract_corpus_features(task, backbone, None, progress=False)
    return task, LabelledFeatures.from_feature_set(feature_set, task.utterances, task.label_names)


task, table = load(target)
partners = [load(name) for name in ("casia", "emovo", "urdu") if name != target]
views = joint_views(task, table, partners)  # union classes, scored over the target's own
config = benchmark_train_config(seed=seed)
config = config.replace(lr=config.lr * lr_scale)


def factory(dim, classes, layers):
    extra = {"seed": seed}
    if layers > 1:
        extra["input_layers"] = layers
    return create_model("pts-snn", dim, classes, **extra)


started = time.perf_counter()
pipeline = FeaturePipeline(layers="all", frame_pool=config.frame_pool, normalisation="global")
joined = views.view(pipeline)
partner_ids = [partner_id(p.name, u.id) for p, _ in partners for u in p.utterances]
pretrained = None
if pre_epochs > 0:
    torch.manual_seed(seed)
    model = factory(joined.feature_dim, len(joined.label_names), joined.num_layers)
    fit(model, joined.subset(partner_ids), None,
        benchmark_train_config(seed=seed).replace(max_epochs=pre_epochs, min_epochs=1))
    pretrained = {k: v.clone() for k, v in model.state_dict().items()}
    print(f"pretrained on {len(partner_ids)} clips of {[p.name for p, _ in partners]} "
          f"in {time.perf_counter() - started:.0f} s", flush=True)

real_build = crossval._build_head


def build(factory_, table_, seed_):
    model = real_build(factory_, table_, seed_)
    if pretrained is not None:
        model.load_state_dict(pretrained)
    return model


crossval._build_head = build
uas = {}
for fold in task.folds:  # the target's own folds: no partner clips in training
    result, _ = crossval.train_fold(views, fold, factory, config)
    uas[fold.name] = result.test.ua
    print(f"{target} pre{pre_epochs} lr×{lr_scale} fold {fold.name}: {100 * result.test.ua:.1f}",
          flush=True)
record = {"corpus": target, "seed": seed, "pre_epochs": pre_epochs, "lr_scale": lr_scale,
          "ua": float(np.mean(list(uas.values()))), "folds": uas,
          "seconds": time.perf_counter() - started}
print(json.dumps(record), flush=True)
with open(Path(__file__).with_name("pretrain_adapt.jsonl"), "a") as out:
    out.write(json.dumps(record) + "\n")
