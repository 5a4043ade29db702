"""Storage for named API keys: write operations and the one read that loads them all at start.

Rows carry the key's SHA-256 digest, never the key. The daemon is the only writer, so the in-memory
index (`pivotd.apikeys.KeyRing`) loaded from here stays authoritative without a read per request.
"""

from __future__ import annotations

from dataclasses import dataclass

import aiosqlite
import orjson

from pivotd.errors import NotFound
from pivotd.store.ops import Tx


@dataclass(slots=True)
class ApiKey:
    """One named key as stored (its digest, never the key), and as the daemon's in-memory index holds it."""

    key_id: str
    name: str
    scopes: tuple[str, ...]
    prefix: str
    digest: bytes
    created_at: float
    last_used_at: float | None = None
    revoked_at: float | None = None
    stored_last_used_at: float | None = None
    """In memory only: the last_used_at the database has, so that it is written at most once a minute."""


@dataclass(frozen=True, slots=True)
class PutApiKey:
    key: ApiKey

    def apply(self, tx: Tx) -> None:
        key = self.key
        tx.conn.execute(
            "INSERT INTO api_keys (id, name, scopes, prefix, digest, created_at) VALUES (?, ?, ?, ?, ?, ?)",
            (key.key_id, key.name, orjson.dumps(key.scopes), key.prefix, key.digest, key.created_at),
        )


@dataclass(frozen=True, slots=True)
class RevokeApiKey:
    key_id: str
    revoked_at: float

    def apply(self, tx: Tx) -> None:
        updated = tx.conn.execute(
            "UPDATE api_keys SET revoked_at = coalesce(revoked_at, ?) WHERE id = ?", (self.revoked_at, self.key_id)
        )
        if updated.rowcount == 0:
            raise NotFound(f"API key {self.key_id!r} not found")
        tx.conn.execute("DELETE FROM auth_sessions WHERE api_key_id = ?", (self.key_id,))  # they end with it


@dataclass(frozen=True, slots=True)
class TouchApiKey:
    key_id: str
    last_used_at: float

    def apply(self, tx: Tx) -> None:
        tx.conn.execute("UPDATE api_keys SET last_used_at = ? WHERE id = ?", (self.last_used_at, self.key_id))


async def api_keys(conn: aiosqlite.Connection) -> list[ApiKey]:
    cursor = await conn.execute(
        "SELECT id, name, scopes, prefix, digest, created_at, last_used_at, revoked_at "
        "FROM api_keys ORDER BY created_at, id"
    )
    rows = await cursor.fetchall()
    return [
        ApiKey(key_id, name, tuple(orjson.loads(scopes)), prefix, digest, created_at, last_used, revoked, last_used)
        for key_id, name, scopes, prefix, digest, created_at, last_used, revoked in rows
    ]
