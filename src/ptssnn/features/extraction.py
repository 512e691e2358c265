"""``extract_features``: run a frozen backbone over utterances once, into the cache.

Each utterance is looked up by the hash of its file's bytes; a miss takes the entry's file
lock without waiting (a busy entry is being computed by another process: it is deferred to
the end, then waited for), checks again, computes and writes atomically. So an interrupted run
resumes where it stopped, a damaged entry is rebuilt, and any number of processes (torchrun
ranks, or two users) can extract the same corpus at once without corrupting it.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

from ptssnn.audio import probe_audio
from ptssnn.audio.perturbation import speed_perturb
from ptssnn.backbones import Backbone, load_backbone
from ptssnn.errors import AudioError
from ptssnn.features.distributed import ProcessGroup
from ptssnn.features.feature_set import ExtractionFailure, ExtractionReport, FeatureSet
from ptssnn.features.layers import LayerSelection
from ptssnn.features.store import Entry, FeatureStore, Namespace, Verify, file_sha256

AudioLoader = Callable[..., np.ndarray]


class UtteranceLike(Protocol):
    """What extraction needs of an utterance (``ptssnn.corpora.Utterance`` has it)."""

    @property
    def id(self) -> str: ...

    @property
    def path(self) -> Path | str: ...


@dataclass(frozen=True)
class AudioPolicy:
    """How audio is decoded before the backbone (part of the cache key)."""

    sample_rate: int = 16000
    max_seconds: float | None = 30.0
    min_seconds: float = 0.25
    long_policy: str = "crop"
    #: Speed perturbation of the decoded clip (:func:`ptssnn.audio.perturbation.speed_perturb`;
    #: 1: none). Training copies only; the cache keeps each factor in its own namespace.
    speed: float = 1.0

    def to_dict(self) -> dict[str, Any]:
        policy: dict[str, Any] = {
            "sample_rate": self.sample_rate,
            "max_seconds": self.max_seconds,
            "min_seconds": self.min_seconds,
            "long_policy": self.long_policy,
            "loader": "ptssnn.audio.load_audio",
        }
        if self.speed != 1.0:  # absent at 1, so the caches of unperturbed audio keep their keys
            policy["speed"] = self.speed
        return policy


class _SpeedColumn(ProgressColumn):
    """Utterances per second."""

    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        return Text("-- utt/s" if speed is None else f"{speed:.1f} utt/s", style="cyan")


def _progress(enabled: bool, console: Console | None) -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        _SpeedColumn(),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        console=console or Console(stderr=True),
        disable=not enabled,
        transient=False,
    )


def _default_loader() -> AudioLoader:
    from ptssnn.audio import load_audio

    return load_audio


@dataclass
class _ShardResult:
    """What one process learned (picklable, gathered across ranks)."""

    entries: dict[str, tuple[str, tuple[int, int, int], float, int]]
    failures: list[ExtractionFailure]
    extracted: int
    cached: int
    rebuilt: int
    extracted_audio_seconds: float
    wall_seconds: float
    #: ``(utterance id, recorded seconds)`` of recordings cropped to ``max_seconds``.
    cropped: list[tuple[str, float]] = field(default_factory=list)


def extract_features(
    utterances: Iterable[UtteranceLike],
    backbone: Backbone | str = "whisper-base",
    layers: LayerSelection | str | int = "all",
    store: FeatureStore | str | Path | None = None,
    progress: bool = True,
    *,
    dtype: str = "float16",
    audio_policy: AudioPolicy | None = None,
    verify: Verify = "checksum",
    load_audio: AudioLoader | None = None,
    process_group: ProcessGroup | None = None,
    console: Console | None = None,
    on_extracted: Callable[[str], None] | None = None,
) -> FeatureSet:
    """Extract (or find in the cache) features of every utterance.

    Args:
        utterances: Objects with ``.id`` and ``.path`` (``ptssnn.corpora.Utterance``).
        backbone: A loaded backbone, or a name for :func:`ptssnn.backbones.load_backbone`.
        layers: Which hidden states to keep (:class:`LayerSelection` or its text).
        store: The cache (a :class:`FeatureStore` or its folder; default ``$PTSSNN_CACHE`` or
            ``~/.cache/ptssnn/features``).
        progress: Show a progress bar (utterances/s, ETA) on stderr (rank 0 only).
        dtype: Storage dtype, ``"float16"`` (default) or ``"float32"``.
        audio_policy: Decoding policy (default: 16 kHz, crop at 30 s, at least 0.25 s).
        verify: How cache hits are checked: ``"checksum"`` (CRC-32, default) or ``"size"``.
        load_audio: Decoder ``(path, **policy) -> [N] float32``; default
            :func:`ptssnn.audio.load_audio`.
        process_group: Share the work across processes; default: from the environment
            (``RANK``/``WORLD_SIZE`` set by torchrun, gloo), else one process.
        console: Where the progress bar goes.
        on_extracted: Called with each utterance id after its features are written (hooks
            for tests and monitoring).

    Returns:
        The :class:`FeatureSet` of every utterance that could be read, on every rank;
        unreadable ones are in ``.failures`` and the rest goes on.

    Raises:
        LayerSelectionError: ``layers`` does not fit the backbone.
        FeatureCacheError: The cache folder is not writable.
        BackboneUnavailableError: ``backbone`` names a backbone that cannot be loaded.
    """
    started = time.perf_counter()
    utterances = list(utterances)
    ids = [u.id for u in utterances]
    if len(set(ids)) != len(ids):
        duplicates = sorted({i for i in ids if ids.count(i) > 1})[:5]
        raise ValueError(f"utterance ids must be unique; repeated: {duplicates}")
    if isinstance(backbone, str):
        backbone = load_backbone(backbone)
    spec = LayerSelection.parse(layers)
    store = store if isinstance(store, FeatureStore) else FeatureStore(store)
    policy = audio_policy or AudioPolicy()
    namespace = store.namespace(
        backbone.identity(),
        spec.canonical(backbone.num_hidden_states),
        num_hidden_states=backbone.num_hidden_states,
        dtype=dtype,
        audio_policy=policy.to_dict(),
    )
    namespace.ensure()
    namespace.remove_stale_temporaries()
    group = process_group or ProcessGroup.from_environment()
    shard = utterances[group.rank :: group.world_size]
    loader = load_audio or _default_loader()

    result = _extract_shard(
        shard,
        backbone,
        spec,
        namespace,
        policy,
        loader,
        verify,
        progress=progress and group.rank == 0,
        console=console,
        on_extracted=on_extracted,
        label=f"{backbone.name} [{group.rank}/{group.world_size}]"
        if group.world_size > 1
        else backbone.name,
        started=started,
    )
    results = group.all_gather(result)

    entries: dict[str, Entry] = {}
    failures: list[ExtractionFailure] = []
    cropped = [item for part in results for item in part.cropped]
    for part in results:
        for utt_id, (path, shape, seconds, size) in part.entries.items():
            entries[utt_id] = Entry(Path(path), shape, seconds, size)
        failures.extend(part.failures)
    order = {utt_id: i for i, utt_id in enumerate(ids)}
    failures.sort(key=lambda f: order.get(f.id, 0))
    feature_set = FeatureSet(namespace, entries, order=ids, failures=failures)
    feature_set.report = ExtractionReport(
        total=len(utterances),
        extracted=sum(r.extracted for r in results),
        cached=sum(r.cached for r in results),
        failed=len(failures),
        rebuilt=sum(r.rebuilt for r in results),
        wall_seconds=max(r.wall_seconds for r in results),
        extracted_audio_seconds=sum(r.extracted_audio_seconds for r in results),
        audio_seconds=feature_set.audio_seconds,
        cache_bytes=feature_set.cache_bytes,
        processes=group.world_size,
        extras=_crop_summary(cropped, policy),
    )
    if cropped and progress and group.rank == 0:
        (console or Console(stderr=True)).print(
            f"[yellow]note[/] {_crop_message(feature_set.report.extras)}", highlight=False
        )
    return feature_set


def _crop_summary(cropped: list[tuple[str, float]], policy: AudioPolicy) -> dict[str, Any]:
    """What the crop policy cut, for the report (empty when nothing was cropped)."""
    if not cropped or policy.max_seconds is None:
        return {}
    return {
        "cropped": len(cropped),
        "crop_seconds": policy.max_seconds,
        "cropped_away_seconds": round(sum(s - policy.max_seconds for _, s in cropped), 3),
        "cropped_ids": sorted(utt_id for utt_id, _ in cropped)[:20],
    }


def _crop_message(extras: dict[str, Any]) -> str:
    """One line on what was cropped, e.g. for ``features extract``'s summary."""
    count = extras["cropped"]
    return (
        f"{count} recording{'s' if count != 1 else ''} longer than {extras['crop_seconds']:g} s "
        f"{'were' if count != 1 else 'was'} cropped to the first {extras['crop_seconds']:g} s "
        f"({extras['cropped_away_seconds'] / 60:.1f} min of audio not used; cut long "
        "recordings into utterances to use all of it)"
    )


def _extract_shard(
    shard: Sequence[UtteranceLike],
    backbone: Backbone,
    spec: LayerSelection,
    namespace: Namespace,
    policy: AudioPolicy,
    loader: AudioLoader,
    verify: Verify,
    *,
    progress: bool,
    console: Console | None,
    on_extracted: Callable[[str], None] | None,
    label: str,
    started: float,
) -> _ShardResult:
    result = _ShardResult({}, [], 0, 0, 0, 0.0, 0.0)

    def record(utt: UtteranceLike, entry: Entry) -> None:
        result.entries[utt.id] = (str(entry.path), entry.shape, entry.seconds, entry.num_bytes)

    crop_at = policy.max_seconds if policy.long_policy == "crop" else None

    def note_crop(utt: UtteranceLike, seconds: float) -> None:
        """Count a recording the policy cropped (its length is at the cap: ask the header)."""
        if crop_at is None or seconds < crop_at - 0.5 / policy.sample_rate:
            return
        try:
            recorded = probe_audio(utt.path).duration
        except (AudioError, OSError):
            return  # a custom loader's path; nothing to report
        if recorded > crop_at:
            result.cropped.append((utt.id, recorded))

    def compute(utt: UtteranceLike, audio_hash: str) -> None:
        try:
            audio = loader(
                utt.path,
                sample_rate=policy.sample_rate,
                max_seconds=policy.max_seconds,
                min_seconds=policy.min_seconds,
                long_policy=policy.long_policy,
            )
            decoded_seconds = len(audio) / policy.sample_rate
            if policy.speed != 1.0:
                audio = speed_perturb(audio, policy.speed, policy.sample_rate)
            hidden = backbone(torch.from_numpy(np.ascontiguousarray(audio, dtype=np.float32)))
        except (AudioError, ValueError) as error:
            # Bad audio (or too short for this backbone): report it and go on with the rest.
            result.failures.append(ExtractionFailure(utt.id, str(utt.path), str(error)))
            return
        selected = spec.apply(hidden).numpy()
        seconds = len(audio) / policy.sample_rate
        entry = namespace.write(audio_hash, selected, seconds=seconds, utt_id=utt.id)
        record(utt, entry)
        note_crop(utt, decoded_seconds)
        result.extracted += 1
        result.extracted_audio_seconds += seconds
        if on_extracted is not None:
            on_extracted(utt.id)

    def attempt(utt: UtteranceLike, audio_hash: str, *, wait: bool) -> bool:
        """Find or compute one entry; ``False`` if another process holds its lock."""
        entry = namespace.read(audio_hash, verify)
        if entry is not None:
            record(utt, entry)
            note_crop(utt, entry.seconds)
            result.cached += 1
            return True
        if wait:
            lock = namespace.lock(audio_hash)
            lock.acquire()
        else:
            lock = namespace.try_lock(audio_hash)  # acquired, or None if busy
            if lock is None:
                return False
        try:
            # Another process may have written it while we looked or waited.
            entry = namespace.read(audio_hash, verify)
            if entry is not None:
                record(utt, entry)
                note_crop(utt, entry.seconds)
                result.cached += 1
                return True
            if _entry_files_exist(namespace, audio_hash):
                result.rebuilt += 1
            compute(utt, audio_hash)
        finally:
            lock.release()
        return True

    deferred: list[tuple[UtteranceLike, str]] = []
    with _progress(progress, console) as bar:
        task = bar.add_task(label, total=len(shard))
        for utt in shard:
            try:
                audio_hash = file_sha256(utt.path)
            except OSError as error:
                reason = f"cannot be read ({error.strerror or error})"
                result.failures.append(ExtractionFailure(utt.id, str(utt.path), reason))
                bar.advance(task)
                continue
            if attempt(utt, audio_hash, wait=False):
                bar.advance(task)
            else:
                deferred.append((utt, audio_hash))
        for utt, audio_hash in deferred:
            attempt(utt, audio_hash, wait=True)
            bar.advance(task)
    result.wall_seconds = time.perf_counter() - started
    return result


def _entry_files_exist(namespace: Namespace, audio_hash: str) -> bool:
    # The sidecar is written last: without it there was never a complete entry here.
    return os.path.exists(namespace.files(audio_hash)[1])

