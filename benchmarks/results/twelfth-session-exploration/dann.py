"""Scratch: speaker-adversarial training (gradient reversal, Ganin & Lempitsky 2015) of the pts-snn
head on the pooled read-out; the benchmark's per-fold routine otherwise.

python benchmarks/results/twelfth-session-exploration/dann.py CORPUS SEEDS LAMBDA [PRESET]   (LAMBDA 0: the benchmark exactly)
"""
import json, sys, time
import numpy as np, torch
from torch import nn
from ptssnn.backbones import load_backbone
from ptssnn.benchmark.corpus import extract_corpus_features, prepare_corpus
from ptssnn.features.table import LabelledFeatures
from ptssnn.models.factory import HeadSpec
from ptssnn.training import trainer as T
from ptssnn.training.config import benchmark_train_config
from ptssnn.training.crossval import train_fold
from ptssnn.training.views import LayerViews

corpus, seeds, LAM = sys.argv[1], [int(s) for s in sys.argv[2].split(',')], float(sys.argv[3])
preset = sys.argv[4] if len(sys.argv) > 4 else 'pts-snn'
torch.set_num_threads(1)
backbone = load_backbone('whisper-base')
task = prepare_corpus(corpus, '../shared/data')
task, fs, _ = extract_corpus_features(task, backbone, None, progress=False)
table = LabelledFeatures.from_feature_set(fs, task.utterances, task.label_names)
SPEAKER = {u.id: u.speaker for u in task.utterances}


class _Reverse(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, scale):
        ctx.scale = scale
        return x.view_as(x)

    @staticmethod
    def backward(ctx, g):
        return -ctx.scale * g, None


orig_init, orig_obj, orig_epoch = T._FitLoop.__init__, T._FitLoop.compute_objectives, T._FitLoop.train_epoch


def init(self, model, train_data, config, checkpoint, columns=None):
    orig_init(self, model, train_data, config, checkpoint, columns)
    if LAM <= 0:
        return
    names = sorted({SPEAKER[i] for i in train_data.ids})
    self.spk_of = torch.tensor([names.index(SPEAKER[i]) for i in train_data.ids])
    dim = model.classifier.in_features
    self.spk_head = nn.Sequential(nn.Linear(dim, 128), nn.GELU(), nn.Linear(128, len(names)))
    self.optimizer.add_param_group({'params': list(self.spk_head.parameters()),
                                    'weight_decay': config.weight_decay, 'lr_scale': 1.0,
                                    'lr': config.lr})
    self.pooled = None
    model.dropout.register_forward_pre_hook(lambda mod, inp: setattr(self, 'pooled', inp[0]))
    self.spk_loss = nn.CrossEntropyLoss()


def objectives(self, batch):
    loss = orig_obj(self, batch)
    if LAM <= 0:
        return loss
    z = _Reverse.apply(self.pooled.float(), LAM)
    spk = self.spk_of[torch.as_tensor(self._indices)]
    return loss + batch.lam * self.spk_loss(self.spk_head(z), spk)


orig_batch = LabelledFeatures.batch


def train_epoch(self):
    loop = self

    def batch(tab, indices, **kw):
        loop._indices = list(indices)
        return orig_batch(tab, indices, **kw)
    LabelledFeatures.batch = batch
    try:
        return orig_epoch(self)
    finally:
        LabelledFeatures.batch = orig_batch


T._FitLoop.__init__, T._FitLoop.compute_objectives, T._FitLoop.train_epoch = init, objectives, train_epoch
views = LayerViews(table, speakers=SPEAKER)
for seed in seeds:
    config = benchmark_train_config(seed=seed)
    uas, t0 = [], time.time()
    for fold in task.folds:
        r, _ = train_fold(views, fold, HeadSpec(preset, {'seed': seed}), config)
        uas.append(r.test.ua)
    rec = {'corpus': corpus, 'lambda': LAM, 'preset': preset, 'seed': seed,
           'ua': float(np.mean(uas)), 'folds': uas, 'seconds': time.time() - t0}
    print(json.dumps(rec), flush=True)
    with open('benchmarks/results/twelfth-session-exploration/dann.jsonl', 'a') as fh:
        fh.write(json.dumps(rec) + '\n')
