"""Berlin Database of Emotional Speech (EmoDB, Burkhardt et al., 2005).

Layout: ``wav/<SS><TTT><E><V>.<ext>`` (e.g. ``wav/03a01Fa.wav``): speaker 2 digits, text code
3 characters (a01-a07, b01-b10), emotion letter (German initials: W anger, L boredom, E disgust,
A fear, F happiness, T sadness, N neutral), version letter. The root may also be the ``wav``
folder itself. 535 files, 10 speakers. EmoBox key: ``emodb-<file stem>``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

from ptssnn.corpora.corpus import Candidate, Corpus, files_at_depth
from ptssnn.corpora.records import Problem

LABEL_MAP = {
    "W": "angry",  # Wut
    "L": "boredom",  # Langeweile
    "E": "disgust",  # Ekel
    "A": "fear",  # Angst
    "F": "happy",  # Freude
    "T": "sad",  # Trauer
    "N": "neutral",
}

# Speaker -> (gender, age) from the corpus documentation.
SPEAKERS = {
    "03": ("male", 31),
    "08": ("female", 34),
    "09": ("female", 21),
    "10": ("male", 32),
    "11": ("male", 26),
    "12": ("male", 30),
    "13": ("female", 32),
    "14": ("female", 35),
    "15": ("male", 25),
    "16": ("female", 31),
}

_NAME = re.compile(r"^(?P<speaker>\d{2})(?P<text>[ab]\d{2})(?P<emotion>[A-Z])(?P<version>[a-z])$")


def find(root: Path) -> Iterator[Candidate | Problem]:
    """Yield one candidate or problem per file in ``root/wav`` (or ``root`` if it is that)."""
    folder = root / "wav" if (root / "wav").is_dir() else root
    for path in files_at_depth(folder, 1):
        if isinstance(path, Problem):
            yield path
            continue
        match = _NAME.match(path.stem)
        if match is None:
            yield Problem(path, f"name {path.name!r} is not <SS><TTT><E><V>.wav like 03a01Fa.wav")
            continue
        speaker = match["speaker"]
        extras: dict[str, object] = {"text": match["text"], "version": match["version"]}
        if speaker in SPEAKERS:
            extras["gender"], extras["age"] = SPEAKERS[speaker]
        yield Candidate(
            path=path,
            id=f"emodb-{path.stem}",
            speaker=speaker,
            raw_label=match["emotion"],
            extras=extras,
        )


CORPUS = Corpus(
    name="emodb",
    title="EmoDB Berlin emotional speech",
    layout="wav/<SS><TTT><E><V>.wav, e.g. wav/03a01Fa.wav",
    label_map=LABEL_MAP,
    protocols=("loso", "emobox"),
    find=find,
)
