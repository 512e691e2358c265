"""Checkpoints: ``model.safetensors`` (weights) + ``config.json`` (model config + metadata).

Loading never executes code: weights are read with safetensors, the config is plain JSON
validated field by field.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from ptssnn.errors import CheckpointError, PtssnnError
from ptssnn.jsonio import dumps as strict_json
from ptssnn.models.config import PTSSNNConfig
from ptssnn.models.ptssnn import PTSSNN

__all__ = ["CONFIG_FILE", "FORMAT", "WEIGHTS_FILE", "load_pretrained", "save_pretrained"]

WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
FORMAT = "ptssnn-head"
FORMAT_VERSION = 1


def save_pretrained(model: PTSSNN, directory: str | Path, metadata: dict[str, Any] | None = None
                    ) -> Path:
    """Write ``model.safetensors`` and ``config.json`` into ``directory`` (created if needed).

    Args:
        model: the head to save.
        directory: target folder.
        metadata: JSON-serialisable extras (label names, backbone identity, layer spec, ...).

    Returns:
        The directory.

    Raises:
        CheckpointError: metadata that JSON cannot encode.
    """
    directory = Path(directory)
    try:
        meta_text = strict_json(metadata or {})
    except (TypeError, ValueError) as error:
        raise CheckpointError(
            f"checkpoint metadata must be JSON-serialisable (str, numbers, lists, dicts): {error}"
        ) from error
    directory.mkdir(parents=True, exist_ok=True)
    tensors = {name: t.detach().cpu().contiguous().clone()
               for name, t in model.state_dict().items()}
    save_file(tensors, str(directory / WEIGHTS_FILE), metadata={"format": FORMAT})
    # safetensors writes 0600; a model is meant to be shared (a service under another user).
    os.chmod(directory / WEIGHTS_FILE, 0o666 & ~current_umask())
    document = {"format": FORMAT, "format_version": FORMAT_VERSION,
                "config": model.config.to_dict(), "metadata": json.loads(meta_text)}
    (directory / CONFIG_FILE).write_text(strict_json(document, indent=2) + "\n", encoding="utf-8")
    return directory


def current_umask() -> int:
    """The process umask (read by setting it, then restoring it)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _check_readable(path: Path) -> None:
    """Say "permission denied" (not "no such file") for a file this user may not read."""
    if not os.access(path, os.R_OK):
        raise CheckpointError(f"{path}: permission denied (this user cannot read it; model "
                              "files should be readable, mode 0644)")


#: Buffers added after the format was fixed; absent ones load as identity.
_OPTIONAL_BUFFERS = ("input_mean", "input_std")


def load_pretrained(directory: str | Path, map_location: str | torch.device = "cpu"
                    ) -> tuple[PTSSNN, dict[str, Any]]:
    """Load a head saved by :func:`save_pretrained`; returns ``(model in eval mode, metadata)``.

    Raises:
        CheckpointError: missing folder or files, unreadable JSON or weights, a config this
            version does not understand, or weights that do not match the config.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise CheckpointError(f"{directory}: no such model directory (expected a folder with "
                              f"{WEIGHTS_FILE} and {CONFIG_FILE}, written by save_pretrained)")
    config_path, weights_path = directory / CONFIG_FILE, directory / WEIGHTS_FILE
    for path in (config_path, weights_path):
        if not path.is_file():
            raise CheckpointError(f"{path}: missing; a model directory needs {WEIGHTS_FILE} and "
                                  f"{CONFIG_FILE} (re-save it with save_pretrained)")
    _check_readable(config_path)
    try:
        document = json.loads(config_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise CheckpointError(f"{config_path}: not valid JSON ({error})") from error
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise CheckpointError(f"{config_path}: not a ptssnn head config (format != {FORMAT!r})")
    if document.get("format_version", 0) > FORMAT_VERSION:
        raise CheckpointError(f"{config_path}: format version {document.get('format_version')} "
                              "is newer than this ptssnn; upgrade ptssnn")
    try:
        config = PTSSNNConfig.from_dict(dict(document.get("config") or {}))
    except (PtssnnError, TypeError) as error:
        raise CheckpointError(f"{config_path}: invalid model config: {error}") from error
    _check_readable(weights_path)
    # The shapes the config implies, from a model on the meta device (no memory), are checked
    # against the file's header before anything is allocated: a config that disagrees with its
    # weights cannot make the loader allocate more than the weights file holds.
    with torch.device("meta"):
        expected = PTSSNN(config).state_dict()
    try:
        with safe_open(str(weights_path), framework="pt") as handle:
            stored = {name: tuple(handle.get_slice(name).get_shape()) for name in handle.keys()}  # noqa: SIM118
    except (SafetensorError, OSError, RuntimeError) as error:
        raise CheckpointError(f"{weights_path}: unreadable weights ({error})") from error
    for name, shape in stored.items():
        if name in expected and shape != tuple(expected[name].shape):
            raise CheckpointError(
                f"{weights_path}: {name} has shape {shape}, the config implies "
                f"{tuple(expected[name].shape)}")
    try:
        tensors = load_file(str(weights_path), device=str(map_location))
    except (SafetensorError, OSError, RuntimeError) as error:
        raise CheckpointError(f"{weights_path}: unreadable weights ({error})") from error
    model = PTSSNN(config)
    expected = model.state_dict()
    # Checkpoints from before input standardisation existed: identity statistics.
    for name in _OPTIONAL_BUFFERS:
        if name not in tensors and name in expected:
            tensors[name] = expected[name].clone()
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    if missing or unexpected:
        raise CheckpointError(
            f"{weights_path}: weights do not match {CONFIG_FILE} "
            f"(missing: {', '.join(missing[:5]) or '-'}; unexpected: "
            f"{', '.join(unexpected[:5]) or '-'})")
    for name, tensor in tensors.items():
        if tensor.shape != expected[name].shape:
            raise CheckpointError(
                f"{weights_path}: {name} has shape {tuple(tensor.shape)}, the config implies "
                f"{tuple(expected[name].shape)}")
    model.load_state_dict(tensors)
    model.to(map_location).eval()
    return model, dict(document.get("metadata") or {})
