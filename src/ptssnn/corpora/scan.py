"""Scan a corpus folder into utterance records, listing every file it cannot use."""

from __future__ import annotations

from pathlib import Path

from ptssnn.audio import check_header, check_samples, probe_audio
from ptssnn.corpora.corpus import Candidate, Corpus
from ptssnn.corpora.records import CorpusScan, Problem, Utterance
from ptssnn.corpora.registry import get_corpus
from ptssnn.errors import AudioError, CorpusError


def scan_corpus(
    name: str | Corpus,
    root: str | Path,
    *,
    strict: bool = False,
    min_seconds: float = 0.25,
    check_audio: bool = False,
) -> CorpusScan:
    """Walk a corpus in its original layout and build one :class:`Utterance` per usable file.

    Names and folders are parsed by the corpus module; durations, sample rates and channel
    counts come from the file headers (no decoding, so a scan is cheap). A file that cannot be
    placed (wrong name, unknown label, non-speech RAVDESS modality, duplicate id) or whose
    header is unusable (unreadable, truncated WAV, empty, too short, too many channels) becomes
    a :class:`Problem` and the scan goes on.

    Args:
        name: Registry name (``casia``, ``emovo``, ``urdu``, ``emodb``, ``ravdess``,
            ``iemocap``) or a :class:`Corpus`.
        root: The corpus folder, as distributed.
        strict: Raise on the first problem instead of listing it.
        min_seconds: Files shorter than this are problems (``load_audio`` would reject them).
        check_audio: Also decode every file (block by block) and list NaN-filled, silent or
            corrupt content as problems; slower than the header-only default.

    Returns:
        A :class:`CorpusScan`; ``utterances`` sorted by id, ``problems`` sorted by path.

    Raises:
        CorpusError: Unknown corpus, missing root, a root where no file fits the corpus's
            layout, or (with ``strict``) a file that cannot be placed.
        AudioError: With ``strict``, the first file whose header is unusable.
    """
    corpus = get_corpus(name)
    root = Path(root).expanduser()
    if not root.exists():
        raise CorpusError(f"corpus root {root} does not exist (expected layout: {corpus.layout})")
    if not root.is_dir():
        raise CorpusError(f"corpus root {root} is not a folder (expected layout: {corpus.layout})")

    utterances: dict[str, Utterance] = {}
    problems: list[Problem] = []
    excluded: list[Problem] = []

    def report(problem: Problem, error: Exception | None = None) -> None:
        if strict:
            if isinstance(error, AudioError):
                raise error
            raise CorpusError(f"{problem.path}: {problem.reason} (strict scan)")
        problems.append(problem)

    for found in corpus.find(root):
        if isinstance(found, Problem):
            report(found)
            continue
        utterance_or_reason = _place(corpus, found, utterances, min_seconds, excluded,
                                     check_audio)
        if isinstance(utterance_or_reason, Utterance):
            utterances[utterance_or_reason.id] = utterance_or_reason
        elif utterance_or_reason is not None:
            problem, error = utterance_or_reason
            report(problem, error)

    if not utterances:
        examples = "; ".join(f"{p.path.name}: {p.reason}" for p in problems[:3])
        raise CorpusError(
            f"no {corpus.title} utterance found under {root}: expected layout "
            f"{corpus.layout}" + (f" (first problems: {examples})" if examples else "")
        )
    return CorpusScan(
        corpus=corpus.name,
        root=root,
        utterances=sorted(utterances.values(), key=lambda u: u.id),
        problems=sorted(problems, key=lambda p: str(p.path)),
        excluded=sorted(excluded, key=lambda p: str(p.path)),
    )


def _place(
    corpus: Corpus,
    candidate: Candidate,
    seen: dict[str, Utterance],
    min_seconds: float,
    excluded: list[Problem],
    check_audio: bool = False,
) -> Utterance | tuple[Problem, Exception | None] | None:
    """Turn a parsed candidate into an utterance, a problem, or ``None`` (excluded)."""
    if candidate.raw_label in corpus.excluded_labels:
        excluded.append(
            Problem(candidate.path, f"label {candidate.raw_label!r} is outside the class set")
        )
        return None
    if candidate.raw_label not in corpus.label_map:
        known = ", ".join(sorted(corpus.label_map))
        reason = f"unknown emotion label {candidate.raw_label!r} (expected one of {known})"
        return Problem(candidate.path, reason), None
    if candidate.id in seen:
        reason = f"duplicate utterance id {candidate.id} (also {seen[candidate.id].path})"
        return Problem(candidate.path, reason), None
    try:
        info = probe_audio(candidate.path)
        check_header(info, min_seconds=min_seconds)
        if check_audio:
            check_samples(candidate.path)
    except AudioError as error:
        return Problem(candidate.path, error.detail), error
    return Utterance(
        id=candidate.id,
        corpus=corpus.name,
        path=candidate.path,
        speaker=candidate.speaker,
        raw_label=candidate.raw_label,
        label=corpus.label_map[candidate.raw_label],
        duration=info.duration,
        extras=candidate.extras,
        sample_rate=info.sample_rate,
        channels=info.channels,
    )
