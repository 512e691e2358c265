"""Regenerate src/ptssnn/corpora/data/emobox_folds.json.gz from EmoBox's fold files.

Usage: .venv/bin/python scripts/make_emobox_folds.py [SPLITS_DIR]
(default SPLITS_DIR: $PTSSNN_DATA/splits or <repo>/../shared/data/splits).

EmoBox (emo-box/EmoBox, MIT licence) ships, per corpus, ``<corpus>.jsonl`` (all utterances) and
``<corpus>_{train,test}_fold_<k>.jsonl``. In every corpus the train list of fold k is exactly the
corpus minus its test list (the script checks this), so one number per utterance says it all:
the fold whose test side holds it (0: in no test fold, as 300 URDU files). The shipped file
holds utterance ids and fold numbers only: no audio, no paths, no labels.
"""

from __future__ import annotations

import gzip
import json
import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
OUTPUT = REPO / "src" / "ptssnn" / "corpora" / "data" / "emobox_folds.json.gz"
CORPORA = ("casia", "emodb", "emovo", "iemocap", "ravdess", "urdu")


def read_keys(path: Path) -> list[str]:
    with path.open(encoding="utf-8") as handle:
        return [json.loads(line)["key"] for line in handle if line.strip()]


def corpus_folds(splits: Path, corpus: str) -> dict:
    folder = splits / corpus
    everything = read_keys(folder / f"{corpus}.jsonl")
    if len(set(everything)) != len(everything):
        raise SystemExit(f"{corpus}: duplicate keys in {corpus}.jsonl")
    fold_of = dict.fromkeys(everything, 0)
    k = 0
    while (folder / f"{corpus}_test_fold_{k + 1}.jsonl").is_file():
        k += 1
        test = read_keys(folder / f"{corpus}_test_fold_{k}.jsonl")
        train = read_keys(folder / f"{corpus}_train_fold_{k}.jsonl")
        if set(train) | set(test) != set(everything) or set(train) & set(test):
            raise SystemExit(f"{corpus} fold {k}: train is not the complement of test")
        for key in test:
            if fold_of[key]:
                raise SystemExit(f"{corpus}: {key} is in test folds {fold_of[key]} and {k}")
            fold_of[key] = k
    if k == 0:
        raise SystemExit(f"{corpus}: no fold files in {folder}")
    ids = sorted(everything)
    return {"num_folds": k, "ids": ids, "test_fold": [fold_of[key] for key in ids]}


def main() -> None:
    if len(sys.argv) > 1:
        splits = Path(sys.argv[1])
    else:
        data = os.environ.get("PTSSNN_DATA")
        splits = (Path(data) if data else REPO.parent / "shared" / "data") / "splits"
    payload = {
        "format": "ptssnn-emobox-folds/1",
        "source": "EmoBox (github.com/emo-box/EmoBox, MIT licence) data/<corpus> fold lists",
        "corpora": {corpus: corpus_folds(splits, corpus) for corpus in CORPORA},
    }
    OUTPUT.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(payload, separators=(",", ":"), sort_keys=True).encode("utf-8")
    # mtime=0: the same input gives byte-identical output, so regenerating shows no diff.
    with OUTPUT.open("wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as handle:
        handle.write(text)
    sizes = ", ".join(
        f"{c} {len(v['ids'])}x{v['num_folds']}" for c, v in payload["corpora"].items()
    )
    print(f"wrote {OUTPUT} ({OUTPUT.stat().st_size} bytes): {sizes}")


if __name__ == "__main__":
    main()
