"""Scratch: does the head gain from the std of each 8-frame window beside its mean?

python runs/s10/winstd.py VARIANT CORPORA SEEDS   (VARIANT: mean | meanstd)
"""
import json, sys, time
from pathlib import Path
import numpy as np, torch
from ptssnn.backbones import load_backbone
from ptssnn.benchmark.corpus import extract_corpus_features, prepare_corpus
from ptssnn.models.factory import HeadSpec
from ptssnn.training.config import benchmark_train_config
from ptssnn.training.crossval import LayerViews, train_fold
from ptssnn.training.data import LabelledFeatures

variant, corpora, seeds = sys.argv[1], sys.argv[2].split(','), [int(s) for s in sys.argv[3].split(',')]
torch.set_num_threads(1)
backbone = load_backbone('whisper-base')

def window_stats(x: torch.Tensor, pool: int, with_std: bool) -> torch.Tensor:
    L, T, D = x.shape
    n = -(-T // pool)
    pad = n * pool - T
    xf = x.float()
    xp = torch.nn.functional.pad(xf, (0, 0, 0, pad))
    w = xp.reshape(L, n, pool, D)
    counts = torch.full((n,), float(pool)); counts[-1] = pool - pad
    mean = w.sum(2) / counts[None, :, None]
    if not with_std:
        return mean.half()
    valid = (torch.arange(n * pool).reshape(n, pool) < T).float()[None, :, :, None]
    var = (((w - mean[:, :, None]) ** 2) * valid).sum(2) / counts[None, :, None]
    return torch.cat([mean, var.sqrt()], -1).half()

for name in corpora:
    task = prepare_corpus(name, '../shared/data')
    task, fs, _ = extract_corpus_features(task, backbone, None, progress=False)
    table = LabelledFeatures.from_feature_set(fs, task.utterances, task.label_names)
    feats = tuple(window_stats(f, 8, variant == 'meanstd') for f in table.features)
    table = LabelledFeatures(table.ids, feats, table.labels, table.label_names)
    views = LayerViews(table, speakers={u.id: u.speaker for u in task.utterances})
    for seed in seeds:
        cfg = benchmark_train_config(frame_pool=1, seed=seed)
        def factory(d, c, L):
            extra = {'seed': seed}
            if L > 1:
                extra['input_layers'] = L
            return HeadSpec('pts-snn', {'seed': seed})(d, c, L)
        uas, t0 = [], time.time()
        for fold in task.folds:
            r, _ = train_fold(views, fold, factory, cfg)
            uas.append(r.test.ua)
        rec = {'variant': variant, 'corpus': name, 'seed': seed, 'ua': float(np.mean(uas)),
               'folds': uas, 'seconds': time.time() - t0}
        print(json.dumps(rec), flush=True)
        with open('runs/s10/winstd.jsonl', 'a') as f:
            f.write(json.dumps(rec) + '\n')
