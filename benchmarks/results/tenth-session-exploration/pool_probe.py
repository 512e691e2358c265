"""Scratch: probe on mean+std over 50 Hz frames vs over 6.25 Hz pooled frames; + windowed std."""
import sys, warnings, pickle, numpy as np
from pathlib import Path
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler
corpus = sys.argv[1]; layer = 3
cache = Path(f'runs/s10/{corpus}_L{layer}_pool.pkl')
if cache.exists():
    d = pickle.load(open(cache, 'rb'))
else:
    from ptssnn.backbones import load_backbone
    from ptssnn.corpora import scan_corpus
    from ptssnn.features import FeatureStore, extract_features
    utts = scan_corpus(corpus, Path('../shared/data') / corpus).utterances
    fs = extract_features(list(utts), load_backbone('whisper-base'), 'all', FeatureStore(None), progress=False)
    by = {u.id: u for u in utts}
    d = {'spk': [], 'lab': [], 'f50': [], 'f6': [], 'w6': []}
    for uid in fs.ids:
        x = np.asarray(fs.get(uid), dtype=np.float32)[layer]  # [T, D]
        T = x.shape[0]; n = max(1, T // 8)
        xx = x[: n * 8].reshape(n, 8, -1) if T >= 8 else x[None]
        pm = xx.mean(1); ps = xx.std(1)
        d['spk'].append(by[uid].speaker); d['lab'].append(by[uid].label)
        d['f50'].append(np.concatenate([x.mean(0), x.std(0)]))
        d['f6'].append(np.concatenate([pm.mean(0), pm.std(0)]))
        d['w6'].append(np.concatenate([pm.mean(0), pm.std(0), ps.mean(0)]))
    d = {k: np.asarray(v) for k, v in d.items()}
    pickle.dump(d, open(cache, 'wb'))
_, y = np.unique(d['lab'], return_inverse=True); spk = d['spk']
def ua(r, p): return float(np.mean([np.mean(p[r == c] == c) for c in np.unique(r)]))
for key in ['f50', 'f6', 'w6']:
    for C in [0.1, 0.5]:
        out = []
        for t in sorted(set(spk)):
            tr = spk != t; te = ~tr
            sc = StandardScaler().fit(d[key][tr])
            with warnings.catch_warnings():
                warnings.simplefilter('ignore')
                m = LogisticRegression(C=C, max_iter=3000, class_weight='balanced').fit(sc.transform(d[key][tr]), y[tr])
            out.append(ua(y[te], m.predict(sc.transform(d[key][te]))))
        print(corpus, key, C, f'{100*np.mean(out):.1f}', [round(100*o,1) for o in out], flush=True)
