"""Scratch: does projecting out between-speaker directions (NAP) help a LOSO probe?"""
import sys, warnings, numpy as np
from pathlib import Path
sys.path.insert(0, 'benchmarks')
from enrolment_probe import clip_moments
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

corpus = sys.argv[1]
import pickle, os
cache = Path(f'runs/s10/{corpus}_moments.pkl')
if cache.exists():
    d = pickle.load(open(cache, 'rb'))
else:
    d = clip_moments(corpus, Path('../shared/data'), 'whisper-base', None)
    pickle.dump(d, open(cache, 'wb'))
_, y = np.unique(d['lab'], return_inverse=True)
spk = d['spk']; speakers = sorted(set(spk))

def ua(ref, pred):
    return float(np.mean([np.mean(pred[ref == c] == c) for c in np.unique(ref)]))

def run(layer, k, C=0.5, wc=False):
    out = []
    for t in speakers:
        tr = np.where(spk != t)[0]; te = np.where(spk == t)[0]
        M = d['mean'][:, layer]; S = np.sqrt(d['var'][:, layer])
        mu = M[tr].mean(0); sd = M[tr].std(0) + 1e-6
        Z = (M - mu) / sd
        if k > 0:
            # between-speaker scatter of speaker means (optionally of speaker-class means)
            sp_tr = sorted(set(spk[tr]))
            if wc:
                cents = []
                for c in np.unique(y[tr]):
                    rows = tr[y[tr] == c]; cm = Z[rows].mean(0)
                    for s in sp_tr:
                        r2 = rows[spk[rows] == s]
                        if len(r2): cents.append(Z[r2].mean(0) - cm)
                B = np.array(cents)
            else:
                B = np.array([Z[tr][spk[tr] == s].mean(0) for s in sp_tr])
                B = B - B.mean(0)
            U, s_, Vt = np.linalg.svd(B, full_matrices=False)
            V = Vt[:k]
            Z = Z - (Z @ V.T) @ V
        X = np.concatenate([Z, S / (S[tr].mean(0) + 1e-6)], 1)
        sc = StandardScaler().fit(X[tr])
        with warnings.catch_warnings():
            warnings.simplefilter('ignore')
            m = LogisticRegression(C=C, max_iter=3000, class_weight='balanced').fit(sc.transform(X[tr]), y[tr])
        out.append(ua(y[te], m.predict(sc.transform(X[te]))))
    return 100 * np.mean(out), [round(100 * o, 1) for o in out]

for layer in [2, 3, 4]:
    for k, wc in [(0, False), (1, False), (2, False), (3, False), (4, False), (5, True), (10, True), (20, True)]:
        m, per = run(layer, k, wc=wc)
        print(corpus, 'L', layer, 'k', k, 'wc' if wc else '  ', f'{m:.1f}', per, flush=True)
