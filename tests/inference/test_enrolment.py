"""Enrolment in the recogniser: profiles from audio, prediction and streaming with a profile."""

from __future__ import annotations

import dataclasses
import inspect
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from ptssnn.errors import TooShortAudioError
from ptssnn.features.enrolment import (
    PRIOR_FILE,
    SpeakerPrior,
    pipeline_moments,
    training_moments,
)
from ptssnn.features.profile import ProfileError, SpeakerProfile
from ptssnn.inference import EmotionRecognizer
from speechlike import voiced

GAIN = 0.25  # a second "speaker": the same voice 12 dB quieter (a shift of every log-Mel bin)


def enrolment_clips(count: int = 6, gain: float = 1.0, seed: int = 0) -> list[np.ndarray]:
    return [gain * voiced(1.0 + 0.3 * i, seed=seed + i, f0=120 + 15 * i) for i in range(count)]


def write_prior(recognizer: EmotionRecognizer, directory: Path, *, prior_clips: float = 2.0,
                trained_for: str = "global") -> SpeakerPrior:
    """A prior from 'training' audio of both loudness levels (as a training set of many
    speakers would hold)."""
    items = [recognizer.clip_hidden_states(w)
             for gain in (1.0, GAIN) for w in enrolment_clips(8, gain, seed=50)]
    prior = SpeakerPrior.from_moments(training_moments(items), prior_clips=prior_clips,
                                      trained_for=trained_for)
    prior.save(directory)
    return prior


@pytest.fixture(scope="module")
def model_dir(enrol_model_dir: Path) -> Path:
    torch.set_num_threads(1)
    return enrol_model_dir


@pytest.fixture(scope="module")
def recognizer(model_dir: Path) -> EmotionRecognizer:
    return EmotionRecognizer.load(model_dir)


def test_prior_round_trip(recognizer: EmotionRecognizer, model_dir: Path) -> None:
    prior = SpeakerPrior.load(model_dir)
    assert prior is not None and prior.trained_for == "global" and prior.prior_clips == 2.0
    assert prior.mean.shape == (1, recognizer.backbone.hidden_size) and prior.frames > 0
    np.testing.assert_array_equal(recognizer.speaker_prior.variance, prior.variance)


def test_enrol_files_and_waveforms_alike_and_incrementally(
    recognizer: EmotionRecognizer, tmp_path: Path
) -> None:
    clips = enrolment_clips(4)
    paths = []
    for i, clip in enumerate(clips):
        paths.append(tmp_path / f"c{i}.wav")
        sf.write(paths[-1], clip, 16000, subtype="FLOAT")
    from_files = recognizer.enrol(paths, name="ana")
    from_arrays = recognizer.enrol(clips, 16000)
    assert from_files.clips == from_arrays.clips == 4 and from_files.name == "ana"
    np.testing.assert_allclose(from_files.stats.mean, from_arrays.stats.mean, atol=1e-9)
    # Two at a time into the same profile = all four at once (a profile keeps growing).
    grown = recognizer.enrol(clips[:2], 16000)
    assert recognizer.enrol(clips[2:], 16000, profile=grown) is grown
    np.testing.assert_allclose(grown.stats.m2, from_arrays.stats.m2, rtol=1e-10)
    # A waveform at another rate is resampled first.
    assert recognizer.enrol([np.repeat(clips[0], 3)], 48000).clips == 1


def test_enrol_skips_or_raises_on_bad_clips(recognizer: EmotionRecognizer, tmp_path: Path
                                            ) -> None:
    seen: list[tuple[str, object]] = []
    profile = recognizer.enrol(
        [voiced(1.0), np.zeros(100, np.float32), tmp_path / "missing.wav"], 16000,
        skip_errors=True, on_clip=lambda name, error: seen.append((name, error)))
    assert profile.clips == 1
    assert [error is None for _, error in seen] == [True, False, False]
    assert isinstance(seen[1][1], TooShortAudioError)
    with pytest.raises(TooShortAudioError):
        recognizer.enrol([np.zeros(100, np.float32)], 16000)
    with pytest.raises(ValueError, match="sample_rate"):
        recognizer.enrol([voiced(1.0)])


def test_empty_profile_predicts_exactly_as_no_profile(recognizer: EmotionRecognizer) -> None:
    wave = voiced(2.0, seed=7)
    plain = recognizer.predict(wave, 16000)
    empty = recognizer.predict(wave, 16000, profile=recognizer.new_profile())
    assert empty.probabilities == plain.probabilities


def test_profile_removes_a_speaker_channel_offset(model_dir: Path) -> None:
    """The same voice at two loudness levels (a constant shift of log-Mel features) reaches
    the head shifted without profiles and (nearly) the same with each level's own profile."""
    recognizer = EmotionRecognizer.load(model_dir)
    recognizer.speaker_prior = dataclasses.replace(recognizer.speaker_prior, prior_clips=0.0)
    loud, quiet = enrolment_clips(6), enrolment_clips(6, GAIN)
    profile_loud, profile_quiet = recognizer.enrol(loud, 16000), recognizer.enrol(quiet, 16000)
    test = voiced(2.2, seed=40, f0=135)

    def head_input(wave: np.ndarray, profile: SpeakerProfile | None) -> torch.Tensor:
        return recognizer.features(wave, recognizer.moments_for(profile)).float()

    apart = (head_input(test, None) - head_input(GAIN * test, None)).abs().mean()
    together = (head_input(test, profile_loud) - head_input(GAIN * test, profile_quiet)
                ).abs().mean()
    assert together < apart / 20, (together, apart)
    # With the default prior (2 clips' worth of global moments) the shift is only partly gone.
    recognizer.speaker_prior = dataclasses.replace(recognizer.speaker_prior, prior_clips=2.0)
    shrunk = (head_input(test, profile_loud) - head_input(GAIN * test, profile_quiet)
              ).abs().mean()
    assert together < shrunk < apart


def test_speaker_trained_head_uses_the_prior_without_a_profile(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    shutil.copytree(tiny_model_dir, tmp_path, dirs_exist_ok=True)
    recognizer = EmotionRecognizer.load(tmp_path)
    prior = write_prior(recognizer, tmp_path, trained_for="speaker")
    assert EmotionRecognizer.load(tmp_path).speaker_prior.trained_for == "speaker"
    recognizer.speaker_prior = prior
    pipeline = recognizer.pipeline.replace(normalisation="speaker")
    moments = pipeline_moments(pipeline, prior, None)
    np.testing.assert_allclose(moments.mean.numpy(), prior.mean, rtol=1e-6)
    np.testing.assert_allclose(moments.std.numpy() ** 2, prior.variance, rtol=1e-5)
    # A global head maps the speaker's moments onto the global ones: identity for no profile.
    assert pipeline_moments(recognizer.pipeline, prior, None) is None
    profile = recognizer.enrol(enrolment_clips(3), 16000)
    mapped = pipeline_moments(recognizer.pipeline, prior, profile)
    own = pipeline_moments(pipeline, prior, profile)
    torch.testing.assert_close(mapped.std, own.std / torch.as_tensor(
        np.sqrt(prior.variance), dtype=torch.float32))


def test_profiles_of_other_models_and_models_without_prior_are_refused(
    recognizer: EmotionRecognizer, tiny_model_dir: Path
) -> None:
    profile = recognizer.enrol(enrolment_clips(2), 16000)
    other = dataclasses.replace(profile, pipeline="0123456789abcdef")
    with pytest.raises(ProfileError, match="feature pipeline"):
        recognizer.predict(voiced(1.0), 16000, profile=other)
    alien = dataclasses.replace(profile, backbone={"name": "whisper-base"})
    with pytest.raises(ProfileError, match="backbone"):
        recognizer.enrol(enrolment_clips(1), 16000, profile=alien)
    bare = EmotionRecognizer.load(tiny_model_dir)
    assert not (tiny_model_dir / PRIOR_FILE).exists()
    with pytest.raises(ProfileError, match="no speaker prior"):
        bare.enrol(enrolment_clips(1), 16000)
    with pytest.raises(ProfileError, match="no speaker prior"):
        bare.predict(voiced(1.0), 16000, profile=profile)


def test_enrolment_takes_audio_only(recognizer: EmotionRecognizer) -> None:
    parameters = set(inspect.signature(recognizer.enrol).parameters)
    assert parameters == {"clips", "sample_rate", "profile", "name", "skip_errors", "on_clip"}
    profile = recognizer.enrol(enrolment_clips(2), 16000)
    assert not {"label", "labels"} & set(profile.to_dict())


def test_stream_with_profile_matches_offline_and_can_update_it(
    recognizer: EmotionRecognizer,
) -> None:
    profile = recognizer.enrol(enrolment_clips(3), 16000)
    wave = voiced(1.6, seed=9)
    offline = recognizer.predict(wave, 16000, profile=profile)
    session = recognizer.stream(chunk_s=2.0, left_context_s=0.0, profile=profile)
    last = session.run(wave, 16000)[-1]
    np.testing.assert_allclose(list(last.probabilities.values()),
                               list(offline.probabilities.values()), atol=1e-5)
    assert profile.clips == 3  # not updated unless asked

    before = SpeakerProfile.from_dict(profile.to_dict())
    session = recognizer.stream(chunk_s=0.4, left_context_s=1.0, lookahead_s=0.1,
                                profile=profile, update_profile=True)
    session.run(wave, 16000)
    assert profile.clips == 4 and profile.frames > before.frames
    expected = recognizer.enrol([wave], 16000, profile=before)
    np.testing.assert_allclose(profile.stats.mean, expected.stats.mean, atol=1e-6)
    with pytest.raises(ValueError, match="needs a profile"):
        recognizer.stream(update_profile=True)


def test_a_profile_folds_into_a_head_for_export(model_dir: Path) -> None:
    """The personalised head, fed features without moments, computes what the head
    computes with the profile (float32 pipeline: no storage rounding in between)."""
    recognizer = EmotionRecognizer.load(model_dir)
    recognizer.pipeline = recognizer.pipeline.replace(dtype="float32")
    profile = recognizer.enrol(enrolment_clips(6, GAIN), 16000)
    head = recognizer.personalised_head(profile)
    original = {k: v.clone() for k, v in recognizer.model.state_dict().items()}
    wave = GAIN * voiced(2.0, seed=41, f0=130)

    def logits(model: torch.nn.Module, moments) -> torch.Tensor:
        x = recognizer.pipeline.pool(recognizer.features(wave, moments))
        with torch.inference_mode():
            return model(x[None]).float()

    want = logits(recognizer.model, recognizer.moments_for(profile))
    torch.testing.assert_close(logits(head, None), want, atol=1e-4, rtol=1e-4)
    assert (logits(recognizer.model, None) - want).abs().max() > 1e-3  # the profile matters
    assert all(torch.equal(v, recognizer.model.state_dict()[k]) for k, v in original.items())
    # No profile: an unchanged copy.
    plain = recognizer.personalised_head(None)
    assert plain is not recognizer.model
    torch.testing.assert_close(logits(plain, None), logits(recognizer.model, None))
    # An averaged layer selection cannot take the fold.
    recognizer.pipeline = recognizer.pipeline.replace(layers="mean")
    with pytest.raises(ProfileError, match="averages"):
        recognizer.personalised_head(recognizer.enrol(enrolment_clips(2), 16000))
