"""Read queries on their own aiosqlite connection: WAL lets them run while the writer commits."""

from __future__ import annotations

import asyncio
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiosqlite

from pivotd.store import scalarcodec, stepcodec
from pivotd.store.rows import RUN_COLUMNS, RunRow, latest_by_run, latest_query, run_row

SORTABLE = {"created_at", "last_update", "run_id", "latest_step", "step_count"}
SHAPES_CACHED = 256
"""Step templates kept decoded: a run has one or a few, and ids are never reused, so entries never go stale."""


@dataclass(frozen=True, slots=True)
class EventRow:
    timestamp: float
    kind: str
    step: int | None
    field: str | None
    message: str


@dataclass(frozen=True, slots=True)
class SeriesRows:
    steps: list[int]
    values: list[float]
    timestamps: list[float | None]
    downsampled: bool


class Reader:
    def __init__(self, conn: aiosqlite.Connection) -> None:
        self._conn = conn
        self._shapes: dict[int, stepcodec.Shape] = {}

    @classmethod
    async def open(cls, db_path: Path) -> Reader:
        conn = await aiosqlite.connect(db_path, isolation_level=None)
        # WAL mode is a property of the file (the writer set it); readers need only these.
        for pragma in ("query_only=ON", "busy_timeout=5000"):
            await conn.execute(f"PRAGMA {pragma}")
        return cls(conn)

    @property
    def connection(self) -> aiosqlite.Connection:
        """For the query modules beside this one (`store/monitoring.py`, `store/training.py`): one reader connection."""
        return self._conn

    async def close(self) -> None:
        await self._conn.close()

    async def ping(self) -> None:
        await (await self._conn.execute("SELECT 1")).fetchone()

    async def run_counts(self) -> list[tuple[str, str, int]]:
        """(kind, status, runs) for every pair that has runs: served by the `runs_by_status` index."""
        rows = await self._conn.execute_fetchall("SELECT kind, status, count(*) FROM runs GROUP BY kind, status")
        return [(kind, status, count) for kind, status, count in rows]

    async def list_runs(
        self,
        *,
        statuses: tuple[str, ...] | None = None,
        experiment_id: str | None = None,
        sort: str = "created_at",
        limit: int | None = None,
        offset: int = 0,
    ) -> tuple[list[RunRow], int]:
        where, args = [], []
        if statuses is not None:
            where.append(f"status IN ({','.join('?' * len(statuses))})")
            args.extend(statuses)
        if experiment_id is not None:
            where.append("experiment_id = ?")
            args.append(experiment_id)
        clause = f"WHERE {' AND '.join(where)}" if where else ""
        column = sort.removeprefix("-")
        if column not in SORTABLE:
            raise ValueError(f"cannot sort by {column!r}; one of {', '.join(sorted(SORTABLE))}")
        order = f"{column} {'DESC' if sort.startswith('-') else 'ASC'}, id"
        page = "LIMIT ? OFFSET ?" if limit is not None else ""
        page_args = [limit, offset] if limit is not None else []
        rows = await self._conn.execute_fetchall(
            f"SELECT {RUN_COLUMNS} FROM runs {clause} ORDER BY {order} {page}", [*args, *page_args]
        )
        refs = None if not where and limit is None else [row[0] for row in rows]
        latest = latest_by_run(await self._conn.execute_fetchall(*latest_query(refs)))
        runs = [run_row(row, latest.get(row[0])) for row in rows]
        if limit is None:
            return runs, len(runs)
        total = (await self._conn.execute_fetchall(f"SELECT count(*) FROM runs {clause}", args))[0][0]
        return runs, total

    async def get_run(self, run_id: str) -> RunRow | None:
        rows = await self._conn.execute_fetchall(f"SELECT {RUN_COLUMNS} FROM runs WHERE run_id = ?", (run_id,))
        if not rows:
            return None
        latest = latest_by_run(await self._conn.execute_fetchall(*latest_query([rows[0][0]])))
        return run_row(rows[0], latest.get(rows[0][0]))

    async def steps(self, ref: int, *, from_step: int | None = None, to_step: int | None = None) -> list[bytes]:
        """Stored Step JSON documents, sorted by step, ready to splice into a response. Unpacked off the event
        loop: a long range takes milliseconds."""
        rows = await self._conn.execute_fetchall(
            "SELECT shape, data FROM steps WHERE run = ? AND step BETWEEN ? AND ? ORDER BY step",
            (ref, -1 if from_step is None else from_step, 2**62 if to_step is None else to_step),
        )
        shapes = await self._load_shapes(row[0] for row in rows)
        return await asyncio.to_thread(lambda: [_document(shapes, shape, data) for shape, data in rows])

    async def latest_step(self, ref: int) -> bytes | None:
        rows = await self._conn.execute_fetchall(
            "SELECT shape, data FROM steps WHERE run = ? ORDER BY step DESC LIMIT 1", (ref,)
        )
        if not rows:
            return None
        shape, data = rows[0]
        return _document(await self._load_shapes([shape]), shape, data)

    async def _load_shapes(self, ids: Iterable[int | None]) -> dict[int, stepcodec.Shape]:
        """The decoded templates of these shape ids (a step still or for good JSON, NULL or 0, has none)."""
        wanted = {shape for shape in ids if shape}
        found = {shape: self._shapes[shape] for shape in wanted if shape in self._shapes}
        missing = [shape for shape in wanted if shape not in found]
        if missing:
            rows = await self._conn.execute_fetchall(
                f"SELECT id, template FROM step_shapes WHERE id IN ({','.join('?' * len(missing))})", missing
            )
            loaded = {shape: stepcodec.shape(zlib.decompress(template)) for shape, template in rows}
            if len(self._shapes) + len(loaded) > SHAPES_CACHED:
                self._shapes.clear()
            self._shapes.update(loaded)
            found.update(loaded)
        return found

    async def events(self, ref: int, limit: int = 50) -> list[EventRow]:
        rows = await self._conn.execute_fetchall(
            "SELECT timestamp, kind, step, field, message FROM run_events WHERE run = ? ORDER BY id DESC LIMIT ?",
            (ref, limit),
        )
        return [EventRow(*row) for row in reversed(list(rows))]

    async def scalar_names(self, ref: int) -> list[str]:
        rows = await self._conn.execute_fetchall("SELECT name FROM series WHERE run = ? ORDER BY name", (ref,))
        return [row[0] for row in rows]

    async def scalar_series(
        self, ref: int, name: str, *, from_step: int | None, to_step: int | None, max_points: int
    ) -> SeriesRows:
        """A series between two steps; longer than `max_points`, it is reduced to min/max buckets.

        Each bucket keeps its lowest and highest point (with their own steps), plus the first and
        last point overall, so spikes such as a loss blow-up survive any zoom level
        (`scalarcodec.downsample`)."""
        found = await self._conn.execute_fetchall("SELECT id FROM series WHERE run = ? AND name = ?", (ref, name))
        if not found:
            return SeriesRows([], [], [], False)
        lo = -1 if from_step is None else from_step
        hi = 2**62 if to_step is None else to_step
        rows = await self._conn.execute_fetchall(
            f"SELECT {scalarcodec.SERIES_COLUMNS} FROM scalar_chunks "
            "WHERE series = ? AND last_step >= ? AND first_step <= ? "
            "ORDER BY last_step",
            (found[0][0], lo, hi),
        )
        if not rows:
            return SeriesRows([], [], [], False)
        return await asyncio.to_thread(_series_rows, list(rows), lo, hi, max_points)


def _series_rows(rows: list[Any], lo: int, hi: int, max_points: int) -> SeriesRows:
    """Decoding and downsampling, off the event loop: a long series is a few milliseconds of numpy."""
    points = scalarcodec.between(scalarcodec.decode(rows), lo, hi)
    if len(points) > max_points:
        points = points.take(scalarcodec.downsample(points, max_points))
        downsampled = True
    else:
        downsampled = False
    return SeriesRows(points.steps.tolist(), points.values.tolist(), points.timestamp_list(), downsampled)


def _document(shapes: dict[int, stepcodec.Shape], shape: int | None, data: bytes | str) -> bytes:
    """A stored step's JSON: unpacked, or as stored (not packed yet, or never: see `store/compaction.py`)."""
    if isinstance(data, str):  # JSON an early version stored as TEXT, not packed yet
        return data.encode()
    return stepcodec.unpack(shapes[shape], data) if shape else data
