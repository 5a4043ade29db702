"""Scalar points stored as columnar chunks (schema 15): the same answers as the row store, whatever the chunks.

The reference is the row store itself: the points are also written into a `scalars` table of the old shape (last
write wins by upsert) and read with the old reader's SQL, downsampling included; the API must answer the same.
"""

from __future__ import annotations

import asyncio
import math
import random
import sqlite3
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import orjson
import pytest
from pydantic import TypeAdapter, ValidationError

from pivotd.scalar_batch import from_document, from_points
from pivotd.store import PutScalars, Retention, RunFields, SeriesPoints, Store
from pivotd.store.scalarcodec import COLUMNS, GROW_BELOW, MAX_POINTS, NO_EPOCH, decode
from pivotd.store.schema import configure, migrate
from shared.models.scalars import ScalarPoint
from tests.daemon import RunningDaemon

pytestmark = pytest.mark.shared_daemon  # each test writes runs of its own

Row = tuple[int, float, int | None, float | None]
"""(step, value, epoch, timestamp) of one stored point."""


class RowStore:
    """The row-per-point store of schema 14 and its reads, in memory: what the chunks must reproduce."""

    def __init__(self) -> None:
        self.conn = sqlite3.connect(":memory:")
        self.conn.execute(
            "CREATE TABLE scalars (step INTEGER PRIMARY KEY, value REAL NOT NULL, epoch INTEGER, timestamp REAL)"
        )

    def write(self, points: list[dict[str, Any]], name: str) -> None:
        for point in points:  # in body order: a step sent twice keeps its last point
            if name in point["values"]:
                self.conn.execute(
                    "INSERT OR REPLACE INTO scalars VALUES (?, ?, ?, ?)",
                    (point["step"], point["values"][name], point.get("epoch"), point.get("timestamp")),
                )

    def read(self, lo: int, hi: int, max_points: int) -> dict[str, Any]:
        """The schema-14 reader's queries (`Reader.scalar_series` before the chunks)."""
        count, first, last = self.conn.execute(
            "SELECT count(*), min(step), max(step) FROM scalars WHERE step BETWEEN ? AND ?", (lo, hi)
        ).fetchone()
        if count <= max_points:
            rows = self.conn.execute(
                "SELECT step, value, timestamp FROM scalars WHERE step BETWEEN ? AND ? ORDER BY step", (lo, hi)
            ).fetchall()
            return {"steps": [r[0] for r in rows], "values": [r[1] for r in rows], "timestamps": [r[2] for r in rows]}
        buckets = max(1, (max_points - 2) // 2)
        width = (last - first + 1) / buckets
        picked: dict[int, tuple[float, float | None]] = {}
        for extreme in ("min", "max"):
            for step, value, timestamp in self.conn.execute(
                f"""SELECT step, {extreme}(value), timestamp FROM scalars WHERE step BETWEEN ? AND ?
                    GROUP BY CAST((step - ?) / ? AS INTEGER)""",
                (first, last, first, width),
            ):
                picked[step] = (value, timestamp)
        for step in (first, last):
            if step not in picked:
                picked[step] = self.conn.execute(
                    "SELECT value, timestamp FROM scalars WHERE step = ?", (step,)
                ).fetchone()
        ordered = sorted(picked.items())
        return {
            "steps": [s for s, _ in ordered],
            "values": [v for _, (v, _) in ordered],
            "timestamps": [t for _, (_, t) in ordered],
        }


def point(step: int, rng: random.Random, name: str = "loss", **extra: Any) -> dict[str, Any]:
    # Distinct values: where a bucket's extreme is held twice the row store's choice was SQLite's to make.
    return {"step": step, "values": {name: rng.random() * 10 + step * 1e-9}, **extra}


async def post(http: httpx.AsyncClient, run: str, points: list[dict[str, Any]]) -> None:
    response = await http.post(f"/api/v1/runs/{run}/scalars", json=points)
    assert response.status_code == 202, response.text


async def series(http: httpx.AsyncClient, run: str, **params: Any) -> dict[str, Any]:
    response = await http.get(f"/api/v1/runs/{run}/scalars", params={"names": "loss", **params})
    assert response.status_code == 200, response.text
    return dict(response.json()["series"]["loss"])


def chunk_rows(daemon: RunningDaemon, run: str) -> list[tuple[int, int, int]]:
    """(first_step, last_step, count) of the run's chunks of `loss`, in step order."""
    conn = sqlite3.connect(f"file:{daemon.settings.db_path}?mode=ro", uri=True)
    try:
        rows = conn.execute(
            """SELECT c.first_step, c.last_step, c.count FROM scalar_chunks c JOIN series s ON s.id = c.series
               JOIN runs r ON r.id = s.run WHERE r.run_id = ? AND s.name = 'loss' ORDER BY c.first_step""",
            (run,),
        ).fetchall()
    finally:
        conn.close()
    return [(a, b, c) for a, b, c in rows]


async def test_reads_match_the_row_store_across_chunks_overwrites_and_ranges(
    daemon: RunningDaemon, http: httpx.AsyncClient
) -> None:
    rng = random.Random(17)
    reference = RowStore()
    writes = [
        [point(s, rng, timestamp=1e9 + s) for s in range(0, 3000)],  # chunks of one request each
        [point(s, rng, epoch=s // 1000) for s in range(3000, 9000)],
        [point(s, rng) for s in range(9000, 20_000, 3)],  # a gap-ridden stretch
        [point(s, rng) for s in range(2500, 3500)],  # overwrites straddling the first two chunks
        [point(s, rng) for s in range(9001, 9100, 3)],  # new steps in the gaps of a chunk
        [point(s, rng) for s in (15_000, 5, 15_000, 4, 19_999, 30_000)],  # unordered, a step twice: the last wins
        [point(s, rng) for s in range(20_001, 20_050)],
    ]
    for points in writes:
        await post(http, "rows", points)
        reference.write(points, "loss")
    chunks = chunk_rows(daemon, "rows")
    assert all(a[1] < b[0] for a, b in zip(chunks, chunks[1:], strict=False)), chunks  # never overlapping
    assert all(count <= MAX_POINTS for _, _, count in chunks)
    total = reference.conn.execute("SELECT count(*) FROM scalars").fetchone()[0]
    assert sum(count for _, _, count in chunks) == total
    cases = [
        {},
        {"max_points": 10},
        {"max_points": 100_000},
        {"from_step": 2999, "to_step": 3001},  # across a chunk boundary
        {"from_step": 2501, "to_step": 9050, "max_points": 37},  # both ends inside chunks
        {"from_step": 9002, "to_step": 9002},  # a step in a gap: nothing
        {"from_step": 19_999},
        {"to_step": 4},
        {"from_step": 40_000},
    ]
    for params in cases:
        lo, hi = params.get("from_step", -1), params.get("to_step", 2**62)
        expected = reference.read(lo, hi, params.get("max_points", 2000))
        assert await series(http, "rows", **params) == expected, params


async def test_a_point_at_a_time_grows_the_last_chunk(daemon: RunningDaemon, http: httpx.AsyncClient) -> None:
    rng = random.Random(5)
    sent = [point(step, rng, epoch=step // 100) for step in range(GROW_BELOW + 10)]
    for item in sent:
        await post(http, "trickle", [item])
    assert [count for _, _, count in chunk_rows(daemon, "trickle")] == [GROW_BELOW, 10]
    body = await series(http, "trickle", max_points=100_000)
    assert body["steps"] == list(range(GROW_BELOW + 10))
    assert body["values"] == [item["values"]["loss"] for item in sent]
    assert (await http.get("/api/v1/runs/trickle", params={"steps": "none"})).json()["latest"] == {
        "loss": sent[-1]["values"]["loss"]
    }


async def test_a_long_series_is_downsampled_as_the_row_store_did(
    daemon: RunningDaemon, http: httpx.AsyncClient
) -> None:
    reference = RowStore()
    for first in range(0, 50_000, 5000):
        points = [
            {"step": s, "values": {"loss": math.sin(s / 700) + (s % 7919) * 1e-6, "acc": 1.0}}
            for s in range(first, first + 5000)
        ]
        points[1234]["values"]["loss"] = 50.0 + first  # spikes in every request
        await post(http, "long", points)
        reference.write(points, "loss")
    for params in ({"max_points": 2000}, {"max_points": 500, "from_step": 777, "to_step": 43_210}):
        lo, hi = params.get("from_step", -1), params.get("to_step", 2**62)
        got = await series(http, "long", **params)
        assert got == reference.read(lo, hi, params["max_points"])
        assert len(got["steps"]) <= params["max_points"]


async def test_deleting_a_run_deletes_its_chunks(daemon: RunningDaemon, http: httpx.AsyncClient) -> None:
    await post(http, "doomed", [{"step": s, "values": {"loss": 1.0}} for s in range(100)])
    assert chunk_rows(daemon, "doomed")
    assert (await http.delete("/api/v1/runs/doomed")).status_code == 204
    conn = sqlite3.connect(f"file:{daemon.settings.db_path}?mode=ro", uri=True)
    orphans = conn.execute("SELECT count(*) FROM scalar_chunks WHERE series NOT IN (SELECT id FROM series)")
    assert orphans.fetchone()[0] == 0
    conn.close()


async def test_values_the_models_coerce_are_still_accepted(http: httpx.AsyncClient) -> None:
    """Bodies the quick check leaves to the models: accepted as before, with the models' values."""
    body = [{"step": 1.0, "values": {"loss": "1.5"}}, {"step": 2, "values": {"loss": True}, "timestamp": "5"}]
    assert (await http.post("/api/v1/runs/coerced/scalars", json=body)).status_code == 202
    assert await series(http, "coerced") == {"steps": [1, 2], "values": [1.5, 1.0], "timestamps": [None, 5.0]}


POINTS = TypeAdapter(list[ScalarPoint])
BODIES: list[Any] = [
    [{"step": 1, "values": {"a": 1, "b": 2.5}}],
    [{"step": 1, "values": {"a": 1}}, {"step": 2, "values": {"b": 2}}, {"step": 3, "values": {"b": 3, "a": 4}}],
    [{"step": 3, "values": {"a": 1}}, {"step": 1, "values": {"a": 2}}, {"step": 3, "values": {"a": 5}}],
    [{"step": 1, "epoch": 0, "timestamp": 12, "values": {"a": 1}}, {"step": 2, "values": {"a": 1}}],
    [{"step": 2**63 - 1, "epoch": 2**63 - 1, "timestamp": 253_402_300_799, "values": {"a.b/c:d-e_9": -1e308}}],
    [{"step": 1, "values": {"a": 1}, "unknown": [1, 2]}],
    {"points": [{"step": 1, "values": {"a": 1}}], "experiment_id": "exp_1", "group": "g", "tags": ["x"], "x": 1},
    # Each of these is refused by the models, or coerced by them: the quick check must leave them to the models.
    [{"step": 2**63, "values": {"a": 1}}],
    [{"step": -1, "values": {"a": 1}}],
    [{"step": 1.0, "values": {"a": 1}}],
    [{"step": True, "values": {"a": 1}}],
    [{"step": "1", "values": {"a": 1}}],
    [{"step": 1, "epoch": -1, "values": {"a": 1}}],
    [{"step": 1, "epoch": 1.5, "values": {"a": 1}}],
    [{"step": 1, "timestamp": -0.5, "values": {"a": 1}}],
    [{"step": 1, "timestamp": 1e20, "values": {"a": 1}}],
    [{"step": 1, "timestamp": "1", "values": {"a": 1}}],
    [{"step": 1, "values": {}}],
    [{"step": 1, "values": []}],
    [{"step": 1, "values": {"a": "1"}}],
    [{"step": 1, "values": {"a": None}}],
    [{"step": 1, "values": {"a": False}}],
    [{"step": 1, "values": {"bad name": 1}}],
    [{"step": 1, "values": {"": 1}}],
    [{"step": 1, "values": {"x" * 129: 1}}],
    [{"step": 1, "values": {"a\n": 1}}],
    [{"step": 1}],
    [{"values": {"a": 1}}],
    [1],
    [],
    {"points": []},
    {"points": [{"step": 1, "values": {"a": 1}}], "tags": [None]},
    {"points": [{"step": 1, "values": {"a": 1}}], "group": "g" * 257},
    {"points": [{"step": 1, "values": {"a": 1}}], "experiment_id": 5},
    "points",
]


def columns_shown(found: Any) -> dict[str, Any]:
    """Columns as plain lists (NaN timestamps as None), for comparing the two ways of making them."""
    return {
        "count": found.count,
        "last_step": found.last_step,
        "fields": found.fields,
        "message": found.message_points(),
        "series": {
            name: (
                points.steps.tolist(),
                points.values.tolist(),
                None if points.epochs is None else points.epochs.tolist(),
                points.timestamp_list(),
            )
            for name, points in found.series.items()
        },
    }


@pytest.mark.parametrize("body", BODIES, ids=range(len(BODIES)))
def test_the_quick_check_accepts_only_what_the_models_accept_alike(body: Any) -> None:
    quick = from_document(orjson.loads(orjson.dumps(body)))
    if quick is None:
        return  # the route asks the models, as before
    points = body["points"] if isinstance(body, dict) else body
    try:
        models = POINTS.validate_python(points)
    except ValidationError as exc:
        raise AssertionError(f"the quick check accepted what the models refuse: {exc}") from None
    fields = RunFields()
    if isinstance(body, dict):
        fields = RunFields(experiment_id=body.get("experiment_id"), group=body.get("group"), tags=body.get("tags"))
    assert columns_shown(quick) == columns_shown(from_points(models, fields))


def test_the_quick_check_takes_the_plain_bodies() -> None:
    """The bodies clients send (and the benchmark measures) must not fall back to the models."""
    for body in BODIES[:7]:
        assert from_document(orjson.loads(orjson.dumps(body))) is not None, body


def test_an_old_database_keeps_its_points_when_upgraded(tmp_path: Path) -> None:
    path = tmp_path / "pivot.db"
    conn = sqlite3.connect(path, isolation_level=None)
    configure(conn)
    migrate(conn, target=14)  # the last schema with a row per point
    conn.execute("INSERT INTO runs (run_id, created_at, last_update) VALUES ('old', 1, 2)")
    conn.executemany("INSERT INTO series (id, run, name, last_step, last_value) VALUES (?, 1, ?, ?, ?)",
                     [(1, "loss", MAX_POINTS + 99, 0.5), (2, "acc", None, None)])  # fmt: skip
    rows: list[tuple[int, int, float, int | None, float | None]] = [
        (1, step, 1 / (step + 1), step // 1000 if step % 2 else None, 1e9 + step if step % 3 else None)
        for step in range(0, 2 * (MAX_POINTS + 100), 2)
    ]
    rows += [(2, 1, 0.25, None, None), (2, 3, 0.75, None, None)]
    conn.executemany("INSERT INTO scalars (series, step, value, epoch, timestamp) VALUES (?, ?, ?, ?, ?)", rows)
    conn.close()

    async def read() -> None:
        async with Store.open(path, Retention(max_runs=10, max_steps_per_run=10, max_db_bytes=10**10)) as store:
            run = await store.reader.get_run("old")
            assert run is not None and run.latest == {"loss": 0.5}  # `acc` was written before schema 3 kept it
            loss = await store.reader.scalar_series(run.ref, "loss", from_step=None, to_step=None, max_points=10**5)
            assert (loss.steps, loss.values, loss.timestamps) == (
                [r[1] for r in rows[:-2]],
                [r[2] for r in rows[:-2]],
                [r[4] for r in rows[:-2]],
            )
            acc = await store.reader.scalar_series(run.ref, "acc", from_step=2, to_step=None, max_points=10)
            assert (acc.steps, acc.values, acc.timestamps, acc.downsampled) == ([3], [0.75], [None], False)

    async def write_after() -> None:
        async with Store.open(path, Retention(max_runs=10, max_steps_per_run=10, max_db_bytes=10**10)) as store:
            # Points among the migrated steps: merged into their chunk, not a chunk beside it.
            later = SeriesPoints(np.array([2, 3]), np.array([0.5, 1.0]))
            await store.writer.submit(PutScalars("old", {"acc": later}))
            run = await store.reader.get_run("old")
            assert run is not None and run.latest == {"loss": 0.5, "acc": 1.0}
            acc = await store.reader.scalar_series(run.ref, "acc", from_step=None, to_step=None, max_points=10)
            assert (acc.steps, acc.values) == ([1, 2, 3], [0.25, 0.5, 1.0])

    asyncio.run(read())
    asyncio.run(write_after())
    conn = sqlite3.connect(path)
    assert conn.execute("SELECT name FROM sqlite_master WHERE name = 'scalars'").fetchall() == []
    chunks = conn.execute(f"SELECT {COLUMNS} FROM scalar_chunks WHERE series = 1 ORDER BY first_step").fetchall()
    assert [chunk[0] for chunk in chunks] == [MAX_POINTS, 100]
    epochs = decode(chunks).epochs_or_none().tolist()
    assert epochs == [NO_EPOCH if r[3] is None else r[3] for r in rows[:-2]]
    conn.close()
