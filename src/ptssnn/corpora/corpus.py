"""What a corpus module declares: its layout, naming parser, label map and protocols."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ptssnn.corpora.records import Problem

# Documentation and metadata that real distributions ship next to the audio (EmoDB's
# erklaerung.txt, IEMOCAP's transcriptions, OS thumbnails): not audio, so not problems.
SIDECAR_SUFFIXES = frozenset(
    {
        ".txt", ".md", ".csv", ".json", ".jsonl", ".pdf", ".doc", ".docx", ".xls", ".xlsx",
        ".zip", ".pk", ".pkl", ".lab", ".textgrid", ".xml", ".html", ".htm", ".ini", ".db",
        ".png", ".jpg", ".jpeg", ".avi", ".mp4",
    }
)  # fmt: skip


@dataclass(frozen=True)
class Candidate:
    """A file whose name and place a corpus parser understood (audio not yet checked)."""

    path: Path
    id: str
    speaker: str
    raw_label: str
    extras: dict[str, Any] = field(default_factory=dict)


Finder = Callable[[Path], Iterator[Candidate | Problem]]


@dataclass(frozen=True)
class Corpus:
    """A corpus as the registry knows it.

    Attributes:
        name: Registry name, also the utterance-id prefix.
        title: Human name.
        layout: The expected folder layout, quoted in errors.
        label_map: Raw label -> harmonised label (the class set).
        excluded_labels: Raw labels that are valid for the corpus but outside the class set
            (IEMOCAP's ``fru``, ``sur``, ...): such files are listed as excluded, not problems.
        protocols: Protocol names this corpus supports; the first is the default (honest,
            speaker-independent).
        find: Walks a root and yields a :class:`Candidate` or a :class:`Problem` per file.
        speaker_groups: Number of folds of the ``speaker-groups`` protocol.
    """

    name: str
    title: str
    layout: str
    label_map: Mapping[str, str]
    protocols: tuple[str, ...]
    find: Finder
    excluded_labels: frozenset[str] = frozenset()
    speaker_groups: int = 5

    @property
    def default_protocol(self) -> str:
        """The honest speaker-independent default."""
        return self.protocols[0]

    @property
    def labels(self) -> tuple[str, ...]:
        """Harmonised labels of the class set, sorted."""
        return tuple(sorted(set(self.label_map.values())))


def is_candidate_file(path: Path) -> bool:
    """True for files a corpus walk should consider: not hidden, not a known sidecar."""
    return (
        path.is_file()
        and not path.name.startswith(".")
        and path.suffix.lower() not in SIDECAR_SUFFIXES
    )


def _list_folder(folder: Path) -> list[Path] | Problem:
    """A folder's entries, or a problem naming the folder when it cannot be read."""
    try:
        return list(folder.iterdir())
    except PermissionError:
        return Problem(folder, "folder cannot be read (permission denied); its files are skipped")
    except OSError as error:
        return Problem(folder, f"folder cannot be read ({error.strerror or error})")


def files_at_depth(root: Path, depth: int) -> Iterator[Path | Problem]:
    """Files exactly ``depth`` levels below ``root`` (1 = directly inside), sorted.

    Hidden folders (``.git``, ``__MACOSX``-style ``._`` trees) are not entered. A folder
    that cannot be read is yielded as a :class:`Problem` and the walk goes on.
    """
    level = [root]
    for step in range(depth):
        last = step == depth - 1
        found: list[Path] = []
        for folder in level:
            children = _list_folder(folder)
            if isinstance(children, Problem):
                yield children
            elif last:
                found.extend(sorted(c for c in children if is_candidate_file(c)))
            else:
                found.extend(
                    c for c in children if c.is_dir() and not c.name.startswith((".", "__MACOSX"))
                )
        level = found if last else sorted(found)
    yield from level
