"""Telemetry queries over decoded blocks, in numpy: filtering, paging, aggregation and percentiles.

Everything here is synchronous and runs on the telemetry reader's thread (`store/telemetry.py`), never on
the event loop. Percentiles use numpy's default ("linear") definition, so results equal `np.percentile`
over the same values.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from pivotd.telemetry.columns import Block, text_form

Agg = Literal["count", "avg", "sum", "min", "max", "p50", "p95", "p99"]
AGGS: tuple[str, ...] = ("count", "avg", "sum", "min", "max", "p50", "p95", "p99")
INTERVALS = {"1m": 60, "5m": 300, "1h": 3600, "1d": 86400}
_PERCENTILES = {"p50": 50.0, "p95": 95.0, "p99": 99.0}
# Past this many (bucket x group) cells the dense bincount path would allocate too much; np.unique compacts.
_DENSE_CELLS = 4_000_000
# Up to this many non-empty cells, percentiles come from one np.percentile call per cell; beyond, one lexsort.
_LOOPED_CELLS = 512


@dataclass(frozen=True, slots=True)
class Filters:
    event_name: tuple[str, ...] | None = None
    after: float | None = None
    """Inclusive lower bound on the event timestamp (epoch seconds)."""
    before: float | None = None
    """Exclusive upper bound."""
    metadata: tuple[tuple[str, str], ...] = ()
    """(key, text) pairs a metadata value must equal; non-string values compare as their JSON text."""


@dataclass(slots=True)
class Selection:
    """The events of some blocks that pass the filters: per block, the positions that match."""

    parts: list[tuple[Block, np.ndarray]] = field(default_factory=list)

    @property
    def count(self) -> int:
        return sum(len(positions) for _, positions in self.parts)


def select(blocks: Sequence[Block], filters: Filters) -> Selection:
    selection = Selection()
    for block in blocks:
        positions = _matching(block, filters)
        if positions is not None and len(positions):
            selection.parts.append((block, positions))
    return selection


def _matching(block: Block, filters: Filters) -> np.ndarray | None:
    mask: np.ndarray | None = None

    def narrow(condition: np.ndarray) -> None:
        nonlocal mask
        mask = condition if mask is None else mask & condition

    if filters.after is not None or filters.before is not None:
        timestamps = block.timestamps()
        if filters.after is not None:
            narrow(timestamps >= filters.after)
        if filters.before is not None:
            narrow(timestamps < filters.before)
    if filters.event_name is not None:
        codes, names = block.names()
        wanted = [code for code, name in enumerate(names) if name == filters.event_name]
        if not wanted:
            return None
        narrow(codes == wanted[0])
    for key, text in filters.metadata:
        found = block.codes(key)
        if found is None:
            return None
        codes, values = found
        wanted = [code for code, value in enumerate(values) if text_form(value) == text]
        if not wanted:
            return None
        narrow(codes == wanted[0] if len(wanted) == 1 else np.isin(codes, wanted))
    if mask is None:
        return np.arange(block.count)
    return np.flatnonzero(mask)


# ---- paging ----------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Page:
    events: list[dict[str, Any]]
    total: int
    has_more: bool


def page(selection: Selection, *, descending: bool, offset: int, limit: int, after: tuple[float, int] | None) -> Page:
    """Events ordered by (timestamp, id), `limit` of them from `offset`, after the keyset `after` if given.

    `total` counts every event passing the filters (not only those after the cursor). Only the requested
    page is ordered: argpartition finds the first offset+limit keys, ties at the boundary included.
    """
    if not selection.parts:
        return Page([], 0, False)
    timestamps = np.concatenate([block.timestamps()[positions] for block, positions in selection.parts])
    ids = np.concatenate([block.first_event + positions for block, positions in selection.parts])
    where = np.repeat(np.arange(len(selection.parts)), [len(p) for _, p in selection.parts])
    slots = np.concatenate([positions for _, positions in selection.parts])
    total = len(timestamps)
    if descending:
        time_key, id_key = -timestamps, -ids
    else:
        time_key, id_key = timestamps, ids
    candidates = np.arange(total)
    if after is not None:
        mark_time, mark_id = (-after[0], -after[1]) if descending else after
        later = (time_key > mark_time) | ((time_key == mark_time) & (id_key > mark_id))
        candidates = np.flatnonzero(later)
    wanted = offset + limit + 1  # one more than the page tells whether there is a next one
    if len(candidates) > wanted:
        nearest = candidates[np.argpartition(time_key[candidates], wanted - 1)[:wanted]]
        boundary = time_key[nearest].max()
        candidates = candidates[time_key[candidates] <= boundary]
    ordered = candidates[np.lexsort((id_key[candidates], time_key[candidates]))]
    chosen = ordered[offset : offset + limit]
    events = [selection.parts[int(where[i])][0].event(int(slots[i])) for i in chosen]
    return Page(events, total, len(ordered) > offset + limit)


def ordered_events(selection: Selection, chunk: int = 5000) -> Iterator[list[dict[str, Any]]]:
    """Every selected event in (timestamp, id) order, in lists of `chunk` (for export)."""
    if not selection.parts:
        return
    timestamps = np.concatenate([block.timestamps()[positions] for block, positions in selection.parts])
    ids = np.concatenate([block.first_event + positions for block, positions in selection.parts])
    where = np.repeat(np.arange(len(selection.parts)), [len(p) for _, p in selection.parts])
    slots = np.concatenate([positions for _, positions in selection.parts])
    order = np.lexsort((ids, timestamps))
    for start in range(0, len(order), chunk):
        yield [selection.parts[int(where[i])][0].event(int(slots[i])) for i in order[start : start + chunk]]


# ---- aggregation -----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AggRow:
    bucket: float | None
    """Start of the time bucket (epoch seconds), None without an interval."""
    group: Any
    value: float | None
    count: int


def aggregate(
    selection: Selection, *, agg: str, metric: str | None, group_by: str | None, interval: int | None
) -> list[AggRow]:
    """`agg` of measurement `metric` (or of events, for count without a metric) per time bucket and group."""
    times, values, groups = [], [], []
    group_values: list[Any] = []
    group_codes: dict[Any, int] = {}
    for block, positions in selection.parts:
        if metric is not None:
            column = block.measure(metric)
            if column is None:
                continue
            picked = column[positions]
            present = ~np.isnan(picked)
            if not present.all():
                positions, picked = positions[present], picked[present]
            values.append(picked)
        times.append(block.timestamps()[positions])
        if group_by is not None:
            groups.append(_global_codes(block, positions, group_by, group_values, group_codes))
    if not times:
        return []
    timestamps = np.concatenate(times)
    if not len(timestamps):
        return []
    numbers = np.concatenate(values) if metric is not None else None
    group_count = max(1, len(group_values))
    group = np.concatenate(groups) if group_by is not None else np.zeros(len(timestamps), dtype=np.int64)
    if interval is not None:
        bucket = np.floor(timestamps / interval).astype(np.int64)
        first_bucket = int(bucket.min())
        cell = (bucket - first_bucket) * group_count + group
    else:
        first_bucket = 0
        cell = group
    cells = int(cell.max()) + 1
    if cells > _DENSE_CELLS:
        used, cell = np.unique(cell, return_inverse=True)
        cell = cell.reshape(-1)
    else:
        used = None
    counts = np.bincount(cell)
    present = np.flatnonzero(counts)
    result_values = _reduce(agg, cell, numbers, counts, present)
    rows = []
    for index, value in zip(present.tolist(), result_values, strict=True):
        code = int(used[index]) if used is not None else index
        bucket_start = float((first_bucket + code // group_count) * interval) if interval is not None else None
        rows.append(
            AggRow(
                bucket_start,
                group_values[code % group_count] if group_by is not None else None,
                value,
                int(counts[index]),
            )
        )
    return rows


def _global_codes(
    block: Block, positions: np.ndarray, group_by: str, values: list[Any], codes: dict[Any, int]
) -> np.ndarray:
    """This block's group codes for `positions`, renumbered into one dictionary shared by all blocks."""
    if group_by == "event_name":
        local_codes, names = block.names()
        local = [".".join(name) for name in names]
    else:
        found = block.codes(group_by)
        if found is None:
            local_codes, local = np.full(block.count, -1, dtype=np.int32), []
        else:
            local_codes, local = found
    mapping = np.empty(len(local) + 1, dtype=np.int64)
    for i, value in enumerate([*local, None]):  # the last slot is where code -1 (key absent) lands
        token = (value.__class__, value)
        code = codes.get(token)
        if code is None:
            code = codes[token] = len(values)
            values.append(value)
        mapping[i] = code
    return mapping[local_codes[positions]]


def _reduce(
    agg: str, cell: np.ndarray, numbers: np.ndarray | None, counts: np.ndarray, present: np.ndarray
) -> list[float | None]:
    if agg == "count":
        return [float(c) for c in counts[present]]
    assert numbers is not None
    if agg in ("sum", "avg"):
        sums = np.bincount(cell, weights=numbers)[present]
        result = sums if agg == "sum" else sums / counts[present]
        return [_finite(v) for v in result.tolist()]
    # numpy's stable sort is a radix sort for 16-bit keys: about ten times faster than on int64 here.
    keys = cell.astype(np.uint16) if len(counts) <= 65536 else cell
    order = np.argsort(keys, kind="stable")
    grouped = numbers[order]
    starts = np.concatenate(([0], np.cumsum(counts[present])[:-1]))
    if agg == "min":
        return [_finite(v) for v in np.minimum.reduceat(grouped, starts).tolist()]
    if agg == "max":
        return [_finite(v) for v in np.maximum.reduceat(grouped, starts).tolist()]
    q = _PERCENTILES[agg]
    sizes = counts[present]
    if len(present) <= _LOOPED_CELLS:
        return [
            _finite(float(np.percentile(grouped[start : start + size], q)))
            for start, size in zip(starts.tolist(), sizes.tolist(), strict=True)
        ]
    # Many cells: sort values within cells once and interpolate every cell's percentile in one go.
    within = numbers[np.lexsort((numbers, cell))]
    position = (q / 100.0) * (sizes - 1)
    low = np.floor(position).astype(np.int64)
    high = np.minimum(low + 1, sizes - 1)
    fraction = position - low
    below, above = within[starts + low], within[starts + high]
    return [_finite(v) for v in (below + (above - below) * fraction).tolist()]


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None
