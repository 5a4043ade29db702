"""The naive telemetry service bench/telemetry.py compares pivotd with: a pydantic model per event, one row per
event (name, timestamp, measurements and metadata as JSON text), one commit per request, same uvicorn stack.
`fill()` writes rows straight into such a table, for the aggregate baseline (SQL over JSON columns)."""

from __future__ import annotations

import asyncio
import json
import random
import sqlite3
import sys
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from pathlib import Path

import aiosqlite
import uvicorn
from fastapi import FastAPI
from pydantic import BaseModel, Field

SCHEMA = (
    "CREATE TABLE IF NOT EXISTS events (id INTEGER PRIMARY KEY, name TEXT, ts REAL, measurements TEXT, metadata TEXT)"
)


class Event(BaseModel):
    event_name: list[str] | str
    measurements: dict[str, float] = Field(default_factory=dict)
    metadata: dict[str, str | int | float | bool | None] = Field(default_factory=dict)
    timestamp: datetime | None = None


class Batch(BaseModel):
    events: list[Event]


def make_app(db_path: Path) -> FastAPI:
    state: dict[str, aiosqlite.Connection] = {}
    # One connection shared by concurrent requests: an executemany interleaved with another request's
    # commit fails inside sqlite3, so each request's insert + commit holds the lock.
    lock = asyncio.Lock()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        conn = await aiosqlite.connect(db_path)
        await conn.execute("PRAGMA journal_mode=WAL")
        await conn.execute("PRAGMA synchronous=NORMAL")
        await conn.execute(SCHEMA)
        state["db"] = conn
        yield
        await conn.close()

    app = FastAPI(lifespan=lifespan)

    @app.post("/api/v1/telemetry/events", status_code=202)
    async def post(batch: Batch) -> dict[str, dict[str, int]]:
        db = state["db"]
        rows = [
            (
                ".".join(e.event_name) if isinstance(e.event_name, list) else e.event_name,
                e.timestamp.timestamp() if e.timestamp else 0.0,
                json.dumps(e.measurements),
                json.dumps(e.metadata),
            )
            for e in batch.events
        ]
        async with lock:
            await db.executemany("INSERT INTO events (name, ts, measurements, metadata) VALUES (?, ?, ?, ?)", rows)
            await db.commit()
        return {"data": {"accepted": len(rows), "rejected": 0}}

    return app


def fill(path: Path, count: int, start: float, models: list[str]) -> None:
    conn = sqlite3.connect(path)
    conn.execute(SCHEMA)
    rng = random.Random(1)
    rows = (
        (
            "crucible.model.inference",
            start + rng.random() * 86400,
            json.dumps({"duration_ms": rng.lognormvariate(5, 0.5), "tokens": rng.randint(10, 500)}),
            json.dumps({"model": rng.choice(models), "experiment_id": "exp_bench"}),
        )
        for _ in range(count)
    )
    conn.executemany("INSERT INTO events (name, ts, measurements, metadata) VALUES (?, ?, ?, ?)", rows)
    conn.commit()
    conn.close()


class Server(uvicorn.Server):
    async def startup(self, sockets: list | None = None) -> None:  # type: ignore[type-arg]
        await super().startup(sockets)
        host, port = self.servers[0].sockets[0].getsockname()[:2]
        print(f"baseline listening on http://{host}:{port}", file=sys.stderr, flush=True)


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as directory:
        app = make_app(Path(directory) / "baseline.db")
        config = uvicorn.Config(app, host="127.0.0.1", port=0, access_log=False, log_level="warning")
        Server(config).run()
