import json
import pickle

from ptssnn.training.data import LabelledFeatures

_cache = {}
def load(name, pool=8):
    key = (name, pool)
    if key not in _cache:
        d = pickle.load(open(f"/work/scratch/acc/{name}.pkl", "rb"))
        ids, feats, labels, names = d[pool]
        table = LabelledFeatures(ids, feats, labels, names)
        _cache[key] = (d["task"], table, d["speakers"])
    return _cache[key]

def log(rec, path="/work/scratch/acc/results.jsonl"):
    with open(path, "a") as f:
        f.write(json.dumps(rec) + "\n")
