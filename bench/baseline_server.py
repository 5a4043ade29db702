"""The baseline pivotd is measured against: the obvious FastAPI implementation of seed 000's POST.

A pydantic body parameter, one aiosqlite INSERT and COMMIT per request, same uvicorn (uvloop,
httptools), no broadcast. What a first version of the daemon would look like.
"""

from __future__ import annotations

import sys
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import aiosqlite
import uvicorn
from fastapi import FastAPI

from shared.models import LayerwisePayload


def make_app(db_path: Path) -> FastAPI:
    state: dict[str, aiosqlite.Connection] = {}

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        conn = await aiosqlite.connect(db_path)
        await conn.execute("PRAGMA journal_mode=WAL")
        await conn.execute("PRAGMA synchronous=NORMAL")
        await conn.execute("CREATE TABLE steps (run_id TEXT, step INTEGER, data TEXT, PRIMARY KEY (run_id, step))")
        state["db"] = conn
        yield
        await conn.close()

    app = FastAPI(lifespan=lifespan)

    @app.post("/api/v1/metrics/layerwise", status_code=202)
    async def post(payload: LayerwisePayload) -> dict[str, str]:
        db = state["db"]
        await db.execute(
            "INSERT OR REPLACE INTO steps VALUES (?, ?, ?)",
            (payload.metadata.run_id, payload.metadata.global_step, payload.model_dump_json()),
        )
        await db.commit()
        return {"status": "accepted", "run_id": payload.metadata.run_id}

    return app


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
