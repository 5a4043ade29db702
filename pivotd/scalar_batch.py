"""A scalar request's points as columns: one array of steps and one of values (and epochs, timestamps) per name.

The scalar route stores and checks points a series at a time (`store/scalarcodec.py`, the alert rules), so it
turns the body into columns once. `from_document` does so straight from orjson's parse, checking every rule of
`shared.models.scalars` with whole-list operations instead of a pydantic model per point (which cost about 1 µs
a value, more than everything else the route does). It accepts only plain bodies: anything else (a string or
boolean where a number goes, a float step, a non-finite number, a bad name, a missing field) gives None, and the
route validates the body with the pydantic models, whose verdict and 422 are the contract; `from_points` then
makes the same columns from the models.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import chain
from typing import Any

import numpy as np

from pivotd.store import RunFields, SeriesPoints
from shared.models.scalars import MAX_TIMESTAMP, ScalarPoint
from shared.models.storable import INT64_MAX

_NAME = re.compile(r"[A-Za-z0-9_./:-]{1,128}")
"""`ScalarName`: its pattern and length."""
_INT = {int}
_NUMBER = {float, int}
_NONE = type(None)


@dataclass(frozen=True, slots=True)
class ScalarColumns:
    series: dict[str, SeriesPoints]
    """Per name, its points in body order."""
    count: int
    """(name, step) pairs sent, as the 202 counts them."""
    last_step: int
    """The step of the body's last point."""
    points: list[dict[str, Any]]
    """The points as sent (orjson's dicts or the models' dumps), for the live `scalars` message."""
    fields: RunFields

    def message_points(self) -> list[dict[str, Any]]:
        """The points as the `scalars` message shows them: the models' `model_dump(exclude_none=True)`."""
        out = []
        for point in self.points:
            shown: dict[str, Any] = {"step": point["step"]}
            if point.get("epoch") is not None:
                shown["epoch"] = point["epoch"]
            if point.get("timestamp") is not None:
                shown["timestamp"] = float(point["timestamp"])
            shown["values"] = {name: float(value) for name, value in point["values"].items()}
            out.append(shown)
        return out


def from_points(points: Sequence[ScalarPoint], fields: RunFields) -> ScalarColumns:
    """Columns from validated models (the route's exact path)."""
    dumped = [point.model_dump(exclude_none=True) for point in points]
    values = [point["values"] for point in dumped]
    found = _columns(values, [p.step for p in points], [p.epoch for p in points], [p.timestamp for p in points])
    assert found is not None  # the models hold every rule `_columns` checks
    series, count = found
    return ScalarColumns(series, count, points[-1].step, dumped, fields)


def from_document(document: Any) -> ScalarColumns | None:
    """Columns from a parsed body when it is plainly valid; None sends the body to the models."""
    if type(document) is list:
        points, fields = document, RunFields()
    elif type(document) is dict:
        points = document.get("points")
        experiment_id, group, tags = document.get("experiment_id"), document.get("group"), document.get("tags")
        if not (_text(experiment_id, 128) and _text(group, 256)):
            return None
        if tags is not None and not (type(tags) is list and all(_text(tag, 128) and tag is not None for tag in tags)):
            return None
        fields = RunFields(experiment_id=experiment_id, group=group, tags=tags)
    else:
        return None
    if type(points) is not list or not points or set(map(type, points)) != {dict}:
        return None
    try:
        steps = [point["step"] for point in points]
        values = [point["values"] for point in points]
    except KeyError:
        return None
    if set(map(len, points)) == {2}:  # only `step` and `values`, as most clients send them
        epochs = stamps = [None]
    else:
        epochs = [point.get("epoch") for point in points]
        stamps = [point.get("timestamp") for point in points]
    if set(map(type, steps)) != _INT or min(steps) < 0 or max(steps) > INT64_MAX:
        return None
    if set(map(type, values)) != {dict} or min(map(len, values)) == 0:
        return None
    found = _columns(values, steps, epochs, stamps)
    if found is None:
        return None
    series, count = found
    return ScalarColumns(series, count, steps[-1], points, fields)


def _text(value: Any, longest: int) -> bool:
    return value is None or (type(value) is str and len(value) <= longest)


def _columns(
    values: list[dict[str, Any]], steps: list[int], epochs: list[Any], stamps: list[Any]
) -> tuple[dict[str, SeriesPoints], int] | None:
    """Per name, its points; `epochs` and `stamps` are aligned with `steps`, or `[None]` when no point has one."""
    epoch_array = stamp_array = None
    kinds = set(map(type, epochs))
    if kinds != {_NONE}:
        if not kinds <= {int, _NONE}:
            return None
        present = [epoch for epoch in epochs if epoch is not None]
        if min(present) < 0 or max(present) > INT64_MAX:
            return None
        epoch_array = np.array([-1 if epoch is None else epoch for epoch in epochs], np.int64)
    kinds = set(map(type, stamps))
    if kinds != {_NONE}:
        if not kinds <= {float, int, _NONE}:
            return None
        present = [stamp for stamp in stamps if stamp is not None]
        if not (min(present) >= 0 and max(present) <= MAX_TIMESTAMP):
            return None
        stamp_array = np.array([np.nan if stamp is None else stamp for stamp in stamps], np.float64)
    step_array = np.array(steps, np.int64)
    names = set(map(tuple, values))
    series: dict[str, SeriesPoints] = {}
    if len(names) == 1:  # every point has the same names in the same order: one matrix, a column per name
        [order] = names
        flat = list(chain.from_iterable(map(dict.values, values)))
        if not set(map(type, flat)) <= _NUMBER:
            return None
        matrix = np.array(flat, np.float64).reshape(len(values), len(order))
        for column, name in enumerate(order):
            series[name] = SeriesPoints(step_array, np.ascontiguousarray(matrix[:, column]), epoch_array, stamp_array)
        count = matrix.size
    else:
        where: dict[str, tuple[list[int], list[Any]]] = {}
        for index, point_values in enumerate(values):
            for name, value in point_values.items():
                found = where.get(name)
                if found is None:
                    found = where[name] = ([], [])
                found[0].append(index)
                found[1].append(value)
        count = 0
        for name, (indexes, column) in where.items():
            if not set(map(type, column)) <= _NUMBER:
                return None
            at = np.array(indexes, np.intp)
            series[name] = SeriesPoints(
                step_array[at],
                np.array(column, np.float64),
                None if epoch_array is None else epoch_array[at],
                None if stamp_array is None else stamp_array[at],
            )
            count += len(column)
    if not all(type(name) is str and _NAME.fullmatch(name) for name in series):
        return None
    if not all(bool(np.isfinite(points_of.values).all()) for points_of in series.values()):
        return None
    return series, count
