"""Evaluation protocols: speaker-independent folds, EmoBox's folds, and validation splits.

Protocols (which a corpus supports is in its registry entry; the first is its default):

- ``loso``: leave one speaker out (CASIA 4 folds, EMOVO 6, EmoDB 10, IEMOCAP 10, ...).
- ``session``: IEMOCAP leave-one-session-out (5 folds, two speakers each).
- ``actor-groups``: RAVDESS, 6 folds of 4 consecutive actors (01-04, 05-08, ...: two male, two
  female each, since actor parity gives gender).
- ``speaker-groups``: ``corpus.speaker_groups`` speaker-disjoint folds balanced in utterance
  count (URDU: 5 folds from 29 speakers holding 2 to 80 files each). Speakers are placed
  largest first into the fold with the fewest utterances so far (greedy longest-processing-time
  partition), ties broken by fold index, so the folds are deterministic.
- ``emobox``: EmoBox's folds exactly (speaker-independent except EmoDB and URDU).

Validation (``validation=``):

- ``"speakers"`` (default): whole training speakers are held out, in a seeded random order,
  until they hold at least ``validation_fraction`` of the training side, skipping speakers
  that would push it past twice that share (at least one speaker, never the last one: with
  few large speakers, e.g. CASIA LOSO, that is one whole speaker). Where those speakers lack
  a class of the training side, speakers that bring one are added, within the same bound
  (URDU, whose speakers mostly recorded one emotion each); a speaker who alone holds a class
  of the training side is never drawn. This keeps train,
  validation and test speaker-disjoint (IEMOCAP: one speaker of a training session).
  Fallback, recorded in ``Fold.validation_policy``: when the fold is not speaker-independent
  (EmoBox EmoDB and URDU put the same speakers in train and test) or its train side has
  fewer than two speakers, a label-stratified utterance split.
- ``"stratified"``: always the label-stratified utterance split.
- ``"none"``: empty validation.

The validation side is always carved from the training side: never from the test fold.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from ptssnn.corpora.corpus import Corpus
from ptssnn.corpora.emobox import emobox_num_folds, emobox_test_folds
from ptssnn.corpora.records import Utterance
from ptssnn.corpora.registry import get_corpus
from ptssnn.errors import ProtocolError

PROTOCOLS = ("loso", "session", "actor-groups", "speaker-groups", "emobox")
VALIDATION_POLICIES = ("speakers", "stratified", "none")


@dataclass(frozen=True)
class Fold:
    """One train/validation/test partition of a corpus (tuples of utterance ids, sorted).

    Attributes:
        name: E.g. ``loso-wangzhe``, ``session-1``, ``emobox-3``.
        train: Ids to fit on.
        validation: Ids for model selection, carved from the training side.
        test: Held-out ids.
        protocol: The protocol that made this fold.
        validation_policy: ``speakers`` (held-out training speakers), ``stratified``
            (label-stratified utterance split) or ``none``.
        refit_extra: Ids that join the training data in the refit on training + validation
            only: the speed-perturbed copies of the validation clips
            (``ptssnn.benchmark.augmentation``); empty otherwise.
    """

    name: str
    train: tuple[str, ...]
    validation: tuple[str, ...]
    test: tuple[str, ...]
    protocol: str = ""
    validation_policy: str = "none"
    refit_extra: tuple[str, ...] = ()


#: :func:`speaker_label_dependence` above which per-speaker normalisation is warned against.
SPEAKER_LABEL_DEPENDENCE_WARNING = 0.3


def speaker_label_dependence(speakers: Sequence[str], labels: Sequence[str]) -> float:
    """How much of the label the speaker gives away: the uncertainty coefficient
    ``I(speaker; label) / H(label)`` of the utterances (0: every speaker holds the corpus's
    class mix, as CASIA and EMOVO; 1: each speaker recorded one emotion). Per-speaker
    normalisation and enrolment assume it is small: a speaker's own moments then carry the
    voice, not the emotion. Where it is large (URDU: 0.92), standardising each speaker by its
    own clips takes the class out with the voice (docs/enrolment.md, "When enrolment does
    not help")."""
    from sklearn.metrics import mutual_info_score

    if len(speakers) != len(labels):
        raise ValueError(f"{len(speakers)} speakers for {len(labels)} labels")
    _, counts = np.unique(np.asarray(labels), return_counts=True)
    shares = counts / counts.sum() if len(counts) else counts
    entropy = float(-(shares * np.log(shares)).sum())
    if entropy == 0.0:
        return 0.0
    return float(mutual_info_score(list(labels), list(speakers)) / entropy)


def speaker_label_warning(dependence: float) -> str | None:
    """The warning for a run that standardises speakers by their own clips on speakers with
    this :func:`speaker_label_dependence`; ``None`` below
    :data:`SPEAKER_LABEL_DEPENDENCE_WARNING`."""
    if dependence < SPEAKER_LABEL_DEPENDENCE_WARNING:
        return None
    return (f"warning: the speakers give away much of the emotion (speaker-label dependence "
            f"{dependence:.2f}, 0 = every speaker holds every emotion alike, 1 = one emotion "
            "each); standardising a speaker by its own clips (per-speaker normalisation, "
            "enrolment) then takes out the emotion with the voice (docs/enrolment.md, "
            "\"When enrolment does not help\")")


def list_protocols(corpus: str | Corpus) -> tuple[str, ...]:
    """Protocols ``corpus`` supports; the first is its default."""
    return get_corpus(corpus).protocols


def make_folds(
    corpus: str | Corpus,
    utterances: Sequence[Utterance],
    protocol: str | None = None,
    *,
    seed: int = 0,
    validation: str = "speakers",
    validation_fraction: float = 0.1,
) -> list[Fold]:
    """Partition scanned utterances into folds.

    Args:
        corpus: Registry name or :class:`Corpus`.
        utterances: The corpus's utterances (e.g. ``scan_corpus(...).utterances``).
        protocol: One of ``list_protocols(corpus)``; ``None`` is the corpus's honest
            speaker-independent default.
        seed: Seeds the choice of validation speakers/utterances (test folds do not depend
            on it).
        validation: ``"speakers"``, ``"stratified"`` or ``"none"`` (see the module docstring).
        validation_fraction: Share of the training side to hold out for validation.

    Returns:
        The folds, in protocol order.

    Raises:
        ProtocolError: Unknown protocol or validation policy, utterances of another corpus,
            or too few utterances/speakers for the protocol.
    """
    spec = get_corpus(corpus)
    protocol = spec.default_protocol if protocol is None else protocol
    if protocol not in spec.protocols:
        raise ProtocolError(
            f"protocol {protocol!r} is not available for {spec.name}; "
            f"choose one of: {', '.join(spec.protocols)}"
        )
    if validation not in VALIDATION_POLICIES:
        raise ProtocolError(
            f"validation must be one of {', '.join(VALIDATION_POLICIES)}, not {validation!r}"
        )
    if not 0.0 < validation_fraction < 1.0:
        raise ProtocolError(f"validation_fraction must be in (0, 1), not {validation_fraction}")
    if not utterances:
        raise ProtocolError(f"no {spec.name} utterances to split (scan the corpus first)")
    foreign = sorted({u.corpus for u in utterances} - {spec.name})
    if foreign:
        raise ProtocolError(f"utterances of corpus {foreign} passed to make_folds({spec.name!r})")
    by_id = {u.id: u for u in utterances}

    splits = _test_splits(spec, protocol, list(by_id.values()))
    folds = []
    for index, (name, pool, test) in enumerate(splits):
        train, held_out, policy = _carve_validation(
            [by_id[i] for i in pool],
            {by_id[i].speaker for i in test},
            policy=validation,
            fraction=validation_fraction,
            rng=np.random.default_rng([seed, index]),
        )
        folds.append(
            Fold(
                name=name,
                train=tuple(sorted(train)),
                validation=tuple(sorted(held_out)),
                test=tuple(sorted(test)),
                protocol=protocol,
                validation_policy=policy,
            )
        )
    return folds


def _test_splits(
    spec: Corpus, protocol: str, utterances: list[Utterance]
) -> list[tuple[str, list[str], list[str]]]:
    """(fold name, training-side ids, test ids) per fold."""
    if protocol == "emobox":
        return _emobox_splits(spec, utterances)
    if protocol == "loso":
        groups = {f"loso-{s}": [s] for s in sorted({u.speaker for u in utterances})}
    elif protocol == "session":
        groups = _session_groups(utterances)
    elif protocol == "actor-groups":
        actors = sorted({u.speaker for u in utterances})
        groups = {}
        for start in range(0, len(actors), 4):
            chunk = actors[start : start + 4]
            groups[f"actors-{_actor_number(chunk[0])}-{_actor_number(chunk[-1])}"] = chunk
    elif protocol == "speaker-groups":
        groups = _balanced_speaker_groups(utterances, spec.speaker_groups)
    else:  # pragma: no cover - protocols are validated against the registry entry
        raise ProtocolError(f"unknown protocol {protocol!r}; known: {', '.join(PROTOCOLS)}")
    if len(groups) < 2:
        raise ProtocolError(
            f"protocol {protocol!r} needs at least two speaker groups; the {spec.name} "
            f"utterances given have {len(groups)}"
        )
    splits = []
    for name, speakers in groups.items():
        members = set(speakers)
        test = [u.id for u in utterances if u.speaker in members]
        pool = [u.id for u in utterances if u.speaker not in members]
        splits.append((name, pool, test))
    return splits


def _actor_number(speaker: str) -> str:
    return speaker.rsplit("_", 1)[-1]


def _session_groups(utterances: Iterable[Utterance]) -> dict[str, list[str]]:
    sessions: dict[int, set[str]] = defaultdict(set)
    for utterance in utterances:
        if "session" not in utterance.extras:
            raise ProtocolError(f"utterance {utterance.id} has no session; use protocol 'loso'")
        sessions[int(utterance.extras["session"])].add(utterance.speaker)
    return {f"session-{s}": sorted(sessions[s]) for s in sorted(sessions)}


def _balanced_speaker_groups(utterances: Iterable[Utterance], k: int) -> dict[str, list[str]]:
    counts: dict[str, int] = defaultdict(int)
    for utterance in utterances:
        counts[utterance.speaker] += 1
    if len(counts) < k:
        raise ProtocolError(
            f"speaker-groups needs at least {k} speakers, the utterances have {len(counts)}; "
            "use protocol 'loso'"
        )
    folds: list[list[str]] = [[] for _ in range(k)]
    sizes = [0] * k
    for speaker in sorted(counts, key=lambda s: (-counts[s], s)):
        target = min(range(k), key=lambda i: (sizes[i], i))
        folds[target].append(speaker)
        sizes[target] += counts[speaker]
    return {f"group-{i + 1}": sorted(speakers) for i, speakers in enumerate(folds)}


def _emobox_splits(
    spec: Corpus, utterances: list[Utterance]
) -> list[tuple[str, list[str], list[str]]]:
    fold_of = emobox_test_folds(spec.name)
    known = [u.id for u in utterances if u.id in fold_of]
    if not known:
        raise ProtocolError(
            f"none of the {len(utterances)} {spec.name} utterances has an EmoBox id "
            "(is this the corpus EmoBox used?)"
        )
    splits = []
    for k in range(1, emobox_num_folds(spec.name) + 1):
        test = [i for i in known if fold_of[i] == k]
        if not test:
            raise ProtocolError(
                f"EmoBox {spec.name} fold {k}: none of its test utterances were scanned "
                "(the corpus is incomplete)"
            )
        splits.append((f"emobox-{k}", [i for i in known if fold_of[i] != k], test))
    return splits


def _carve_validation(
    pool: list[Utterance],
    test_speakers: set[str],
    *,
    policy: str,
    fraction: float,
    rng: np.random.Generator,
) -> tuple[list[str], list[str], str]:
    """Split the training side into (train ids, validation ids, policy actually used)."""
    if policy == "none":
        return [u.id for u in pool], [], "none"
    speakers = sorted({u.speaker for u in pool})
    if policy == "speakers" and len(speakers) >= 2 and not test_speakers & set(speakers):
        counts: dict[str, int] = defaultdict(int)
        for utterance in pool:
            counts[utterance.speaker] += 1
        target = fraction * len(pool)
        order = [speakers[i] for i in rng.permutation(len(speakers))]
        labels: dict[str, set[str]] = defaultdict(set)
        for utterance in pool:
            labels[utterance.speaker].add(utterance.label)

        def keeps_classes(held_out: set[str]) -> bool:
            # A speaker who alone holds a class of the pool stays on the training side.
            left = (labels[s] for s in speakers if s not in held_out)
            return set().union(*left) == set().union(*labels.values())

        chosen: set[str] = set()
        held = 0
        for speaker in order:
            if held >= target or len(chosen) == len(speakers) - 1:
                break
            # Skip speakers that would overshoot badly (URDU: one speaker holds 20%).
            if held + counts[speaker] <= 2 * target and keeps_classes(chosen | {speaker}):
                chosen.add(speaker)
                held += counts[speaker]
        if not chosen:  # every speaker is big (LOSO on 4 speakers): take the smallest
            chosen.add(min(order, key=lambda s: counts[s]))
            held = counts[next(iter(chosen))]
        # Speakers who each recorded few classes (URDU: most recorded one emotion) can leave
        # the validation side without some class, and UA over one or two classes selects
        # nothing: add speakers that bring a missing class, within the same size bound.
        missing = set().union(*labels.values()) - set().union(*(labels[s] for s in chosen))
        for speaker in order:
            if not missing or len(chosen) == len(speakers) - 1:
                break
            if (speaker not in chosen and labels[speaker] & missing
                    and held + counts[speaker] <= 2 * target
                    and keeps_classes(chosen | {speaker})):
                chosen.add(speaker)
                held += counts[speaker]
                missing -= labels[speaker]
        train = [u.id for u in pool if u.speaker not in chosen]
        return train, [u.id for u in pool if u.speaker in chosen], "speakers"
    by_label: dict[str, list[str]] = defaultdict(list)
    for utterance in pool:
        by_label[utterance.label].append(utterance.id)
    held_out: set[str] = set()
    for label in sorted(by_label):
        ids = sorted(by_label[label])
        if len(ids) < 2:  # a lone example stays in training, where it can be learnt from
            continue
        take = min(len(ids) - 1, max(1, round(fraction * len(ids))))
        held_out.update(ids[i] for i in rng.permutation(len(ids))[:take])
    train = [u.id for u in pool if u.id not in held_out]
    return train, [u.id for u in pool if u.id in held_out], "stratified"
