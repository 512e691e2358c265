"""Self-supervised speech encoders from Hugging Face ``transformers`` (WavLM, HuBERT,
wav2vec 2.0, data2vec-audio), from a hub id or a local directory.

``transformers`` is an optional dependency (``pip install 'ptssnn[hf]'``); it is imported
only when such a backbone is loaded.
"""

from __future__ import annotations

import hashlib
import math
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ptssnn.backbones.base import Backbone
from ptssnn.errors import BackboneUnavailableError

SUPPORTED_MODEL_TYPES = ("wavlm", "hubert", "wav2vec2", "data2vec-audio")
IMPLEMENTATION_VERSION = 1


def _transformers() -> Any:
    try:
        import transformers
    except ImportError as error:
        raise BackboneUnavailableError(
            "Hugging Face backbones need transformers: pip install 'ptssnn[hf]'"
        ) from error
    return transformers


def weights_digest(module: nn.Module) -> str:
    """SHA-256 over a module's state dict (names, shapes, dtypes and values)."""
    digest = hashlib.sha256()
    for key, value in sorted(module.state_dict().items()):
        tensor = value.detach().cpu().contiguous()
        digest.update(f"{key}|{tuple(tensor.shape)}|{tensor.dtype}|".encode())
        digest.update(tensor.view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
    return digest.hexdigest()


def hugging_face_model_type(source: str) -> str:
    """``config.model_type`` of a hub id or local directory.

    Raises:
        BackboneUnavailableError: The config cannot be loaded.
    """
    transformers = _transformers()
    try:
        return transformers.AutoConfig.from_pretrained(source).model_type
    except (OSError, ValueError) as error:
        raise BackboneUnavailableError(
            f"cannot load a Hugging Face config from {source!r} ({error}); give a local "
            "directory holding config.json and the weights, or a hub id on a machine with hub "
            "access"
        ) from error


class HuggingFaceSSLBackbone(Backbone):
    """A frozen ``transformers`` speech encoder returning all ``hidden_states``.

    Args:
        source: Hub id or local directory.

    The input is normalised as the checkpoint's feature extractor says (its
    ``preprocessor_config.json``); without one, zero-mean unit-variance normalisation is used
    (``Wav2Vec2FeatureExtractor``'s default). The frame rate is ``16000 / prod(conv_stride)``
    (50 for every standard configuration).
    """

    def __init__(self, source: str) -> None:
        super().__init__()
        transformers = _transformers()
        model_type = hugging_face_model_type(source)
        if model_type not in SUPPORTED_MODEL_TYPES:
            raise BackboneUnavailableError(
                f"{source!r} is a {model_type!r} model; 'hf:' backbones support "
                f"{', '.join(SUPPORTED_MODEL_TYPES)} (Whisper checkpoints: use 'whisper-hf:')"
            )
        try:
            self.model = transformers.AutoModel.from_pretrained(source)
        except (OSError, ValueError) as error:
            raise BackboneUnavailableError(
                f"cannot load the Hugging Face model {source!r}: {error}"
            ) from error
        try:
            extractor = transformers.AutoFeatureExtractor.from_pretrained(source)
            self.feature_extractor_source = "checkpoint"
        except (OSError, ValueError):
            extractor = transformers.Wav2Vec2FeatureExtractor()
            self.feature_extractor_source = "default"
        self.do_normalize = bool(getattr(extractor, "do_normalize", True))
        config = self.model.config
        self.model_type = model_type
        self.source = str(Path(source).resolve()) if Path(source).exists() else source
        self.name = f"hf:{source}"
        self.num_hidden_states = config.num_hidden_layers + 1
        self.hidden_size = config.hidden_size
        stride = math.prod(config.conv_stride)
        self.frame_rate = round(self.sample_rate / stride)
        self.weights_sha256 = weights_digest(self.model)
        self.freeze()

    def num_frames(self, num_samples: int) -> int:
        length = num_samples
        for kernel, stride in zip(
            self.model.config.conv_kernel, self.model.config.conv_stride, strict=True
        ):
            length = (length - kernel) // stride + 1
        return max(0, length)

    def hidden_states(self, audio: torch.Tensor) -> torch.Tensor:
        if self.num_frames(audio.numel()) < 1:
            raise ValueError(f"audio of {audio.numel()} samples is shorter than one frame")
        if self.do_normalize:
            # As Wav2Vec2FeatureExtractor: zero mean, unit variance, epsilon 1e-7.
            audio = (audio - audio.mean()) / torch.sqrt(audio.var(unbiased=False) + 1e-7)
        output = self.model(audio.unsqueeze(0), output_hidden_states=True)
        return torch.stack([state[0] for state in output.hidden_states]).float()

    def identity(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": "hugging-face",
            "implementation": IMPLEMENTATION_VERSION,
            "model_type": self.model_type,
            "source": self.source,
            "weights_sha256": self.weights_sha256,
            "front_end": {
                "normalize": self.do_normalize,
                "feature_extractor": self.feature_extractor_source,
            },
        }

    def macs(self, num_samples: int) -> int:
        """Approximate MACs: convolutional feature encoder, projection, positional
        convolution and transformer layers (relative-position terms are ignored)."""
        config = self.model.config
        total, length, channels = 0, num_samples, 1
        for width, kernel, stride in zip(
            config.conv_dim, config.conv_kernel, config.conv_stride, strict=True
        ):
            length = (length - kernel) // stride + 1
            total += length * width * channels * kernel
            channels = width
        steps, width = max(0, length), config.hidden_size
        total += steps * channels * width
        groups = config.num_conv_pos_embedding_groups
        pos_layers = getattr(config, "num_conv_pos_embedding_layers", 1)
        total += pos_layers * steps * width * (width // groups) * config.num_conv_pos_embeddings
        per_layer = steps * (4 * width * width + 2 * width * config.intermediate_size)
        per_layer += 2 * steps * steps * width
        return total + config.num_hidden_layers * per_layer
