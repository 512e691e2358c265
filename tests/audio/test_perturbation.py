"""Speed perturbation: tempo and pitch scale together; factors are checked; the unperturbed
cache keys never change."""

from __future__ import annotations

import numpy as np
import pytest

from ptssnn.audio.perturbation import check_speed_factors, copy_id, speed_perturb
from ptssnn.features.extraction import AudioPolicy

RATE = 16000


def dominant_frequency(wave: np.ndarray, rate: int = RATE) -> float:
    spectrum = np.abs(np.fft.rfft(wave * np.hanning(len(wave))))
    return float(np.fft.rfftfreq(len(wave), 1 / rate)[np.argmax(spectrum)])


@pytest.mark.parametrize("factor", [0.9, 1.1])
def test_a_copy_is_faster_or_slower_and_higher_or_lower(factor: float) -> None:
    t = np.arange(2 * RATE) / RATE
    tone = (0.5 * np.sin(2 * np.pi * 200.0 * t)).astype(np.float32)
    copy = speed_perturb(tone, factor, RATE)
    assert copy.dtype == np.float32 and copy.ndim == 1
    assert abs(len(copy) - len(tone) / factor) <= 1  # duration / factor
    assert dominant_frequency(copy) == pytest.approx(200.0 * factor, abs=1.0)  # pitch × factor
    assert dominant_frequency(tone) == pytest.approx(200.0, abs=1.0)  # the input untouched


def test_factor_one_is_a_copy_and_bad_input_is_refused() -> None:
    wave = np.linspace(-0.5, 0.5, 4000, dtype=np.float32)
    same = speed_perturb(wave, 1.0)
    assert np.array_equal(same, wave) and same is not wave
    with pytest.raises(ValueError, match="mono"):
        speed_perturb(np.zeros((100, 2), np.float32), 0.9)
    with pytest.raises(ValueError, match="outside"):
        speed_perturb(wave, 3.0)


def test_factor_lists_are_parsed_sorted_and_checked() -> None:
    assert check_speed_factors("1.1, 0.9,1.1") == (0.9, 1.1)
    assert check_speed_factors([1.0, 0.95]) == (0.95,)  # 1 is the clip itself
    assert check_speed_factors("") == ()
    with pytest.raises(ValueError, match="must be a number"):
        check_speed_factors("0.9,fast")
    with pytest.raises(ValueError, match=r"outside \[0.5, 2\]"):
        check_speed_factors([0.4])
    assert copy_id(0.9, "spk1/a.wav") == "speed0.9/spk1/a.wav"


def test_the_cache_key_of_unperturbed_audio_is_unchanged() -> None:
    # Feature caches made before the option must still be found: no "speed" key at 1.
    assert "speed" not in AudioPolicy().to_dict()
    assert AudioPolicy(speed=0.9).to_dict()["speed"] == 0.9
    assert AudioPolicy(speed=0.9).to_dict() != AudioPolicy(speed=1.1).to_dict()


def test_each_speed_of_a_speaker_is_a_normalisation_group_of_its_own() -> None:
    from ptssnn.audio.perturbation import copy_factor, normalisation_groups

    speakers = {"a-1": "A", "a-2": "A", copy_id(0.9, "a-1"): "A", copy_id(1.1, "a-1"): "A",
                "speed1/b": "B"}  # looks like a copy, but its original is not there
    assert normalisation_groups(speakers) == {
        "a-1": "A", "a-2": "A", "speed0.9/a-1": "A@speed0.9", "speed1.1/a-1": "A@speed1.1",
        "speed1/b": "B"}
    assert copy_factor("speed0.9/a-1") == 0.9 and copy_factor("a-1") is None
    assert copy_factor("speedy/a-1") is None
