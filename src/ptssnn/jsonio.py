"""Strict JSON for everything ptssnn writes: NaN and infinities become ``null``.

``json.dumps`` writes bare ``NaN``/``Infinity`` by default, which strict parsers (browsers'
``JSON.parse``, jq, Go, Rust) reject; an undefined metric (UA of a fold without a class) is
"no value", so it is written as ``null`` and every file stays standard JSON.
"""

from __future__ import annotations

import json
import math
import numbers
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["dumps", "finite"]


def finite(value: Any, default: Callable[[Any], Any] | None = None) -> Any:
    """``value`` with every non-finite float replaced by ``None`` (recursively).

    Args:
        value: JSON-like data (dicts, lists, tuples, numbers, strings, numpy scalars).
        default: Converter for other objects (as ``json.dumps``'s); its result is cleaned too.
    """
    if value is None or isinstance(value, (str, bool)):
        return value
    if isinstance(value, numbers.Integral):
        return int(value)  # numpy integers too
    if isinstance(value, numbers.Real):
        number = float(value)
        return number if math.isfinite(number) else None
    if isinstance(value, Mapping):
        return {key: finite(item, default) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite(item, default) for item in value]
    if default is not None:
        return finite(default(value), default)
    return value  # json.dumps raises its own TypeError for it


def dumps(value: Any, *, default: Callable[[Any], Any] | None = None, **options: Any) -> str:
    """``json.dumps`` with non-finite floats as ``null`` and ``allow_nan=False``."""
    return json.dumps(finite(value, default), allow_nan=False, default=default, **options)
