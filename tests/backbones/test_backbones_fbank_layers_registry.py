"""fbank, LayerSpec and the registry."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ptssnn.backbones import LayerSpec, LayerSpecError, list_backbones, load_backbone
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


@pytest.mark.parametrize(
    ("text", "indices", "mean", "canonical"),
    [
        ("all", None, False, "0,1,2,3,4,5,6"),
        ("3", (3,), False, "3"),
        ("1,3,5", (1, 3, 5), False, "1,3,5"),
        ("2-4", (2, 3, 4), False, "2,3,4"),
        ("mean:2-4", (2, 3, 4), True, "mean:2,3,4"),
        ("mean:all", None, True, "mean:0,1,2,3,4,5,6"),
        ("-1", (-1,), False, "6"),
        (" Mean: 1, 6 ", (1, 6), True, "mean:1,6"),
    ],
)
def test_layer_spec_parse(
    text: str, indices: tuple[int, ...] | None, mean: bool, canonical: str
) -> None:
    spec = LayerSpec.parse(text)
    assert (spec.indices, spec.mean) == (indices, mean)
    assert spec.canonical(7) == canonical
    assert LayerSpec.parse(str(spec)) == spec


@pytest.mark.parametrize("text", ["", "x", "4-2", "mean:", "1,,a", "2.5"])
def test_layer_spec_rejects(text: str) -> None:
    with pytest.raises(LayerSpecError):
        LayerSpec.parse(text)


def test_layer_spec_apply_tensor_and_array() -> None:
    states = torch.arange(7 * 3 * 2, dtype=torch.float32).reshape(7, 3, 2)
    torch.testing.assert_close(LayerSpec.parse("1,3").apply(states), states[[1, 3]])
    torch.testing.assert_close(
        LayerSpec.parse("mean:2-4").apply(states), states[2:5].mean(0, keepdim=True)
    )
    array = states.numpy().astype(np.float16)
    averaged = LayerSpec.parse("mean:0,6").apply(array)
    assert averaged.dtype == np.float16 and averaged.shape == (1, 3, 2)
    np.testing.assert_allclose(averaged[0], (array[0].astype(np.float32) + array[6]) / 2)
    assert LayerSpec.parse("all").num_selected(7) == 7
    assert LayerSpec.parse("mean:1-3").num_selected(7) == 1
    with pytest.raises(LayerSpecError, match="7 hidden states"):
        LayerSpec.parse("7").apply(states)


def test_registry_errors_and_listing() -> None:
    with pytest.raises(BackboneUnavailableError, match="choose one of"):
        load_backbone("wavlm-base")
    with pytest.raises(PtssnnError, match="unknown backbone option"):
        load_backbone("fbank", colour="blue")
    names = [info.name for info in list_backbones()]
    assert names[:3] == ["whisper-base", "whisper-tiny.en", "fbank"]
    assert all(info.available or info.requirement for info in list_backbones())
