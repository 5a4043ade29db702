"""Provides `Transport`: the SDK's background sender (bounded queue, batching, retry with backoff, flush).

The training thread only appends to a deque under a lock (about a microsecond); one daemon thread owns the
HTTP connection, builds the JSON bodies, batches them onto the batch and scalar routes and retries while
the daemon is unreachable. Nothing here imports torch: deferred bodies (callables) are built on this thread,
which is where the monitor's single device-to-host transfer is awaited.

Failures are said early and once: the first delivery that fails is logged with the URL and the reason (once
more if entries are later refused), and `close()` returns False with a one-line summary when anything was
refused, dropped or left undelivered, or the run's end could not be recorded.
"""

from __future__ import annotations

import atexit
import json
import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import httpx

from shared.locations import resolve_token, resolve_url
from shared.models.errors import describe_error
from shared.models.runs import RunEnd
from shared.sdk.ending import end_at_exit

log = logging.getLogger("pivot.sdk")

Body = dict[str, Any]
Kind = Literal["layerwise", "scalars"]
DROPPED_SCALAR = "sdk/dropped_steps"
"""Scalar name under which the cumulative number of dropped queue entries is reported."""

# Statuses worth retrying: the daemon is starting, overloaded, briefly unavailable, or its disk is full (507: the
# entries are kept, within the queue's capacity, until someone frees space).
_RETRY_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504, 507})
# The daemon refuses bodies over 2 MiB by default; stay well under it.
_MAX_BODY_BYTES = 1 << 20


@dataclass(slots=True, eq=False)
class Item:
    """One queued entry: a layer-wise step, or one step's scalar point, for one run."""

    kind: Kind
    run_id: str
    step: int
    body: Body | Callable[[], Body]
    """A ready body, or a callable run on the sender thread (device sync, dict building)."""


@dataclass(frozen=True, slots=True)
class TransportStats:
    """Counters since the transport started; `Monitor.stats` and `Run.stats` return this."""

    queued: int
    """Entries waiting to be sent (never more than the queue capacity)."""
    sent_steps: int
    """Layer-wise steps the daemon accepted."""
    sent_points: int
    """Scalar points the daemon accepted."""
    dropped: int
    """Entries dropped because the queue was full (oldest first) or undelivered at close."""
    rejected: int
    """Entries the daemon refused with a 4xx other than for non-finite values; never retried."""
    non_finite: int
    """Entries holding NaN/Inf, sent alone so the daemon records the event on the run (it answers 422)."""
    retries: int
    """Requests that failed for a retryable reason (daemon down, 5xx) and were retried."""
    last_error: str | None
    """The most recent delivery failure, for logs and tests."""


class _Retry(Exception):
    """Delivery failed for a reason that may pass: keep the entries and try again later."""


def _encode(body: Any) -> bytes:
    # The stdlib writes NaN/Infinity literally; the daemon parses those to name the field in its event.
    return json.dumps(body, separators=(",", ":")).encode()


def _encode_checked(body: Any) -> tuple[bytes, bool]:
    """(the body's JSON, whether every number in it is finite). A finite body, the common case, is encoded once
    and walked once: the encoder refuses NaN and infinities itself, so no separate walk of the tree looks for them
    (that walk cost half as much as the encoding for a small model's step)."""
    try:
        return json.dumps(body, separators=(",", ":"), allow_nan=False).encode(), True
    except ValueError:
        return _encode(body), False


class Transport:
    """Background delivery to one pivotd; every public method is safe to call from the training thread."""

    def __init__(
        self,
        run_id: str,
        *,
        url: str | None = None,
        token: str | None = None,
        capacity: int = 1000,
        max_batch: int = 256,
        linger_s: float = 0.5,
        backoff_s: float = 0.5,
        max_backoff_s: float = 30.0,
        timeout_s: float = 10.0,
        exit_timeout_s: float = 5.0,
        run_fields: Mapping[str, Any] | None = None,
    ) -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self.run_id = run_id
        self.url = resolve_url(url)
        self.capacity = capacity
        self.max_batch = max_batch
        self.linger_s = linger_s
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self.timeout_s = timeout_s
        self.exit_timeout_s = exit_timeout_s
        self._run_fields = {k: v for k, v in (run_fields or {}).items() if v is not None}
        headers = {"content-type": "application/json", "user-agent": "pivot-sdk"}
        resolved_token = resolve_token(token, self.url)
        if resolved_token:
            headers["authorization"] = f"Bearer {resolved_token}"
        self._http = httpx.Client(
            base_url=self.url, headers=headers, timeout=httpx.Timeout(timeout_s, connect=min(timeout_s, 2.0))
        )
        self._queue: deque[Item] = deque()
        self._cond = threading.Condition()
        self._busy = False  # the sender holds entries taken from the queue
        self._kick = False  # flush/close asked for an attempt now, not after the backoff
        self._flushers = 0
        self._wake_at = 0  # queue length at which put() wakes the sender; 0 while it is not waiting for entries
        self._closing = False
        self._deadline = math.inf
        self._last_step = 0
        self._counts = {"sent_steps": 0, "sent_points": 0, "dropped": 0, "rejected": 0, "non_finite": 0, "retries": 0}
        self._dropped_reported = 0
        self._last_error: str | None = None
        self._warned: set[str] = set()
        self._end: RunEnd | None = None  # how close() ends the run, sent after its data
        self._end_failure: str | None = None  # why that end was not recorded
        self._summarised = False
        self._thread = threading.Thread(target=self._loop, name=f"pivot-sdk-{run_id}", daemon=True)
        self._thread.start()
        atexit.register(self._at_exit)

    # -- training-thread side ---------------------------------------------------------------------------

    def put(self, item: Item) -> None:
        """Queue an entry; when full, the oldest entry is dropped and counted. Never blocks on I/O."""
        with self._cond:
            if self._closing:
                self._counts["dropped"] += 1
                return
            if len(self._queue) >= self.capacity:
                self._queue.popleft()
                self._counts["dropped"] += 1
            self._queue.append(item)
            self._last_step = max(self._last_step, item.step)
            if len(self._queue) == self._wake_at:
                # Only the one transition the sender waits for: waking it per entry (a thread switch and a
                # GIL hand-off) would cost the training thread tens of microseconds per call.
                self._cond.notify()

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until everything queued so far is delivered (or refused); False if `timeout` passed first."""
        with self._cond:
            self._kick = True
            self._flushers += 1  # no lingering while someone waits for the queue to drain
            self._cond.notify_all()
            try:
                return self._cond.wait_for(lambda: not self._queue and not self._busy, timeout)
            finally:
                self._flushers -= 1

    def close(self, timeout: float = 5.0, end: RunEnd | None = None) -> bool:
        """Deliver what is queued (trying for at most `timeout` seconds), record `end` as the run's end, then stop.

        True when everything was delivered and the end recorded. False when anything was refused or dropped (see
        `stats`), left undelivered or the end not recorded; one warning then says how many and the last error.
        """
        with self._cond:
            if not self._closing:
                self._closing = True
                self._deadline = time.monotonic() + timeout
                self._end = end
            self._kick = True
            self._cond.notify_all()
        self._thread.join(timeout + 1.0)
        atexit.unregister(self._at_exit)
        with self._cond:
            sending = self._thread.is_alive()  # a request still under way when close() stopped waiting
            lost = {"refused": self._counts["rejected"], "dropped": self._counts["dropped"], "unsent": len(self._queue)}
            if not any(lost.values()) and not sending and self._end_failure is None:
                return True
            if not self._summarised:
                self._summarised = True
                said = [f"{n} {'entry' if n == 1 else 'entries'} {what}" for what, n in lost.items() if n]
                if sending:
                    said.append("a request still under way")
                if self._end is not None and (sending or self._end_failure):
                    why = f": {self._end_failure}" if self._end_failure else ""
                    said.append(f"its end ({self._end.status}) not recorded{why}")
                log.warning(
                    "pivot sdk: run %s at %s: %s; last error: %s", self.run_id, self.url, ", ".join(said),
                    self._last_error,
                )  # fmt: skip
            return False

    @property
    def stats(self) -> TransportStats:
        with self._cond:
            return TransportStats(queued=len(self._queue), last_error=self._last_error, **self._counts)

    def _at_exit(self) -> None:
        self.close(self.exit_timeout_s, end_at_exit())

    # -- sender thread ----------------------------------------------------------------------------------

    def _loop(self) -> None:
        try:
            self._send_until_closed()
            self._send_end()
        finally:
            # Closed here, not in close(): a request may still be running when close() stops waiting.
            self._http.close()

    def _send_until_closed(self) -> None:
        delay = 0.0
        while True:
            with self._cond:
                if delay:
                    wait = min(delay, self._deadline - time.monotonic())
                    self._cond.wait_for(lambda: self._kick, max(wait, 0.0))
                while not self._queue and not self._closing:
                    self._busy = False
                    self._cond.notify_all()
                    self._wake_at = 1
                    self._cond.wait()
                if self.linger_s and not self._kick and not self._flushers:
                    # Gather what the next `linger_s` brings into one request: a loop logging every step
                    # then costs the daemon a few requests a second, not one per step.
                    self._wake_at = self.max_batch
                    self._cond.wait_for(self._full_or_kicked, self.linger_s)
                self._wake_at = 0
                self._kick = False
                if not self._queue or time.monotonic() >= self._deadline:
                    self._abandon()
                    return
                count = min(len(self._queue), self.max_batch)
                batch = [self._queue.popleft() for _ in range(count)]
                self._busy = True
            try:
                retry = self._deliver(batch)
            except Exception:  # a bug here must not end delivery for the rest of the run
                log.exception("pivot sdk: dropping %d entries that could not be sent", len(batch))
                with self._cond:
                    self._counts["rejected"] += len(batch)
                retry = []
            if not retry:
                delay = 0.0
                continue
            with self._cond:
                # Back at the front, oldest first; the capacity bound still holds, dropping the oldest.
                self._queue.extendleft(reversed(retry))
                while len(self._queue) > self.capacity:
                    self._queue.popleft()
                    self._counts["dropped"] += 1
                self._counts["retries"] += 1
            delay = min(self.max_backoff_s, max(self.backoff_s, delay * 2))

    def _full_or_kicked(self) -> bool:
        return self._kick or self._closing or self._flushers > 0 or len(self._queue) >= self.max_batch

    def _abandon(self) -> None:
        """Called with the lock held when closing ends: whatever is left is counted as dropped (close() says so)."""
        self._counts["dropped"] += len(self._queue)
        self._queue.clear()
        self._busy = False
        self._cond.notify_all()

    def _send_end(self) -> None:
        """The run's end, once its data is delivered, so pivotd never sees a step after it."""
        end = self._end
        if end is None:
            return
        remaining = self._deadline - time.monotonic()
        if remaining <= 0:
            with self._cond:
                self._end_failure = "no time left to send it"
            return
        try:
            response = self._http.post(
                f"/api/v1/runs/{self.run_id}/finish",
                content=_encode(end.model_dump(exclude_none=True)),
                timeout=min(remaining, self.timeout_s),
            )
        except httpx.HTTPError as exc:
            failure = f"{type(exc).__name__}: {exc}"
        else:
            # 409: pivotd decides this run's state (a managed run, whose trainer reports through the SDK), or it
            # already ended otherwise. Either way there is nothing left to say.
            if response.is_success or response.status_code == 409:
                return
            failure = _reason(response)
        with self._cond:
            self._end_failure = self._last_error = failure

    def _deliver(self, batch: list[Item]) -> list[Item]:
        """Send one batch; returns the entries to retry (empty when all were delivered or refused)."""
        ready = [item for item in batch if self._resolve(item)]
        pending = {id(item): item for item in ready}  # what is still undelivered, oldest first
        try:
            self._send_layerwise([item for item in ready if item.kind == "layerwise"], pending)
            self._send_scalars([item for item in ready if item.kind == "scalars"], pending)
        except _Retry as exc:
            self._failed(str(exc), refused=False)
            return list(pending.values())
        return []

    def _resolve(self, item: Item) -> bool:
        if not callable(item.body):
            return True
        try:
            item.body = item.body()
        except Exception:  # a bug or a device error must not kill the sender thread
            log.exception("pivot sdk: could not build the body for step %d", item.step)
            with self._cond:
                self._counts["rejected"] += 1
            return False
        return True

    def _send_layerwise(self, items: list[Item], pending: dict[int, Item]) -> None:
        finite: list[tuple[Item, bytes]] = []
        for item in items:
            encoded, is_finite = _encode_checked(item.body)
            if is_finite:
                finite.append((item, encoded))
            else:
                # Alone on the single route: the daemon rejects it but records the event naming the field.
                self._post_single("/api/v1/metrics/layerwise", item, encoded, pending, non_finite=True)
        for chunk in _chunks(finite):
            if len(chunk) == 1:
                self._post_single("/api/v1/metrics/layerwise", chunk[0][0], chunk[0][1], pending)
                continue
            response = self._post("/api/v1/metrics/layerwise/batch", b"[" + b",".join(b for _, b in chunk) + b"]")
            if response.is_success:
                self._done([item for item, _ in chunk], pending, "sent_steps")
                continue
            # The batch route is atomic: one bad entry refuses all; resend singly so only that one is lost.
            for item, encoded in chunk:
                self._post_single("/api/v1/metrics/layerwise", item, encoded, pending)

    def _send_scalars(self, items: list[Item], pending: dict[int, Item]) -> None:
        by_run: dict[str, list[Item]] = {}
        for item in items:
            by_run.setdefault(item.run_id, []).append(item)
        if self._counts["dropped"] > self._dropped_reported:
            by_run.setdefault(self.run_id, [])
        for run_id, group in by_run.items():
            points: list[Body] = []
            for item in group:
                point = _float_values(item.body)
                values = point["values"]
                bad = {k: v for k, v in values.items() if not math.isfinite(v)}
                if bad:
                    # Finite values still go in the batch; the non-finite ones alone, so the event is recorded.
                    alone = Item("scalars", run_id, item.step, {**point, "values": bad})
                    self._post_single(f"/api/v1/runs/{run_id}/scalars", alone, _encode([alone.body]), {}, True)
                    point = {**point, "values": {k: v for k, v in values.items() if k not in bad}}
                if point["values"]:
                    points.append(point)
            delivered = len(points)
            dropped = self._counts["dropped"]
            if run_id == self.run_id and dropped > self._dropped_reported:
                points.append({"step": self._last_step, "values": {DROPPED_SCALAR: float(dropped)}})
            if not points:
                self._done(group, pending, None)
                continue
            body: Any = {"points": points, **self._run_fields} if self._run_fields else points
            response = self._post(f"/api/v1/runs/{run_id}/scalars", _encode(body))
            if response.is_success:
                if run_id == self.run_id:
                    self._dropped_reported = dropped
                with self._cond:
                    self._counts["sent_points"] += delivered
                self._done(group, pending, None)
            else:
                self._refused(group, pending, response)

    def _post_single(
        self, path: str, item: Item, content: bytes, pending: dict[int, Item], non_finite: bool = False
    ) -> None:
        response = self._post(path, content)
        if response.is_success:
            self._done([item], pending, "sent_steps" if item.kind == "layerwise" else "sent_points")
        elif non_finite:
            self._done([item], pending, "non_finite")
            self._warn_once(
                "non_finite", f"run {item.run_id} step {item.step} has non-finite values: {_message(response)}"
            )
        else:
            self._refused([item], pending, response)

    def _post(self, path: str, content: bytes) -> httpx.Response:
        try:
            response = self._http.post(path, content=content)
        except httpx.HTTPError as exc:
            raise _Retry(f"{type(exc).__name__}: {exc}") from None
        if response.status_code in _RETRY_STATUSES:
            raise _Retry(_reason(response))
        return response

    def _done(self, items: Iterable[Item], pending: dict[int, Item], counter: str | None) -> None:
        done = list(items)
        for item in done:
            pending.pop(id(item), None)
        if counter:
            with self._cond:
                self._counts[counter] += len(done)

    def _refused(self, items: list[Item], pending: dict[int, Item], response: httpx.Response) -> None:
        self._done(items, pending, "rejected")
        self._failed(_reason(response), refused=True)

    def _failed(self, reason: str, *, refused: bool) -> None:
        """A delivery failed: said at once, with where to and why, the first time it fails for each outcome."""
        with self._cond:
            self._last_error = reason
        outcome = "entries refused" if refused else "will retry"
        self._warn_once(outcome, f"cannot deliver run {self.run_id} to {self.url}: {reason} ({outcome})")

    def _warn_once(self, key: str, message: str) -> None:
        # Once per kind of failure: a broken run must not flood the training log.
        if key not in self._warned:
            self._warned.add(key)
            log.warning("pivot sdk: %s", message)


def _float_values(body: Body) -> Body:
    """A scalar point with its values as floats (tensors were queued as-is to avoid a device sync)."""
    return {**body, "values": {name: float(value) for name, value in body["values"].items()}}


def _chunks(encoded: list[tuple[Item, bytes]]) -> Iterable[list[tuple[Item, bytes]]]:
    chunk: list[tuple[Item, bytes]] = []
    size = 0
    for entry in encoded:
        if chunk and size + len(entry[1]) > _MAX_BODY_BYTES:
            yield chunk
            chunk, size = [], 0
        chunk.append(entry)
        size += len(entry[1]) + 1
    if chunk:
        yield chunk


def _reason(response: httpx.Response) -> str:
    """`401 Unauthorized: invalid token`: the status and what pivotd said."""
    return f"{response.status_code} {response.reason_phrase}: {_message(response)}"


def _message(response: httpx.Response) -> str:
    try:
        _, message = describe_error(response.json())
    except ValueError:
        message = None
    return message or response.text[:200]
