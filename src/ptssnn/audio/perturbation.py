"""Speed perturbation: the training-data augmentation of Kaldi (Ko et al., Interspeech 2015).

A clip played ``factor`` times as fast: its samples are resampled from ``sample_rate`` to
``sample_rate / factor`` and read back at ``sample_rate``, so the duration scales by
``1 / factor`` and every frequency (pitch and formants) by ``factor``, as if a different
speaker had said it a little faster or slower. The perturbed copies of the training clips
join the training data (``--speed-perturb 0.9,1.1``); model selection and scoring read the
original clips only.

The resampler is soxr at the loader's quality, so a perturbed copy is made exactly as the
loader resamples any other recording.
"""

from __future__ import annotations

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


#: Normalisations that speed-perturbed copies work with: the copies are attributed to their
#: original's speaker, so a per-speaker standardisation would mix them into its moments.
COPY_NORMALISATIONS = ("global", "none")


def check_copy_normalisation(normalisation: str) -> None:
    """Refuse speed-perturbed copies under a per-speaker normalisation.

    Raises:
        ValueError: ``normalisation`` is ``speaker``, ``auto`` or ``enrolled``.
    """
    if normalisation not in COPY_NORMALISATIONS:
        raise ValueError(
            f"--speed-perturb works with --normalisation global (the default) or none, not "
            f"{normalisation!r}: a speaker's perturbed copies would enter the moments that "
            "standardise that speaker's own clips")


def copy_id(factor: float, utterance_id: str) -> str:
    """The id of an utterance's perturbed copy in a training table (``speed0.9/<id>``)."""
    return f"speed{factor:g}/{utterance_id}"
