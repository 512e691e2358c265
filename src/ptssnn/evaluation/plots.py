"""Figures (matplotlib, Agg backend, PNG): confusion matrix, firing rates per layer,
membrane-potential / input-current histograms with and without calibration, training curves.

Every function takes plain numbers (lists, dicts as stored in ``results.json``) and a path,
so a figure can be redrawn from the results file alone.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only, never a window (CI, servers)

import matplotlib.pyplot as plt
import numpy as np


def _save(fig: Any, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_confusion(
    confusion: Sequence[Sequence[int]],
    label_names: Sequence[str],
    path: str | Path,
    *,
    title: str = "",
) -> Path:
    """Row-normalised confusion matrix (recall per reference class), counts in the cells.

    Args:
        confusion: ``[C, C]`` counts, rows = reference, columns = prediction.
        label_names: C class names.
        path: PNG to write.
    """
    counts = np.asarray(confusion, dtype=np.float64)
    rows = counts.sum(1, keepdims=True)
    recall = np.divide(counts, rows, out=np.zeros_like(counts), where=rows > 0)
    size = 1.2 + 0.7 * len(label_names)
    fig, ax = plt.subplots(figsize=(size + 1, size))
    image = ax.imshow(recall, vmin=0, vmax=1, cmap="Blues")
    ax.set_xticks(range(len(label_names)), label_names, rotation=45, ha="right")
    ax.set_yticks(range(len(label_names)), label_names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("reference")
    for i in range(counts.shape[0]):
        for j in range(counts.shape[1]):
            ax.text(j, i, f"{int(counts[i, j])}", ha="center", va="center",
                    color="white" if recall[i, j] > 0.5 else "black", fontsize=8)
    fig.colorbar(image, ax=ax, fraction=0.046, label="recall")
    ax.set_title(title or "confusion matrix (pooled over folds)")
    return _save(fig, path)


def plot_firing_rates(
    rates: Mapping[str, Mapping[str, float]],
    path: str | Path,
    *,
    title: str = "",
) -> Path:
    """Grouped bars of the firing rate per spiking layer, one group per condition.

    Args:
        rates: ``{condition: {layer name: rate in [0, 1]}}``, e.g. ``{"calibrated": {...},
            "calibration zeroed": {...}}``.
        path: PNG to write.
    """
    conditions = list(rates)
    layers = list(dict.fromkeys(name for cond in conditions for name in rates[cond]))
    width = 0.8 / max(1, len(conditions))
    fig, ax = plt.subplots(figsize=(max(5.0, 0.9 * len(layers) + 2), 3.6))
    x = np.arange(len(layers))
    for k, condition in enumerate(conditions):
        values = [rates[condition].get(layer, np.nan) for layer in layers]
        ax.bar(x + (k - (len(conditions) - 1) / 2) * width, values, width, label=condition)
    ax.set_xticks(x, layers, rotation=30, ha="right")
    ax.set_ylabel("firing rate (spikes / neuron / step)")
    ax.set_ylim(0, 1)
    ax.legend()
    ax.set_title(title or "firing rate per spiking layer")
    return _save(fig, path)


def plot_histograms(
    histograms: Mapping[str, Mapping[str, Sequence[float]]],
    path: str | Path,
    *,
    threshold: float | None = 1.0,
    title: str = "",
    xlabel: str = "membrane input (V)",
) -> Path:
    """Overlaid histograms, one per condition, with the firing threshold marked.

    Args:
        histograms: ``{condition: {"edges": [K + 1], "counts": [K]}}``.
        path: PNG to write.
        threshold: Draw a vertical line at the firing threshold (``None``: none).
    """
    fig, ax = plt.subplots(figsize=(6.0, 3.6))
    for condition, hist in histograms.items():
        edges = np.asarray(hist["edges"], dtype=np.float64)
        counts = np.asarray(hist["counts"], dtype=np.float64)
        density = counts / max(1.0, counts.sum())
        ax.stairs(density, edges, label=condition, fill=False, linewidth=1.5)
    if threshold is not None:
        ax.axvline(threshold, color="black", linestyle="--", linewidth=1, label="threshold")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("fraction of neuron-steps")
    ax.legend()
    ax.set_title(title or "distribution of neuron inputs")
    return _save(fig, path)


def plot_training_curves(
    histories: Mapping[str, Sequence[Mapping[str, float]]],
    path: str | Path,
    *,
    title: str = "",
) -> Path:
    """Training loss and validation UA per epoch, one line per fold.

    Args:
        histories: ``{fold name: [epoch records with epoch, train_loss, val_ua]}``.
        path: PNG to write.
    """
    fig, (left, right) = plt.subplots(1, 2, figsize=(9.0, 3.4))
    for name, history in histories.items():
        epochs = [h["epoch"] for h in history]
        left.plot(epochs, [h["train_loss"] for h in history], label=name)
        right.plot(epochs, [100 * h["val_ua"] for h in history], label=name)
    left.set_xlabel("epoch")
    left.set_ylabel("training loss")
    right.set_xlabel("epoch")
    right.set_ylabel("validation UA (%)")
    if len(histories) <= 10:
        right.legend(fontsize=7)
    fig.suptitle(title or "training curves")
    return _save(fig, path)


def plot_enrolment(
    per_model: Mapping[str, Mapping[str, Mapping[str, Any]]],
    path: str | Path,
    *,
    title: str = "",
) -> Path:
    """UA against the number of enrolment clips K, one line per head (± std as error bars).

    Args:
        per_model: ``{model: {K: {"ua": {"mean", "std"}}}}`` as in ``results.json``; K is a
            clip count or ``"all"`` (drawn at the right end, after a gap).
        path: PNG to write.
    """
    fig, ax = plt.subplots(figsize=(6.0, 4.0))
    ticks: dict[float, str] = {}
    for model, per_k in per_model.items():
        counts = sorted(int(k) for k in per_k if k != "all")
        far = (max(counts) * 1.5 if counts and max(counts) > 0 else 1.0)
        xs = [float(k) for k in counts] + ([far] if "all" in per_k else [])
        keys = [str(k) for k in counts] + (["all"] if "all" in per_k else [])
        means = [100 * per_k[k]["ua"]["mean"] for k in keys]
        stds = [100 * per_k[k]["ua"]["std"] for k in keys]
        ax.errorbar(xs, means, yerr=stds, marker="o", capsize=3, label=model)
        ticks.update(zip(xs, keys, strict=True))
    ax.set_xticks(list(ticks), list(ticks.values()))
    ax.set_xlabel("enrolment clips K per test speaker (not scored)")
    ax.set_ylabel("UA %")
    ax.grid(alpha=0.3)
    ax.legend()
    ax.set_title(title or "UA vs enrolment clips")
    return _save(fig, path)
