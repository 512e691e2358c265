"""Cache each corpus's features pooled by 8 and 4 (all 7 layers, float16) + folds, for fast experiments."""
import pickle
import sys
import time

from ptssnn.backbones import load_backbone as get_backbone
from ptssnn.benchmark.runner import extract_corpus_features, prepare_corpus
from ptssnn.training.data import LabelledFeatures

name = sys.argv[1]
t = time.time()
task = prepare_corpus(name, "/work/shared/data")
backbone = get_backbone("whisper-base")
task, fs, _ = extract_corpus_features(task, backbone, None, progress=False)
table = LabelledFeatures.from_feature_set(fs, task.utterances, task.label_names)
speakers = {u.id: u.speaker for u in task.utterances}
out = {"task": task, "speakers": speakers}
for p in (8, 4):
    pt = table.pool_frames(p)
    out[p] = (pt.ids, pt.features, pt.labels, pt.label_names)
pickle.dump(out, open(f"/work/scratch/acc/{name}.pkl", "wb"), protocol=4)
print(name, len(table), time.time() - t)
