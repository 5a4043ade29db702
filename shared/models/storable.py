"""Free-form JSON values the daemon's store and its JSON encoder can hold."""

from __future__ import annotations

import math
from typing import Any

INT64_MAX = 2**63 - 1
"""The largest integer SQLite binds and orjson encodes: beyond it, a write or a response fails."""
_INT64 = range(-INT64_MAX - 1, INT64_MAX + 1)
MAX_DEPTH = 64
"""How deeply free-form JSON may nest (objects and arrays, the value itself counting as one). orjson encodes at most
255 levels: a deeper value would be stored and then fail every response that holds it. 64 is far beyond any real
config or metadata and leaves room for the envelopes around it."""


def storable(value: Any, path: str = "") -> Any:
    """`value` if it holds only 64-bit integers and finite numbers and nests at most MAX_DEPTH levels, else a
    ValueError naming where. pydantic accepts any integer, `1e999` (infinity) and any nesting in free-form JSON,
    which SQLite's JSON functions and the response encoder then refuse: the write fails, or worse, every later
    read of the row does."""
    _check(value, path, 1)
    return value


def _check(value: Any, path: str, depth: int) -> None:
    kind = type(value)
    if kind is int and value not in _INT64:
        raise ValueError(f"{path or 'value'}: integer out of the 64-bit range")
    if kind is float and not math.isfinite(value):
        raise ValueError(f"{path or 'value'}: must be a finite number")
    if kind is not dict and kind is not list:
        return
    if depth > MAX_DEPTH:
        raise ValueError(f"{path or 'value'}: nested deeper than {MAX_DEPTH} levels")
    if kind is dict:
        for key, item in value.items():
            _check(item, f"{path}.{key}" if path else key, depth + 1)
    else:
        for index, item in enumerate(value):
            _check(item, f"{path}[{index}]", depth + 1)
