"""The records a corpus scan produces: utterances, problem files, and the scan itself."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ptssnn.errors import CorpusError
from ptssnn.jsonio import dumps as strict_json


@dataclass(frozen=True)
class Utterance:
    """One labelled recording of one speaker.

    Attributes:
        id: Corpus-unique id, equal to the EmoBox key (``casia-239-wangzhe-neutral``,
            ``emovo-gio-f2-b2``, ``urdu-SM5_F63_N091``, ``emodb-03a02Wb``,
            ``iemocap-Ses01F_impro04_F000``, ``ravdess-03-01-07-02-02-02-11``).
        corpus: Registry name of the corpus (``casia``, ``emovo``, ...).
        path: The audio file, in whatever format the user has it.
        speaker: Speaker id, unique within the corpus.
        raw_label: The corpus's own emotion label or code (``gio``, ``W``, ``exc``, ...).
        label: Harmonised label, one of :data:`ptssnn.corpora.labels.EMOTIONS`.
        duration: Seconds, from the file header.
        extras: Corpus-specific facts (gender, sentence, session, ...), JSON-serialisable.
        sample_rate: Sample rate of the file (Hz), from the header.
        channels: Channel count of the file, from the header.
    """

    id: str
    corpus: str
    path: Path
    speaker: str
    raw_label: str
    label: str
    duration: float
    extras: Mapping[str, Any] = field(default_factory=dict, hash=False, compare=False)
    sample_rate: int = 0
    channels: int = 0

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (one manifest line)."""
        return {
            "id": self.id,
            "corpus": self.corpus,
            "path": str(self.path),
            "speaker": self.speaker,
            "raw_label": self.raw_label,
            "label": self.label,
            "duration": self.duration,
            "sample_rate": self.sample_rate,
            "channels": self.channels,
            "extras": dict(self.extras),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Utterance:
        """Inverse of :meth:`to_dict`."""
        return cls(
            id=str(data["id"]),
            corpus=str(data["corpus"]),
            path=Path(data["path"]),
            speaker=str(data["speaker"]),
            raw_label=str(data["raw_label"]),
            label=str(data["label"]),
            duration=float(data["duration"]),
            extras=dict(data.get("extras", {})),
            sample_rate=int(data.get("sample_rate", 0)),
            channels=int(data.get("channels", 0)),
        )


@dataclass(frozen=True)
class Problem:
    """A file a scan could not use, and why (never guessed around)."""

    path: Path
    reason: str

    def to_dict(self) -> dict[str, str]:
        """JSON-ready dict."""
        return {"path": str(self.path), "reason": self.reason}


def left_out_summary(problems: Sequence[str], shown: int = 3) -> str:
    """``"N file(s) left out: a; b; c; and K more"`` for ``path: reason`` lines of files no
    head sees (what ``train`` and ``benchmark`` print before they go on)."""
    more = f"; and {len(problems) - shown} more" if len(problems) > shown else ""
    return f"{len(problems)} file(s) left out: {'; '.join(problems[:shown])}{more}"


@dataclass
class CorpusScan:
    """Result of :func:`ptssnn.corpora.scan_corpus`.

    Attributes:
        corpus: Registry name.
        root: The scanned folder.
        utterances: Usable utterances, sorted by id.
        problems: Files that could not be placed or read, sorted by path.
        excluded: Well-formed files deliberately left out of the class set (e.g. IEMOCAP
            ``fru``), sorted by path; not problems, so ``strict`` does not fail on them.
    """

    corpus: str
    root: Path
    utterances: list[Utterance]
    problems: list[Problem] = field(default_factory=list)
    excluded: list[Problem] = field(default_factory=list)

    @property
    def speakers(self) -> list[str]:
        """Sorted speaker ids."""
        return sorted({u.speaker for u in self.utterances})

    @property
    def total_duration(self) -> float:
        """Sum of the utterance durations, in seconds."""
        return float(sum(u.duration for u in self.utterances))


def write_manifest(utterances: Iterable[Utterance], path: str | Path) -> Path:
    """Write utterances as JSON lines (one :meth:`Utterance.to_dict` per line)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as handle:
        for utterance in utterances:
            handle.write(strict_json(utterance.to_dict(), ensure_ascii=False) + "\n")
    return path


def read_manifest(path: str | Path) -> list[Utterance]:
    """Read a manifest written by :func:`write_manifest` (or ``ptssnn data scan --out``).

    Raises:
        CorpusError: The file is missing or a line is not a valid utterance record.
    """
    path = Path(path)
    if not path.is_file():
        raise CorpusError(f"manifest {path} does not exist (create it with `ptssnn data scan`)")
    utterances = []
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                utterances.append(Utterance.from_dict(json.loads(line)))
            except (ValueError, KeyError, TypeError) as error:
                raise CorpusError(
                    f"{path}:{number}: not an utterance record ({error}); "
                    "regenerate it with `ptssnn data scan --out`"
                ) from error
    return utterances
