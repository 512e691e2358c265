"""EMOVO Italian emotional speech corpus (Costantini et al., LREC 2014).

Layout: ``<speaker>/<emo>-<speaker>-<sentence>.<ext>``, speakers f1-f3 and m1-m3, emotion codes
dis gio neu pau rab sor tri, sentences b1-b3, d1-d2, l1-l4, n1-n5 (14 per speaker and emotion).
EmoBox key: ``emovo-<file stem>``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

from ptssnn.corpora.corpus import Candidate, Corpus, files_at_depth
from ptssnn.corpora.records import Problem

LABEL_MAP = {
    "dis": "disgust",
    "gio": "happy",  # gioia, joy
    "neu": "neutral",
    "pau": "fear",  # paura
    "rab": "angry",  # rabbia
    "sor": "surprise",  # sorpresa
    "tri": "sad",  # tristezza
}

_NAME = re.compile(r"^(?P<emotion>[a-z]+)-(?P<speaker>[fm]\d)-(?P<sentence>[a-z]+\d+)$")


def find(root: Path) -> Iterator[Candidate | Problem]:
    """Yield one candidate or problem per file at ``<speaker>/<file>``."""
    for path in files_at_depth(root, 2):
        if isinstance(path, Problem):
            yield path
            continue
        match = _NAME.match(path.stem)
        if match is None:
            yield Problem(path, f"name {path.name!r} is not <emo>-<speaker>-<sentence>.wav")
            continue
        speaker = match["speaker"]
        if path.parent.name != speaker:
            yield Problem(
                path, f"file names speaker {speaker} but lies in folder {path.parent.name!r}"
            )
            continue
        yield Candidate(
            path=path,
            id=f"emovo-{path.stem}",
            speaker=speaker,
            raw_label=match["emotion"],
            extras={
                "gender": "female" if speaker.startswith("f") else "male",
                "sentence": match["sentence"],
            },
        )


CORPUS = Corpus(
    name="emovo",
    title="EMOVO Italian emotional speech",
    layout="<speaker>/<emo>-<speaker>-<sentence>.wav, e.g. f1/gio-f1-b1.wav",
    label_map=LABEL_MAP,
    protocols=("loso", "emobox"),
    find=find,
)
