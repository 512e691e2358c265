"""make_folds: speaker-independent protocols, EmoBox folds, validation carving, errors.

Most tests run on utterance records made from the shipped EmoBox ids (the full corpora, no
audio needed: make_folds never opens a file) or on the synthetic trees.
"""

from __future__ import annotations

import gzip
import json
import re
from collections import Counter
from pathlib import Path

import pytest

from corpora.synthetic_trees import BUILDERS
from ptssnn.corpora import (
    Fold,
    Utterance,
    emobox_corpora,
    emobox_num_folds,
    emobox_test_folds,
    get_corpus,
    list_protocols,
    make_folds,
    scan_corpus,
)
from ptssnn.errors import ProtocolError

EMOBOX_FOLDS = {"casia": 4, "emodb": 5, "emovo": 6, "iemocap": 5, "ravdess": 6, "urdu": 1}
EMOBOX_SIZES = {"casia": 1200, "emodb": 535, "emovo": 588, "iemocap": 5531, "ravdess": 1440,
                "urdu": 400}  # fmt: skip


def _speaker_and_raw_label(corpus: str, utt_id: str) -> tuple[str, str]:
    """Parse speaker and raw label out of an EmoBox key (as the corpus loaders would)."""
    stem = utt_id.split("-", 1)[1]
    if corpus == "casia":
        _, speaker, emotion = stem.split("-")
        return speaker, emotion
    if corpus == "emovo":
        emotion, speaker, _ = stem.split("-")
        return speaker, emotion
    if corpus == "urdu":
        match = re.match(r"S([MF]\d+)_F\d+_([AHNS])", stem)
        return match[1], match[2]
    if corpus == "emodb":
        return stem[:2], stem[5]
    if corpus == "ravdess":
        fields = stem.split("-")
        codes = {"01": "neutral", "02": "calm", "03": "happy", "04": "sad", "05": "angry",
                 "06": "fearful", "07": "disgust", "08": "surprised"}  # fmt: skip
        return f"Actor_{fields[6]}", codes[fields[2]]
    session, gender = stem[3:5], stem.rsplit("_", 1)[1][0]
    return f"Ses{session}{gender}", "neu"  # labels are not in the ids; irrelevant here


def full_corpus(corpus: str) -> list[Utterance]:
    """Utterance records for every EmoBox id of ``corpus`` (paths are placeholders)."""
    spec = get_corpus(corpus)
    records = []
    for utt_id in sorted(emobox_test_folds(corpus)):
        speaker, raw = _speaker_and_raw_label(corpus, utt_id)
        extras = {"session": int(speaker[3:5])} if corpus == "iemocap" else {}
        records.append(
            Utterance(
                id=utt_id,
                corpus=corpus,
                path=Path(f"{utt_id}.wav"),
                speaker=speaker,
                raw_label=raw,
                label=spec.label_map[raw],
                duration=2.0,
                extras=extras,
            )
        )
    return records


def assert_partition(fold: Fold, all_ids: set[str]) -> None:
    train, validation, test = set(fold.train), set(fold.validation), set(fold.test)
    assert train and test, fold.name
    assert not train & validation and not train & test and not validation & test, fold.name
    assert train | validation | test <= all_ids
    assert list(fold.train) == sorted(fold.train) and list(fold.test) == sorted(fold.test)


def speakers_of(utterances: list[Utterance], ids) -> set[str]:
    speaker = {u.id: u.speaker for u in utterances}
    return {speaker[i] for i in ids}


# --- the shipped EmoBox file ------------------------------------------------------------------


def test_emobox_file_parses_for_all_six():
    assert emobox_corpora() == tuple(sorted(EMOBOX_FOLDS))
    for corpus, folds in EMOBOX_FOLDS.items():
        fold_of = emobox_test_folds(corpus)
        assert emobox_num_folds(corpus) == folds
        assert len(fold_of) == EMOBOX_SIZES[corpus]
        assert all(key.startswith(f"{corpus}-") for key in fold_of)
        train_only = {0} if corpus == "urdu" else set()  # URDU: 300 ids are never tested
        assert set(fold_of.values()) == set(range(1, folds + 1)) | train_only
    sizes = Counter(emobox_test_folds("iemocap").values())
    assert [sizes[k] for k in range(1, 6)] == [1085, 1023, 1151, 1031, 1241]


def test_emobox_file_holds_ids_only():
    path = Path(__import__("ptssnn.corpora").corpora.__file__).parent / "data"
    (shipped,) = path.glob("emobox_folds*")
    assert shipped.stat().st_size < 100_000
    text = gzip.decompress(shipped.read_bytes()).decode()
    assert ".wav" not in text and "downloads/" not in text
    payload = json.loads(text)
    assert set(payload["corpora"]["casia"]) == {"ids", "num_folds", "test_fold"}


def test_emobox_unknown_corpus():
    with pytest.raises(ProtocolError, match="no folds for corpus 'tess'"):
        emobox_test_folds("tess")


@pytest.mark.parametrize("corpus", sorted(EMOBOX_FOLDS))
def test_emobox_protocol_equals_the_split_files(shared_data, corpus):
    splits = shared_data / "splits" / corpus
    if not splits.is_dir():
        pytest.skip(f"EmoBox split files for {corpus} absent")

    def keys(name: str) -> set[str]:
        with (splits / name).open() as handle:
            return {json.loads(line)["key"] for line in handle if line.strip()}

    utterances = full_corpus(corpus)
    folds = make_folds(corpus, utterances, "emobox")
    assert len(folds) == EMOBOX_FOLDS[corpus]
    for k, fold in enumerate(folds, start=1):
        assert set(fold.test) == keys(f"{corpus}_test_fold_{k}.jsonl")
        assert set(fold.train) | set(fold.validation) == keys(f"{corpus}_train_fold_{k}.jsonl")
        assert_partition(fold, {u.id for u in utterances})


# --- speaker-independent defaults -------------------------------------------------------------

DEFAULT_FOLDS = {"casia": 4, "emodb": 10, "emovo": 6, "iemocap": 5, "ravdess": 6, "urdu": 5}


@pytest.mark.parametrize("corpus", sorted(DEFAULT_FOLDS))
def test_default_protocol_is_speaker_independent_on_full_corpora(corpus):
    utterances = full_corpus(corpus)
    folds = make_folds(corpus, utterances)
    assert len(folds) == DEFAULT_FOLDS[corpus]
    assert all(f.protocol == get_corpus(corpus).default_protocol for f in folds)
    tested = []
    for fold in folds:
        assert_partition(fold, {u.id for u in utterances})
        train, validation, test = (
            speakers_of(utterances, side) for side in (fold.train, fold.validation, fold.test)
        )
        assert validation and fold.validation_policy == "speakers"
        assert not train & validation and not train & test and not validation & test
        tested += fold.test
    assert sorted(tested) == sorted(u.id for u in utterances)


def test_iemocap_sessions_and_validation_speaker():
    utterances = full_corpus("iemocap")
    folds = make_folds("iemocap", utterances)
    assert [len(f.test) for f in folds] == [1085, 1023, 1151, 1031, 1241]
    for k, fold in enumerate(folds, start=1):
        assert fold.name == f"session-{k}"
        assert speakers_of(utterances, fold.test) == {f"Ses{k:02d}F", f"Ses{k:02d}M"}
        (held,) = speakers_of(utterances, fold.validation)  # one speaker of a training session
        assert not held.startswith(f"Ses{k:02d}")


def test_ravdess_actor_groups_are_gender_balanced():
    utterances = full_corpus("ravdess")
    folds = make_folds("ravdess", utterances)
    assert [f.name for f in folds][:2] == ["actors-01-04", "actors-05-08"]
    for fold in folds:
        actors = speakers_of(utterances, fold.test)
        assert len(actors) == 4 and len(fold.test) == 240
        assert sum(int(a[-2:]) % 2 for a in actors) == 2  # two male (odd), two female


def test_urdu_speaker_groups_balance_utterances():
    utterances = full_corpus("urdu")
    folds = make_folds("urdu", utterances)
    assert [len(f.test) for f in folds] == [80] * 5
    assert sum(len(speakers_of(utterances, f.test)) for f in folds) == 29


def test_loso_is_available_everywhere():
    for corpus in DEFAULT_FOLDS:
        utterances = full_corpus(corpus)
        folds = make_folds(corpus, utterances, "loso")
        assert len(folds) == len({u.speaker for u in utterances})
        assert all(len(speakers_of(utterances, f.test)) == 1 for f in folds)


@pytest.mark.parametrize("corpus", sorted(BUILDERS))
def test_default_protocol_on_synthetic_trees(tmp_path, corpus):
    scan = scan_corpus(corpus, BUILDERS[corpus](tmp_path / corpus).root)
    folds = make_folds(corpus, scan.utterances)
    assert len(folds) >= 2
    for fold in folds:
        assert_partition(fold, {u.id for u in scan.utterances})
        test = speakers_of(scan.utterances, fold.test)
        assert not test & speakers_of(scan.utterances, fold.train + fold.validation)
        if fold.validation_policy == "speakers":
            assert not speakers_of(scan.utterances, fold.validation) & speakers_of(
                scan.utterances, fold.train
            )


# --- validation -------------------------------------------------------------------------------


def test_validation_seed_changes_validation_not_test():
    utterances = full_corpus("ravdess")
    a = make_folds("ravdess", utterances, seed=0)
    b = make_folds("ravdess", utterances, seed=1)
    assert [f.test for f in a] == [f.test for f in b]
    assert [f.validation for f in a] != [f.validation for f in b]
    assert a == make_folds("ravdess", utterances, seed=0)  # deterministic


def test_validation_fraction_is_honoured_by_whole_speakers():
    utterances = full_corpus("ravdess")  # 60 files per actor, 20 training actors per fold
    for fold in make_folds("ravdess", utterances, validation_fraction=0.1):
        assert len(fold.validation) == 120  # two actors: the first count >= 10 % of 1,200
    for fold in make_folds("ravdess", utterances, validation_fraction=0.25):
        assert len(fold.validation) == 300


def test_not_speaker_independent_protocols_fall_back_to_stratified():
    utterances = full_corpus("emodb")
    label = {u.id: u.label for u in utterances}
    for fold in make_folds("emodb", utterances, "emobox"):
        assert fold.validation_policy == "stratified"
        counts = Counter(label[i] for i in fold.validation)
        train_counts = Counter(label[i] for i in fold.train + fold.validation)
        for name, total in train_counts.items():
            assert abs(counts[name] - 0.1 * total) <= 1  # stratified: 10 % of every class


def test_stratified_and_none_policies():
    utterances = full_corpus("casia")
    stratified = make_folds("casia", utterances, validation="stratified")
    assert {f.validation_policy for f in stratified} == {"stratified"}
    assert all(len(f.validation) == 90 for f in stratified)  # 10 % of 900, 15 per class
    none = make_folds("casia", utterances, validation="none")
    assert all(f.validation == () and len(f.train) == 900 for f in none)


def test_too_few_training_speakers_falls_back(tmp_path):
    scan = scan_corpus("casia", BUILDERS["casia"](tmp_path / "casia").root)  # 2 speakers
    for fold in make_folds("casia", scan.utterances):
        assert fold.validation_policy == "stratified"
        assert fold.validation and not set(fold.validation) & set(fold.test)


# --- errors -----------------------------------------------------------------------------------


def test_unknown_protocol_lists_the_choices():
    with pytest.raises(ProtocolError, match="choose one of: speaker-groups, loso, emobox"):
        make_folds("urdu", full_corpus("urdu"), "session")
    assert list_protocols("iemocap") == ("session", "loso", "emobox")


def test_bad_validation_arguments():
    utterances = full_corpus("casia")
    with pytest.raises(ProtocolError, match="validation must be one of"):
        make_folds("casia", utterances, validation="random")
    with pytest.raises(ProtocolError, match="validation_fraction"):
        make_folds("casia", utterances, validation_fraction=1.5)


def test_wrong_or_missing_utterances():
    with pytest.raises(ProtocolError, match="no casia utterances"):
        make_folds("casia", [])
    with pytest.raises(ProtocolError, match="corpus \\['emovo'\\]"):
        make_folds("casia", full_corpus("casia") + full_corpus("emovo")[:1])
    one_speaker = [u for u in full_corpus("casia") if u.speaker == "wangzhe"]
    with pytest.raises(ProtocolError, match="at least two"):
        make_folds("casia", one_speaker)


def test_emobox_needs_emobox_ids():
    renamed = [
        Utterance(f"{u.id}-copy", u.corpus, u.path, u.speaker, u.raw_label, u.label, 1.0)
        for u in full_corpus("casia")
    ]
    with pytest.raises(ProtocolError, match="has an EmoBox id"):
        make_folds("casia", renamed, "emobox")
    missing_fold = [u for u in full_corpus("casia") if u.speaker != "wangzhe"]
    with pytest.raises(ProtocolError, match="fold 1"):
        make_folds("casia", missing_fold, "emobox")


def test_validation_speakers_cover_the_classes_where_speakers_recorded_few():
    # URDU's speakers mostly recorded one emotion each: the first speakers drawn held one or
    # two classes on some folds (UA over them selects nothing); speakers that bring a
    # missing class are added within the same size bound.
    utterances = full_corpus("urdu")
    labels = {u.id: u.label for u in utterances}
    for fold in make_folds("urdu", utterances):
        side = len(fold.train) + len(fold.validation)
        assert fold.validation_policy == "speakers"
        assert len({labels[i] for i in fold.validation}) >= 3, fold.name
        assert len(fold.validation) <= 2 * 0.1 * side, fold.name
    # Corpora whose speakers recorded every class keep one whole speaker (CASIA LOSO).
    casia = full_corpus("casia")
    for fold in make_folds("casia", casia):
        assert len({u.speaker for u in casia if u.id in set(fold.validation)}) == 1


def test_a_class_held_by_one_training_speaker_stays_on_the_training_side():
    import numpy as np

    from ptssnn.corpora.protocols import _carve_validation

    def utt(speaker: str, label: str, k: int) -> Utterance:
        return Utterance(id=f"x-{speaker}-{label}-{k}", corpus="urdu", path=Path("a.wav"),
                         speaker=speaker, raw_label=label, label=label, duration=2.0)

    # Nine one-class speakers of 'angry' or 'happy', and one speaker alone holding 'sad'.
    pool = [utt(f"s{i}", "angry" if i % 2 else "happy", k) for i in range(9) for k in range(4)]
    pool += [utt("lonely", "sad", k) for k in range(4)]
    for seed in range(20):
        train, validation, policy = _carve_validation(
            pool, set(), policy="speakers", fraction=0.1, rng=np.random.default_rng(seed))
        assert policy == "speakers"
        train_labels = {u.label for u in pool if u.id in set(train)}
        assert train_labels == {"angry", "happy", "sad"}, seed
        held = {u.label for u in pool if u.id in set(validation)}
        assert held >= {"angry", "happy"} or len(validation) > 2 * 0.1 * len(pool) - 4, seed


def test_speaker_label_dependence_is_zero_for_balanced_speakers_and_one_for_one_emotion_each():
    from ptssnn.corpora import speaker_label_dependence

    balanced = [(s, e) for s in "abcd" for e in ("angry", "sad", "happy") for _ in range(2)]
    assert speaker_label_dependence(*zip(*balanced, strict=True)) == pytest.approx(0.0)
    confounded = [(e, e) for e in ("angry", "sad", "happy") for _ in range(4)]
    assert speaker_label_dependence(*zip(*confounded, strict=True)) == pytest.approx(1.0)
    # Half of the speakers hold one emotion each: in between.
    mixed = balanced + [(f"solo-{e}", e) for e in ("angry", "sad", "happy") for _ in range(8)]
    assert 0.2 < speaker_label_dependence(*zip(*mixed, strict=True)) < 0.8
    assert speaker_label_dependence(["a", "b"], ["sad", "sad"]) == 0.0  # one class
    with pytest.raises(ValueError, match="2 speakers for 1 labels"):
        speaker_label_dependence(["a", "b"], ["sad"])



def test_speaker_label_warning_starts_at_the_threshold():
    from ptssnn.corpora import SPEAKER_LABEL_DEPENDENCE_WARNING, speaker_label_warning

    assert speaker_label_warning(SPEAKER_LABEL_DEPENDENCE_WARNING - 0.01) is None
    line = speaker_label_warning(SPEAKER_LABEL_DEPENDENCE_WARNING)
    assert line is not None and f"dependence {SPEAKER_LABEL_DEPENDENCE_WARNING:.2f}" in line
