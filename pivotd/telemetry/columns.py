"""Columnar blocks: how telemetry events are stored.

One ingest batch becomes one block row, not one row per event: a block holds its events column by column
(timestamps and each measurement as float64 arrays, the event name and each metadata key as int32 codes into
a small dictionary of the values seen in the block). Writing 1,000 events is then one INSERT of a few tens
of kilobytes, and an aggregate reads only the columns it needs, straight into numpy, without parsing JSON
per event. Blocks are immutable once written (retention drops whole blocks; compaction replaces small ones
with a new block), so a decoded column can be cached by block id.

Layout: `header` is JSON naming where each column lives in `body`:
`{"n", "names": [codes_at, dict_at, dict_len], "measures": {name: at}, "keys": {key: [codes_at, dict_at,
dict_len]}}`; timestamps sit at offset 0. Dictionaries are orjson lists inside the body, parsed only for the
keys a query touches. A metadata value absent from an event has code -1; a measurement absent is NaN (stored
measurements are always finite, so NaN is unambiguous).
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson

from pivotd.store.telemetry import Encoded
from pivotd.telemetry.validate import TIMESTAMP, Event, Scalar

_F8 = np.dtype("<f8")
_I4 = np.dtype("<i4")
_VALUE_OVERHEAD = sys.getsizeof("")
"""Per decoded dictionary value: a Python object's header (49 bytes for a str), beside its JSON text. Exact
enough for strings, generous for numbers; measuring each value with sys.getsizeof would double the decode."""


class _Dictionary:
    """Codes of one text-or-scalar column being built; `(type, value)` keys keep 1, 1.0 and true apart."""

    __slots__ = ("codes", "lookup", "values")

    def __init__(self, n: int) -> None:
        self.codes = [-1] * n
        self.lookup: dict[Any, int] = {}
        self.values: list[Any] = []


def encode(events: Sequence[Event]) -> Encoded:
    n = len(events)
    timestamps = [event[TIMESTAMP] for event in events]
    names = _Dictionary(n)
    measures: dict[str, list[float]] = {}
    keys: dict[str, _Dictionary] = {}
    nan = float("nan")
    for i, (event_name, _, event_measurements, event_metadata) in enumerate(events):
        code = names.lookup.get(event_name)
        if code is None:
            code = names.lookup[event_name] = len(names.values)
            names.values.append(event_name)
        names.codes[i] = code
        for name, number in event_measurements.items():
            column = measures.get(name)
            if column is None:
                column = measures[name] = [nan] * n
            column[i] = number
        for key, value in event_metadata.items():
            dictionary = keys.get(key)
            if dictionary is None:
                dictionary = keys[key] = _Dictionary(n)
            token = (value.__class__, value)
            code = dictionary.lookup.get(token)
            if code is None:
                code = dictionary.lookup[token] = len(dictionary.values)
                dictionary.values.append(value)
            dictionary.codes[i] = code
    parts: list[bytes] = []
    offset = 0

    def put(blob: bytes) -> int:
        nonlocal offset
        at = offset
        parts.append(blob)
        offset += len(blob)
        return at

    ts_array = np.array(timestamps, dtype=_F8)
    put(ts_array.tobytes())

    def put_dictionary(dictionary: _Dictionary) -> list[int]:
        codes_at = put(np.array(dictionary.codes, dtype=_I4).tobytes())
        blob = orjson.dumps(dictionary.values)
        return [codes_at, put(blob), len(blob)]

    header: dict[str, Any] = {"n": n, "names": put_dictionary(names), "measures": {}, "keys": {}}
    for name, column in measures.items():
        header["measures"][name] = put(np.array(column, dtype=_F8).tobytes())
    for key, dictionary in keys.items():
        header["keys"][key] = put_dictionary(dictionary)
    return Encoded(orjson.dumps(header), b"".join(parts), n, float(ts_array.min()), float(ts_array.max()))


@dataclass(slots=True)
class Block:
    """A stored block, decoded lazily column by column."""

    id: int
    first_event: int
    header: dict[str, Any]
    body: bytes
    header_bytes: int = 0
    """Estimated memory of the decoded header."""
    _cache: dict[str, Any] = field(default_factory=dict)
    _decoded_bytes: int = 0

    def memory_bytes(self) -> int:
        """What keeping this block costs: its body, header and the dictionaries decoded so far (estimated).
        Columns are numpy views over `body`, so they add nothing of their own."""
        return len(self.body) + self.header_bytes + self._decoded_bytes

    @property
    def count(self) -> int:
        n: int = self.header["n"]
        return n

    def timestamps(self) -> np.ndarray:
        return np.frombuffer(self.body, _F8, self.count, 0)

    def event_ids(self) -> np.ndarray:
        return np.arange(self.first_event, self.first_event + self.count, dtype=np.int64)

    def measure(self, name: str) -> np.ndarray | None:
        at = self.header["measures"].get(name)
        return None if at is None else np.frombuffer(self.body, _F8, self.count, at)

    def measure_names(self) -> list[str]:
        return list(self.header["measures"])

    def key_names(self) -> list[str]:
        return list(self.header["keys"])

    def codes(self, key: str) -> tuple[np.ndarray, list[Any]] | None:
        """A metadata key's codes and its dictionary of values, or None when no event here has the key."""
        spec = self.header["keys"].get(key)
        return None if spec is None else self._dictionary(key, spec)

    def names(self) -> tuple[np.ndarray, list[tuple[str, ...]]]:
        codes, values = self._dictionary("\0names", self.header["names"])
        return codes, values

    def _dictionary(self, cache_key: str, spec: list[int]) -> tuple[np.ndarray, list[Any]]:
        found = self._cache.get(cache_key)
        if found is None:
            codes_at, dict_at, dict_len = spec
            values = orjson.loads(self.body[dict_at : dict_at + dict_len])
            if cache_key == "\0names":
                values = [tuple(parts) for parts in values]
            found = self._cache[cache_key] = (np.frombuffer(self.body, _I4, self.count, codes_at), values)
            self._decoded_bytes += sys.getsizeof(values) + len(values) * _VALUE_OVERHEAD + dict_len
        return found  # type: ignore[no-any-return]

    def event(self, index: int) -> dict[str, Any]:
        """One event as the API shows it."""
        codes, names = self.names()
        measurements = {}
        for name in self.header["measures"]:
            number = float(self.measure(name)[index])  # type: ignore[index]
            if number == number:  # not NaN: present
                measurements[name] = int(number) if number.is_integer() and abs(number) < 2**53 else number
        metadata: dict[str, Scalar] = {}
        for key in self.header["keys"]:
            key_codes, values = self.codes(key)  # type: ignore[misc]
            code = int(key_codes[index])
            if code >= 0:
                metadata[key] = values[code]
        return {
            "id": event_id(self.first_event + index),
            "event_name": list(names[int(codes[index])]),
            "measurements": measurements,
            "metadata": metadata,
            "timestamp": float(self.timestamps()[index]),
        }


def event_id(number: int) -> str:
    return f"evt_{number:010x}"


def text_form(value: Scalar) -> str:
    """How a metadata value compares with a query-string filter: strings as they are, others as JSON."""
    return value if isinstance(value, str) else orjson.dumps(value).decode()


def decode(rows: Iterable[tuple[int, int, bytes, bytes]]) -> list[Block]:
    blocks = []
    for block_id, first_event, header_blob, body in rows:
        header = orjson.loads(header_blob)
        blocks.append(Block(block_id, first_event, header, body, _deep_size(header)))
    return blocks


def _deep_size(value: Any) -> int:
    """sys.getsizeof of a small decoded JSON document and everything in it (a header: tens of entries)."""
    size = sys.getsizeof(value)
    if isinstance(value, dict):
        return size + sum(_deep_size(key) + _deep_size(item) for key, item in value.items())
    if isinstance(value, list | tuple):
        return size + sum(_deep_size(item) for item in value)
    return size
