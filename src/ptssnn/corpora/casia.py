"""CASIA Chinese emotional speech corpus, public 1,200-utterance subset.

Layout: ``<speaker>/<emotion>/<NNN>.<ext>`` (4 speakers x 6 emotions x 50 sentences 201-250).
Files at any other depth are ignored (the public archives carry stray files at the top).
EmoBox key: ``casia-<NNN>-<speaker lower-cased>-<emotion>``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from ptssnn.corpora.corpus import Candidate, Corpus, files_at_depth
from ptssnn.corpora.records import Problem

LABEL_MAP = {
    "angry": "angry",
    "fear": "fear",
    "happy": "happy",
    "neutral": "neutral",
    "sad": "sad",
    "surprise": "surprise",
}

# Two male and two female professional speakers.
GENDERS = {
    "liuchanhg": "female",
    "zhaoquanyin": "female",
    "wangzhe": "male",
    "zhaozuoxiang": "male",
}


def find(root: Path) -> Iterator[Candidate | Problem]:
    """Yield one candidate or problem per file at ``<speaker>/<emotion>/<file>``."""
    for path in files_at_depth(root, 3):
        if isinstance(path, Problem):
            yield path
            continue
        # Folder case varies between copies; EmoBox keys use the lower-case emotion.
        speaker, emotion = path.parent.parent.name, path.parent.name.lower()
        if not path.stem.isdigit():
            yield Problem(path, f"file name {path.name!r} is not a sentence number like 201.wav")
            continue
        extras = {"sentence": path.stem}
        if speaker.lower() in GENDERS:
            extras["gender"] = GENDERS[speaker.lower()]
        yield Candidate(
            path=path,
            id=f"casia-{path.stem}-{speaker.lower()}-{emotion}",
            speaker=speaker,
            raw_label=emotion,
            extras=extras,
        )


CORPUS = Corpus(
    name="casia",
    title="CASIA Chinese emotional speech (public 1,200 subset)",
    layout="<speaker>/<emotion>/<NNN>.wav, e.g. wangzhe/angry/201.wav",
    label_map=LABEL_MAP,
    protocols=("loso", "emobox"),
    find=find,
)
