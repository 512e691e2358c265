"""Option parsing shared by the commands that build heads (``benchmark``, ``train``)."""

from __future__ import annotations

import json
from typing import Any

from ptssnn.errors import PtssnnError


def parse_model_options(items: list[str] | None) -> dict[str, Any]:
    """``["KEY=VALUE", ...]`` (``--model-option``) → head options; VALUE is read as JSON
    (``true``, ``0.5``, ``"membrane"``) or, when it is not JSON, taken as a string.

    Raises:
        PtssnnError: An item without ``=``.
    """
    options: dict[str, Any] = {}
    for item in items or []:
        if "=" not in item:
            raise PtssnnError(f"--model-option {item!r}: use KEY=VALUE (VALUE as JSON)")
        key, value = item.split("=", 1)
        try:
            options[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            options[key.strip()] = value
    return options
