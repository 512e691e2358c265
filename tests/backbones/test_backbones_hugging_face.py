"""Hugging Face encoders built from tiny random configs saved to a temporary folder (no network)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from ptssnn.backbones import load_backbone
from ptssnn.errors import BackboneUnavailableError

transformers = pytest.importorskip("transformers", reason="transformers (hf extra) missing")

# Small but real: the standard 7-layer convolutional feature encoder (stride 320 = 50 Hz).
_SSL_TINY = dict(
    hidden_size=32,
    num_hidden_layers=2,
    num_attention_heads=2,
    intermediate_size=64,
    conv_dim=(16,) * 7,
    num_conv_pos_embeddings=16,
    num_conv_pos_embedding_groups=2,
)


def _save(model: torch.nn.Module, folder: Path) -> Path:
    model.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def ssl_dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    torch.manual_seed(0)
    root = tmp_path_factory.mktemp("hf")
    built = {
        "wavlm": transformers.WavLMModel(
            transformers.WavLMConfig(**_SSL_TINY, num_buckets=32, max_bucket_distance=64)
        ),
        "hubert": transformers.HubertModel(transformers.HubertConfig(**_SSL_TINY)),
        "wav2vec2": transformers.Wav2Vec2Model(transformers.Wav2Vec2Config(**_SSL_TINY)),
        "data2vec-audio": transformers.Data2VecAudioModel(
            transformers.Data2VecAudioConfig(
                **{**_SSL_TINY, "num_conv_pos_embeddings": 5}, num_conv_pos_embedding_layers=2
            )
        ),
    }
    return {kind: _save(model.eval(), root / kind) for kind, model in built.items()}


@pytest.mark.parametrize("kind", ["wavlm", "hubert", "wav2vec2", "data2vec-audio"])
def test_ssl_hidden_states_match_the_model(kind: str, ssl_dirs: dict[str, Path]) -> None:
    folder = ssl_dirs[kind]
    backbone = load_backbone(f"hf:{folder}")
    audio = torch.randn(16000 + 1234) * 0.1
    states = backbone(audio)
    assert states.shape == (3, backbone.num_frames(audio.numel()), 32)
    assert states.shape[1] == 53  # 50 frames/s
    assert (backbone.num_hidden_states, backbone.hidden_size, backbone.frame_rate) == (3, 32, 50)
    assert backbone.identity()["model_type"] == kind
    assert all(not p.requires_grad for p in backbone.parameters()) and not backbone.training

    # Reference: the transformers model called directly on the normalised waveform.
    model = transformers.AutoModel.from_pretrained(folder).eval()
    normalised = (audio - audio.mean()) / torch.sqrt(audio.var(unbiased=False) + 1e-7)
    with torch.no_grad():
        reference = model(normalised[None], output_hidden_states=True).hidden_states
    torch.testing.assert_close(states, torch.stack([h[0] for h in reference]))
    assert backbone.macs(32000) > backbone.macs(16000) > 0


def test_ssl_feature_extractor_config_is_honoured(ssl_dirs: dict[str, Path]) -> None:
    folder = ssl_dirs["hubert"]
    extractor = transformers.Wav2Vec2FeatureExtractor(do_normalize=False)
    extractor.save_pretrained(folder / "raw")
    transformers.AutoModel.from_pretrained(folder).save_pretrained(folder / "raw")
    raw = load_backbone(f"hf:{folder / 'raw'}")
    normalised = load_backbone(f"hf:{folder}")
    assert raw.identity()["front_end"] == {"normalize": False, "feature_extractor": "checkpoint"}
    assert normalised.identity()["front_end"]["normalize"] is True
    audio = torch.randn(8000) * 0.05 + 0.02
    assert not torch.allclose(raw(audio), normalised(audio))


def test_weight_hash_follows_the_weights(tmp_path: Path) -> None:
    torch.manual_seed(1)
    config = transformers.Wav2Vec2Config(**_SSL_TINY)
    first = _save(transformers.Wav2Vec2Model(config), tmp_path / "a")
    second = _save(transformers.Wav2Vec2Model(config), tmp_path / "b")
    hash_a = load_backbone(f"hf:{first}").identity()["weights_sha256"]
    hash_b = load_backbone(f"hf:{second}").identity()["weights_sha256"]
    assert hash_a != hash_b
    assert load_backbone(f"hf:{first}").identity()["weights_sha256"] == hash_a


@pytest.fixture(scope="module")
def whisper_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    config = transformers.WhisperConfig(
        num_mel_bins=80,
        d_model=64,
        encoder_layers=2,
        encoder_attention_heads=4,
        encoder_ffn_dim=96,  # not 4 × d_model: the width must come from the checkpoint
        decoder_layers=1,
        decoder_attention_heads=4,
        decoder_ffn_dim=96,
        vocab_size=100,
        max_target_positions=32,
        pad_token_id=0,
        bos_token_id=1,
        eos_token_id=2,
        decoder_start_token_id=1,
    )
    return _save(transformers.WhisperModel(config).eval(), tmp_path_factory.mktemp("whisper"))


def test_whisper_checkpoint_matches_transformers_encoder(whisper_dir: Path) -> None:
    backbone = load_backbone(f"whisper-hf:{whisper_dir}", padding="30s")
    assert (backbone.num_hidden_states, backbone.hidden_size) == (3, 64)
    audio = torch.randn(16000 * 2) * 0.1
    states = backbone(audio)
    assert states.shape == (3, 100, 64)

    model = transformers.WhisperModel.from_pretrained(whisper_dir).eval()
    mel = transformers.WhisperFeatureExtractor(feature_size=80)(
        audio.numpy(), sampling_rate=16000, return_tensors="pt"
    ).input_features
    with torch.no_grad():
        reference = model.encoder(mel, output_hidden_states=True).hidden_states
    expected = torch.stack([h[0, :100] for h in reference])
    torch.testing.assert_close(states, expected, atol=1e-3, rtol=1e-3)


def test_hf_prefix_routes_whisper_checkpoints(whisper_dir: Path) -> None:
    routed = load_backbone(f"hf:{whisper_dir}")
    direct = load_backbone(f"whisper-hf:{whisper_dir}")
    assert routed.identity()["kind"] == "whisper"
    assert routed.identity()["weights_sha256"] == direct.identity()["weights_sha256"]
    # Unpadded works (the transformers encoder itself insists on 3000 frames).
    assert routed(torch.randn(8000) * 0.1).shape == (3, 25, 64)


def test_missing_checkpoint_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(BackboneUnavailableError, match="local directory"):
        load_backbone(f"hf:{tmp_path / 'nothing-here'}")
    with pytest.raises(BackboneUnavailableError, match="local directory"):
        load_backbone(f"whisper-hf:{tmp_path / 'nothing-here'}")
