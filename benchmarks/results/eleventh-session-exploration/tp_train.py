"""Scratch: tempo perturbation (WSOLA, pitch kept; 0.9, 1.1) of the training speakers' clips as extra training
data, then the benchmark's per-fold routine (validation and test: original clips only).

python runs/s11/tp_train.py CORPUS SEEDS VARIANT [PRESET]   (VARIANT: none | tp | sps: speed copies, each epoch a random third of the batches |
dup: the original clips twice more, the same number of
training steps as the copies without any new audio)
"""
import dataclasses, json, sys, time
from pathlib import Path
import numpy as np, torch
from ptssnn.backbones import load_backbone
from ptssnn.benchmark.corpus import extract_corpus_features, prepare_corpus
from ptssnn.features.table import LabelledFeatures
from ptssnn.models.factory import HeadSpec
from ptssnn.training.config import benchmark_train_config
from ptssnn.training.crossval import train_fold
from ptssnn.training.views import LayerViews

corpus, seeds, variant = sys.argv[1], [int(s) for s in sys.argv[2].split(',')], sys.argv[3]
preset = sys.argv[4] if len(sys.argv) > 4 else 'pts-snn'
FACTORS = (0.9, 1.1)
torch.set_num_threads(1)
backbone = load_backbone('whisper-base')
task = prepare_corpus(corpus, '../shared/data')
task, fs, _ = extract_corpus_features(task, backbone, None, progress=False)
table = LabelledFeatures.from_feature_set(fs, task.utterances, task.label_names)
speakers = {u.id: u.speaker for u in task.utterances}
ids, feats, labels = list(table.ids), list(table.features), [table.labels]
copies = {}
if variant == 'dup':
    for f in FACTORS:
        new = [f'tp{f}|{i}' for i in table.ids]
        copies[f] = set(table.ids)
        ids += new; feats += list(table.features); labels.append(table.labels)
        speakers.update({n: speakers[i] for n, i in zip(new, table.ids)})
if variant == 'sps':  # speed copies (runs/s10/sp), sampled: the steps of a run without them
    import sys as _sys
    _sys.path.insert(0, 'runs/s11')
    from sample_patch import install
    install(len(FACTORS) + 1)
if variant in ('tp', 'sps'):
    for f in FACTORS:
        root = f'runs/s11/tp/f{f}' if variant == 'tp' else f'runs/s10/sp/f{f}'
        t2 = prepare_corpus(corpus, root)
        t2, fs2, _ = extract_corpus_features(t2, backbone, None, progress=False)
        tab2 = LabelledFeatures.from_feature_set(fs2, t2.utterances, task.label_names)
        new = [f'tp{f}|{i}' for i in tab2.ids]
        copies[f] = set(tab2.ids)
        ids += new; feats += list(tab2.features); labels.append(tab2.labels)
        speakers.update({n: speakers[i] for n, i in zip(new, tab2.ids)})
table = LabelledFeatures(tuple(ids), tuple(feats), torch.cat(labels), task.label_names)
views = LayerViews(table, speakers=speakers)
for seed in seeds:
    config = benchmark_train_config(seed=seed)
    uas, t0 = [], time.time()
    for fold in task.folds:
        extra = [f'tp{f}|{i}' for f in copies for i in fold.train if i in copies[f]]
        fold2 = dataclasses.replace(fold, train=tuple(fold.train) + tuple(extra))
        r, _ = train_fold(views, fold2, HeadSpec(preset, {'seed': seed}), config)
        uas.append(r.test.ua)
    rec = {'corpus': corpus, 'variant': variant, 'preset': preset, 'seed': seed,
           'ua': float(np.mean(uas)), 'folds': uas, 'seconds': time.time() - t0}
    print(json.dumps(rec), flush=True)
    with open('runs/s11/tp_train.jsonl', 'a') as fh:
        fh.write(json.dumps(rec) + '\n')
