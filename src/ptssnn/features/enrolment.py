"""How a speaker profile becomes the feature pipeline's normalisation for one head.

A model directory that supports enrolment holds ``speaker_prior.safetensors``: the frame
moments of its training data at the pipeline's input (``[L, D]`` mean and variance of every
hidden state, float16-rounded as cached) and the prior weight ``n0`` in clips. Profiles are
shrunk toward these moments (:mod:`ptssnn.features.profile`), and what the pipeline's
normalisation hook receives depends on what the head was trained on
(:func:`pipeline_moments`):

* ``speaker`` (trained on per-speaker standardised features): the shrunk profile moments
  themselves; without a profile, the global moments (so the head still works alone).
* ``global`` / ``none`` (trained on raw features, standardised inside the head or not at
  all): the affine map that carries the speaker's (shrunk) distribution onto the global one,
  ``x -> (x - m_s) / s_s * s_g + m_g``, written as moments ``(m_s - m_g s_s / s_g,
  s_s / s_g)``; without a profile, nothing (``None``).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ptssnn import jsonio
from ptssnn.features.pipeline import FeaturePipeline, Moments
from ptssnn.features.profile import (
    DEFAULT_PRIOR_CLIPS,
    STD_FLOOR,
    ProfileError,
    RunningMoments,
    SpeakerProfile,
    clip_moments,
    merge_moments,
)

#: File of a model directory holding the global moments at the pipeline's input.
PRIOR_FILE = "speaker_prior.safetensors"
#: How a head was trained, as far as enrolment is concerned (recorded in the prior file).
TRAINING_MODES = ("global", "speaker", "enrolled")


@dataclass(frozen=True)
class SpeakerPrior:
    """The global moments profiles shrink toward, and how the head was trained.

    Attributes:
        mean: ``[L, D]`` float64 mean of the training frames at the pipeline's input.
        variance: ``[L, D]`` float64 variance.
        prior_clips: Weight of these moments in clips (``n0``).
        trained_for: ``"global"`` (no profiles in training), ``"speaker"`` (each training
            speaker standardised with all of its clips) or ``"enrolled"`` (each with a
            profile from a few random clips; see ``docs/enrolment.md``).
        frames: Training frames the moments summarise (informational).
    """

    mean: np.ndarray
    variance: np.ndarray
    prior_clips: float = DEFAULT_PRIOR_CLIPS
    trained_for: str = "global"
    frames: int = 0

    @classmethod
    def from_moments(cls, moments: RunningMoments, *, prior_clips: float = DEFAULT_PRIOR_CLIPS,
                     trained_for: str = "global") -> SpeakerPrior:
        if moments.frames == 0:
            raise ProfileError("the speaker prior needs at least one training frame")
        return cls(moments.mean, moments.variance, float(prior_clips), trained_for,
                   moments.frames)

    def save(self, directory: str | Path) -> Path:
        """Write :data:`PRIOR_FILE` into a model directory."""
        from safetensors.numpy import save_file

        if self.trained_for not in TRAINING_MODES:
            raise ProfileError(f"trained_for must be one of {TRAINING_MODES}")
        path = Path(directory) / PRIOR_FILE
        info = {"prior_clips": self.prior_clips, "trained_for": self.trained_for,
                "frames": self.frames}
        save_file({"mean": np.ascontiguousarray(self.mean, np.float64),
                   "variance": np.ascontiguousarray(self.variance, np.float64)},
                  str(path),
                  metadata={"format": "ptssnn-speaker-prior", "info": jsonio.dumps(info)})
        return path

    @classmethod
    def load(cls, directory: str | Path) -> SpeakerPrior | None:
        """Read :data:`PRIOR_FILE` from a model directory (``None`` if it has none).

        Raises:
            ProfileError: A damaged file.
        """
        from safetensors import safe_open

        path = Path(directory) / PRIOR_FILE
        if not path.is_file():
            return None
        try:
            with safe_open(str(path), framework="numpy") as handle:
                info = json.loads((handle.metadata() or {}).get("info", "{}"))
                mean, variance = handle.get_tensor("mean"), handle.get_tensor("variance")
        except Exception as error:  # safetensors raises its own error types
            raise ProfileError(f"{path}: damaged speaker prior ({error})") from error
        if mean.shape != variance.shape or mean.ndim != 2:
            raise ProfileError(f"{path}: damaged speaker prior (shapes {mean.shape}, "
                               f"{variance.shape})")
        return cls(mean, variance, float(info.get("prior_clips", DEFAULT_PRIOR_CLIPS)),
                   str(info.get("trained_for", "global")), int(info.get("frames", 0)))


def training_moments(items: Sequence[torch.Tensor | np.ndarray]) -> RunningMoments:
    """Frame moments at the pipeline's input over training items ``[L, T, D]``."""
    total = None
    for item in items:
        moments = clip_moments(item)
        total = moments if total is None else merge_moments(total, moments)
    if total is None:
        raise ProfileError("no training items to compute the speaker prior from")
    return total


def pipeline_moments(
    pipeline: FeaturePipeline,
    prior: SpeakerPrior | None,
    profile: SpeakerProfile | None,
) -> Moments | None:
    """What the pipeline's normalisation hook gets for one speaker (see the module docstring).

    Raises:
        ProfileError: A profile given to a model directory without a speaker prior, or a
            profile whose shape does not match the prior's.
    """
    if prior is None:
        if profile is not None:
            raise ProfileError(
                "this model directory has no speaker prior (speaker_prior.safetensors), so "
                "it cannot use speaker profiles; train it again with this ptssnn version"
            )
        return None
    if profile is not None and profile.shape != prior.mean.shape:
        raise ProfileError(f"the profile holds {profile.shape} moments, the model "
                           f"{prior.mean.shape}")
    if profile is None:
        if pipeline.normalisation != "speaker":
            return None
        profile_mean, profile_std = prior.mean, _std(prior.variance)
    else:
        profile_mean, profile_std = profile.moments(prior.mean, prior.variance,
                                                    prior.prior_clips)
    if pipeline.normalisation == "speaker":
        return _as_moments(profile_mean, profile_std)
    global_std = _std(prior.variance)
    scale = profile_std / global_std
    return _as_moments(profile_mean - prior.mean * scale, scale)


def new_profile(pipeline: FeaturePipeline, backbone_identity: dict[str, Any],
                num_hidden_states: int, dim: int, *, name: str = "") -> SpeakerProfile:
    """An empty profile for a head's backbone and pipeline."""
    return SpeakerProfile.empty(backbone_identity, pipeline.fingerprint(),
                                range(num_hidden_states), dim, name=name)


def _std(variance: np.ndarray) -> np.ndarray:
    return np.sqrt(np.maximum(variance, 0.0)).clip(min=STD_FLOOR)


def _as_moments(mean: np.ndarray, std: np.ndarray) -> Moments:
    return Moments(torch.as_tensor(mean, dtype=torch.float32),
                   torch.as_tensor(std, dtype=torch.float32).clamp(min=STD_FLOOR))


__all__ = [
    "PRIOR_FILE",
    "TRAINING_MODES",
    "SpeakerPrior",
    "new_profile",
    "pipeline_moments",
    "training_moments",
]
