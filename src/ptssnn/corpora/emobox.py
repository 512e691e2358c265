"""EmoBox fold membership, shipped with the package (ids and fold numbers only).

Regenerate ``data/emobox_folds.json.gz`` with ``scripts/make_emobox_folds.py``.
"""

from __future__ import annotations

import gzip
import json
from functools import cache
from importlib import resources
from typing import Any

from ptssnn.errors import ProtocolError

_RESOURCE = "emobox_folds.json.gz"


@cache
def _payload() -> dict[str, Any]:
    data = resources.files("ptssnn.corpora").joinpath("data", _RESOURCE).read_bytes()
    return json.loads(gzip.decompress(data))


def emobox_corpora() -> tuple[str, ...]:
    """Corpora for which EmoBox folds are shipped."""
    return tuple(sorted(_payload()["corpora"]))


def emobox_test_folds(corpus: str) -> dict[str, int]:
    """Utterance id -> number (1-based) of the EmoBox fold whose test side holds it.

    0 means the utterance is in every fold's train side (URDU's single fold tests 100 of 400).
    The train side of fold k is every other id of the mapping.

    Raises:
        ProtocolError: EmoBox has no folds for this corpus.
    """
    corpora = _payload()["corpora"]
    if corpus not in corpora:
        raise ProtocolError(
            f"EmoBox has no folds for corpus {corpus!r} (available: {', '.join(sorted(corpora))})"
        )
    entry = corpora[corpus]
    return dict(zip(entry["ids"], entry["test_fold"], strict=True))


def emobox_num_folds(corpus: str) -> int:
    """Number of EmoBox folds for ``corpus``."""
    emobox_test_folds(corpus)  # validates the name
    return int(_payload()["corpora"][corpus]["num_folds"])
