"""Training-state checkpoints as safetensors + JSON (never pickle).

One checkpoint = ``<stem>.safetensors`` (every tensor: model weights, best-so-far weights,
optimiser moments, RNG states) + ``<stem>.json`` (every scalar: epoch, best-so-far, history,
optimiser hyper-parameters, schedule step, config). Both are written to a temporary name and
renamed, safetensors first, and each carries the same ``token`` so a torn pair is detected.
"""

from __future__ import annotations

import json
import os
import random
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from ptssnn.errors import CheckpointError
from ptssnn.jsonio import dumps as strict_json

_SEP = "\x1f"  # joins nested keys; never appears in parameter names


def flatten_optimizer_state(state: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict]:
    """Split an optimiser ``state_dict`` into tensors and JSON scalars.

    Args:
        state: ``optimizer.state_dict()``.

    Returns:
        ``(tensors, meta)``: tensors keyed ``optim/<param id>/<name>``; ``meta`` holds the
        param groups and any non-tensor per-parameter values.
    """
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for param_id, values in state["state"].items():
        for name, value in values.items():
            if isinstance(value, torch.Tensor):
                tensors[f"optim{_SEP}{param_id}{_SEP}{name}"] = value.detach().clone().contiguous()
            else:
                scalars.setdefault(str(param_id), {})[name] = value
    groups = []
    for group in state["param_groups"]:
        groups.append({k: (list(v) if isinstance(v, tuple) else v) for k, v in group.items()})
    return tensors, {"param_groups": groups, "scalars": scalars}


def unflatten_optimizer_state(tensors: dict[str, torch.Tensor], meta: dict) -> dict[str, Any]:
    """Inverse of :func:`flatten_optimizer_state` (loadable by ``optimizer.load_state_dict``)."""
    state: dict[int, dict[str, Any]] = {}
    for key, value in tensors.items():
        parts = key.split(_SEP)
        if parts[0] != "optim":
            continue
        state.setdefault(int(parts[1]), {})[parts[2]] = value
    for param_id, values in meta.get("scalars", {}).items():
        state.setdefault(int(param_id), {}).update(values)
    groups = []
    for group in meta["param_groups"]:
        restored = dict(group)
        if isinstance(restored.get("betas"), list):
            restored["betas"] = tuple(restored["betas"])
        groups.append(restored)
    return {"state": state, "param_groups": groups}


def capture_rng(generators: dict[str, torch.Generator]) -> tuple[dict[str, torch.Tensor], dict]:
    """Every RNG state a run draws from: torch global, named generators, numpy, python."""
    tensors = {"rng" + _SEP + "torch": torch.get_rng_state().clone()}
    for name, generator in generators.items():
        tensors["rng" + _SEP + name] = generator.get_state().clone()
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    version, internal, gauss = random.getstate()
    meta = {
        "numpy": [kind, keys.tolist(), int(pos), int(has_gauss), float(cached)],
        "python": [version, list(internal), gauss],
    }
    return tensors, meta


def restore_rng(tensors: dict[str, torch.Tensor], meta: dict,
                generators: dict[str, torch.Generator]) -> None:
    """Inverse of :func:`capture_rng`."""
    torch.set_rng_state(tensors["rng" + _SEP + "torch"])
    for name, generator in generators.items():
        key = "rng" + _SEP + name
        if key not in tensors:
            raise CheckpointError(f"checkpoint lacks the RNG state {name!r}; start without resume")
        generator.set_state(tensors[key])
    kind, keys, pos, has_gauss, cached = meta["numpy"]
    np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    version, internal, gauss = meta["python"]
    random.setstate((version, tuple(internal), gauss))


def _module_tensors(prefix: str, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    # Clones: safetensors refuses tensors that share storage (tied weights, views).
    return {prefix + _SEP + k: v.detach().clone().contiguous() for k, v in state.items()}


def _strip(prefix: str, tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    head = prefix + _SEP
    return {k[len(head):]: v for k, v in tensors.items() if k.startswith(head)}


def save_training_state(
    stem: str | Path,
    *,
    model_state: dict[str, torch.Tensor],
    best_state: dict[str, torch.Tensor] | None,
    optimizer_state: dict[str, Any],
    generators: dict[str, torch.Generator],
    scalars: dict[str, Any],
    average_state: dict[str, torch.Tensor] | None = None,
) -> None:
    """Write one training checkpoint pair atomically.

    Args:
        stem: Path without extension; ``.safetensors`` and ``.json`` are added.
        model_state: ``model.state_dict()`` after the epoch.
        best_state: Weights of the best epoch so far (``None`` before the first).
        optimizer_state: ``optimizer.state_dict()``.
        generators: Named ``torch.Generator`` objects the run draws from.
        scalars: JSON-ready values (epoch, best-so-far, history, config, schedule step).
        average_state: The running weight average (``TrainConfig.weight_average_epochs``).
    """
    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    tensors = _module_tensors("model", model_state)
    if best_state is not None:
        tensors.update(_module_tensors("best", best_state))
    if average_state is not None:
        tensors.update(_module_tensors("average", average_state))
    optim_tensors, optim_meta = flatten_optimizer_state(optimizer_state)
    tensors.update(optim_tensors)
    rng_tensors, rng_meta = capture_rng(generators)
    tensors.update(rng_tensors)
    token = uuid.uuid4().hex
    meta = dict(scalars)
    meta.update({"token": token, "optimizer": optim_meta, "rng": rng_meta,
                 "has_best": best_state is not None, "has_average": average_state is not None})
    weights = stem.with_suffix(".safetensors")
    text = stem.with_suffix(".json")
    tmp_weights = weights.with_name(weights.name + ".tmp")
    tmp_text = text.with_name(text.name + ".tmp")
    save_file(tensors, str(tmp_weights), metadata={"token": token})
    tmp_text.write_text(strict_json(meta))
    os.replace(tmp_weights, weights)
    os.replace(tmp_text, text)


def load_training_state(stem: str | Path) -> dict[str, Any] | None:
    """Read a checkpoint pair written by :func:`save_training_state`.

    Returns:
        ``None`` when there is no checkpoint; else a dict with ``model`` and ``best`` (state
        dicts), ``optimizer`` (loadable state dict), ``rng_tensors``/``rng_meta`` (for
        :func:`restore_rng`) and every scalar saved.

    Raises:
        CheckpointError: When the pair is torn or unreadable.
    """
    stem = Path(stem)
    weights = stem.with_suffix(".safetensors")
    text = stem.with_suffix(".json")
    if not text.exists() and not weights.exists():
        return None
    try:
        meta = json.loads(text.read_text())
        tensors = load_file(str(weights))
        from safetensors import safe_open

        with safe_open(str(weights), framework="pt") as handle:
            token = (handle.metadata() or {}).get("token")
    except Exception as error:  # any failure to read means the same thing to the user
        raise CheckpointError(
            f"checkpoint {stem} is unreadable ({error}); delete it or run without --resume"
        ) from error
    if token != meta.get("token"):
        raise CheckpointError(
            f"checkpoint {stem}: weights and JSON come from different saves; delete both files "
            "or run without --resume"
        )
    state = dict(meta)
    state["model"] = _strip("model", tensors)
    state["best"] = _strip("best", tensors) if meta.get("has_best") else None
    state["average"] = _strip("average", tensors) if meta.get("has_average") else None
    state["optimizer"] = unflatten_optimizer_state(tensors, meta["optimizer"])
    state["rng_tensors"] = {k: v for k, v in tensors.items() if k.startswith("rng" + _SEP)}
    state["rng_meta"] = meta["rng"]
    return state
