"""Provides the scalar-only path: `Run` and the module-level `init` / `log` / `finish` (no torch needed).

from shared.sdk import init, log, finish
init("exp42")
for step in range(1000):
    ...
    log(step, {"train/loss": loss}, lr=lr)
finish()
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable, Mapping
from typing import Any

from shared.models.layerwise import RUN_ID_RULE, is_valid_run_id
from shared.models.runs import EndStatus
from shared.sdk.ending import end_of, end_of_exception
from shared.sdk.hostcopy import start_copy
from shared.sdk.transport import Item, Transport, TransportStats

_SCALAR_NAME = re.compile(r"^[A-Za-z0-9_./:-]{1,128}$")


RUN_ID_ENV = "PIVOT_RUN_ID"
"""Set by pivotd for a job's process: the run an unchanged script reports into."""


def check_run_id(run_id: str | None) -> str:
    """`run_id`, or when None the job's run (`PIVOT_RUN_ID`), checked."""
    if run_id is None:
        run_id = os.environ.get(RUN_ID_ENV)
        if not run_id:
            raise ValueError(f"no run_id given and ${RUN_ID_ENV} is not set (pivotd sets it for a job)")
    if not is_valid_run_id(run_id):
        raise ValueError(f"run_id {run_id!r}: must be {RUN_ID_RULE}")
    return run_id


class ScalarLogger:
    """Turns `log(step, values, **more)` calls into queued scalar points; shared by `Run` and `Monitor`."""

    def __init__(self, transport: Transport) -> None:
        self._transport = transport
        self._names: set[str] = set()  # names already checked, so a hot loop pays one set lookup per name

    def log(self, step: int, values: Mapping[str, Any] | None, more: Mapping[str, Any], epoch: int | None) -> None:
        merged = {**values, **more} if values else dict(more)
        if not merged:
            return
        waits: list[Callable[[], None]] = []
        for name, value in merged.items():
            if name not in self._names:
                if not _SCALAR_NAME.match(name):
                    raise ValueError(f"scalar name {name!r} must match {_SCALAR_NAME.pattern}")
                self._names.add(name)
            if hasattr(value, "detach"):
                # A tensor is read on the sender thread (no device sync here): a device tensor is copied to
                # the host without waiting, and detached so the queue never keeps an autograd graph alive.
                merged[name], wait = start_copy(value.detach())
                if wait is not None:
                    waits.append(wait)
        point: dict[str, Any] = {"step": step, "timestamp": time.time(), "values": merged}
        if epoch is not None:
            point["epoch"] = epoch
        self._transport.put(Item("scalars", self._transport.run_id, step, _after(waits, point) if waits else point))


class Run:
    """A run that logs scalars (`train/loss`, `lr`, ...) to pivotd in the background.

    URL and token come from the arguments, then `PIVOT_URL`/`PIVOT_TOKEN`, then the local daemon's
    `daemon.json`/token file. Use it as a context manager or call `finish()`; at interpreter exit
    pending points are flushed for at most `exit_timeout_s` seconds and the run ends as the script did
    (failed with the uncaught exception, cancelled by Ctrl-C, else succeeded).
    """

    def __init__(
        self,
        run_id: str | None = None,
        *,
        url: str | None = None,
        token: str | None = None,
        experiment_id: str | None = None,
        group: str | None = None,
        tags: list[str] | None = None,
        capacity: int = 10_000,
        exit_timeout_s: float = 5.0,
    ) -> None:
        self.run_id = check_run_id(run_id)
        self._transport = Transport(
            self.run_id,
            url=url,
            token=token,
            capacity=capacity,
            exit_timeout_s=exit_timeout_s,
            run_fields={"experiment_id": experiment_id, "group": group, "tags": tags},
        )
        self._scalars = ScalarLogger(self._transport)

    def __enter__(self) -> Run:
        return self

    def __exit__(self, kind: object, exc: BaseException | None, traceback: object) -> None:
        self._transport.close(5.0, end_of_exception(exc))  # an exception leaving the block ends the run failed

    @property
    def url(self) -> str:
        return self._transport.url

    def log(
        self, step: int, values: Mapping[str, Any] | None = None, /, *, epoch: int | None = None, **more: Any
    ) -> None:
        """Queue scalar values for `step`; names with `/` go in `values`, others may be keywords. Never blocks."""
        self._scalars.log(step, values, more, epoch)

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until queued points are delivered; False if `timeout` passed first (e.g. the daemon is down)."""
        return self._transport.flush(timeout)

    def finish(self, timeout: float = 5.0, *, status: EndStatus | None = None, error: str | None = None) -> bool:
        """Deliver what is queued (for at most `timeout` seconds), end the run and stop.

        The run ends `succeeded`; `failed` with `error="diverged"`; or as `status` says (`cancelled`). True when
        everything was delivered and the end recorded; False (and a warning saying what) otherwise."""
        return self._transport.close(timeout, end_of(status, error))

    @property
    def stats(self) -> TransportStats:
        return self._transport.stats


_current: Run | None = None


def init(run_id: str | None = None, **options: Any) -> Run:
    """Start the run that module-level `log` writes to (finishing the previous one); options as for `Run`. Without
    `run_id`, the job's run that pivotd names in `PIVOT_RUN_ID`."""
    global _current
    if _current is not None:
        _current.finish()
    _current = Run(run_id, **options)
    return _current


def log(step: int, values: Mapping[str, Any] | None = None, /, *, epoch: int | None = None, **more: Any) -> None:
    """Log scalars to the run started by `init`: `log(step, {"train/loss": 0.3}, lr=1e-3)`."""
    if _current is None:
        raise RuntimeError("call shared.sdk.init(run_id) before shared.sdk.log(...)")
    _current.log(step, values, epoch=epoch, **more)


def finish(timeout: float = 5.0, *, status: EndStatus | None = None, error: str | None = None) -> bool:
    """Flush and end the run started by `init` (as `Run.finish`); True when everything was delivered and recorded."""
    global _current
    run, _current = _current, None
    return run.finish(timeout, status=status, error=error) if run is not None else True


def _after(waits: list[Callable[[], None]], point: dict[str, Any]) -> Callable[[], dict[str, Any]]:
    """The point, built on the sender thread once its device-to-host copies have landed."""

    def build() -> dict[str, Any]:
        for wait in waits:
            wait()
        return point

    return build
