"""The stored form of scalar points: columnar chunks per series, decoded with numpy on read.

A row per point cost about 2 µs of SQLite per point written (docs/performance.md), which held the scalar
route near 300k points/s. A series is stored instead as *chunks*: runs of points in ascending step order,
each one row of `scalar_chunks` whose columns are little-endian arrays:

    steps int64 | values float64 | timestamps float64 (NaN: none; NULL when no point has one)
    | epochs int64 (-1: none; NULL when no point has one)

A write adds a chunk per series (the points of one request), or rewrites the chunks whose step range it
overlaps, so a series' chunks never overlap and reading it in order is concatenating them. A small last
chunk is extended rather than followed by another, so a client posting one point at a time still gets
chunks of hundreds of points. Reads concatenate the chunks' columns (one `bytes.join` each) and work on the
arrays: range cuts by binary search, the min/max downsampling as whole-array operations.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

GROW_BELOW = 512
"""A series' last chunk with fewer points than this is extended by the next append instead of followed."""
MAX_POINTS = 8192
"""Most points a chunk holds: rewriting a chunk (an overwrite, an extended tail) copies at most this many."""
NO_EPOCH = -1
COLUMNS = "count, steps, vals, epochs, timestamps"
"""A `scalar_chunks` row as `decode` takes it."""
SERIES_COLUMNS = "count, steps, vals, NULL, timestamps"
"""The same without epochs, which reads of a series do not show."""
_STEP = np.dtype("<i8")
_VALUE = np.dtype("<f8")


@dataclass(frozen=True, slots=True)
class Points:
    """Points of one series, in ascending step order with no step twice (or, from a request, in body order).
    `epochs` uses -1 and `timestamps` NaN for a point without one; None when no point has one."""

    steps: np.ndarray
    values: np.ndarray
    epochs: np.ndarray | None = None
    timestamps: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.steps)

    def take(self, index: np.ndarray | slice) -> Points:
        return Points(
            self.steps[index],
            self.values[index],
            None if self.epochs is None else self.epochs[index],
            None if self.timestamps is None else self.timestamps[index],
        )

    def epochs_or_none(self) -> np.ndarray:
        return np.full(len(self), NO_EPOCH, _STEP) if self.epochs is None else self.epochs

    def timestamps_or_nan(self) -> np.ndarray:
        return np.full(len(self), np.nan, _VALUE) if self.timestamps is None else self.timestamps

    def timestamp_list(self) -> list[float | None]:
        if self.timestamps is None:
            return [None] * len(self)
        return [None if t != t else t for t in self.timestamps.tolist()]  # NaN (t != t): no timestamp


def ordered(points: Points) -> Points:
    """Sorted by step; of points sharing a step, the last one (in the order given) is kept, as if each had
    been written after the one before."""
    steps = points.steps
    if len(steps) < 2 or bool(np.all(steps[1:] > steps[:-1])):
        return points
    order = np.argsort(steps, kind="stable")
    sorted_steps = steps[order]
    last = np.append(sorted_steps[1:] != sorted_steps[:-1], True)
    return points.take(order[last])


def merge(older: Points, newer: Points) -> Points:
    """Both ordered; a step in both keeps `newer`'s point."""
    both = concat([older, newer])
    return ordered(both)


def concat(parts: Sequence[Points]) -> Points:
    if len(parts) == 1:
        return parts[0]
    has_epochs = any(part.epochs is not None for part in parts)
    has_stamps = any(part.timestamps is not None for part in parts)
    return Points(
        np.concatenate([part.steps for part in parts]),
        np.concatenate([part.values for part in parts]),
        np.concatenate([part.epochs_or_none() for part in parts]) if has_epochs else None,
        np.concatenate([part.timestamps_or_nan() for part in parts]) if has_stamps else None,
    )


def pieces(points: Points) -> Iterable[Points]:
    """`points` cut into chunks of at most `MAX_POINTS`."""
    for start in range(0, len(points), MAX_POINTS):
        yield points.take(slice(start, start + MAX_POINTS))


def encode(points: Points) -> tuple[int, int, int, bytes, bytes, bytes | None, bytes | None]:
    """(first_step, last_step, count, steps, values, epochs, timestamps): a `scalar_chunks` row's columns."""
    epochs = points.epochs
    stamps = points.timestamps
    if epochs is not None and bool(np.all(epochs == NO_EPOCH)):
        epochs = None
    if stamps is not None and bool(np.all(np.isnan(stamps))):
        stamps = None
    return (
        int(points.steps[0]),
        int(points.steps[-1]),
        len(points),
        points.steps.astype(_STEP, copy=False).tobytes(),
        points.values.astype(_VALUE, copy=False).tobytes(),
        None if epochs is None else epochs.astype(_STEP, copy=False).tobytes(),
        None if stamps is None else stamps.astype(_VALUE, copy=False).tobytes(),
    )


def decode(rows: Sequence[tuple[Any, ...]]) -> Points:
    """Chunks (count, steps, values, epochs, timestamps), in step order, as one run of points."""
    steps = np.frombuffer(b"".join(row[1] for row in rows), _STEP)
    values = np.frombuffer(b"".join(row[2] for row in rows), _VALUE)
    return Points(steps, values, _optional(rows, 3, NO_EPOCH, _STEP), _optional(rows, 4, np.nan, _VALUE))


def _optional(rows: Sequence[tuple[Any, ...]], column: int, none: float, kind: np.dtype) -> np.ndarray | None:
    """An optional column of chunks (a chunk without it: `none` for each of its points); None if no chunk has it."""
    if all(row[column] is None for row in rows):
        return None
    if all(row[column] is not None for row in rows):
        return np.frombuffer(b"".join(row[column] for row in rows), kind)
    return np.concatenate(
        [np.full(row[0], none, kind) if row[column] is None else np.frombuffer(row[column], kind) for row in rows]
    )


def between(points: Points, low: int, high: int) -> Points:
    """The points (ordered) with low <= step <= high."""
    steps = points.steps
    start = int(np.searchsorted(steps, low, "left"))
    stop = int(np.searchsorted(steps, high, "right"))
    if start == 0 and stop == len(steps):
        return points
    return points.take(slice(start, stop))


def downsample(points: Points, max_points: int) -> np.ndarray:
    """Indexes of the points to show when there are more than `max_points`: the lowest and the highest point
    of each of (max_points - 2) // 2 equal step buckets, with their own steps, plus the first and the last
    point, in step order. Of equal extremes in a bucket, the first (lowest step) is kept.

    The buckets are the ones the row store's SQL made, `CAST((step - first) / width AS INTEGER)` with
    width a float, so the points chosen are the ones it chose."""
    steps, values = points.steps, points.values
    first, last = int(steps[0]), int(steps[-1])
    buckets = max(1, (max_points - 2) // 2)
    width = (last - first + 1) / buckets
    bucket = ((steps - first) / width).astype(np.int64)
    starts = np.flatnonzero(np.append(True, bucket[1:] != bucket[:-1]))
    counts = np.diff(np.append(starts, len(steps)))
    picked = [np.array([0, len(steps) - 1])]
    for reduce in (np.minimum, np.maximum):
        extreme = reduce.reduceat(values, starts)
        hits = np.flatnonzero(values == np.repeat(extreme, counts))  # about one a bucket
        owner = np.searchsorted(starts, hits, "right")
        picked.append(hits[np.append(True, owner[1:] != owner[:-1])])
    return np.unique(np.concatenate(picked))
