"""Speaker profiles: streaming moments, merging, shrinkage, storage, mismatch errors."""

from __future__ import annotations

import inspect
import json

import numpy as np
import pytest
import torch

from ptssnn.errors import PtssnnError
from ptssnn.features.profile import (
    DEFAULT_PRIOR_CLIPS,
    ProfileError,
    SpeakerProfile,
    clip_moments,
    effective_weight,
    empty_moments,
    fingerprint,
    merge_moments,
    shrink_moments,
)

BACKBONE = {"name": "fake", "weights_sha256": "ab" * 32, "layers": 3}
PIPELINE = fingerprint({"layers": "0,1,2"})


def _clips(seed: int = 0, count: int = 7, layers: int = 3, dim: int = 5,
           offset: float = 0.0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [
        (offset + rng.normal(rng.normal(0, 2, (layers, 1, dim)), rng.uniform(0.5, 3, (1, 1, dim)),
                             (layers, int(rng.integers(1, 40)), dim))).astype(np.float32)
        for _ in range(count)
    ]


def _profile(clips: list[np.ndarray], **kwargs) -> SpeakerProfile:
    layers, _, dim = clips[0].shape
    return SpeakerProfile.empty(BACKBONE, PIPELINE, range(layers), dim, **kwargs).update(clips)


def _batch(clips: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    frames = np.concatenate([c.astype(np.float64) for c in clips], axis=1)
    return frames.mean(1), frames.var(1)


def test_streaming_update_equals_batch_moments() -> None:
    clips = _clips()
    profile = SpeakerProfile.empty(BACKBONE, PIPELINE, range(3), 5)
    for clip in clips:  # one at a time, as a live enrolment would
        profile.update(torch.from_numpy(clip))
    mean, var = _batch(clips)
    assert profile.clips == len(clips)
    assert profile.frames == sum(c.shape[1] for c in clips)
    np.testing.assert_allclose(profile.stats.mean, mean, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(profile.stats.variance, var, rtol=1e-10, atol=1e-12)


def test_streaming_update_is_stable_under_a_large_offset() -> None:
    # Naive sum-of-squares loses every digit here (1e6² swamps a unit variance in float64).
    clips = [c.astype(np.float64) for c in _clips(seed=3, offset=1e6)]
    profile = _profile(clips)
    _, var = _batch(clips)
    np.testing.assert_allclose(profile.stats.variance, var, rtol=1e-6)


def test_merge_equals_joint_and_is_order_free() -> None:
    clips = _clips(seed=1, count=9)
    joint = _profile(clips)
    merged = _profile(clips[:4]).merge(_profile(clips[4:]))
    assert merged.clips == joint.clips and merged.frames == joint.frames
    np.testing.assert_allclose(merged.stats.mean, joint.stats.mean, rtol=1e-12)
    np.testing.assert_allclose(merged.stats.m2, joint.stats.m2, rtol=1e-10)
    reverse = _profile(clips[::-1])
    np.testing.assert_allclose(reverse.stats.m2, joint.stats.m2, rtol=1e-10)
    empty = empty_moments(3, 5)
    assert merge_moments(empty, joint.stats) is joint.stats
    assert merge_moments(joint.stats, empty) is joint.stats


def test_merge_refuses_other_shapes_and_other_models() -> None:
    with pytest.raises(ProfileError, match="shape"):
        merge_moments(empty_moments(2, 5), clip_moments(np.ones((3, 4, 5))))
    other = SpeakerProfile.empty({**BACKBONE, "name": "other"}, PIPELINE, range(3), 5)
    with pytest.raises(ProfileError, match="backbone"):
        _profile(_clips()).merge(other)


def test_shrinkage_limits() -> None:
    rng = np.random.default_rng(0)
    mean, var = rng.normal(size=(2, 4)), rng.uniform(1, 2, (2, 4))
    prior_mean, prior_var = rng.normal(size=(2, 4)), rng.uniform(3, 4, (2, 4))
    # No clip: the global moments whatever the prior weight.
    got = shrink_moments(mean, var, 0, prior_mean, prior_var, 5)
    np.testing.assert_array_equal(got[0], prior_mean)
    np.testing.assert_array_equal(got[1], prior_var)
    # No prior: the speaker's own moments.
    got = shrink_moments(mean, var, 3, prior_mean, prior_var, 0)
    np.testing.assert_allclose(got[0], mean)
    np.testing.assert_allclose(got[1], var)
    # Many clips: converges to the speaker; n clips against n0 = n: half way.
    got = shrink_moments(mean, var, 1e9, prior_mean, prior_var, 5)
    np.testing.assert_allclose(got[0], mean, atol=1e-7)
    got = shrink_moments(mean, var, 5, prior_mean, prior_var, 5)
    np.testing.assert_allclose(got[0], (mean + prior_mean) / 2)
    np.testing.assert_allclose(got[1], (var + prior_var) / 2)
    # The speaker's weight grows monotonically with the clips enrolled.
    weights = [effective_weight(n) for n in (0, 1, 5, 20, 1000)]
    assert weights[0] == 0 and weights == sorted(weights) and weights[-1] > 0.99
    with pytest.raises(ProfileError):
        shrink_moments(mean, var, -1, prior_mean, prior_var, 5)
    with pytest.raises(ProfileError, match="shape"):
        shrink_moments(mean, var, 1, prior_mean[:1], prior_var[:1], 5)


def test_profile_moments_use_the_prior_and_floor_the_std() -> None:
    clips = _clips(seed=2, count=2)
    profile = _profile(clips)
    prior_mean, prior_var = np.full((3, 5), 7.0), np.full((3, 5), 4.0)
    mean, std = profile.moments(prior_mean, prior_var)
    w = 2 / (2 + DEFAULT_PRIOR_CLIPS)
    np.testing.assert_allclose(mean, w * profile.stats.mean + (1 - w) * prior_mean)
    np.testing.assert_allclose(std ** 2, w * profile.stats.variance + (1 - w) * prior_var)
    empty = SpeakerProfile.empty(BACKBONE, PIPELINE, range(3), 5)
    mean, std = empty.moments(prior_mean, prior_var)
    np.testing.assert_array_equal(mean, prior_mean)
    np.testing.assert_array_equal(std, np.full((3, 5), 2.0))
    dead = _profile([np.ones((3, 4, 5), np.float32)])
    assert dead.moments(prior_mean, prior_var, prior_clips=0)[1].min() == pytest.approx(1e-5)


def test_save_load_round_trip_is_exact(tmp_path) -> None:
    profile = _profile(_clips(seed=4), name="user-17")
    path = profile.save(tmp_path / "sub" / "profile.json")
    loaded = SpeakerProfile.load(path, backbone=BACKBONE, pipeline=PIPELINE)
    assert (loaded.name, loaded.clips, loaded.frames, loaded.layers) == (
        "user-17", profile.clips, profile.frames, (0, 1, 2))
    np.testing.assert_array_equal(loaded.stats.mean, profile.stats.mean)
    np.testing.assert_array_equal(loaded.stats.m2, profile.stats.m2)
    # It keeps accumulating after a reload exactly as if it had never been saved.
    more = _clips(seed=5, count=2)
    np.testing.assert_allclose(loaded.update(more).stats.m2, profile.update(more).stats.m2,
                               rtol=1e-12)
    text = path.read_text()
    assert json.loads(text)["format"] == "ptssnn-speaker-profile"


def test_loading_for_another_backbone_or_pipeline_is_a_clear_error(tmp_path) -> None:
    path = _profile(_clips()).save(tmp_path / "p.json")
    with pytest.raises(ProfileError, match=r"backbone 'fake'.*enrol the speaker again"):
        SpeakerProfile.load(path, backbone={**BACKBONE, "name": "whisper-base"},
                            pipeline=PIPELINE)
    with pytest.raises(ProfileError, match="feature pipeline"):
        SpeakerProfile.load(path, backbone=BACKBONE, pipeline=fingerprint({"layers": "3"}))
    assert issubclass(ProfileError, PtssnnError)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "no such speaker profile"),
        ("{not json", "cannot read"),
        (json.dumps({"format": "something else"}), "not a ptssnn speaker profile"),
        (json.dumps({"format": "ptssnn-speaker-profile", "version": 99}), "upgrade"),
        (json.dumps({"format": "ptssnn-speaker-profile", "version": 1}), "incomplete"),
    ],
)
def test_bad_profile_files(tmp_path, content, message) -> None:
    path = tmp_path / "p.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(ProfileError, match=message):
        SpeakerProfile.load(path)


def test_tampered_profile_is_refused(tmp_path) -> None:
    data = _profile(_clips()).to_dict()
    data["m2"][0][0] = -1.0
    with pytest.raises(ProfileError, match="inconsistent"):
        SpeakerProfile.from_dict(data)
    data = _profile(_clips()).to_dict()
    data["layers"] = [0]
    with pytest.raises(ProfileError, match="inconsistent"):
        SpeakerProfile.from_dict(data)


def test_bad_clips_are_refused() -> None:
    profile = SpeakerProfile.empty(BACKBONE, PIPELINE, range(3), 5)
    with pytest.raises(ProfileError, match="3 x 5"):
        profile.update(np.zeros((2, 4, 5)))
    with pytest.raises(ProfileError, match="no frames"):
        profile.update(np.zeros((3, 0, 5)))
    with pytest.raises(ProfileError, match="NaN"):
        profile.update(np.full((3, 2, 5), np.nan))
    with pytest.raises(ProfileError, match=r"\[L, T, D\]"):
        profile.update(np.zeros(5))
    assert profile.clips == 0


def test_enrolment_never_sees_labels(tmp_path) -> None:
    # Enrolment takes features only: no entry point has a parameter that could carry a label,
    # the stored profile has no such field, and the same audio with different emotions attached
    # gives byte-identical profiles.
    for function in (SpeakerProfile.update, SpeakerProfile.empty, clip_moments):
        names = set(inspect.signature(function).parameters)
        assert not {n for n in names if "label" in n or "target" in n or "emotion" in n}
    clips = _clips(seed=6)
    labelled = [(clip, label) for clip, label in zip(clips, "aabbcca", strict=True)]
    relabelled = [(clip, label) for clip, label in zip(clips, "cbacbac", strict=True)]
    first = _profile([c for c, _ in labelled]).save(tmp_path / "a.json").read_bytes()
    second = _profile([c for c, _ in relabelled]).save(tmp_path / "b.json").read_bytes()
    assert first == second
    assert not {"label", "labels", "emotion"} & set(json.loads(first))
