"""URDU emotional speech corpus (Latif et al., 2018).

Layout: ``<Emotion>/S<M|F><speaker>_F<n>_<A|H|N|S><nnn>.<ext>`` (e.g. ``Angry/SM1_F10_A010``:
male speaker 1). 400 files, 100 per class, from 29 very unbalanced speakers (2 to 80 files).
Speaker id is gender + number (``M1``, ``F6``). EmoBox key: ``urdu-<file stem>``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

from ptssnn.corpora.corpus import Candidate, Corpus, files_at_depth
from ptssnn.corpora.records import Problem

LABEL_MAP = {"A": "angry", "H": "happy", "N": "neutral", "S": "sad"}
FOLDERS = {"Angry": "A", "Happy": "H", "Neutral": "N", "Sad": "S"}

_NAME = re.compile(
    r"^S(?P<gender>[MF])(?P<number>\d+)_F(?P<file>\d+)_(?P<emotion>[A-Z])(?P<item>\d+)$"
)


def find(root: Path) -> Iterator[Candidate | Problem]:
    """Yield one candidate or problem per file at ``<Emotion>/<file>``."""
    for path in files_at_depth(root, 2):
        if isinstance(path, Problem):
            yield path
            continue
        folder = path.parent.name
        if folder not in FOLDERS:
            yield Problem(path, f"folder {folder!r} is not one of {sorted(FOLDERS)}")
            continue
        match = _NAME.match(path.stem)
        if match is None:
            yield Problem(path, f"name {path.name!r} is not S<M|F><id>_F<n>_<A|H|N|S><nnn>.wav")
            continue
        if match["emotion"] in LABEL_MAP and match["emotion"] != FOLDERS[folder]:
            yield Problem(
                path,
                f"emotion code {match['emotion']} in the name contradicts folder {folder!r}",
            )
            continue
        yield Candidate(
            path=path,
            id=f"urdu-{path.stem}",
            speaker=f"{match['gender']}{int(match['number'])}",
            raw_label=match["emotion"],
            extras={"gender": "male" if match["gender"] == "M" else "female"},
        )


CORPUS = Corpus(
    name="urdu",
    title="URDU emotional speech",
    layout="<Emotion>/S<M|F><id>_F<n>_<A|H|N|S><nnn>.wav, e.g. Angry/SM1_F10_A010.wav",
    label_map=LABEL_MAP,
    protocols=("speaker-groups", "loso", "emobox"),
    find=find,
    speaker_groups=5,
)
