"""Distil the ANN twin (same recipe, same split) into the pts-snn head (tenth session).

Scratch harness (issue 11, seventh session), kept verbatim:

    PYTHONPATH=<repo>/src python distill_probe.py CORPUS VARIANT SEED [ALPHA] [TAU]

VARIANT: ``none`` (today's recipe, the reference), ``crossfit`` (teacher probabilities of
each training clip from a probe fitted on the other training speakers: the teacher's
cross-speaker view of the clip), ``insample`` (one probe on every training clip). The
teacher is a class-balanced logistic regression (C = 0.1) on the mean + std over time of the
average hidden state, refitted on every split the head trains on (training for the
validation run, training + validation for the refit). Loss: ``(1 - ALPHA)·CE + ALPHA·τ²·
KL(teacher_τ || student_τ)``, mixup applied to the teacher's targets as to the labels.
Everything else is the benchmark's own per-fold routine on cached whisper-base features.
Appends one line per run to ``distill_ann.jsonl`` beside this file.
"""
import json, sys, time
import numpy as np, torch
from torch.nn import functional as F
torch.set_num_threads(1)
from ptssnn.backbones import load_backbone
from ptssnn.benchmark.corpus import extract_corpus_features, prepare_corpus
from ptssnn.features.table import LabelledFeatures
from ptssnn.models import create_model
from ptssnn.training.config import benchmark_train_config
from ptssnn.training import crossval, trainer
from ptssnn.evaluation.probe import pooled_statistics, LinearProbe

corpus, variant, seed = sys.argv[1], sys.argv[2], int(sys.argv[3])
ALPHA = float(sys.argv[4]) if len(sys.argv) > 4 else 0.5
TAU = float(sys.argv[5]) if len(sys.argv) > 5 else 2.0
SPEAKERS = {}
SOFT = {}
IDX = {}

real_fit = crossval.fit

def teacher_probs(data, val_data, config):
    # The ANN twin of the head, trained on the same split with the same recipe; its
    # in-sample probabilities on the training clips (full clips, no augmentation).
    teacher = create_model("ann", data.features[0].shape[-1], len(data.label_names),
                           **({"input_layers": data.features[0].shape[0]}
                              if data.features[0].dim() == 3 else {}), seed=config.seed)
    real_fit(teacher, data, val_data, config)
    logits = trainer.predict_logits(teacher, data, config.eval_batch_size)
    return torch.softmax(torch.from_numpy(logits), 1).numpy()

def fit(model, train_data, val_data, config, **kw):
    if variant != "none":
        SOFT.clear()
        SOFT[id(train_data)] = torch.from_numpy(teacher_probs(train_data, val_data, config))
        acc = (SOFT[id(train_data)].argmax(1) == train_data.labels).float().mean()
        print(f"  teacher on {len(train_data)} training clips: agreement with labels {acc:.3f}", flush=True)
    return real_fit(model, train_data, val_data, config, **kw)
crossval.fit = fit

real_batch = LabelledFeatures.batch
def batch(self, indices, *a, **k):
    IDX[id(self)] = torch.as_tensor(list(indices))
    return real_batch(self, indices, *a, **k)
LabelledFeatures.batch = batch
real_randperm = torch.randperm
LAST = {}
def randperm(*a, **k):
    out = real_randperm(*a, **k); LAST["perm"] = out; return out
torch.randperm = randperm

real_obj = trainer._FitLoop.compute_objectives
def compute_objectives(self, batch):
    if id(self.train_data) not in SOFT:
        return real_obj(self, batch)
    with trainer.training_autocast(self.device, self.config.precision):
        logits = self.network(batch.features, batch.mask)
    logits = logits.float()
    loss = self.loss_fn(logits, batch.labels)
    soft = SOFT[id(self.train_data)][IDX[id(self.train_data)]]
    if batch.lam < 1.0:
        loss = batch.lam * loss + (1.0 - batch.lam) * self.loss_fn(logits, batch.partner_labels)
        soft = batch.lam * soft + (1 - batch.lam) * soft[LAST["perm"]]
    t = soft.clamp(min=1e-8) ** (1 / TAU)
    t = t / t.sum(1, keepdim=True)
    kd = F.kl_div(F.log_softmax(logits / TAU, 1), t, reduction="batchmean") * TAU * TAU
    return (1 - ALPHA) * loss + ALPHA * kd
trainer._FitLoop.compute_objectives = compute_objectives

backbone = load_backbone("whisper-base")
task = prepare_corpus(corpus, __import__("os").environ.get("PTSSNN_DATA", "../shared/data"))
task, feature_set, _ = extract_corpus_features(task, backbone, None, progress=False)
table = LabelledFeatures.from_feature_set(feature_set, task.utterances, task.label_names)
SPEAKERS.update({u.id: u.speaker for u in task.utterances})
from ptssnn.training.views import LayerViews
views = LayerViews(table, speakers=dict(SPEAKERS))
config = benchmark_train_config(seed=seed)
def factory(dim, classes, layers):
    extra = {"seed": seed}
    if layers > 1: extra["input_layers"] = layers
    return create_model("pts-snn", dim, classes, **extra)
started = time.perf_counter()
uas = {}
for fold in task.folds:
    result, _ = crossval.train_fold(views, fold, factory, config)
    uas[fold.name] = result.test.ua
    print(f"{corpus} {variant} fold {fold.name}: {100*result.test.ua:.1f}", flush=True)
rec = {"corpus": corpus, "variant": variant, "seed": seed, "alpha": ALPHA, "tau": TAU,
       "ua": float(np.mean(list(uas.values()))), "folds": uas, "seconds": time.perf_counter() - started}
print(json.dumps(rec), flush=True)
with open(__import__("pathlib").Path(__file__).with_name("distill_ann.jsonl"), "a") as f: f.write(json.dumps(rec) + "\n")
