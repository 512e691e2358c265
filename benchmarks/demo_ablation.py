"""Variants of the synthetic demo's recipe, several seeds each (``ptssnn demo``'s corpus).

Runs the demo's benchmark (fbank features, leave-one-speaker-out folds, validation on
another speaker, refit) with training-config and head changes, and appends one line per
head to ``<out>/results.jsonl``: UA per fold × seed, per-seed means, the refit epochs.

    python benchmarks/demo_ablation.py ns-e30 --train '{"max_epochs": 30, "patience": 10}' \\
        --model '{"saturation_norm": false}' --seeds 3 --out runs/demo-ablation
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any


def summarise(name: str, results: dict[str, Any], changes: dict[str, Any]) -> list[dict]:
    """One record per head of a finished run."""
    records = []
    for model, entry in results["corpora"]["synthetic"]["models"].items():
        ua = entry["metrics"]["ua"]
        records.append({
            "variant": name, "model": model, "changes": changes,
            "ua_mean": ua["mean"], "ua_std": ua["std"], "ua_folds": ua["values"],
            "ua_seed_means": [s["ua"] for s in entry["seed_means"].values()],
            "refit_epochs": entry.get("epochs", {}).get("values"),
        })
    return records


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("name", help="variant name (the run folder under --out)")
    parser.add_argument("--train", default="{}", help="TrainConfig changes (JSON)")
    parser.add_argument("--model", default="{}", help="head options (JSON)")
    parser.add_argument("--models", default="pts-snn,ann,probe")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--clips", type=int, default=16, help="clips per speaker × class")
    parser.add_argument("--epochs", type=int, default=None,
                        help="max epochs (default: the demo's)")
    parser.add_argument("--out", type=Path, default=Path("runs/demo-ablation"))
    args = parser.parse_args()

    from ptssnn.benchmark import BenchmarkSettings, run_benchmark
    from ptssnn.demo import synthetic_task
    from ptssnn.demo.runner import demo_train_config

    train_changes, model_options = json.loads(args.train), json.loads(args.model)
    task = synthetic_task(args.out / f"corpus-{args.clips}", clips_per_class=args.clips)
    settings = BenchmarkSettings(
        backbone="fbank", models=tuple(args.models.split(",")),
        train=demo_train_config(args.epochs).replace(**train_changes),
        model_overrides=model_options, out=args.out / args.name,
        cache=args.out / "feature-cache", seeds=args.seeds, analysis_items=32, plots=False)
    results = run_benchmark([task], settings, show_progress=False, log=lambda _: None,
                            command=["python", "benchmarks/demo_ablation.py", args.name])
    changes = {"train": train_changes, "model": model_options, "clips": args.clips,
               "epochs": settings.train.max_epochs}
    with (args.out / "results.jsonl").open("a") as sink:
        for record in summarise(args.name, results, changes):
            sink.write(json.dumps(record) + "\n")
            print(f"{args.name:16s} {record['model']:8s} UA {100 * record['ua_mean']:.1f} "
                  f"seeds {[round(100 * u, 1) for u in record['ua_seed_means']]}")


if __name__ == "__main__":
    main()
