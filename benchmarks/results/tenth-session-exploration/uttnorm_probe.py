"""Scratch (issue 12): speaker normalisation of frames (the profile today) against speaker
z-normalisation of the pooled statistics (each feature of [mean, std] standardised over the
speaker's enrolment clips), LOSO probe on one hidden state; K random enrolment clips of the
test speaker are not scored; training speakers use all of their clips."""
import sys, warnings, pickle, numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler
corpus = sys.argv[1]; layer = int(sys.argv[2]) if len(sys.argv) > 2 else 3
d = pickle.load(open(f'runs/s10/{corpus}_moments.pkl', 'rb'))
_, y = np.unique(d['lab'], return_inverse=True); spk = d['spk']
M, V, n = d['mean'][:, layer], d['var'][:, layer], d['cnt'].astype(float)
S = np.sqrt(V)
def ua(r, p): return float(np.mean([np.mean(p[r == c] == c) for c in np.unique(r)]))

def frame_norm(rows_prof, rows_apply):
    w = n[rows_prof][:, None]
    mu = (w * M[rows_prof]).sum(0) / w.sum()
    var = (w * (V[rows_prof] + (M[rows_prof] - mu) ** 2)).sum(0) / w.sum()
    sd = np.sqrt(var)
    return np.concatenate([(M[rows_apply] - mu) / sd, S[rows_apply] / sd], 1)

def utt_norm(rows_prof, rows_apply):
    X = np.concatenate([M, S], 1)
    mu = X[rows_prof].mean(0); sd = X[rows_prof].std(0) + 1e-6
    return (X[rows_apply] - mu) / sd

def centre_only(rows_prof, rows_apply):
    # clip-mean centring, no per-speaker scaling
    X = np.concatenate([M, S], 1)
    return X[rows_apply] - X[rows_prof].mean(0)

schemes = {'frame': frame_norm, 'utt': utt_norm, 'centre': centre_only}
for name, f in schemes.items():
    for K in ['5', '20', 'all']:
        scores = []
        for draw in range(5 if K != 'all' else 1):
            out = []
            for fi, t in enumerate(sorted(set(spk))):
                rng = np.random.default_rng(100 * draw + fi)
                Xtr, ytr = [], []
                for s in sorted(set(spk)):
                    if s == t: continue
                    rows = np.where(spk == s)[0]
                    Xtr.append(f(rows, rows)); ytr.append(y[rows])
                Xtr, ytr = np.concatenate(Xtr), np.concatenate(ytr)
                rows = np.where(spk == t)[0]
                if K == 'all':
                    prof, score = rows, rows
                else:
                    prof = rng.choice(rows, int(K), replace=False); score = np.setdiff1d(rows, prof)
                Xte = f(prof, score)
                sc = StandardScaler().fit(Xtr)
                with warnings.catch_warnings():
                    warnings.simplefilter('ignore')
                    m = LogisticRegression(C=0.5, max_iter=3000, class_weight='balanced').fit(sc.transform(Xtr), ytr)
                out.append(ua(y[score], m.predict(sc.transform(Xte))))
            scores.append(np.mean(out))
        print(corpus, 'L', layer, name, 'K', K, f'{100*np.mean(scores):.1f}', flush=True)
