"""Ablation of the training recipe of the pts-snn head, one change at a time.

Every variant is the benchmark's own per-fold routine (``ptssnn.training.train_fold``: model
selection on validation speakers, refit on training + validation, one test pass) on cached
whisper-base features, global standardisation (training-split moments), on every fold of the
corpora given. A variant is a set of changes to ``BASE``, the recipe of issue 11's first
round (the middle hidden state, the refit for the validation-chosen epoch count), written out
so that a variant's name keeps its meaning when the library's defaults change; ``current``
is today's default recipe (``benchmark_train_config()``: the learned sum of all hidden states
with its logits at 30× the learning rate, the refit for the whole schedule with five or more
training + validation speakers) and ``before``
the recipe before issue 11 (a learned layer sum that did not move, SpecAugment masks on the
raw features, no mixup).

    python benchmarks/ablation.py casia emovo urdu --data-root ../shared/data \\
        --variants before,middle,current --seeds 3 --out runs/ablation

Writes ``results.jsonl`` (one line per variant × corpus × seed, with every fold) and
``report.md`` (UA mean ± std over folds × seeds) in ``--out``; finished lines are skipped on
a rerun, so an interrupted run continues.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

#: The reference of the variants: issue 11's first recipe, explicitly.
BASE: dict[str, Any] = {"layers": "middle", "layer_mix_lr_scale": 1.0, "refit_epochs": "best"}

#: name → (TrainConfig changes, model changes), relative to ``BASE``.
VARIANTS: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    "middle": ({}, {}),
    "current": ({"layers": "all", "layer_mix_lr_scale": 30.0, "refit_epochs": "auto"}, {}),
    "before": ({"layers": "all", "augment_space": "raw", "mixup_alpha": 0.0}, {}),
    "all-layers": ({"layers": "all"}, {}),
    "auto-layer": ({"layers": "auto"}, {}),
    "all-layers-middle-prior": ({"layers": "all"}, {"layer_prior": 1.0}),
    "no-mixup": ({"mixup_alpha": 0.0}, {}),
    "raw-masks": ({"augment_space": "raw"}, {}),
    # The two changes alone: "before" + the middle layer, "before" + mixup and
    # standardised-space masks (= "all-layers").
    "before+middle": ({"augment_space": "raw", "mixup_alpha": 0.0}, {}),
    "membrane-stats": ({}, {"readout": "mean_std", "pooling": "membrane"}),
    "spike-stats": ({}, {"readout": "mean_std"}),
    "epochs-16": ({"max_epochs": 16, "patience": 6}, {}),
    "frame-pool-4": ({"frame_pool": 4}, {}),
    "weight-average": ({"weight_average_epochs": 1.0}, {}),
    "all-layers-middle-prior+weight-average": ({"layers": "all", "weight_average_epochs": 1.0},
                                               {"layer_prior": 1.0}),
    "all-layers+layer-lr": ({"layers": "all", "layer_mix_lr_scale": 30.0}, {}),
    "all-layers-middle-prior+layer-lr": ({"layers": "all", "layer_mix_lr_scale": 30.0},
                                         {"layer_prior": 1.0}),
    "refit-max": ({"refit_epochs": "max"}, {}),
    "all-layers+layer-lr+refit-max": (
        {"layers": "all", "layer_mix_lr_scale": 30.0, "refit_epochs": "max"}, {}),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("corpora", nargs="+")
    parser.add_argument("--data-root", default="../shared/data")
    parser.add_argument("--backbone", default="whisper-base")
    parser.add_argument("--variants", default="before,middle,current")
    parser.add_argument("--preset", default="pts-snn")
    parser.add_argument("--seeds", type=int, default=1)
    parser.add_argument("--out", type=Path, default=Path("runs/ablation"))
    args = parser.parse_args()

    from ptssnn.backbones import load_backbone
    from ptssnn.benchmark.corpus import extract_corpus_features, prepare_corpus
    from ptssnn.features.table import LabelledFeatures
    from ptssnn.models import create_model
    from ptssnn.training.config import benchmark_train_config
    from ptssnn.training.crossval import train_fold
    from ptssnn.training.views import LayerViews

    torch.set_num_threads(1)
    variants = args.variants.split(",")
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        parser.error(f"unknown variant(s) {unknown}; choose from {', '.join(VARIANTS)}")
    args.out.mkdir(parents=True, exist_ok=True)
    log = args.out / "results.jsonl"
    done = {(r["variant"], r["corpus"], r["seed"]) for r in map(json.loads, log.open())} \
        if log.exists() else set()
    backbone = load_backbone(args.backbone)
    for corpus in args.corpora:
        task = prepare_corpus(corpus, args.data_root)
        task, feature_set, _ = extract_corpus_features(task, backbone, None, progress=False)
        table = LabelledFeatures.from_feature_set(feature_set, task.utterances,
                                                  task.label_names)
        views = LayerViews(table, speakers={u.id: u.speaker for u in task.utterances})
        for variant in variants:
            train_changes, model_changes = VARIANTS[variant]
            for seed in range(args.seeds):
                if (variant, corpus, seed) in done:
                    continue
                config = benchmark_train_config(seed=seed, **{**BASE, **train_changes})

                def factory(dim: int, classes: int, layers: int, _seed: int = seed,
                            _changes: dict = model_changes) -> torch.nn.Module:
                    extra = {"seed": _seed, **_changes}
                    if layers > 1:
                        extra["input_layers"] = layers
                    return create_model(args.preset, dim, classes, **extra)

                started = time.perf_counter()
                folds, mixes = [], []
                for fold in task.folds:
                    result, model = train_fold(views, fold, factory, config)
                    folds.append(result)
                    weights = getattr(model, "layer_weights", None)
                    if weights is not None:  # where the learned layer sum ended
                        mix = torch.softmax(weights.detach(), 0)
                        mixes.append([round(float(w), 3) for w in mix])
                record = {
                    "variant": variant, "corpus": corpus, "seed": seed, "preset": args.preset,
                    "train_changes": train_changes, "model_changes": model_changes,
                    "ua": float(np.mean([f.test.ua for f in folds])),
                    "folds": {f.fold: f.test.ua for f in folds},
                    "layers": sorted({f.layers for f in folds}),
                    "best_epochs": [f.fit["best_epoch"] for f in folds],
                    "layer_mix": mixes,
                    "seconds": time.perf_counter() - started,
                }
                with log.open("a") as handle:
                    handle.write(json.dumps(record) + "\n")
                print(f"{variant:<16} {corpus:<6} seed {seed}: UA {100 * record['ua']:.1f} "
                      f"({record['seconds']:.0f} s)", flush=True)
    write_report(log, args.out / "report.md")


def write_report(log: Path, path: Path) -> None:
    """UA mean ± std over folds × seeds per variant and corpus."""
    records = [json.loads(line) for line in log.open()]
    corpora = list(dict.fromkeys(r["corpus"] for r in records))
    lines = ["| variant | " + " | ".join(f"{c} UA %" for c in corpora) + " |",
             "|---|" + "---:|" * len(corpora)]
    for variant in dict.fromkeys(r["variant"] for r in records):
        cells = []
        for corpus in corpora:
            uas = [ua for r in records if r["variant"] == variant and r["corpus"] == corpus
                   for ua in r["folds"].values()]
            seeds = len({r["seed"] for r in records
                         if r["variant"] == variant and r["corpus"] == corpus})
            cells.append(f"{100 * np.mean(uas):.1f} ± {100 * np.std(uas):.1f} ({seeds} seed"
                         f"{'s' if seeds > 1 else ''})" if uas else "–")
        lines.append(f"| {variant} | " + " | ".join(cells) + " |")
    path.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
