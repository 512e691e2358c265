"""Tiny synthetic corpora with the exact naming and folder layout of the real distributions.

Each ``build_<corpus>_tree(root)`` writes short generated audio (a tone plus a little noise)
under ``root`` and returns a :class:`SyntheticTree` saying what a scan must find: the utterance
ids, and the file names that must come back as problems or as excluded. The trees include the
awkward cases (stereo, 48 kHz, FLAC content, misnamed and mislabelled files, non-speech RAVDESS
files, sidecar documents, stray files) so that other test suites can reuse them as a small,
realistic corpus: ``from corpora.synthetic_trees import build_emodb_tree``.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soundfile as sf


@dataclass
class SyntheticTree:
    """What a scan of a generated tree must return.

    Attributes:
        root: The corpus root to pass to ``scan_corpus``.
        ids: Utterance ids the scan must produce.
        problems: File names (not paths) the scan must report as problems.
        excluded: File names the scan must list as excluded (outside the class set).
        labels: Utterance id -> harmonised label.
        speakers: Utterance id -> speaker.
    """

    root: Path
    ids: set[str] = field(default_factory=set)
    problems: set[str] = field(default_factory=set)
    excluded: set[str] = field(default_factory=set)
    labels: dict[str, str] = field(default_factory=dict)
    speakers: dict[str, str] = field(default_factory=dict)

    def add(self, utt_id: str, speaker: str, label: str) -> None:
        self.ids.add(utt_id)
        self.speakers[utt_id] = speaker
        self.labels[utt_id] = label


def write_tone(
    path: Path,
    *,
    seconds: float = 0.4,
    sample_rate: int = 16000,
    channels: int = 1,
    frequency: float = 220.0,
    format: str | None = None,
    subtype: str | None = None,
) -> Path:
    """Write a short tone with a little noise (deterministic per path); returns ``path``.

    ``format`` forces the container (e.g. FLAC bytes in a ``.wav`` name).
    """
    rng = np.random.default_rng(zlib.crc32(path.name.encode()))
    t = np.arange(round(seconds * sample_rate)) / sample_rate
    tone = 0.3 * np.sin(2 * np.pi * frequency * t) + 0.01 * rng.standard_normal(t.shape[0])
    data = np.stack([tone * (0.5 + 0.5 * c / max(channels, 1)) for c in range(channels)], axis=1)
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, data.astype(np.float32), sample_rate, format=format, subtype=subtype)
    return path


def build_casia_tree(root: Path) -> SyntheticTree:
    """``<speaker>/<emotion>/<NNN>.wav``: 2 speakers x 3 emotions x 2 sentences, plus oddities."""
    tree = SyntheticTree(root)
    for speaker in ("wangzhe", "liuchanhg"):
        for emotion in ("angry", "neutral", "sad"):
            for sentence in ("201", "202"):
                write_tone(root / speaker / emotion / f"{sentence}.wav")
                tree.add(f"casia-{sentence}-{speaker}-{emotion}", speaker, emotion)
    write_tone(root / "stray.wav")  # outside the depth: ignored
    write_tone(root / "wangzhe" / "bored" / "201.wav")
    write_tone(root / "wangzhe" / "angry" / "take2.wav")
    tree.problems |= {"201.wav", "take2.wav"}  # unknown emotion folder, non-numeric name
    return tree


def build_emovo_tree(root: Path) -> SyntheticTree:
    """``<speaker>/<emo>-<speaker>-<sentence>.wav`` at 48 kHz stereo, as distributed."""
    tree = SyntheticTree(root)
    labels = {"gio": "happy", "rab": "angry", "neu": "neutral"}
    for speaker in ("f1", "m1", "m2"):
        for emo, label in labels.items():
            for sentence in ("b1", "n1"):
                write_tone(root / speaker / f"{emo}-{speaker}-{sentence}.wav", sample_rate=48000,
                           channels=2)  # fmt: skip
                tree.add(f"emovo-{emo}-{speaker}-{sentence}", speaker, label)
    write_tone(root / "f1" / "rab-m1-b2.wav")  # speaker in name contradicts folder
    write_tone(root / "f1" / "xyz-f1-b1.wav")  # unknown emotion code
    tree.problems |= {"rab-m1-b2.wav", "xyz-f1-b1.wav"}
    return tree


def build_urdu_tree(root: Path) -> SyntheticTree:
    """``<Emotion>/S<M|F><id>_F<n>_<A|H|N|S><nnn>.wav`` at 44.1 kHz, 5 unbalanced speakers."""
    tree = SyntheticTree(root)
    folders = {"A": ("Angry", "angry"), "H": ("Happy", "happy"), "N": ("Neutral", "neutral"),
               "S": ("Sad", "sad")}  # fmt: skip
    counts = {"SM1": 4, "SM2": 3, "SF1": 2, "SM5": 6, "SF3": 1}
    item = 0
    for speaker, count in counts.items():
        for code, (folder, label) in folders.items():
            for n in range(count):
                item += 1
                stem = f"{speaker}_F{n + 1}_{code}{item:03d}"
                write_tone(root / folder / f"{stem}.wav", sample_rate=44100)
                tree.add(f"urdu-{stem}", speaker[1:], label)
    write_tone(root / "Angry" / "SM1_F9_H999.wav")  # code H in folder Angry
    write_tone(root / "Angry" / "recording.wav")
    write_tone(root / "Calm" / "SM1_F9_C998.wav")
    tree.problems |= {"SM1_F9_H999.wav", "recording.wav", "SM1_F9_C998.wav"}
    return tree


def build_emodb_tree(root: Path) -> SyntheticTree:
    """``wav/<SS><TTT><E><V>.wav``: 4 speakers, 4 emotions; stereo, 48 kHz, FLAC, bad names."""
    tree = SyntheticTree(root)
    letters = {"W": "angry", "N": "neutral", "T": "sad", "L": "boredom"}
    for speaker in ("03", "08", "09", "10"):
        for letter, label in letters.items():
            for text in ("a01", "b02"):
                stem = f"{speaker}{text}{letter}a"
                write_tone(root / "wav" / f"{stem}.wav")
                tree.add(f"emodb-{stem}", speaker, label)
    # Awkward but valid: stereo 48 kHz, and FLAC bytes behind a .wav name.
    write_tone(root / "wav" / "11a01Wb.wav", sample_rate=48000, channels=2)
    tree.add("emodb-11a01Wb", "11", "angry")
    write_tone(root / "wav" / "11a02Fa.wav", format="FLAC", subtype="PCM_16")
    tree.add("emodb-11a02Fa", "11", "happy")
    write_tone(root / "wav" / "03a01Xa.wav")  # unknown emotion letter: mislabelled
    write_tone(root / "wav" / "03_a01_Wa.wav")  # wrong naming scheme
    write_tone(root / "wav" / "08a04Wa.wav", seconds=0.1)  # shorter than 0.25 s
    (root / "wav" / "08a05Wa.wav").write_bytes(b"not audio at all")
    tree.problems |= {"03a01Xa.wav", "03_a01_Wa.wav", "08a04Wa.wav", "08a05Wa.wav"}
    (root / "erklaerung.txt").write_text("documentation, not audio\n")
    (root / "wav" / ".DS_Store").write_bytes(b"\0\0")
    write_tone(root / "lablaut" / "03a01Wa.wav")  # other folders of the distribution: ignored
    return tree


def build_ravdess_tree(root: Path, *, actors: int = 8, nested: bool = True) -> SyntheticTree:
    """``[Audio_Speech_Actors_01-24/]Actor_NN/03-01-EE-II-SS-RR-NN.wav`` at 48 kHz.

    Every actor has one file per emotion (01-08); one file per actor is stereo. Non-speech
    files (video, audio-video, song), a file in the wrong actor folder, an unknown emotion
    code and a strong neutral are problems.
    """
    tree = SyntheticTree(root)
    base = root / "Audio_Speech_Actors_01-24" if nested else root
    names = {"01": "neutral", "02": "calm", "03": "happy", "04": "sad", "05": "angry",
             "06": "fear", "07": "disgust", "08": "surprise"}  # fmt: skip
    for a in range(1, actors + 1):
        actor = f"{a:02d}"
        for emotion, label in names.items():
            stem = f"03-01-{emotion}-01-01-01-{actor}"
            write_tone(base / f"Actor_{actor}" / f"{stem}.wav", sample_rate=48000,
                       channels=2 if emotion == "05" else 1)  # fmt: skip
            tree.add(f"ravdess-{stem}", f"Actor_{actor}", label)
    folder = base / "Actor_01"
    odd = {
        "02-01-05-01-01-01-01.wav",  # video-only
        "01-01-05-01-01-01-01.wav",  # audio-video
        "03-02-05-01-01-01-01.wav",  # song
        "03-01-05-01-01-02-02.wav",  # actor 02 in folder Actor_01
        "03-01-09-01-01-01-01.wav",  # no emotion 09
        "03-01-01-02-01-01-01.wav",  # neutral has no strong intensity
        "03-01-05-01-01-01.wav",  # a field missing
    }
    for name in odd:
        write_tone(folder / name, sample_rate=48000)
    tree.problems |= odd
    return tree


_IEMOCAP_LABELS = ("neu", "hap", "exc", "ang", "sad", "fru")
_IEMOCAP_MAP = {"neu": "neutral", "hap": "happy", "exc": "happy", "ang": "angry", "sad": "sad"}


def build_iemocap_tree(root: Path, *, sessions: int = 3) -> SyntheticTree:
    """``SessionN/sentences/wav/<dialog>/<utt>.wav`` + ``SessionN/dialog/EmoEvaluation/*.txt``.

    Per session two dialogs, 6 turns per speaker each, labels cycling through neu, hap, exc,
    ang, sad, fru (fru is excluded). Oddities: a wav without a label line (problem), a file of
    another session (problem), an ``xxx`` label (excluded), and the ``Categorical/`` and
    ``Attribute/`` sub-folders of the real distribution (not read).
    """
    tree = SyntheticTree(root)
    for s in range(1, sessions + 1):
        session = root / f"Session{s}"
        evaluation = session / "dialog" / "EmoEvaluation"
        evaluation.mkdir(parents=True, exist_ok=True)
        for dialog in (f"Ses{s:02d}F_impro01", f"Ses{s:02d}M_script02_1"):
            lines = ["% [START_TIME - END_TIME] TURN_NAME EMOTION [V, A, D]", ""]
            position = 0.0
            for gender in ("F", "M"):
                for turn in range(6):
                    utt = f"{dialog}_{gender}{turn:03d}"
                    emotion = _IEMOCAP_LABELS[(turn + s + (gender == "M")) % 6]
                    write_tone(session / "sentences" / "wav" / dialog / f"{utt}.wav")
                    lines += [
                        f"[{position:.4f} - {position + 0.4:.4f}]\t{utt}\t{emotion}\t"
                        "[2.5000, 3.0000, 2.5000]",
                        f"C-E1:\t{emotion.title()};\t()",
                        "A-E1:\tval 3; act 3; dom  3;\t()",
                        "",
                    ]
                    position += 0.5
                    if emotion == "fru":
                        tree.excluded.add(f"{utt}.wav")
                    else:
                        tree.add(f"iemocap-{utt}", f"Ses{s:02d}{gender}", _IEMOCAP_MAP[emotion])
            if dialog.endswith("impro01"):
                lines.append(f"[9.0000 - 9.4000]\t{dialog}_F100\txxx\t[2.0000, 2.0000, 2.0000]")
                write_tone(session / "sentences" / "wav" / dialog / f"{dialog}_F100.wav")
                tree.excluded.add(f"{dialog}_F100.wav")
            (evaluation / f"{dialog}.txt").write_text("\n".join(lines) + "\n")
        (evaluation / "Categorical").mkdir(exist_ok=True)
        (evaluation / "Categorical" / f"Ses{s:02d}F_impro01_e1_cat.txt").write_text(
            f"[0.0 - 0.4]\tSes{s:02d}F_impro01_F000\tfea\t[1, 1, 1]\n"  # must not be read
        )
        unlabelled = f"Ses{s:02d}F_impro01_F200.wav"
        write_tone(session / "sentences" / "wav" / f"Ses{s:02d}F_impro01" / unlabelled)
        tree.problems.add(unlabelled)
    other = "Ses09F_impro01_F000.wav"  # session 9 under Session1
    write_tone(root / "Session1" / "sentences" / "wav" / "Ses01F_impro01" / other)
    tree.problems.add(other)
    return tree


BUILDERS = {
    "casia": build_casia_tree,
    "emovo": build_emovo_tree,
    "urdu": build_urdu_tree,
    "emodb": build_emodb_tree,
    "ravdess": build_ravdess_tree,
    "iemocap": build_iemocap_tree,
}
