"""RAVDESS, speech audio only (Livingstone & Russo, 2018; CC BY-NC-SA 4.0).

Layout: ``Actor_NN/MM-CC-EE-II-SS-RR-AA.<ext>`` (modality, vocal channel, emotion, intensity,
statement, repetition, actor), the ``Actor_NN`` folders directly under the root or one level
down (``Audio_Speech_Actors_01-24/Actor_01``). Only modality 03 (audio-only) with vocal channel
01 (speech) is speech audio: video files and song are rejected with the reason. Odd actors are
male, even actors female. 1,440 files, 24 actors. EmoBox key: ``ravdess-<file stem>``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

from ptssnn.corpora.corpus import Candidate, Corpus, files_at_depth
from ptssnn.corpora.records import Problem

EMOTION_CODES = {
    "01": "neutral",
    "02": "calm",
    "03": "happy",
    "04": "sad",
    "05": "angry",
    "06": "fearful",
    "07": "disgust",
    "08": "surprised",
}
LABEL_MAP = {
    "neutral": "neutral",
    "calm": "calm",
    "happy": "happy",
    "sad": "sad",
    "angry": "angry",
    "fearful": "fear",
    "disgust": "disgust",
    "surprised": "surprise",
}
MODALITIES = {"01": "audio-video", "02": "video-only", "03": "audio-only"}
VOCAL_CHANNELS = {"01": "speech", "02": "song"}
STATEMENTS = {"01": "Kids are talking by the door", "02": "Dogs are sitting by the door"}

_NAME = re.compile(r"^(\d{2})-(\d{2})-(\d{2})-(\d{2})-(\d{2})-(\d{2})-(\d{2})$")
_ACTOR_FOLDER = re.compile(r"^Actor_(\d{2})$")


def _actor_folders(root: Path) -> list[Path]:
    """``Actor_NN`` folders at the root or one level below (archives differ)."""
    found = [p for p in root.iterdir() if p.is_dir() and _ACTOR_FOLDER.match(p.name)]
    if found:
        return sorted(found)
    return sorted(
        child
        for parent in root.iterdir()
        if parent.is_dir() and not parent.name.startswith(".")
        for child in parent.iterdir()
        if child.is_dir() and _ACTOR_FOLDER.match(child.name)
    )


def find(root: Path) -> Iterator[Candidate | Problem]:
    """Yield one candidate or problem per file in each ``Actor_NN`` folder."""
    for folder in _actor_folders(root):
        folder_actor = _ACTOR_FOLDER.match(folder.name)[1]  # type: ignore[index]
        for path in files_at_depth(folder, 1):
            if isinstance(path, Problem):
                yield path
                continue
            match = _NAME.match(path.stem)
            if match is None:
                yield Problem(path, f"name {path.name!r} is not 03-01-EE-II-SS-RR-AA.wav")
                continue
            modality, channel, emotion, intensity, statement, repetition, actor = match.groups()
            reason = None
            if modality != "03":
                kind = MODALITIES.get(modality, "unknown")
                reason = f"modality {modality} ({kind}) is not audio-only speech (03)"
            elif channel != "01":
                kind = VOCAL_CHANNELS.get(channel, "unknown")
                reason = f"vocal channel {channel} ({kind}) is not speech (01)"
            elif actor != folder_actor:
                reason = f"file names actor {actor} but lies in folder {folder.name}"
            elif intensity not in ("01", "02") or statement not in STATEMENTS:
                reason = f"intensity {intensity} or statement {statement} is not 01/02"
            elif emotion == "01" and intensity == "02":
                reason = "neutral has no strong intensity (02) in RAVDESS"
            if reason:
                yield Problem(path, reason)
                continue
            yield Candidate(
                path=path,
                id=f"ravdess-{path.stem}",
                speaker=f"Actor_{actor}",
                # An unknown code stays a code, so the scan reports it as an unknown label.
                raw_label=EMOTION_CODES.get(emotion, emotion),
                extras={
                    "gender": "male" if int(actor) % 2 else "female",
                    "intensity": "normal" if intensity == "01" else "strong",
                    "statement": STATEMENTS[statement],
                    "repetition": int(repetition),
                },
            )


CORPUS = Corpus(
    name="ravdess",
    title="RAVDESS emotional speech (audio-only)",
    layout="Actor_NN/03-01-EE-II-SS-RR-NN.wav, e.g. Actor_01/03-01-05-01-02-01-01.wav",
    label_map=LABEL_MAP,
    protocols=("actor-groups", "loso", "emobox"),
    find=find,
)
