"""Scratch: probe with each clip standardised by its own moments shrunk toward the global
ones (weight w = 1 / (1 + n0)): deployable (the clip itself only)."""
import sys, warnings, pickle, numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler
corpus = sys.argv[1]
d = pickle.load(open(f'runs/s10/{corpus}_moments.pkl', 'rb'))
_, y = np.unique(d['lab'], return_inverse=True); spk = d['spk']
def ua(r, p): return float(np.mean([np.mean(p[r == c] == c) for c in np.unique(r)]))
for layer in [3, 4]:
    for n0 in [None, 8, 2, 1, 0.5]:
        out = []
        for t in sorted(set(spk)):
            tr = spk != t; te = ~tr
            M, V = d['mean'][:, layer], d['var'][:, layer]
            n = d['cnt'][:, None].astype(float)
            mu = (n[tr] * M[tr]).sum(0) / n[tr].sum()
            var = (n[tr] * (V[tr] + (M[tr] - mu) ** 2)).sum(0) / n[tr].sum()
            if n0 is None:
                m_s, v_s = np.broadcast_to(mu, M.shape), np.broadcast_to(var, M.shape)
            else:
                w = 1 / (1 + n0)
                m_s = w * M + (1 - w) * mu; v_s = w * V + (1 - w) * var
            sd = np.sqrt(v_s)
            X = np.concatenate([(M - m_s) / sd, np.sqrt(V) / sd], 1)
            sc = StandardScaler().fit(X[tr])
            with warnings.catch_warnings():
                warnings.simplefilter('ignore')
                m = LogisticRegression(C=0.5, max_iter=3000, class_weight='balanced').fit(sc.transform(X[tr]), y[tr])
            out.append(ua(y[te], m.predict(sc.transform(X[te]))))
        print(corpus, 'L', layer, 'n0', n0, f'{100*np.mean(out):.1f}', [round(100*o, 1) for o in out], flush=True)
