"""Telemetry in the store: the block write (with retention) and a reader with its own connection and thread.

Aggregates over a million events take tens of milliseconds of numpy work; they run on a dedicated thread
with a dedicated read-only connection, so they never hold up the shared reader that every other route uses.
Decoded blocks are cached by id (blocks never change once written), bounded by the memory they hold: body,
header and the dictionaries queries decoded in them (which for unique values such as request ids outweigh the
body several times). Queries decode lazily after `blocks` hands a block out, so the cache settles its account
and evicts after each piece of work on the telemetry thread.

The block format is the telemetry package's (`telemetry/columns.py`): the store writes the bytes it encoded and
caches what its `decode` makes of them, so the dependency runs one way, from telemetry to the store.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections import OrderedDict
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Generic, Protocol, TypeVar

from pivotd.store.ops import Tx

T = TypeVar("T")
BlockRow = tuple[int, int, bytes, bytes]
"""(id, first_event, header, body) of a stored block, as `decode` receives it."""


class CachedBlock(Protocol):
    """What the cache needs of a decoded block: its id, and the memory it holds now (it grows as queries decode
    its columns)."""

    @property
    def id(self) -> int: ...

    def memory_bytes(self) -> int: ...


B = TypeVar("B", bound=CachedBlock)


@dataclass(frozen=True, slots=True)
class Encoded:
    """A block to store: its columns encoded (`header`, `body`), how many events and their time range."""

    header: bytes
    body: bytes
    count: int
    min_ts: float
    max_ts: float


@dataclass(frozen=True, slots=True)
class Stored:
    first_event: int
    dropped_events: int


@dataclass(frozen=True, slots=True)
class PutTelemetry:
    """One block of events. With `trim`, the oldest whole blocks go until at most `max_events` remain (the
    block just written always stays). The total comes from the (id, count) index and the oldest blocks from
    the start of the table: summing counts over every block row instead cost 1 ms per batch at 1M events."""

    block: Encoded
    max_events: int
    trim: bool

    def apply(self, tx: Tx) -> Stored:
        last = tx.conn.execute("SELECT first_event + count FROM telemetry_blocks ORDER BY id DESC LIMIT 1").fetchone()
        first = last[0] if last else 1
        block = self.block
        new_id = tx.conn.execute(
            "INSERT INTO telemetry_blocks (first_event, count, min_ts, max_ts, header, body) VALUES (?, ?, ?, ?, ?, ?) "
            "RETURNING id",
            (first, block.count, block.min_ts, block.max_ts, block.header, block.body),
        ).fetchone()[0]
        dropped = 0
        if self.trim:
            total = tx.conn.execute("SELECT sum(count) FROM telemetry_blocks INDEXED BY telemetry_block_counts")
            excess = total.fetchone()[0] - self.max_events
            doomed: list[tuple[int]] = []
            oldest = tx.conn.execute("SELECT id, count FROM telemetry_blocks WHERE id != ? ORDER BY id", (new_id,))
            for block_id, count in oldest:
                if dropped >= excess:
                    break
                doomed.append((block_id,))
                dropped += count
            tx.conn.executemany("DELETE FROM telemetry_blocks WHERE id = ?", doomed)
        return Stored(first, dropped)


class TelemetryReader(Generic[B]):
    def __init__(self, db_path: Path, cache_bytes: int, decode: Callable[[list[BlockRow]], Iterable[B]]) -> None:
        self._db_path = db_path
        self._decode = decode
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="pivotd-telemetry")
        self._conn: sqlite3.Connection | None = None
        self._cache_limit = cache_bytes
        self._cache: OrderedDict[int, B] = OrderedDict()
        self._accounted: dict[int, int] = {}  # block id -> memory_bytes() when last settled
        self._touched: set[int] = set()  # handed out since the last settling: may have decoded more
        self.cached_bytes = 0

    async def open(self) -> int:
        """Open the connection; returns how many events are stored."""
        return await self.run(lambda: self.stored_events())

    async def close(self) -> None:
        def shut() -> None:
            if self._conn is not None:
                self._conn.close()

        await asyncio.get_running_loop().run_in_executor(self._executor, shut)
        self._executor.shutdown(wait=True)

    async def run(self, work: Callable[[], T]) -> T:
        """Run `work` on the telemetry thread (where `blocks` may be called)."""

        def then_settle() -> T:
            try:
                return work()
            finally:
                self._settle()

        return await asyncio.get_running_loop().run_in_executor(self._executor, then_settle)

    def cached_blocks(self) -> list[B]:
        return list(self._cache.values())

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            conn = sqlite3.connect(self._db_path, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA query_only=ON")
            conn.execute("PRAGMA busy_timeout=5000")
            self._conn = conn
        return self._conn

    def stored_events(self) -> int:
        return int(self._connection().execute("SELECT coalesce(sum(count), 0) FROM telemetry_blocks").fetchone()[0])

    def blocks(self, after: float | None, before: float | None) -> list[B]:
        """The blocks that can hold events at or after `after` and before `before`, oldest first (telemetry thread
        only)."""
        conn = self._connection()
        clauses: list[str] = []
        args: list[float] = []
        if after is not None:
            clauses.append("max_ts >= ?")
            args.append(after)
        if before is not None:
            clauses.append("min_ts < ?")
            args.append(before)
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        found: dict[int, B] = {}
        conn.execute("BEGIN")  # one snapshot: ids listed and bodies read from the same state
        try:
            ids = [row[0] for row in conn.execute(f"SELECT id FROM telemetry_blocks {where} ORDER BY id", args)]
            self._touched.update(ids)
            for block_id in ids:
                cached = self._cache.get(block_id)
                if cached is not None:
                    self._cache.move_to_end(block_id)
                    found[block_id] = cached
            missing = [block_id for block_id in ids if block_id not in found]
            for start in range(0, len(missing), 500):
                chunk = missing[start : start + 500]
                marks = ",".join("?" * len(chunk))
                rows = conn.execute(
                    f"SELECT id, first_event, header, body FROM telemetry_blocks WHERE id IN ({marks})", chunk
                ).fetchall()
                for block in self._decode(rows):
                    found[block.id] = block
                    self._remember(block)
        finally:
            conn.execute("COMMIT")
        return [found[block_id] for block_id in ids]

    def _remember(self, block: B) -> None:
        self._cache[block.id] = block
        self._accounted[block.id] = size = block.memory_bytes()
        self.cached_bytes += size
        self._evict()

    def _settle(self) -> None:
        """Count what the last work decoded in the blocks it was handed, then evict down to the bound."""
        for block_id in self._touched:
            block = self._cache.get(block_id)
            if block is not None:
                size = block.memory_bytes()
                self.cached_bytes += size - self._accounted[block_id]
                self._accounted[block_id] = size
        self._touched.clear()
        self._evict()

    def _evict(self) -> None:
        while self.cached_bytes > self._cache_limit and self._cache:
            old_id, _ = self._cache.popitem(last=False)
            self.cached_bytes -= self._accounted.pop(old_id)
