"""Storage for monitoring: resource history, alert rules, alerts, notifications, webhooks and their outbox.

Write operations run on the writer thread inside its batch transaction (see `writer.py`); the read
queries take the reader's aiosqlite connection. JSON documents are stored as text and returned as-is
where a route can splice them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import aiosqlite
import orjson

from pivotd.errors import NotFound
from pivotd.store.ops import Tx

MAX_NOTIFICATIONS = 10_000
FINISHED_DELIVERIES_KEPT = 1_000


# --- writes -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PutResourceHistory:
    time: float
    data: bytes
    older_than: float

    def apply(self, tx: Tx) -> None:
        tx.conn.execute("INSERT OR REPLACE INTO resource_history (time, data) VALUES (?, ?)", (self.time, self.data))
        tx.conn.execute("DELETE FROM resource_history WHERE time < ?", (self.older_than,))


@dataclass(frozen=True, slots=True)
class PutRule:
    rule_id: str
    spec: bytes
    must_exist: bool = False

    def apply(self, tx: Tx) -> None:
        exists = tx.conn.execute("SELECT 1 FROM alert_rules WHERE id = ?", (self.rule_id,)).fetchone()
        if self.must_exist and not exists:
            raise NotFound(f"alert rule {self.rule_id!r} not found")
        tx.conn.execute(
            """INSERT INTO alert_rules (id, spec, created_at, updated_at) VALUES (?1, ?2, ?3, ?3)
               ON CONFLICT (id) DO UPDATE SET spec = excluded.spec, updated_at = excluded.updated_at""",
            (self.rule_id, self.spec, tx.now),
        )


@dataclass(frozen=True, slots=True)
class DeleteRule:
    rule_id: str

    def apply(self, tx: Tx) -> None:
        if tx.conn.execute("DELETE FROM alert_rules WHERE id = ?", (self.rule_id,)).rowcount == 0:
            raise NotFound(f"alert rule {self.rule_id!r} not found")


@dataclass(frozen=True, slots=True)
class PutAlert:
    """Insert an alert or update its status and document; `triggered_at` is only read on insert."""

    alert: dict[str, Any]
    triggered_at: float

    def apply(self, tx: Tx) -> None:
        a = self.alert
        tx.conn.execute(
            """INSERT INTO alerts (id, rule_id, subject, status, severity, triggered_at, data)
               VALUES (?, ?, ?, ?, ?, ?, ?)
               ON CONFLICT (id) DO UPDATE SET status = excluded.status, data = excluded.data""",
            (a["alert_id"], a["rule_id"], a["subject"], a["status"], a["severity"], self.triggered_at, orjson.dumps(a)),
        )


@dataclass(frozen=True, slots=True)
class PutNotification:
    notification: dict[str, Any]
    created_at: float

    def apply(self, tx: Tx) -> None:
        n = self.notification
        seq = tx.conn.execute("SELECT coalesce(max(seq), 0) + 1 FROM notifications").fetchone()[0]
        tx.conn.execute(
            """INSERT INTO notifications (id, seq, type, priority, message, data, created_at)
               VALUES (?, ?, ?, ?, ?, ?, ?)""",
            (n["id"], seq, n["type"], n["priority"], n["message"], orjson.dumps(n["data"]), self.created_at),
        )
        tx.conn.execute("DELETE FROM notifications WHERE seq <= ?", (seq - MAX_NOTIFICATIONS,))


@dataclass(frozen=True, slots=True)
class MarkNotificationRead:
    notification_id: str

    def apply(self, tx: Tx) -> None:
        if tx.conn.execute("UPDATE notifications SET read = 1 WHERE id = ?", (self.notification_id,)).rowcount == 0:
            raise NotFound(f"notification {self.notification_id!r} not found")


@dataclass(frozen=True, slots=True)
class ClearNotifications:
    def apply(self, tx: Tx) -> int:
        return tx.conn.execute("DELETE FROM notifications").rowcount


@dataclass(frozen=True, slots=True)
class PutWebhook:
    webhook_id: str
    url: str
    events: list[str]
    secret: str
    format: str

    def apply(self, tx: Tx) -> None:
        tx.conn.execute(
            "INSERT INTO webhooks (id, url, events, secret, format, created_at) VALUES (?, ?, ?, ?, ?, ?)",
            (self.webhook_id, self.url, orjson.dumps(self.events), self.secret, self.format, tx.now),
        )


@dataclass(frozen=True, slots=True)
class DeleteWebhook:
    webhook_id: str

    def apply(self, tx: Tx) -> None:
        if tx.conn.execute("DELETE FROM webhooks WHERE id = ?", (self.webhook_id,)).rowcount == 0:
            raise NotFound(f"webhook {self.webhook_id!r} not found")


@dataclass(frozen=True, slots=True)
class Delivery:
    delivery_id: str
    webhook_id: str
    event: str
    body: bytes


@dataclass(frozen=True, slots=True)
class EnqueueDeliveries:
    deliveries: list[Delivery]

    def apply(self, tx: Tx) -> None:
        tx.conn.executemany(
            """INSERT INTO webhook_outbox (id, webhook_id, event, body, next_attempt_at, created_at)
               VALUES (?, ?, ?, ?, ?, ?)""",
            [(d.delivery_id, d.webhook_id, d.event, d.body, tx.now, tx.now) for d in self.deliveries],
        )


@dataclass(frozen=True, slots=True)
class RecordAttempt:
    """The outcome of one delivery attempt: delivered, failed for good, or due again at `next_attempt_at`."""

    delivery_id: str
    status: str
    attempts: int
    next_attempt_at: float
    last_status: int | None
    last_error: str | None

    def apply(self, tx: Tx) -> None:
        finished = tx.now if self.status != "pending" else None
        tx.conn.execute(
            """UPDATE webhook_outbox SET status = ?, attempts = ?, next_attempt_at = ?, last_status = ?,
                   last_error = ?, finished_at = ? WHERE id = ?""",
            (
                self.status,
                self.attempts,
                self.next_attempt_at,
                self.last_status,
                self.last_error,
                finished,
                self.delivery_id,
            ),
        )
        if finished is not None:
            tx.conn.execute(
                """DELETE FROM webhook_outbox WHERE status != 'pending' AND id NOT IN (
                       SELECT id FROM webhook_outbox WHERE status != 'pending' ORDER BY finished_at DESC LIMIT ?)""",
                (FINISHED_DELIVERIES_KEPT,),
            )


# --- reads --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class WebhookRow:
    webhook_id: str
    url: str
    events: list[str]
    secret: str
    format: str
    created_at: float


@dataclass(frozen=True, slots=True)
class DeliveryRow:
    delivery_id: str
    webhook_id: str
    event: str
    body: bytes
    attempts: int


class MonitoringReader:
    def __init__(self, conn: aiosqlite.Connection) -> None:
        self._conn = conn

    async def resource_history(self, since: float, until: float, limit: int) -> list[bytes]:
        rows = await self._conn.execute_fetchall(
            "SELECT data FROM resource_history WHERE time BETWEEN ? AND ? ORDER BY time DESC LIMIT ?",
            (since, until, limit),
        )
        return [row[0].encode() if isinstance(row[0], str) else row[0] for row in reversed(list(rows))]

    async def rules(self) -> list[tuple[str, dict[str, Any], bool, float, float]]:
        rows = await self._conn.execute_fetchall(
            "SELECT id, spec, builtin, created_at, updated_at FROM alert_rules ORDER BY created_at, id"
        )
        return [(r[0], orjson.loads(r[1]), bool(r[2]), r[3], r[4]) for r in rows]

    async def alerts(
        self, *, status: str | None = None, severity: str | None = None, limit: int = 500
    ) -> list[dict[str, Any]]:
        where, args = [], []
        if status is not None:
            where.append("status = ?")
            args.append(status)
        if severity is not None:
            where.append("severity = ?")
            args.append(severity)
        clause = f"WHERE {' AND '.join(where)}" if where else ""
        rows = await self._conn.execute_fetchall(
            f"SELECT data FROM alerts {clause} ORDER BY triggered_at DESC, id LIMIT ?", [*args, limit]
        )
        return [orjson.loads(row[0]) for row in rows]

    async def alert(self, alert_id: str) -> dict[str, Any] | None:
        rows = await self._conn.execute_fetchall("SELECT data FROM alerts WHERE id = ?", (alert_id,))
        return orjson.loads(rows[0][0]) if rows else None

    async def open_alerts(self) -> list[dict[str, Any]]:
        rows = await self._conn.execute_fetchall("SELECT data FROM alerts WHERE status != 'resolved'")
        return [orjson.loads(row[0]) for row in rows]

    async def open_alert_counts(self) -> list[tuple[str, str, int]]:
        """(severity, status, alerts) over the alerts not resolved."""
        rows = await self._conn.execute_fetchall(
            "SELECT severity, status, count(*) FROM alerts WHERE status != 'resolved' GROUP BY severity, status"
        )
        return [(severity, status, count) for severity, status, count in rows]

    async def notifications(
        self, *, type: str | None, priority: str | None, unread: bool | None, limit: int
    ) -> list[dict[str, Any]]:
        where, args = [], []
        for column, value in (("type", type), ("priority", priority)):
            if value is not None:
                where.append(f"{column} = ?")
                args.append(value)
        if unread is not None:
            where.append("read = ?")
            args.append(0 if unread else 1)
        clause = f"WHERE {' AND '.join(where)}" if where else ""
        rows = await self._conn.execute_fetchall(
            f"SELECT id, type, priority, message, data, read, created_at FROM notifications {clause} "
            "ORDER BY seq DESC LIMIT ?",
            [*args, limit],
        )
        return [
            {
                "id": r[0],
                "type": r[1],
                "priority": r[2],
                "message": r[3],
                "data": orjson.loads(r[4]),
                "read": bool(r[5]),
                "created_at": r[6],
            }
            for r in rows
        ]

    async def webhooks(self) -> list[WebhookRow]:
        rows = await self._conn.execute_fetchall(
            "SELECT id, url, events, secret, format, created_at FROM webhooks ORDER BY created_at, id"
        )
        return [WebhookRow(r[0], r[1], orjson.loads(r[2]), r[3], r[4], r[5]) for r in rows]

    async def delivery_counts(self) -> dict[str, dict[str, int]]:
        rows = await self._conn.execute_fetchall(
            "SELECT webhook_id, status, count(*) FROM webhook_outbox GROUP BY webhook_id, status"
        )
        counts: dict[str, dict[str, int]] = {}
        for webhook_id, status, count in rows:
            counts.setdefault(webhook_id, {})[status] = count
        return counts

    async def due_deliveries(self, now: float, limit: int) -> list[DeliveryRow]:
        rows = await self._conn.execute_fetchall(
            """SELECT id, webhook_id, event, body, attempts FROM webhook_outbox
               WHERE status = 'pending' AND next_attempt_at <= ? ORDER BY next_attempt_at LIMIT ?""",
            (now, limit),
        )
        return [DeliveryRow(r[0], r[1], r[2], r[3], r[4]) for r in rows]

    async def next_due(self) -> float | None:
        rows = await self._conn.execute_fetchall(
            "SELECT min(next_attempt_at) FROM webhook_outbox WHERE status = 'pending'"
        )
        return rows[0][0] if rows else None
