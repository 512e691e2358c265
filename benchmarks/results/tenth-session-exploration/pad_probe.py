"""Scratch: LOSO probe (mean+std over 50 Hz frames) per hidden state, unpadded vs 30 s padded."""
import sys, warnings, pickle, numpy as np
from pathlib import Path
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler
corpus, padding = sys.argv[1], sys.argv[2]
cache = Path(f'runs/s10/{corpus}_{padding}_stats.pkl')
if cache.exists():
    d = pickle.load(open(cache, 'rb'))
else:
    from ptssnn.backbones import load_backbone
    from ptssnn.corpora import scan_corpus
    from ptssnn.features import FeatureStore, extract_features
    utts = scan_corpus(corpus, Path('../shared/data') / corpus).utterances
    fs = extract_features(list(utts), load_backbone('whisper-base', padding=padding), 'all',
                          FeatureStore(None), progress=False)
    by = {u.id: u for u in utts}
    d = {'spk': [], 'lab': [], 'x': []}
    for uid in fs.ids:
        x = np.asarray(fs.get(uid), dtype=np.float32)  # [L, T, D]
        d['spk'].append(by[uid].speaker); d['lab'].append(by[uid].label)
        d['x'].append(np.concatenate([x.mean(1), x.std(1)], 1))  # [L, 2D]
    d = {k: np.asarray(v) for k, v in d.items()}
    pickle.dump(d, open(cache, 'wb'))
_, y = np.unique(d['lab'], return_inverse=True); spk = d['spk']
def ua(r, p): return float(np.mean([np.mean(p[r == c] == c) for c in np.unique(r)]))
L = d['x'].shape[1]
for layer in list(range(L)) + ['mean']:
    X = d['x'].mean(1) if layer == 'mean' else d['x'][:, layer]
    row = []
    for C in [0.1, 0.5]:
        out = []
        for t in sorted(set(spk)):
            tr = spk != t; te = ~tr
            sc = StandardScaler().fit(X[tr])
            with warnings.catch_warnings():
                warnings.simplefilter('ignore')
                m = LogisticRegression(C=C, max_iter=3000, class_weight='balanced').fit(sc.transform(X[tr]), y[tr])
            out.append(ua(y[te], m.predict(sc.transform(X[te]))))
        row.append(f'C{C}: {100*np.mean(out):.1f}')
    print(corpus, padding, 'L', layer, ' '.join(row), flush=True)
