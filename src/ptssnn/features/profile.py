"""Speaker profiles: running feature moments of one speaker, for per-speaker normalisation.

A deployed recogniser can hear its user before it is asked for an emotion. A
:class:`SpeakerProfile` accumulates, from a few unlabelled clips of one speaker, the
per-layer, per-channel mean and variance of the backbone frames at the feature pipeline's
input (``[L, T, D]`` hidden states, before layer averaging and frame pooling). The pipeline
then standardises that speaker's frames with these moments instead of the training set's
(speaker z-normalisation, Busso et al. 2013), which removes much of the voice and channel.

Design:

* **Streaming and mergeable.** Each clip's moments are computed in float64 (two-pass inside
  the clip) and combined with Chan et al.'s pairwise update (count, mean, sum of squared
  deviations), so the order and grouping of clips do not matter and a profile built clip by
  clip equals one built from all frames at once; two profiles of the same speaker merge.
* **Shrinkage toward the global moments.** With ``n`` clips enrolled, the moments used are
  ``w * speaker + (1 - w) * global`` with ``w = n / (n + n0)`` (for the mean and the
  variance alike): an effective-count prior worth ``n0`` clips. One clip moves the
  normalisation a little, twenty almost all the way; zero clips is global normalisation.
  Clips, not frames, count: frames of one clip share its sentence and are far from
  independent. ``n0`` (:data:`DEFAULT_PRIOR_CLIPS`) was chosen by a LOSO measurement
  (``docs/enrolment.md``).
* **Labels never enter.** Every entry point takes audio features only.
* **Safe to store.** JSON (never pickle) with the backbone's identity and the pipeline's
  fingerprint; a profile made for another backbone or another pipeline is refused on load.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ptssnn import jsonio
from ptssnn.errors import PtssnnError

#: ``format`` field of a saved profile, and the version this code writes and reads.
PROFILE_FORMAT = "ptssnn-speaker-profile"
PROFILE_VERSION = 1
#: Prior weight of the global moments, in clips (see the module docstring).
DEFAULT_PRIOR_CLIPS = 2.0
#: Floor on a standard deviation so dead channels divide safely (as ``feature_moments``).
STD_FLOOR = 1e-5


class ProfileError(PtssnnError):
    """A speaker profile that cannot be used: unreadable, or made for another model."""


# --------------------------------------------------------------------------- moments (pure)
@dataclass(frozen=True)
class RunningMoments:
    """Frame moments of a set of ``[L, T, D]`` clips, per layer and channel.

    Attributes:
        frames: Frames counted (``T`` summed over clips).
        mean: ``[L, D]`` float64 mean.
        m2: ``[L, D]`` float64 sum of squared deviations from ``mean``.
    """

    frames: int
    mean: np.ndarray
    m2: np.ndarray

    @property
    def variance(self) -> np.ndarray:
        """``[L, D]`` population variance (0 where nothing was counted)."""
        return self.m2 / self.frames if self.frames else np.zeros_like(self.m2)

    @property
    def shape(self) -> tuple[int, int]:
        """``(L, D)``."""
        return tuple(self.mean.shape)  # type: ignore[return-value]


def empty_moments(num_layers: int, dim: int) -> RunningMoments:
    """Moments of nothing (the identity of :func:`merge_moments`)."""
    zeros = np.zeros((num_layers, dim), dtype=np.float64)
    return RunningMoments(0, zeros, zeros.copy())


def clip_moments(features: np.ndarray | torch.Tensor) -> RunningMoments:
    """RunningMoments of one clip's frames.

    Args:
        features: ``[L, T, D]`` (or ``[T, D]``, read as ``L = 1``), any float dtype.

    Returns:
        Float64 moments; two-pass within the clip, so a large common offset costs no precision.

    Raises:
        ProfileError: A tensor of another rank, no frames, or non-finite values.
    """
    if isinstance(features, torch.Tensor):
        features = features.detach().cpu().numpy()
    x = np.asarray(features, dtype=np.float64)
    if x.ndim == 2:
        x = x[None]
    if x.ndim != 3:
        raise ProfileError(f"clip features must be [L, T, D] or [T, D], got shape {x.shape}")
    if x.shape[1] == 0:
        raise ProfileError("a clip with no frames cannot be enrolled")
    if not np.isfinite(x).all():
        raise ProfileError("clip features contain NaN or infinite values")
    mean = x.mean(axis=1)
    m2 = ((x - mean[:, None, :]) ** 2).sum(axis=1)
    return RunningMoments(int(x.shape[1]), mean, m2)


def merge_moments(a: RunningMoments, b: RunningMoments) -> RunningMoments:
    """RunningMoments of the union of two frame sets (Chan, Golub & LeVeque's pairwise update).

    Raises:
        ProfileError: Different ``[L, D]`` shapes.
    """
    if a.shape != b.shape:
        raise ProfileError(f"cannot merge moments of shape {a.shape} with {b.shape}")
    if b.frames == 0:
        return a
    if a.frames == 0:
        return b
    total = a.frames + b.frames
    delta = b.mean - a.mean
    mean = a.mean + delta * (b.frames / total)
    m2 = a.m2 + b.m2 + delta * delta * (a.frames * b.frames / total)
    return RunningMoments(total, mean, m2)


def shrink_moments(
    mean: np.ndarray,
    variance: np.ndarray,
    clips: float,
    prior_mean: np.ndarray,
    prior_variance: np.ndarray,
    prior_clips: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Speaker moments pulled toward the global ones by an effective-count prior.

    ``w = clips / (clips + prior_clips)``; returns ``(w * mean + (1 - w) * prior_mean,
    w * variance + (1 - w) * prior_variance)``. ``clips = 0`` gives the prior, ``prior_clips
    = 0`` the speaker's own moments (for ``clips > 0``).

    Raises:
        ProfileError: Negative counts, or shapes that differ.
    """
    if clips < 0 or prior_clips < 0:
        raise ProfileError(f"clip counts must be >= 0 (got {clips} and {prior_clips})")
    if np.shape(mean) != np.shape(prior_mean) or np.shape(variance) != np.shape(prior_variance):
        raise ProfileError(
            f"speaker moments {np.shape(mean)} and global moments {np.shape(prior_mean)} "
            "differ in shape"
        )
    if clips == 0:
        return np.asarray(prior_mean, np.float64), np.asarray(prior_variance, np.float64)
    weight = clips / (clips + prior_clips)
    return (
        weight * np.asarray(mean, np.float64) + (1 - weight) * np.asarray(prior_mean, np.float64),
        weight * np.asarray(variance, np.float64)
        + (1 - weight) * np.asarray(prior_variance, np.float64),
    )


def fingerprint(description: Mapping[str, Any]) -> str:
    """A short, stable hash of a JSON-able description (a feature pipeline's settings)."""
    text = json.dumps(description, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def _canonical(value: Any) -> Any:
    """Round-trip through JSON so tuples/lists and int/str keys compare as stored."""
    return json.loads(jsonio.dumps(value, sort_keys=True, default=str))


# --------------------------------------------------------------------------- the profile
@dataclass
class SpeakerProfile:
    """Running feature moments of one speaker, tied to one backbone and one feature pipeline.

    Build one with :meth:`empty` and :meth:`update` (or ``recognizer.enrol``); it never sees a
    label. :meth:`moments` gives the (shrunk) mean and variance the pipeline normalises with.

    Attributes:
        backbone: ``backbone.identity()`` of the encoder the features came from.
        pipeline: Fingerprint of the feature pipeline (layer selection and anything else that
            changes what the moments are of).
        layers: Hidden-state indices of the ``L`` rows (for people and for checks).
        clips: Clips enrolled.
        stats: Frame moments of those clips.
        name: Free text for people (a user id, say); never used in computation.
    """

    backbone: dict[str, Any]
    pipeline: str
    layers: tuple[int, ...]
    clips: int = 0
    stats: RunningMoments = field(default_factory=lambda: empty_moments(1, 1))
    name: str = ""

    @classmethod
    def empty(
        cls,
        backbone: Mapping[str, Any],
        pipeline: str,
        layers: Sequence[int],
        dim: int,
        *,
        name: str = "",
    ) -> SpeakerProfile:
        """A profile with nothing enrolled (normalises with the global moments)."""
        if not layers or dim <= 0:
            raise ProfileError("a profile needs at least one layer and one channel")
        return cls(
            backbone=_canonical(dict(backbone)),
            pipeline=str(pipeline),
            layers=tuple(int(i) for i in layers),
            stats=empty_moments(len(layers), dim),
            name=name,
        )

    # ------------------------------------------------------------------ accumulation
    @property
    def frames(self) -> int:
        return self.stats.frames

    @property
    def shape(self) -> tuple[int, int]:
        """``(L, D)``."""
        return self.stats.shape

    def update(self, clips: np.ndarray | torch.Tensor | Iterable[np.ndarray | torch.Tensor]
               ) -> SpeakerProfile:
        """Add clips in place (features only: ``[L, T, D]`` each, or one such array).

        Returns:
            ``self``, so calls chain.

        Raises:
            ProfileError: A clip of another shape than the profile's ``[L, *, D]``.
        """
        if isinstance(clips, np.ndarray | torch.Tensor):
            clips = [clips]
        for clip in clips:
            moments = clip_moments(clip)
            if moments.shape != self.shape:
                raise ProfileError(
                    f"clip features have {moments.shape[0]} layer(s) x {moments.shape[1]} "
                    f"channels; this profile holds {self.shape[0]} x {self.shape[1]}"
                )
            self.stats = merge_moments(self.stats, moments)
            self.clips += 1
        return self

    def merge(self, other: SpeakerProfile) -> SpeakerProfile:
        """A new profile holding both profiles' clips (same backbone and pipeline required)."""
        other.check(self.backbone, self.pipeline)
        if other.layers != self.layers:
            raise ProfileError(f"profiles of layers {self.layers} and {other.layers} differ")
        return SpeakerProfile(
            backbone=dict(self.backbone),
            pipeline=self.pipeline,
            layers=self.layers,
            clips=self.clips + other.clips,
            stats=merge_moments(self.stats, other.stats),
            name=self.name or other.name,
        )

    # ------------------------------------------------------------------ use
    def moments(
        self,
        prior_mean: np.ndarray,
        prior_variance: np.ndarray,
        prior_clips: float = DEFAULT_PRIOR_CLIPS,
    ) -> tuple[np.ndarray, np.ndarray]:
        """The ``[L, D]`` mean and standard deviation to normalise this speaker's frames with.

        Args:
            prior_mean: ``[L, D]`` global (training-set) mean at the pipeline's input.
            prior_variance: ``[L, D]`` global variance.
            prior_clips: Weight of the global moments in clips (``0``: the speaker's own).

        Returns:
            ``(mean, std)`` float64, std floored at :data:`STD_FLOOR`.
        """
        mean, variance = shrink_moments(
            self.stats.mean, self.stats.variance, self.clips, prior_mean, prior_variance,
            prior_clips,
        )
        return mean, np.sqrt(np.maximum(variance, 0.0)).clip(min=STD_FLOOR)

    def check(self, backbone: Mapping[str, Any], pipeline: str) -> None:
        """Refuse a profile made for another backbone or pipeline.

        Raises:
            ProfileError: With what differs and what to do.
        """
        if _canonical(dict(backbone)) != self.backbone:
            raise ProfileError(
                f"this speaker profile was made with backbone {_describe(self.backbone)}, "
                f"not {_describe(backbone)}; enrol the speaker again with this model"
            )
        if str(pipeline) != self.pipeline:
            raise ProfileError(
                f"this speaker profile was made for feature pipeline {self.pipeline}, not "
                f"{pipeline} (other layers or settings); enrol the speaker again with this model"
            )

    # ------------------------------------------------------------------ storage
    def to_dict(self) -> dict[str, Any]:
        """JSON-able form (float64 values written exactly by ``json``)."""
        return {
            "format": PROFILE_FORMAT,
            "version": PROFILE_VERSION,
            "name": self.name,
            "backbone": self.backbone,
            "pipeline": self.pipeline,
            "layers": list(self.layers),
            "clips": self.clips,
            "frames": self.stats.frames,
            "mean": self.stats.mean.tolist(),
            "m2": self.stats.m2.tolist(),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, source: str = "<profile>") -> SpeakerProfile:
        """Inverse of :meth:`to_dict`.

        Raises:
            ProfileError: Not a profile, a newer format, or inconsistent fields.
        """
        if not isinstance(data, Mapping) or data.get("format") != PROFILE_FORMAT:
            raise ProfileError(f"{source}: not a ptssnn speaker profile")
        version = data.get("version")
        if not isinstance(version, int) or version > PROFILE_VERSION:
            raise ProfileError(
                f"{source}: profile format version {version!r} is not one this ptssnn reads "
                f"(<= {PROFILE_VERSION}); upgrade ptssnn"
            )
        try:
            layers = tuple(int(i) for i in data["layers"])
            mean = np.asarray(data["mean"], dtype=np.float64)
            m2 = np.asarray(data["m2"], dtype=np.float64)
            frames, clips = int(data["frames"]), int(data["clips"])
            backbone = data["backbone"]
            pipeline = str(data["pipeline"])
        except (KeyError, TypeError, ValueError) as error:
            raise ProfileError(f"{source}: incomplete speaker profile ({error})") from error
        if (
            mean.ndim != 2 or mean.shape != m2.shape or mean.shape[0] != len(layers)
            or not isinstance(backbone, Mapping) or frames < 0 or clips < 0
            or (clips == 0) != (frames == 0) or not np.isfinite(mean).all()
            or not np.isfinite(m2).all() or (m2 < 0).any()
        ):
            raise ProfileError(f"{source}: inconsistent speaker profile")
        return cls(
            backbone=_canonical(dict(backbone)),
            pipeline=pipeline,
            layers=layers,
            clips=clips,
            stats=RunningMoments(frames, mean, m2),
            name=str(data.get("name", "")),
        )

    def save(self, path: str | Path) -> Path:
        """Write the profile as JSON (through a temporary file, then a rename)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(jsonio.dumps(self.to_dict()) + "\n")
        tmp.replace(path)
        return path

    @classmethod
    def load(
        cls,
        path: str | Path,
        *,
        backbone: Mapping[str, Any] | None = None,
        pipeline: str | None = None,
    ) -> SpeakerProfile:
        """Read a profile; with ``backbone``/``pipeline`` given, refuse one made for others.

        Raises:
            ProfileError: Missing or unreadable file, not a profile, or made for another
                backbone or pipeline.
        """
        path = Path(path)
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError as error:
            raise ProfileError(f"{path}: no such speaker profile") from error
        except (OSError, UnicodeDecodeError, ValueError) as error:
            raise ProfileError(f"{path}: cannot read speaker profile ({error})") from error
        profile = cls.from_dict(data, source=str(path))
        if backbone is not None or pipeline is not None:
            profile.check(
                backbone if backbone is not None else profile.backbone,
                pipeline if pipeline is not None else profile.pipeline,
            )
        return profile

    def __repr__(self) -> str:
        return (
            f"SpeakerProfile({self.name or 'unnamed'!r}, clips={self.clips}, "
            f"frames={self.frames}, layers={self.layers}, D={self.shape[1]}, "
            f"backbone={self.backbone.get('name')!r}, pipeline={self.pipeline})"
        )


def _describe(identity: Mapping[str, Any]) -> str:
    name = identity.get("name", "?")
    weights = identity.get("weights_sha256")
    return f"{name!r}" + (f" (weights {str(weights)[:12]})" if weights else "")


def effective_weight(clips: float, prior_clips: float = DEFAULT_PRIOR_CLIPS) -> float:
    """Share of the speaker's own moments after ``clips`` clips (``0`` → 0, many → 1)."""
    if clips <= 0:
        return 0.0
    return 1.0 if math.isinf(clips) else clips / (clips + prior_clips)
