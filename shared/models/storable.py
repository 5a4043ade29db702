"""Free-form JSON values the daemon's store and its JSON encoder can hold."""

from __future__ import annotations

import math
from typing import Any

INT64_MAX = 2**63 - 1
"""The largest integer SQLite binds and orjson encodes: beyond it, a write or a response fails."""
_INT64 = range(-INT64_MAX - 1, INT64_MAX + 1)


def storable(value: Any, path: str = "") -> Any:
    """`value` if it holds only 64-bit integers and finite numbers, else a ValueError naming where.
    pydantic accepts any integer and `1e999` (infinity) in free-form JSON, which SQLite's JSON functions and the
    response encoder then refuse: the write fails, or worse, every later read of the row does."""
    if type(value) is int and value not in _INT64:
        raise ValueError(f"{path or 'value'}: integer out of the 64-bit range")
    if type(value) is float and not math.isfinite(value):
        raise ValueError(f"{path or 'value'}: must be a finite number")
    if type(value) is dict:
        for key, item in value.items():
            storable(item, f"{path}.{key}" if path else key)
    elif type(value) is list:
        for index, item in enumerate(value):
            storable(item, f"{path}[{index}]")
    return value
