"""How runs that scripts post (external runs) end, and start again.

A script ends its run through `POST /api/v1/runs/{id}/finish` (the SDK does it in `finish()`/`close()` and at
interpreter exit). A script killed without a word is noticed by its silence: every `alert_check_interval_s` the
runs still `running` with no data for `run_lost_after_s` are marked `lost`, in one transaction that checks the
condition again, so each is marked once, also across restarts (the state is stored, not remembered). Silence
counts only while this daemon runs: scripts retry while it is down, so its downtime is not their silence.

An end is announced as a managed run's is: the `on_finished` listeners first (notification and webhooks, alerts
closed, experiment events), then `run_state`. Data arriving for an ended external run makes it `running` again
(decided by the write that stores the data); that is announced as `run_state` too.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Sequence

from pivotd.errors import InsufficientStorage, NotFound
from pivotd.hub import RUNS_TOPIC, Hub
from pivotd.ingest import run_message
from pivotd.settings import Settings
from pivotd.store import BatchOutcome, RunRow, Store
from pivotd.store.run_ends import FinishRun, MarkLost
from pivotd.tasks import TaskSet
from shared.models.runs import RunEnd, RunState

log = logging.getLogger(__name__)

Finished = Callable[[str, str, str | None], Awaitable[None]]


def silence(seconds: float) -> str:
    """`no data for 15 min`: the reason a lost run shows."""
    if seconds >= 3600 and seconds % 3600 == 0:
        return f"no data for {seconds / 3600:g} h"
    if seconds >= 60:
        return f"no data for {seconds / 60:g} min"
    return f"no data for {seconds:g} s"


class RunEnds:
    def __init__(
        self,
        settings: Settings,
        store: Store,
        hub: Hub,
        *,
        on_finished: Sequence[Finished],
        on_revived: Sequence[Callable[[str], Awaitable[None]]],
    ) -> None:
        """The listeners run in the order given, each awaited before the next."""
        self._settings = settings
        self._store = store
        self._hub = hub
        self._on_finished = tuple(on_finished)
        """Called with (run_id, state, error) when an external run ends: succeeded, failed, cancelled or lost."""
        self._on_revived = tuple(on_revived)
        """Called with the run id when an ended external run is `running` again."""
        self._since = time.time()
        """When this daemon started watching: silence before it is not a script's (see the module docstring)."""
        self._task: asyncio.Task[None] | None = None
        self._background = TaskSet()

    async def __aenter__(self) -> RunEnds:
        self._store.writer.listeners.append(self._on_batch)
        self._task = asyncio.create_task(self._watch(), name="pivotd-lost-runs")
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._store.writer.listeners.remove(self._on_batch)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._background.wait()

    async def finish(self, run_id: str, end: RunEnd) -> RunRow:
        """End an external run as its script says (creating it if needed); the same end again changes nothing."""
        state = RunState(end.status)
        if await self._store.writer.submit(FinishRun(run_id, state, end.error)):
            await self._ended(run_id, state, end.error)
        run = await self._store.reader.get_run(run_id)
        if run is None:  # deleted (or evicted) in between
            raise NotFound(f"run {run_id!r} not found")
        return run

    async def mark_lost(self) -> list[str]:
        """Mark the external runs silent for `run_lost_after_s` as `lost`; returns their ids."""
        limit = self._settings.run_lost_after_s
        before = time.time() - limit
        if self._since > before:  # not up that long: nobody can have been silent that long to us
            return []
        runs: list[RunRow] = await self._store.writer.submit(MarkLost(before, silence(limit)))
        for run in runs:
            log.warning("run %s is lost: %s", run.run_id, run.error)
            self._hub.publish((RUNS_TOPIC,), run_message("run_updated", run))
            await self._ended(run.run_id, RunState.LOST, run.error)
        return [run.run_id for run in runs]

    async def _ended(self, run_id: str, state: RunState, error: str | None) -> None:
        for listener in self._on_finished:
            try:
                await listener(run_id, state, error)
            except Exception:  # one listener's failure must not keep the others, or the state, from going out
                log.exception("run-finished listener failed for %s", run_id)
        self._hub.publish_run_state(run_id, state, error)

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(self._settings.alert_check_interval_s)
            try:
                await self.mark_lost()
            except InsufficientStorage:
                pass  # the writer reports a full disk once; the runs are marked on a tick after there is room
            except Exception:  # the store shutting down, a failed write: try again on the next tick
                log.exception("checking for lost runs failed")

    def _on_batch(self, outcome: BatchOutcome) -> None:
        """Writer listener: runs a write took back to `running` (their script sent data after their end)."""
        for run_id in sorted(outcome.revived):
            self._hub.publish_run_state(run_id, RunState.RUNNING, None)
            if self._on_revived:
                self._background.spawn(self._revived(run_id))

    async def _revived(self, run_id: str) -> None:
        for listener in self._on_revived:
            try:
                await listener(run_id)
            except Exception:
                log.exception("run-revived listener failed for %s", run_id)
