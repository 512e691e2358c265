"""How many clips does enrolment need, how strong a prior, which training side? (docs/enrolment.md)

A multinomial logistic regression on pooled statistics (per-channel mean and std over time of
one hidden state), leave one speaker out. For each test speaker, ``K`` random unlabelled clips
build a profile (shrunk toward the training speakers' moments with prior weight ``n0``
clips) and are not scored; the others are normalised with it and scored. ``K = all``: every
clip builds the profile and every clip is scored (transductive). The training speakers are
normalised by a scheme:

* ``global``: training-set moments only;
* ``all``: each training speaker with all of its clips;
* ``match``: each from ``K`` random clips (one head per ``K``);
* ``mix``: the training set once per ``K`` in ``--mix`` (one head for every ``K``).

A clip's pooled statistics under a per-channel affine normalisation are an affine function of
its raw frame moments, so every protocol runs on per-clip moments (computed once from the
feature cache; run ``ptssnn features extract`` first).

Commands behind docs/enrolment.md (10 draws)::

    python benchmarks/enrolment_probe.py casia --schemes global,all --n0 0,1,2,5,10,20
    python benchmarks/enrolment_probe.py casia --schemes match,mix --n0 0,1,2,5,10
    python benchmarks/enrolment_probe.py casia --schemes mix --mix 0,5,20,all --n0 2
    (and the same for emovo; --var merge for the pseudo-data variance)
"""

from __future__ import annotations

import argparse
import json
import warnings
from pathlib import Path

import numpy as np


def clip_moments(corpus: str, data_root: Path, backbone: str, cache: Path | None
                 ) -> dict[str, np.ndarray]:
    """Per clip: frames, mean and variance ``[L, D]`` of every hidden state (float64)."""
    from ptssnn.backbones import load_backbone
    from ptssnn.corpora import scan_corpus
    from ptssnn.features import FeatureStore, extract_features

    utterances = scan_corpus(corpus, data_root / corpus).utterances
    features = extract_features(list(utterances), load_backbone(backbone), "all",
                                FeatureStore(cache), progress=False)
    by_id = {u.id: u for u in utterances}
    rows: dict[str, list] = {"spk": [], "lab": [], "cnt": [], "mean": [], "var": []}
    for utt_id in features.ids:
        x = np.asarray(features.get(utt_id), dtype=np.float64)  # [L, T, D]
        rows["spk"].append(by_id[utt_id].speaker)
        rows["lab"].append(by_id[utt_id].label)
        rows["cnt"].append(x.shape[1])
        rows["mean"].append(x.mean(1))
        rows["var"].append(x.var(1))
    return {k: np.asarray(v) for k, v in rows.items()}


def merge(d: dict[str, np.ndarray], rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Frame-weighted moments of a set of clips."""
    n = d["cnt"][rows].astype(np.float64)[:, None, None]
    m, v = d["mean"][rows], d["var"][rows]
    mu = (n * m).sum(0) / n.sum()
    return mu, (n * (v + (m - mu) ** 2)).sum(0) / n.sum()


def main() -> None:
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("corpus")
    ap.add_argument("--data-root", type=Path, default=Path("../shared/data"))
    ap.add_argument("--backbone", default="whisper-base")
    ap.add_argument("--cache", type=Path, default=None)
    ap.add_argument("--layer", type=int, default=3)
    ap.add_argument("--ks", default="0,1,5,10,20,all")
    ap.add_argument("--n0", default="0,2,5,10")
    ap.add_argument("--schemes", default="all,match,mix")
    ap.add_argument("--mix", default="0,1,5,20,all")
    ap.add_argument("--var", choices=("interp", "merge"), default="interp")
    ap.add_argument("--draws", type=int, default=10)
    ap.add_argument("--out", type=Path, default=None, help="JSON with every number")
    a = ap.parse_args()

    d = clip_moments(a.corpus, a.data_root, a.backbone, a.cache)
    _, y = np.unique(d["lab"], return_inverse=True)
    spk = d["spk"]
    speakers = sorted(set(spk))
    ks, mix = a.ks.split(","), a.mix.split(",")

    def shrink(rows, k, mu_g, var_g, n0):
        if len(rows) == 0:
            return mu_g, var_g
        mu_s, var_s = merge(d, rows)
        if k == "all" or n0 == 0:
            return mu_s, var_s
        w = len(rows) / (len(rows) + n0)
        var = w * var_s + (1 - w) * var_g
        if a.var == "merge":
            var = var + w * (1 - w) * (mu_s - mu_g) ** 2
        return w * mu_s + (1 - w) * mu_g, var

    def stats(rows, mu, var):
        sd = np.sqrt(np.maximum(var, 1e-10))[a.layer]
        m = (d["mean"][rows][:, a.layer] - mu[a.layer]) / sd
        s = np.sqrt(d["var"][rows][:, a.layer]) / sd
        return np.concatenate([m, s], 1)

    def enrol(rows, k, rng):
        if k == "all":
            return rows, rows
        pick = rng.choice(rows, size=min(int(k), len(rows) - 1), replace=False)
        return pick, np.setdiff1d(rows, pick)

    def fit(x, labels):
        scaler = StandardScaler().fit(x)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = LogisticRegression(C=1.0, max_iter=2000, random_state=0).fit(
                scaler.transform(x), labels)
        return lambda q: model.predict(scaler.transform(q))

    def ua(ref, pred):
        return float(np.mean([np.mean(pred[ref == c] == c) for c in np.unique(ref)]))

    results = {}
    for scheme in a.schemes.split(","):
        for n0 in (float(x) for x in a.n0.split(",")):
            scores = {k: np.zeros((a.draws if k != "all" else 1, len(speakers))) for k in ks}
            for fi, test_speaker in enumerate(speakers):
                train = np.where(spk != test_speaker)[0]
                test = np.where(spk == test_speaker)[0]
                mu_g, var_g = merge(d, train)
                heads = {}
                for k in ks:
                    key = k if scheme == "match" else "-"
                    if key not in heads:
                        rng = np.random.default_rng(777 + fi)
                        xs, ys = [], []
                        for s in speakers:
                            if s == test_speaker:
                                continue
                            rows = np.where(spk == s)[0]
                            plan = {"global": [None], "all": ["all"], "match": [k],
                                    "mix": mix}[scheme]
                            for kk in plan:
                                if kk is None:
                                    mu, var = mu_g, var_g
                                else:
                                    picked = rows if kk == "all" else enrol(rows, kk, rng)[0]
                                    mu, var = shrink(picked, kk, mu_g, var_g, n0)
                                xs.append(stats(rows, mu, var))
                                ys.append(y[rows])
                        heads[key] = fit(np.concatenate(xs), np.concatenate(ys))
                    for draw in range(scores[k].shape[0]):
                        picked, scored = enrol(test, k, np.random.default_rng(1000 * draw + fi))
                        mu, var = shrink(picked, k, mu_g, var_g, n0)
                        scores[k][draw, fi] = 100 * ua(y[scored],
                                                       heads[key](stats(scored, mu, var)))
            row = {k: (float(v.mean(1).mean()), float(v.mean(1).std())) for k, v in scores.items()}
            results[f"{scheme} n0={n0:g}"] = row
            print(a.corpus, f"{scheme:6s} n0={n0:<4g}",
                  " ".join(f"K={k}:{m:5.1f}±{s:3.1f}" for k, (m, s) in row.items()), flush=True)
    if a.out:
        a.out.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
