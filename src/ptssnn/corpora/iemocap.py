"""IEMOCAP (Busso et al., 2008), the standard 4-class subset.

Layout: ``SessionN/sentences/wav/<dialog>/<utterance>.<ext>``, labels from the
``SessionN/dialog/EmoEvaluation/*.txt`` lines ``[start - end]<TAB>utt_id<TAB>emo<TAB>[v, a, d]``.
Class set: neutral, happy (``hap`` + ``exc`` merged), angry, sad: 5,531 utterances on the full
corpus, as SUPERB, emotion2vec and EmoBox use. The other consensus labels (``fru``, ``sur``,
``fea``, ``dis``, ``oth``, ``xxx``) are listed as excluded, not as problems. Each session has
one female and one male actor; the speaker is the session plus the gender letter that starts
the utterance's last name part (``Ses01F_impro04_M003`` -> ``Ses01M``).
EmoBox key: ``iemocap-<utterance>``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

from ptssnn.corpora.corpus import Candidate, Corpus, files_at_depth
from ptssnn.corpora.records import Problem

LABEL_MAP = {"neu": "neutral", "hap": "happy", "exc": "happy", "ang": "angry", "sad": "sad"}
OTHER_LABELS = frozenset({"fru", "sur", "fea", "dis", "oth", "xxx"})

_LINE = re.compile(
    r"^\[(?P<start>[\d.]+)\s*-\s*(?P<end>[\d.]+)\]\s+(?P<utt>Ses\S+)\s+(?P<emotion>\w+)"
    r"\s+\[(?P<vad>[^\]]*)\]"
)
_UTTERANCE = re.compile(r"^Ses(?P<session>\d{2})[FM]_(?P<dialog_rest>.+)_(?P<gender>[FM])\d+$")
_SESSION_FOLDER = re.compile(r"^Session(\d+)$")


def read_evaluations(folder: Path) -> tuple[dict[str, dict[str, object]], list[Problem]]:
    """Parse every ``EmoEvaluation/*.txt`` of a session.

    Returns:
        (utterance id -> {emotion, start, end, vad}, problems): a line that starts like a
        turn line (``[``) but does not parse is a problem of that file, not a fatal error.
    """
    labels: dict[str, dict[str, object]] = {}
    problems: list[Problem] = []
    for path in sorted(folder.glob("*.txt")):
        if path.name.startswith("."):
            continue
        for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
            if not line.startswith("["):
                continue
            match = _LINE.match(line)
            if match is None:
                problems.append(Problem(path, f"line {number} is not a turn line: {line!r}"))
                continue
            try:
                vad = [float(v) for v in match["vad"].split(",")]
            except ValueError:
                vad = []
            labels[match["utt"]] = {
                "emotion": match["emotion"],
                "start": float(match["start"]),
                "end": float(match["end"]),
                "vad": vad,
            }
    return labels, problems


def find(root: Path) -> Iterator[Candidate | Problem]:
    """Yield one candidate or problem per file in ``SessionN/sentences/wav/<dialog>/``."""
    sessions = sorted(
        (p for p in root.iterdir() if p.is_dir() and _SESSION_FOLDER.match(p.name)),
        key=lambda p: int(p.name[7:]),
    )
    for session_folder in sessions:
        session = int(session_folder.name[7:])
        wav_root = session_folder / "sentences" / "wav"
        if not wav_root.is_dir():
            continue
        evaluations, bad_lines = read_evaluations(session_folder / "dialog" / "EmoEvaluation")
        yield from bad_lines
        for path in files_at_depth(wav_root, 2):
            if isinstance(path, Problem):
                yield path
                continue
            match = _UTTERANCE.match(path.stem)
            if match is None:
                yield Problem(path, f"name {path.name!r} is not an IEMOCAP utterance id")
                continue
            if int(match["session"]) != session or not path.stem.startswith(path.parent.name + "_"):
                yield Problem(
                    path,
                    f"utterance {path.stem} does not belong in {session_folder.name}/"
                    f"sentences/wav/{path.parent.name}",
                )
                continue
            evaluation = evaluations.get(path.stem)
            if evaluation is None:
                yield Problem(
                    path,
                    f"no label for {path.stem} in {session_folder.name}/dialog/EmoEvaluation/*.txt",
                )
                continue
            dialog = path.parent.name
            yield Candidate(
                path=path,
                id=f"iemocap-{path.stem}",
                speaker=f"Ses{session:02d}{match['gender']}",
                raw_label=str(evaluation["emotion"]),
                extras={
                    "session": session,
                    "dialog": dialog,
                    "gender": "female" if match["gender"] == "F" else "male",
                    "improvised": "_impro" in dialog,
                    "vad": evaluation["vad"],
                },
            )


CORPUS = Corpus(
    name="iemocap",
    title="IEMOCAP (4-class: neutral, happy+excited, angry, sad)",
    layout=(
        "SessionN/sentences/wav/<dialog>/<utterance>.wav with labels in "
        "SessionN/dialog/EmoEvaluation/<dialog>.txt"
    ),
    label_map=LABEL_MAP,
    excluded_labels=OTHER_LABELS,
    protocols=("session", "loso", "emobox"),
    find=find,
)
