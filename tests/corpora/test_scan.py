"""scan_corpus on synthetic trees of all six corpora, with their awkward files, and its errors."""

from __future__ import annotations

import re
import shutil

import pytest

from corpora.synthetic_trees import BUILDERS, build_emodb_tree, build_ravdess_tree, write_tone
from ptssnn.corpora import (
    CORPORA,
    get_corpus,
    list_corpora,
    read_manifest,
    scan_corpus,
    write_manifest,
)
from ptssnn.errors import CorpusError, PtssnnError, TooShortAudioError, UnreadableAudioError


@pytest.fixture(scope="module")
def trees(tmp_path_factory):
    root = tmp_path_factory.mktemp("synthetic")
    return {name: build(root / name) for name, build in BUILDERS.items()}


@pytest.mark.parametrize("corpus", sorted(BUILDERS))
def test_synthetic_tree_scans_to_exactly_the_expected_records(trees, corpus):
    tree = trees[corpus]
    scan = scan_corpus(corpus, tree.root)
    assert {u.id for u in scan.utterances} == tree.ids
    assert {p.path.name for p in scan.problems} == tree.problems
    assert {p.path.name for p in scan.excluded} == tree.excluded
    for utterance in scan.utterances:
        assert utterance.corpus == corpus
        assert utterance.label == tree.labels[utterance.id]
        assert utterance.speaker == tree.speakers[utterance.id]
        assert utterance.path.is_file() and utterance.duration > 0.25
    assert all(p.reason for p in scan.problems)


def test_emodb_awkward_files(trees):
    scan = scan_corpus("emodb", trees["emodb"].root)
    by_id = {u.id: u for u in scan.utterances}
    stereo = by_id["emodb-11a01Wb"]
    assert (stereo.sample_rate, stereo.channels) == (48000, 2)
    assert stereo.duration == pytest.approx(0.4)
    assert stereo.extras == {"text": "a01", "version": "b", "gender": "male", "age": 26}
    assert by_id["emodb-11a02Fa"].label == "happy"  # FLAC bytes behind a .wav name
    reasons = {p.path.name: p.reason for p in scan.problems}
    assert "unknown emotion label 'X'" in reasons["03a01Xa.wav"]
    assert "shorter than the minimum" in reasons["08a04Wa.wav"]
    assert "cannot be decoded" in reasons["08a05Wa.wav"]
    assert {u.label for u in scan.utterances} == {"angry", "neutral", "sad", "boredom", "happy"}


def test_emodb_root_may_be_the_wav_folder(trees):
    tree = trees["emodb"]
    assert {u.id for u in scan_corpus("emodb", tree.root / "wav").utterances} == tree.ids


def test_ravdess_rejects_non_speech_with_reasons(trees):
    reasons = {
        p.path.name: p.reason for p in scan_corpus("ravdess", trees["ravdess"].root).problems
    }
    assert "video-only" in reasons["02-01-05-01-01-01-01.wav"]
    assert "audio-video" in reasons["01-01-05-01-01-01-01.wav"]
    assert "song" in reasons["03-02-05-01-01-01-01.wav"]
    assert "actor 02" in reasons["03-01-05-01-01-02-02.wav"]
    assert "strong intensity" in reasons["03-01-01-02-01-01-01.wav"]


def test_ravdess_actor_folders_directly_under_root(tmp_path):
    tree = build_ravdess_tree(tmp_path / "ravdess", actors=2, nested=False)
    scan = scan_corpus("ravdess", tree.root)
    assert {u.id for u in scan.utterances} == tree.ids
    first = scan.utterances[0]
    assert first.extras["gender"] == "male" and first.speaker == "Actor_01"
    assert {u.extras["gender"] for u in scan.utterances if u.speaker == "Actor_02"} == {"female"}


def test_ravdess_top_level_actor_folders_win_over_nested_copies(tmp_path):
    tree = build_ravdess_tree(tmp_path / "ravdess", actors=2, nested=False)
    # The Kaggle archive holds the actors twice: at the top and inside a sub-folder.
    shutil.copytree(tree.root / "Actor_01", tree.root / "audio_speech_actors_01-24" / "Actor_01")
    scan = scan_corpus("ravdess", tree.root)
    assert {u.id for u in scan.utterances} == tree.ids
    assert all(u.path.parent.parent == tree.root for u in scan.utterances)


def test_same_utterance_in_two_formats_is_a_duplicate_problem(tmp_path):
    write_tone(tmp_path / "wav" / "03a01Wa.flac")
    write_tone(tmp_path / "wav" / "03a01Wa.wav")
    scan = scan_corpus("emodb", tmp_path)
    assert [u.path.name for u in scan.utterances] == ["03a01Wa.flac"]  # first in sorted order
    (problem,) = scan.problems
    assert problem.path.name == "03a01Wa.wav" and "duplicate utterance id" in problem.reason


def test_iemocap_labels_sessions_and_exclusions(trees):
    scan = scan_corpus("iemocap", trees["iemocap"].root)
    by_id = {u.id: u for u in scan.utterances}
    first = by_id["iemocap-Ses01F_impro01_F000"]
    assert first.extras["session"] == 1 and first.extras["improvised"] is True
    assert first.extras["vad"] == [2.5, 3.0, 2.5]
    assert by_id["iemocap-Ses01M_script02_1_M001"].speaker == "Ses01M"
    assert {u.raw_label for u in scan.utterances} == {"neu", "hap", "exc", "ang", "sad"}
    assert {u.label for u in scan.utterances} == {"neutral", "happy", "angry", "sad"}
    assert all("outside the class set" in p.reason for p in scan.excluded)
    # The Categorical/ sub-folder says "fea" for F000; only the top-level files count.
    assert first.raw_label != "fea"


def test_strict_raises_on_first_problem(trees, tmp_path):
    with pytest.raises(CorpusError, match="strict"):
        scan_corpus("ravdess", trees["ravdess"].root, strict=True)
    root = tmp_path / "emodb"
    write_tone(root / "wav" / "03a01Wa.wav")
    write_tone(root / "wav" / "03a01Wb.wav", seconds=0.1)
    with pytest.raises(TooShortAudioError):
        scan_corpus("emodb", root, strict=True)
    (root / "wav" / "03a01Wb.wav").write_bytes(b"RIFF")
    with pytest.raises(UnreadableAudioError):
        scan_corpus("emodb", root, strict=True)
    (root / "wav" / "03a01Wb.wav").unlink()
    assert len(scan_corpus("emodb", root, strict=True).utterances) == 1


def test_strict_ignores_excluded_labels(tmp_path):
    tree = BUILDERS["iemocap"](tmp_path / "iemocap", sessions=2)
    for session in (1, 2):  # remove the problem files, keep the excluded ones
        (tree.root / f"Session{session}" / "sentences" / "wav" / f"Ses0{session}F_impro01"
         / f"Ses0{session}F_impro01_F200.wav").unlink()  # fmt: skip
    (tree.root / "Session1/sentences/wav/Ses01F_impro01/Ses09F_impro01_F000.wav").unlink()
    scan = scan_corpus("iemocap", tree.root, strict=True)
    assert scan.problems == [] and scan.excluded


def test_unknown_corpus(tmp_path):
    with pytest.raises(CorpusError, match=r"unknown corpus 'tess'.*casia"):
        scan_corpus("tess", tmp_path)


def test_missing_root(tmp_path):
    with pytest.raises(CorpusError, match=r"does not exist.*<speaker>/<emotion>"):
        scan_corpus("casia", tmp_path / "nowhere")


def test_root_is_a_file(tmp_path):
    path = write_tone(tmp_path / "a.wav")
    with pytest.raises(CorpusError, match="not a folder"):
        scan_corpus("casia", path)


def test_wrong_layout_says_what_was_expected(trees):
    # An EMOVO tree is one level too shallow for CASIA, and its folders are not URDU emotions.
    with pytest.raises(CorpusError, match=r"expected layout <speaker>/<emotion>/<NNN>\.wav"):
        scan_corpus("casia", trees["emovo"].root)
    with pytest.raises(CorpusError, match=re.escape("expected layout <Emotion>/S<M|F>")):
        scan_corpus("urdu", trees["emovo"].root)
    with pytest.raises(CorpusError, match="SessionN/sentences/wav"):
        scan_corpus("iemocap", trees["emodb"].root)
    with pytest.raises(PtssnnError):
        scan_corpus("ravdess", trees["casia"].root)


def test_empty_root(tmp_path):
    with pytest.raises(CorpusError, match="no EmoDB"):
        scan_corpus("emodb", tmp_path)


def test_registry():
    assert [c.name for c in list_corpora()] == [
        "casia", "emodb", "emovo", "iemocap", "ravdess", "urdu",
    ]  # fmt: skip
    assert get_corpus("CASIA") is CORPORA["casia"]
    assert get_corpus(CORPORA["urdu"]) is CORPORA["urdu"]
    for corpus in list_corpora():
        assert corpus.default_protocol == corpus.protocols[0]
        assert "emobox" in corpus.protocols and corpus.layout


def test_manifest_round_trip(trees, tmp_path):
    scan = scan_corpus("emodb", trees["emodb"].root)
    path = write_manifest(scan.utterances, tmp_path / "out" / "manifest.jsonl")
    again = read_manifest(path)
    assert again == scan.utterances
    assert [u.extras for u in again] == [u.extras for u in scan.utterances]


def test_bad_manifest(tmp_path):
    with pytest.raises(CorpusError, match="does not exist"):
        read_manifest(tmp_path / "none.jsonl")
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "x"}\n')
    with pytest.raises(CorpusError, match=r"bad\.jsonl:1"):
        read_manifest(bad)


def test_emodb_tree_builder_is_reusable(tmp_path):
    # Other suites build their own copies; two builds give the same expectations.
    first = build_emodb_tree(tmp_path / "a")
    second = build_emodb_tree(tmp_path / "b")
    assert first.ids == second.ids and first.problems == second.problems


def test_iemocap_bad_evaluation_line_is_a_problem_not_fatal(tmp_path):
    tree = BUILDERS["iemocap"](tmp_path / "iemocap", sessions=2)
    evaluation = tree.root / "Session2" / "dialog" / "EmoEvaluation" / "Ses02F_impro01.txt"
    evaluation.write_text(evaluation.read_text() + "[garbled line\n")
    scan = scan_corpus("iemocap", tree.root)
    (bad,) = [p for p in scan.problems if p.path == evaluation]
    assert "is not a turn line" in bad.reason
    assert {u.id for u in scan.utterances} == tree.ids


def test_casia_emotion_folder_case_is_normalised(tmp_path):
    write_tone(tmp_path / "wangzhe" / "Angry" / "201.wav")
    (utterance,) = scan_corpus("casia", tmp_path).utterances
    assert (utterance.id, utterance.raw_label, utterance.label) == (
        "casia-201-wangzhe-angry", "angry", "angry",
    )  # fmt: skip
