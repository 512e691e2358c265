"""Scratch: choose the refit's epoch count by leave-one-speaker-out over the training side
(every training + validation speaker validates once, curves averaged) instead of on the one
validation speaker. For corpora whose refit uses the validation-chosen count (< 5 speakers).

python runs/s10/innercv.py CORPUS SEEDS [PRESET]
"""
import json, sys, time
import numpy as np, torch
from ptssnn.backbones import load_backbone
from ptssnn.benchmark.corpus import extract_corpus_features, prepare_corpus
from ptssnn.features.pipeline import FeaturePipeline
from ptssnn.features.table import LabelledFeatures
from ptssnn.models.factory import HeadSpec
from ptssnn.training.config import benchmark_train_config
from ptssnn.training.trainer import evaluate, fit
from ptssnn.training.views import LayerViews

corpus, seeds = sys.argv[1], [int(s) for s in sys.argv[2].split(',')]
preset = sys.argv[3] if len(sys.argv) > 3 else 'pts-snn'
torch.set_num_threads(1)
task = prepare_corpus(corpus, '../shared/data')
task, fs, _ = extract_corpus_features(task, load_backbone('whisper-base'), None, progress=False)
table = LabelledFeatures.from_feature_set(fs, task.utterances, task.label_names)
spk = {u.id: u.speaker for u in task.utterances}
views = LayerViews(table, speakers=spk)

def best_with_patience(curve, patience):
    best, bad, arg = -1.0, 0, 0
    for e, v in enumerate(curve, 1):
        if v > best:
            best, arg, bad = v, e, 0
        else:
            bad += 1
            if bad >= patience:
                break
    return arg

for seed in seeds:
    config = benchmark_train_config(seed=seed)
    pipeline = FeaturePipeline(layers='all', frame_pool=config.frame_pool, normalisation='global')
    view = views.view(pipeline)
    L = view.features[0].shape[0]
    head = HeadSpec(preset, {'seed': seed})
    full = config.replace(patience=config.max_epochs)
    for fold in task.folds:
        t0 = time.time()
        side = [*fold.train, *fold.validation]
        speakers = sorted({spk[u] for u in side})
        curves = {}
        for s in speakers:
            tr = [u for u in side if spk[u] != s]; va = [u for u in side if spk[u] == s]
            model = head(view.feature_dim, len(view.label_names), L)
            r = fit(model, view.subset(tr), view.subset(va), full)
            curves[s] = [h['val_ua'] for h in r.history]
        own = spk[fold.validation[0]]
        e_control = best_with_patience(curves[own], config.patience)
        mean_curve = np.mean([curves[s] for s in speakers], 0)
        e_inner = int(np.argmax(mean_curve)) + 1
        test = view.subset(fold.test)
        scores = {}
        for tag, e in (('control', e_control), ('innercv', e_inner)):
            if tag == 'innercv' and e == e_control:
                scores[tag] = scores['control']; continue
            model = head(view.feature_dim, len(view.label_names), L)
            fit(model, view.subset(side), None, config.replace(max_epochs=e, min_epochs=1))
            scores[tag] = evaluate(model, test, config.eval_batch_size)[0].ua
        rec = {'corpus': corpus, 'preset': preset, 'seed': seed, 'fold': fold.name,
               'e_control': e_control, 'e_inner': e_inner,
               'curves': {s: [round(v, 3) for v in c] for s, c in curves.items()},
               **scores, 'seconds': time.time() - t0}
        print(json.dumps(rec), flush=True)
        with open('runs/s10/innercv.jsonl', 'a') as f:
            f.write(json.dumps(rec) + '\n')
