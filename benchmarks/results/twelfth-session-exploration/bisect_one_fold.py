"""Scratch bisect probe: CASIA fold loso-liuchanhg, pts-snn seed 0, normalisation enrolled,
K = 0 and 20; prints test UA per K. Runs against whatever ptssnn is first on PYTHONPATH."""
import json, sys, torch
from ptssnn.backbones import load_backbone
from ptssnn.benchmark.corpus import extract_corpus_features, prepare_corpus
from ptssnn.features.table import LabelledFeatures
from ptssnn.models.factory import HeadSpec
from ptssnn.training.config import benchmark_train_config
from ptssnn.training.crossval import train_fold
from ptssnn.training.enrolment import EnrolmentProtocol
from ptssnn.training.views import LayerViews
import ptssnn
torch.set_num_threads(1)
fold_name = sys.argv[1] if len(sys.argv) > 1 else 'loso-liuchanhg'
backbone = load_backbone('whisper-base')
task = prepare_corpus('casia', '/work/shared/data')
task, fs, _ = extract_corpus_features(task, backbone, None, progress=False)
table = LabelledFeatures.from_feature_set(fs, task.utterances, task.label_names)
views = LayerViews(table, speakers={u.id: u.speaker for u in task.utterances})
fold = next(f for f in task.folds if f.name == fold_name)
config = benchmark_train_config(seed=0).replace(normalisation='enrolled')
r, _ = train_fold(views, fold, HeadSpec('pts-snn', {'seed': 0}), config,
                  enrolment=EnrolmentProtocol((0, 20)))
print(json.dumps({'src': ptssnn.__file__, 'ua': r.test.ua,
                  'k': {k: round(100 * v['ua'], 2) for k, v in r.enrolment.items()},
                  'best_epoch': r.fit.get('best_epoch'), 'refit': r.fit.get('refit', {}).get('epochs')}))
