"""Shared fixtures for the whole test suite (one conftest, as the house style asks)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


def shared_data_root() -> Path:
    """Where the research data lives: ``$PTSSNN_DATA`` or ``<repo root>/../shared/data``."""
    override = os.environ.get("PTSSNN_DATA")
    return Path(override) if override else REPO_ROOT.parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Path of the shared research data; skips the test (with the reason) when it is absent."""
    root = shared_data_root()
    if not root.is_dir():
        pytest.skip(f"research data not found at {root} (set PTSSNN_DATA to its location)")
    return root
