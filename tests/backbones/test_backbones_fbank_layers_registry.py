"""fbank and the registry."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ptssnn.backbones import list_backbones, load_backbone
from ptssnn.backbones.log_mel import mel_filters
from ptssnn.errors import BackboneUnavailableError, PtssnnError


def test_fbank_matches_an_independent_numpy_computation() -> None:
    rng = np.random.default_rng(0)
    audio = (0.1 * rng.standard_normal(16000 + 250)).astype(np.float32)
    backbone = load_backbone("fbank")
    states = backbone(torch.from_numpy(audio)).numpy()
    frames = audio.size // 160  # 101: odd, so the last 20 ms frame averages one 10 ms frame
    assert states.shape == (1, (frames + 1) // 2, 80) == (1, backbone.num_frames(audio.size), 80)

    padded = np.pad(audio.astype(np.float64), 200, mode="reflect")
    window = np.hanning(401)[:-1]  # periodic Hann
    spectra = np.stack(
        [np.fft.rfft(padded[i * 160 : i * 160 + 400] * window) for i in range(frames)]
    )
    mel = (np.abs(spectra) ** 2) @ mel_filters().astype(np.float64).T  # [frames, 80]
    pairs = [mel[i : i + 2].mean(axis=0) for i in range(0, frames, 2)]
    expected = np.log(np.maximum(np.stack(pairs), 1e-10))
    np.testing.assert_allclose(states[0], expected, atol=1e-3)


def test_fbank_contract() -> None:
    backbone = load_backbone("fbank")
    assert (backbone.name, backbone.num_hidden_states, backbone.hidden_size) == ("fbank", 1, 80)
    assert backbone.identity()["kind"] == "fbank"
    assert backbone.macs(32000) == 2 * backbone.macs(16000) > 0
    assert load_backbone("fbank", n_mels=40)(torch.randn(8000)).shape == (1, 25, 40)
    with pytest.raises(PtssnnError, match="Whisper"):
        load_backbone("fbank", padding="30s")


def test_registry_errors_and_listing() -> None:
    with pytest.raises(BackboneUnavailableError, match="choose one of"):
        load_backbone("wavlm-base")
    with pytest.raises(PtssnnError, match="unknown backbone option"):
        load_backbone("fbank", colour="blue")
    names = [info.name for info in list_backbones()]
    assert names[:3] == ["whisper-base", "whisper-tiny.en", "fbank"]
    assert all(info.available or info.requirement for info in list_backbones())
