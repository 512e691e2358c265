"""The run folder's record of every setting that changes results, checked by ``--resume``.

``<out>/run-settings.json`` holds the backbone identity, the training configuration (minus
the per-run seed), the head overrides, the analysis size, under ``--multi-corpus`` the corpora
whose utterances every corpus trains on, and, per corpus, its protocol, classes, utterances
and folds (hashed; a ``--limit`` changes them). A resumed run whose
settings differ is refused with the differences listed, so finished folds are never reused
under other settings; adding models, seeds or corpora to a run is fine.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ptssnn.benchmark.corpus import CorpusTask
from ptssnn.benchmark.settings import BenchmarkError, BenchmarkSettings
from ptssnn.jsonio import dumps as strict_json

MANIFEST = "run-settings.json"


def run_settings(settings: BenchmarkSettings, tasks: Sequence[CorpusTask],
                 backbone_identity: Mapping[str, Any]) -> dict[str, Any]:
    """The record for this run (JSON-ready)."""
    record = {
        **settings.result_settings(),
        "backbone_identity": dict(backbone_identity),
        "corpora": {task.name: task.fingerprint() for task in tasks},
    }
    if settings.multi_corpus:
        # Every corpus's folds train on all of these: another set changes every fold. (Off,
        # the key is absent, so run folders made before the option resume as they did.)
        record["multi_corpus"] = sorted(task.name for task in tasks)
    return json.loads(strict_json(record, sort_keys=True, default=str))


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for key, item in value.items():
            out.update(_flatten(item, f"{prefix}.{key}" if prefix else str(key)))
        return out
    return {prefix: value}


#: Settings added after run folders existed, and the value their absence means (how those
#: runs behaved), so that such folders still resume.
ADDED_SETTINGS: dict[str, Any] = {"train.precision": "fp32", "train.refit_smoothing": 1}


def differences(saved: Mapping[str, Any], current: Mapping[str, Any]) -> list[str]:
    """``key: saved → current`` for every result-changing setting that differs (corpora
    only in one of the two are not differences; an :data:`ADDED_SETTINGS` key that a record
    lacks has its old value)."""
    common = set(saved.get("corpora", {})) & set(current.get("corpora", {}))

    def relevant(record: Mapping[str, Any]) -> dict[str, Any]:
        kept = {k: v for k, v in record.items() if k != "corpora"}
        kept["corpora"] = {c: record["corpora"][c] for c in common}
        return {**ADDED_SETTINGS, **_flatten(kept)}

    old, new = relevant(saved), relevant(current)
    return [f"{key}: {old.get(key, '(unset)')} → {new.get(key, '(unset)')}"
            for key in sorted(set(old) | set(new)) if old.get(key) != new.get(key)]


def check_or_record(out: Path, current: Mapping[str, Any], *, resume: bool) -> None:
    """Refuse a ``--resume`` whose settings differ from the run folder's; record them.

    Raises:
        BenchmarkError: Resuming with other settings, or resuming a folder that has fold
            results of a corpus but no record of their settings. A fresh run keeps the
            records of other corpora only when the run settings are the same.
    """
    path = out / MANIFEST
    record = dict(current)
    saved = None
    if path.exists():
        try:
            saved = _read(path)
        except BenchmarkError:
            if resume:
                raise  # a fresh run simply writes a new record
    if resume:
        recorded = set(saved["corpora"]) if saved is not None else set()
        # Fold results of a corpus the record does not cover were made with unknown settings.
        unknown = sorted(c for c in current["corpora"]
                         if c not in recorded and (out / "runs" / c).is_dir())
        if unknown:
            raise BenchmarkError(
                f"--resume: {out} holds fold results of {', '.join(unknown)} but no record in "
                f"{MANIFEST} of the settings they were made with; drop --resume to recompute, "
                "or use another --out")
        found = differences(saved, current) if saved is not None else []
        if found:
            shown = "; ".join(found[:6]) + ("; …" if len(found) > 6 else "")
            raise BenchmarkError(
                f"--resume: the run in {out} was made with other settings ({shown}); rerun "
                "with the same settings, use another --out, or drop --resume to recompute")
    if saved is not None and not differences({**saved, "corpora": {}},
                                             {**current, "corpora": {}}):
        # Same run settings: the other corpora's records stay valid.
        record["corpora"] = {**saved.get("corpora", {}), **current["corpora"]}
    out.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(strict_json(record, indent=1, sort_keys=True) + "\n")
    tmp.replace(path)


def _read(path: Path) -> dict[str, Any]:
    try:
        saved = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise BenchmarkError(f"{path} is unreadable ({error}); delete it and run without "
                             "--resume") from error
    if not isinstance(saved, dict) or not isinstance(saved.get("corpora"), dict):
        raise BenchmarkError(f"{path} is not a run-settings record; delete it and run without "
                             "--resume")
    return saved
