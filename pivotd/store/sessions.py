"""Storage for browser sessions (the `_crucible_ui_key` cookie): write operations and the one read that
loads the live ones at start.

Rows carry the session token's SHA-256 digest, never the token. The daemon is the only writer, so the
in-memory index (`pivotd.sessions.SessionRing`) loaded from here stays authoritative without a read per request.
"""

from __future__ import annotations

from dataclasses import dataclass

import aiosqlite
import orjson

from pivotd.store.ops import Tx


@dataclass(frozen=True, slots=True)
class Session:
    """One session as stored (its digest, never the token), and as the in-memory index holds it."""

    session_id: str
    digest: bytes
    scopes: tuple[str, ...]
    """What the caller that opened it could do, every implied scope included."""
    key_id: str | None
    """The API key that opened it, whose revocation ends it and whose rate limits apply; None: the owner."""
    created_at: float
    expires_at: float


@dataclass(frozen=True, slots=True)
class PutSession:
    """Store a new session; in the same transaction, forget expired ones and those `ended` to make room."""

    session: Session
    ended: tuple[str, ...] = ()

    def apply(self, tx: Tx) -> None:
        s = self.session
        tx.conn.execute("DELETE FROM auth_sessions WHERE expires_at <= ?", (s.created_at,))
        tx.conn.executemany("DELETE FROM auth_sessions WHERE id = ?", [(i,) for i in self.ended])
        tx.conn.execute(
            "INSERT INTO auth_sessions (id, digest, scopes, api_key_id, created_at, expires_at) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (s.session_id, s.digest, orjson.dumps(s.scopes), s.key_id, s.created_at, s.expires_at),
        )


@dataclass(frozen=True, slots=True)
class DeleteSession:
    session_id: str

    def apply(self, tx: Tx) -> None:
        tx.conn.execute("DELETE FROM auth_sessions WHERE id = ?", (self.session_id,))


async def live_sessions(conn: aiosqlite.Connection, now: float) -> list[Session]:
    """Sessions not yet expired whose API key (if any) is not revoked, oldest first. Revoking a key deletes its
    sessions in the same transaction; the key test also covers a session stored while the revocation was
    committing (the two writes are queued in no guaranteed order)."""
    cursor = await conn.execute(
        "SELECT s.id, s.digest, s.scopes, s.api_key_id, s.created_at, s.expires_at FROM auth_sessions AS s "
        "LEFT JOIN api_keys AS k ON k.id = s.api_key_id "
        "WHERE s.expires_at > ? AND (s.api_key_id IS NULL OR k.revoked_at IS NULL) ORDER BY s.created_at, s.id",
        (now,),
    )
    rows = await cursor.fetchall()
    return [
        Session(session_id, digest, tuple(orjson.loads(scopes)), key_id, created_at, expires_at)
        for session_id, digest, scopes, key_id, created_at, expires_at in rows
    ]
