"""The CTranslate2 ``model.bin`` reader on files written here from the format's description."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from ptssnn.backbones.ctranslate2_file import read_ctranslate2_model
from ptssnn.backbones.whisper import load_ctranslate2_whisper
from ptssnn.errors import BackboneUnavailableError

_CODES = {np.dtype("float32"): 0, np.dtype("int8"): 1, np.dtype("int16"): 2, np.dtype("int32"): 3}
_CODES[np.dtype("float16")] = 4


def _string(text: str) -> bytes:
    raw = text.encode() + b"\0"
    return struct.pack("<H", len(raw)) + raw


def write_model_bin(
    path: Path,
    variables: dict[str, np.ndarray | tuple[str, np.ndarray]],
    aliases: dict[str, str] | None = None,
    *,
    version: int = 6,
) -> bytes:
    """Write a model.bin; a ``("bfloat16", float32 array)`` value is stored as bfloat16."""
    out = [
        struct.pack("<I", version),
        _string("WhisperSpec"),
        struct.pack("<II", 3, len(variables)),
    ]
    for name, value in variables.items():
        if isinstance(value, tuple):
            array = value[1].astype(np.float32)
            raw, code = (array.view(np.uint32) >> 16).astype("<u2").tobytes(), 5
        else:
            array = value
            raw, code = array.tobytes(), _CODES[array.dtype]
        out += [_string(name), struct.pack("<B", array.ndim)]
        out += [
            struct.pack(f"<{array.ndim}I", *array.shape),
            struct.pack("<BI", code, len(raw)),
            raw,
        ]
    aliases = aliases or {}
    out.append(struct.pack("<I", len(aliases)))
    for alias, target in aliases.items():
        out += [_string(alias), _string(target)]
    data = b"".join(out)
    path.write_bytes(data)
    return data


def _tiny_whisper_variables(rng: np.random.Generator, width: int = 8) -> dict[str, np.ndarray]:
    def w(*shape: int) -> np.ndarray:
        return (0.2 * rng.standard_normal(shape)).astype(np.float16)

    variables = {
        "decoder/embeddings/weight": w(10, width),
        "encoder/conv1/weight": w(width, 80, 3),
        "encoder/conv1/bias": w(width),
        "encoder/conv2/weight": w(width, width, 3),
        "encoder/conv2/bias": w(width),
        "encoder/position_encodings/encodings": w(1500, width),
        "encoder/layer_norm/gamma": w(width) + np.float16(1),
        "encoder/layer_norm/beta": w(width),
        "encoder/num_heads": np.array(2, dtype=np.int16),
    }
    prefix = "encoder/layer_0"
    for norm in ("self_attention/layer_norm", "ffn/layer_norm"):
        variables[f"{prefix}/{norm}/gamma"] = w(width) + np.float16(1)
        variables[f"{prefix}/{norm}/beta"] = w(width)
    for name, (rows, cols) in {
        "self_attention/linear_0": (3 * width, width),
        "self_attention/linear_1": (width, width),
        "ffn/linear_0": (4 * width, width),
        "ffn/linear_1": (width, 4 * width),
    }.items():
        variables[f"{prefix}/{name}/weight"] = w(rows, cols)
        variables[f"{prefix}/{name}/bias"] = w(rows)
    return variables


def test_reads_dtypes_aliases_and_split_parts(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    values = rng.standard_normal((3, 4)).astype(np.float32)
    variables = {
        "a/f32": values,
        "a/f16": values.astype(np.float16),
        "a/bf16": ("bfloat16", values),
        "a/i32": np.arange(5, dtype=np.int32),
        "a/scalar": np.array(7, dtype=np.int8),
    }
    data = write_model_bin(tmp_path / "model.bin", variables, {"alias/x": "a/f32"})
    model = read_ctranslate2_model(tmp_path / "model.bin")
    assert (model.version, model.spec_name, model.spec_revision) == (6, "WhisperSpec", 3)
    np.testing.assert_array_equal(model.get("a/f32"), values)
    np.testing.assert_array_equal(model.get("alias/x"), values)
    assert model.get("a/f16").dtype == np.float16
    # bfloat16 keeps the top 16 bits of float32 (7 mantissa bits, truncated): error below 2^-7.
    np.testing.assert_allclose(model.get("a/bf16"), values, rtol=2**-7)
    assert model.get("a/scalar").shape == () and int(model.get("a/scalar")) == 7

    # The same bytes split at odd points read the same, and give the same digest.
    cuts = [0, 13, 101, len(data)]
    parts = []
    for i in range(3):
        part = tmp_path / f"model.bin.part{i}"
        part.write_bytes(data[cuts[i] : cuts[i + 1]])
        parts.append(part)
    split = read_ctranslate2_model(parts)
    assert split.digest == model.digest
    np.testing.assert_array_equal(split.get("a/bf16"), model.get("a/bf16"))

    only = read_ctranslate2_model(parts, include=lambda name: name == "a/i32")
    assert list(only.variables) == ["a/i32"] and only.digest != model.digest


def test_truncated_or_foreign_files_are_clear_errors(tmp_path: Path) -> None:
    data = write_model_bin(tmp_path / "model.bin", {"x": np.ones((64, 64), np.float32)})
    (tmp_path / "short.bin").write_bytes(data[: len(data) // 2])
    with pytest.raises(BackboneUnavailableError, match="truncated or damaged"):
        read_ctranslate2_model(tmp_path / "short.bin")
    write_model_bin(tmp_path / "v99.bin", {"x": np.ones(2, np.float32)}, version=99)
    with pytest.raises(BackboneUnavailableError, match="version 99"):
        read_ctranslate2_model(tmp_path / "v99.bin")
    with pytest.raises(BackboneUnavailableError, match="not found"):
        read_ctranslate2_model(tmp_path / "absent.bin")


def test_whisper_encoder_from_a_written_file(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    variables = _tiny_whisper_variables(rng)
    # An int8-quantised weight with its per-row scale, as CTranslate2 writes them.
    fc1 = variables["encoder/layer_0/ffn/linear_0/weight"].astype(np.float32)
    scale = (127.0 / np.abs(fc1).max(axis=1)).astype(np.float32)
    variables["encoder/layer_0/ffn/linear_0/weight"] = np.round(fc1 * scale[:, None]).astype(
        np.int8
    )
    variables["encoder/layer_0/ffn/linear_0/weight_scale"] = scale
    write_model_bin(tmp_path / "model.bin", variables)

    backbone = load_ctranslate2_whisper(tmp_path / "model.bin", name="tiny-test", source="test")
    config = backbone.encoder.config
    assert (config.width, config.num_heads, config.num_layers, config.ffn_width) == (8, 2, 1, 32)
    block = backbone.encoder.blocks[0]
    np.testing.assert_array_equal(
        block.qkv.weight.numpy(),
        variables["encoder/layer_0/self_attention/linear_0/weight"].astype(np.float32),
    )
    np.testing.assert_allclose(block.fc1.weight.numpy(), fc1, atol=np.abs(fc1).max() / 127)
    states = backbone(torch.randn(16000) * 0.1)
    assert states.shape == (2, 50, 8) and torch.isfinite(states).all()
