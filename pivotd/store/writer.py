"""The single writer: one thread owns the write connection; one asyncio task feeds it batches.

Requests submit operations and await them. While the thread commits one batch, the next
accumulates in the queue, so many requests share one transaction (group commit) and throughput
does not depend on one commit per request. A request's future resolves only after COMMIT, which
is what lets the API answer 202 for data that a killed daemon still has.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import shutil
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pivotd.errors import InsufficientStorage, PivotError, ServiceUnavailable
from pivotd.store.compaction import CHUNK, QUIET_S, SHARE, compact, unpacked
from pivotd.store.ops import Tx, WriteOp
from pivotd.store.retention import Retention, enforce
from pivotd.store.rows import RUN_COLUMNS, RunRow, latest_by_run, latest_query, run_row
from pivotd.store.schema import configure, migrate
from pivotd.store.stepcodec import Packer

log = logging.getLogger(__name__)


@dataclass(slots=True)
class BatchOutcome:
    """What one committed batch changed, for publishing to subscribers."""

    touched: list[RunRow] = field(default_factory=list)
    """The runs written, as committed; left empty while `Writer.announce_runs` says nobody listens."""
    created: set[str] = field(default_factory=set)
    evicted: list[str] = field(default_factory=list)
    revived: set[str] = field(default_factory=set)
    """External runs that had ended and are `running` again."""
    steps_written: int = 0


_STOP = object()


def _is_disk_full(exc: BaseException) -> bool:
    return isinstance(exc, sqlite3.Error) and getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL


class WriterThread:
    """The thread that owns the write connection, running one function at a time for the event loop.

    `loop.run_in_executor` on a one-thread pool did the same with a `concurrent.futures.Future`, a condition
    variable, a work item and a chained asyncio future per call: about 33 us of CPU per batch against 14 here
    (docs/performance.md), and a batch is one call.
    """

    def __init__(self) -> None:
        self._jobs: queue.SimpleQueue[tuple[Any, ...] | None] = queue.SimpleQueue()
        # A daemon thread: a process that exits without closing the store must not hang on it. What it was
        # writing is not committed, so nothing acknowledged is lost.
        self._thread = threading.Thread(target=self._serve, name="pivotd-writer", daemon=True)
        self._thread.start()

    def run(self, loop: asyncio.AbstractEventLoop, function: Callable[..., Any], *args: Any) -> asyncio.Future[Any]:
        """`function(*args)` on the thread; the future settles on `loop` with its result or exception."""
        future = loop.create_future()
        self._jobs.put((loop, future, function, args))
        return future

    def stop(self) -> None:
        """Finish what was queued, then end the thread."""
        self._jobs.put(None)
        self._thread.join()

    def _serve(self) -> None:
        while (job := self._jobs.get()) is not None:
            loop, future, function, args = job
            try:
                outcome: tuple[Any, BaseException | None] = (function(*args), None)
            except BaseException as exc:  # handed to the awaiting task, as an executor would
                outcome = (None, exc)
            with contextlib.suppress(RuntimeError):  # the loop is closed: nobody is waiting any more
                loop.call_soon_threadsafe(_settle, future, *outcome)


def _settle(future: asyncio.Future[Any], result: Any, exc: BaseException | None) -> None:
    if future.cancelled():  # its awaiter went away; the work is done regardless
        return
    if exc is not None:
        future.set_exception(exc)
    else:
        future.set_result(result)


class Writer:
    def __init__(self, db_path: Path, retention: Retention, max_batch_ops: int = 512, max_pending: int = 4096):
        self._db_path = db_path
        self._retention = retention
        self._max_batch_ops = max_batch_ops
        self._queue: asyncio.Queue[Any] = asyncio.Queue(maxsize=max_pending)
        self._thread = WriterThread()
        self._conn: sqlite3.Connection | None = None
        self._packer = Packer()
        """Packs steps on the writer thread, remembering each run's latest template between chunks."""
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self.listeners: list[Callable[[BatchOutcome], None]] = []
        self.announce_runs: Callable[[], bool] = lambda: True
        """Whether anyone will announce the runs a batch touched (`BatchOutcome.touched`); asked on the writer
        thread after each commit. Reading them back took a twentieth of a small step's time (docs/performance.md)."""
        self.batches = 0
        self.ops = 0
        self.disk_full_since: float | None = None
        """When a commit first failed for lack of disk space; None while writes succeed."""
        self._unpacked = 0
        """About how many steps are stored as JSON still (a guess above 0 means: look again)."""
        self._busy = [0.0, 0.0]
        """Seconds spent on batches and on packing since writes last paused: packing's share is kept to `SHARE`."""
        self.settled = asyncio.Event()
        """Set while the queue is empty and every step is packed (for tests and benchmarks of the stored form)."""

    async def open(self) -> int:
        """Open the database and migrate it; returns the schema version found on disk."""
        loop = asyncio.get_running_loop()
        found = await self._thread.run(loop, self._open)
        self._task = asyncio.create_task(self._run(), name="pivotd-writer")
        return found

    def _open(self) -> int:
        self._db_path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(self._db_path, isolation_level=None, check_same_thread=False)
        configure(conn)
        found = migrate(conn)
        self._unpacked = unpacked(conn)
        self._conn = conn
        return found

    @property
    def alive(self) -> bool:
        return self._task is not None and not self._task.done()

    async def submit(self, op: WriteOp) -> Any:
        """Queue `op`; returns its result once its transaction has committed."""
        if self._closing or not self.alive:
            raise ServiceUnavailable("the store is shutting down")
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        await self._queue.put((op, future))
        return await future

    async def close(self) -> None:
        """Commit everything already queued, then close the connection."""
        self._closing = True
        if self._task is not None:
            await self._queue.put(_STOP)
            await self._task
        loop = asyncio.get_running_loop()
        if self._conn is not None:
            await self._thread.run(loop, self._conn.close)
        self._thread.stop()

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        stopping = False
        while not stopping:
            batch = [await self._next(loop)]
            while len(batch) < self._max_batch_ops and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            if _STOP in batch:
                stopping = True
                batch = [item for item in batch if item is not _STOP]
                # Anything queued behind the stop marker was submitted before close() began.
                while not self._queue.empty():
                    batch.append(self._queue.get_nowait())
            if not batch:
                continue
            ops = [op for op, _ in batch]
            started = time.perf_counter()
            try:
                results, outcome = await self._thread.run(loop, self._apply, ops)
            except Exception as exc:  # the batch as a whole failed: nothing of it was committed
                error = self._batch_failed(exc, len(ops))
                for _, future in batch:
                    if not future.done():
                        future.set_exception(error)
                continue
            self._busy[0] += time.perf_counter() - started
            if self.disk_full_since is not None:
                log.warning("the database disk has room again; writes resumed")
                self.disk_full_since = None
            self.batches += 1
            self.ops += len(ops)
            for (_, future), result in zip(batch, results, strict=True):
                if future.done():  # the request went away; its data is committed regardless
                    continue
                if isinstance(result, BaseException):
                    future.set_exception(result)
                else:
                    future.set_result(result)
            self._unpacked += outcome.steps_written
            for listener in self.listeners:
                try:
                    listener(outcome)
                except Exception:
                    log.exception("batch listener failed")

    async def _next(self, loop: asyncio.AbstractEventLoop) -> Any:
        """The next queued item. While steps wait to be packed: once nothing has been queued for `QUIET_S`,
        packs chunk after chunk until something is; while writes keep coming, packs a chunk between batches
        as long as packing has taken less than `SHARE` of the writer's time since writes last paused, so a
        run that never pauses is packed too, at a bounded cost to its throughput."""
        quiet = False
        while True:
            if not self._unpacked:
                if self._queue.empty():
                    self.settled.set()
                item = await self._queue.get()
                break
            writing, packing = self._busy
            if not quiet and self._queue.empty():
                try:
                    item = await asyncio.wait_for(self._queue.get(), QUIET_S)
                    break
                except TimeoutError:
                    quiet = True  # chunk after chunk now, for as long as nothing is queued
            elif not quiet and packing >= SHARE * (writing + packing):
                item = self._queue.get_nowait()
                break
            await self._compact(loop)
            if not self._queue.empty() and quiet:
                item = self._queue.get_nowait()
                self._busy = [0.0, 0.0]  # what was packed while nothing else was to do is not held against writes
                break
        self.settled.clear()
        return item

    async def _compact(self, loop: asyncio.AbstractEventLoop) -> None:
        """One chunk of packing; a failure (a full disk, say) leaves the steps as JSON until the next write."""
        started = time.perf_counter()
        try:
            found = await self._thread.run(loop, compact, self._conn, self._packer)
        except Exception:
            log.exception("packing stored steps failed; they stay as JSON for now")
            found = 0
        self._unpacked = max(self._unpacked - found, 1) if found == CHUNK else 0
        self._busy[1] += time.perf_counter() - started

    def _apply(self, ops: list[WriteOp]) -> tuple[list[Any], BatchOutcome]:
        conn = self._conn
        assert conn is not None
        tx = Tx(conn, time.time())
        results: list[Any] = []
        conn.execute("BEGIN IMMEDIATE")
        try:
            for op in ops:
                # A savepoint per operation: one bad request cannot fail its neighbours' writes.
                conn.execute("SAVEPOINT op")
                refs, created, revived = dict(tx.run_refs), set(tx.created), set(tx.revived)
                try:
                    results.append(op.apply(tx))
                except Exception as exc:
                    if _is_disk_full(exc) or not conn.in_transaction:
                        raise  # SQLite gave up the whole transaction: the ops before this one are gone too
                    conn.execute("ROLLBACK TO op")
                    # Runs made or revived inside the savepoint are as they were.
                    tx.run_refs, tx.created, tx.revived = refs, created, revived
                    results.append(exc)
                conn.execute("RELEASE op")
            outcome = BatchOutcome(created=set(tx.created), revived=set(tx.revived), steps_written=tx.steps_written)
            refs = sorted(set(tx.run_refs.values()))
            if refs:
                self._refresh_runs(conn, refs, tx.now)
            outcome.evicted = enforce(conn, self._retention, touched=refs)
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:  # a failed COMMIT (disk full) has already rolled back
                conn.execute("ROLLBACK")
            raise
        outcome.created -= set(outcome.evicted)
        outcome.revived -= set(outcome.evicted)
        # Asked after the commit, so that every batch committed after someone subscribed is announced to them.
        if refs and self.announce_runs():
            try:
                outcome.touched = self._runs(conn, refs)
            except sqlite3.Error:  # committed all the same: only the announcement is lost
                log.exception("reading the runs of a committed batch failed")
        return results, outcome

    @staticmethod
    def _runs(conn: sqlite3.Connection, refs: list[int]) -> list[RunRow]:
        """The runs `refs` as the last commit left them: the writer's connection is the only one that writes."""
        marks = ",".join("?" * len(refs))
        rows = conn.execute(f"SELECT {RUN_COLUMNS} FROM runs WHERE id IN ({marks})", refs).fetchall()
        latest = latest_by_run(conn.execute(*latest_query(refs)))
        return [run_row(row, latest.get(row[0])) for row in rows]

    def _batch_failed(self, exc: Exception, count: int) -> PivotError:
        """The error each request of a failed batch gets; a full disk is logged once, not once per batch."""
        if not _is_disk_full(exc):
            log.exception("write batch of %d operations failed", count)
            return ServiceUnavailable(f"the store could not commit: {exc}")
        free = shutil.disk_usage(self._db_path.parent).free
        if self.disk_full_since is None:
            self.disk_full_since = time.time()
            log.error("the disk holding %s is full (%d bytes free): writes are refused until there is room; "
                      "reads go on and nothing already stored is affected", self._db_path, free)  # fmt: skip
        return InsufficientStorage(
            f"the disk holding pivotd's database is full ({free // 1024} KiB free); nothing was stored. "
            "Free some space and send again: what was stored before is intact"
        )

    @staticmethod
    def _refresh_runs(conn: sqlite3.Connection, refs: list[int], now: float) -> None:
        conn.executemany("UPDATE runs SET last_update = ? WHERE id = ?", [(now, ref) for ref in refs])
