"""The fair probe: layer and C chosen on validation, refit on training + validation."""

from __future__ import annotations

import numpy as np
import pytest

from ptssnn.evaluation.probe import run_probe


def data(seed: int = 0):
    """[N, K=3, F=4] statistics: candidate "1" carries the class, "0" and "2" are noise."""
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(3), 40)
    stats = rng.normal(size=(120, 3, 4)).astype(np.float32)
    stats[np.arange(120), 1, labels] += 4.0
    return stats, labels


def test_probe_picks_the_informative_layer_and_refits_on_validation_too():
    stats, labels = data()
    rows = np.arange(120)
    # Class 2 appears only in validation and test: only the refit can learn it.
    train = rows[(labels < 2) & (rows % 3 == 0)]
    val = rows[rows % 3 == 1]
    test = rows[rows % 3 == 2]
    result = run_probe(stats, labels, ("0", "1", "2"), train, val, test, 3)
    assert result.layer == "1" and result.refit
    assert result.c in (0.01, 0.1, 1.0)
    assert set(result.validation_scores) == {"0", "1", "2"}
    assert result.test.ua > 0.9
    no_refit = run_probe(stats, labels, ("0", "1", "2"), train, val, test, 3, refit=False)
    assert not no_refit.refit and 2 not in set(no_refit.predictions.tolist())
    assert no_refit.test.ua < 0.7


def test_probe_can_be_held_to_the_heads_layer():
    stats, labels = data()
    rows = np.arange(120)
    train, val, test = rows[rows % 3 == 0], rows[rows % 3 == 1], rows[rows % 3 == 2]
    held = run_probe(stats, labels, ("0", "1", "2"), train, val, test, 3, only="0")
    assert held.layer == "0" and set(held.validation_scores) == {"0"}
    assert held.test.ua < 0.6  # noise only
    with pytest.raises(ValueError, match="not among"):
        run_probe(stats, labels, ("0", "1", "2"), train, val, test, 3, only="7")
