"""Speed perturbation: the training-data augmentation of Kaldi (Ko et al., Interspeech 2015).

A clip played ``factor`` times as fast: its samples are resampled from ``sample_rate`` to
``sample_rate / factor`` and read back at ``sample_rate``, so the duration scales by
``1 / factor`` and every frequency (pitch and formants) by ``factor``, as if a different
speaker had said it a little faster or slower. The perturbed copies of the training clips
join the training data (``--speed-perturb 0.9,1.1``); model selection and scoring read the
original clips only. Under a per-speaker normalisation each speed of a speaker is its own
voice (:func:`normalisation_groups`).

The resampler is soxr at the loader's quality, so a perturbed copy is made exactly as the
loader resamples any other recording.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import numpy as np

from ptssnn.audio.conditioning import RESAMPLE_QUALITY

#: The factors a copy may use; outside, the copy is a different voice, not the same speaker
#: (Kaldi's recipes use 0.9 and 1.1).
MIN_FACTOR, MAX_FACTOR = 0.5, 2.0


def check_speed_factors(factors: object) -> tuple[float, ...]:
    """Validated, sorted, distinct speed factors; ``1.0`` (the clip itself) is dropped.

    Raises:
        ValueError: A factor that is not a number in [0.5, 2].
    """
    if isinstance(factors, str):
        factors = [part for part in factors.replace(" ", "").split(",") if part]
    values: list[float] = []
    for factor in factors if isinstance(factors, list | tuple) else [factors]:
        try:
            value = float(factor)
        except (TypeError, ValueError):
            raise ValueError(f"a speed factor must be a number (got {factor!r})") from None
        if not (MIN_FACTOR <= value <= MAX_FACTOR):
            raise ValueError(
                f"speed factor {value:g} is outside [{MIN_FACTOR:g}, {MAX_FACTOR:g}]; Kaldi's "
                "recipes use 0.9 and 1.1"
            )
        values.append(value)
    return tuple(sorted({v for v in values if v != 1.0}))


def speed_perturb(wave: np.ndarray, factor: float, sample_rate: int = 16000) -> np.ndarray:
    """``wave`` (mono, ``[N]`` float32 at ``sample_rate``) played ``factor`` times as fast.

    Returns ``round(N / factor)`` samples (±1 from the resampler), float32. ``factor`` 1
    returns a copy.
    """
    (factor,) = check_speed_factors([factor]) or (1.0,)
    wave = np.asarray(wave, dtype=np.float32)
    if wave.ndim != 1:
        raise ValueError(f"speed_perturb takes a mono [N] waveform (got shape {wave.shape})")
    if factor == 1.0:
        return wave.copy()
    import soxr

    out = soxr.resample(wave, sample_rate, sample_rate / factor, quality=RESAMPLE_QUALITY)
    return np.ascontiguousarray(out, dtype=np.float32)


def normalisation_groups(speakers: Mapping[str, str]) -> dict[str, str]:
    """Utterance id → the group whose moments standardise it under a per-speaker
    normalisation (``speaker``, ``auto``, ``enrolled``).

    An original clip's group is its speaker. A speed-perturbed copy (:func:`copy_id`) is
    another voice, as Kaldi's recipes count each speed of a speaker as a new speaker: its
    group is ``<speaker>@speed<f>``, so the copies are standardised by their own voice's
    moments and never enter the moments of their original speaker's clips. (For splits,
    validation carving and counting speakers a copy stays its original's speaker.)
    """
    groups = {}
    for utterance_id, speaker in speakers.items():
        factor = copy_factor(utterance_id)
        # An id that only looks like a copy's (its original is not there) is an original.
        is_copy = factor is not None and utterance_id.split("/", 1)[1] in speakers
        groups[utterance_id] = f"{speaker}@speed{factor:g}" if is_copy else speaker
    return groups


def copy_id(factor: float, utterance_id: str) -> str:
    """The id of an utterance's perturbed copy in a training table (``speed0.9/<id>``)."""
    return f"speed{factor:g}/{utterance_id}"


_COPY_ID = re.compile(r"speed(\d+(?:\.\d+)?)/")


def copy_factor(utterance_id: str) -> float | None:
    """The speed factor of a copy's id (``speed0.9/<id>`` → 0.9), ``None`` for an original."""
    match = _COPY_ID.match(utterance_id)
    return float(match.group(1)) if match else None
