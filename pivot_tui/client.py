"""DaemonClient: everything pivot-tui says to pivotd, over REST (httpx) and `/ws` (websockets).

No Textual here: the app gives `run()` a callback and receives plain events. The socket reconnects
with exponential backoff; after every (re)connect and after a `lagged` notice the client re-syncs
over REST, so what the UI shows is never silently missing messages.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import errno
import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import httpx
import orjson
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus, InvalidURI

from shared.client import AsyncPivotClient, PivotAPIError
from shared.models.alerts import AlertPublic, AlertRulePublic, AlertStatus, NotificationPublic, NotificationRead
from shared.models.datasets import DigitSamples
from shared.models.experiments import ExperimentAction, ExperimentDetail, ExperimentExport, ExperimentPublic
from shared.models.jobs import JobAccepted, JobQueue
from shared.models.logs import RunLogLine
from shared.models.monitor import ResourceSample
from shared.models.registry import CancelRequested, ManagedRun, Params, PixelInference, TrainQueued
from shared.models.runs import LiteRunDetail, RunSummary
from shared.models.scalars import ScalarsResponse

log = logging.getLogger(__name__)

BASE_TOPICS = ("runs", "resources", "alerts", "notifications")


class Connection(enum.Enum):
    CONNECTING = "connecting"
    ONLINE = "online"
    OFFLINE = "offline"
    UNAUTHORIZED = "unauthorized"


class Unreachable(PivotAPIError):
    """pivotd gave no answer at all (refused, timed out, dropped): a PivotAPIError with status 0, so every
    handler of the daemon's refusals also shows this, as `pivotd unreachable: <why>`."""

    def __init__(self, error: Exception) -> None:
        super().__init__(0, "unreachable", f"pivotd unreachable: {error or type(error).__name__}")


def why_offline(exc: BaseException) -> str:
    """Why the socket is down, in words rather than `[Errno 111] Connect call failed (...)`."""
    if isinstance(exc, OSError) and exc.errno == errno.ECONNREFUSED:
        return "connection refused (is pivotd running?)"
    if isinstance(exc, ConnectionClosed):
        return "the connection was closed"
    if isinstance(exc, TimeoutError):
        return "no answer in time"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror.lower()
    return str(exc) or type(exc).__name__


@contextlib.contextmanager
def _answered() -> Iterator[None]:
    try:
        yield
    except httpx.TransportError as exc:
        raise Unreachable(exc) from exc


@dataclass(frozen=True, slots=True)
class Event:
    """One message from the daemon, as decoded JSON, or a synthetic `resync` after a gap."""

    type: str
    data: dict[str, Any]


EventSink = Callable[[Event], None]
StateSink = Callable[[Connection, str], None]


class DaemonClient:
    """pivotd's calls as the TUI uses them, each returning a `shared.models` model, over one HTTP pool (the
    `AsyncPivotClient`'s); a daemon that does not answer is `Unreachable`, a refusal a `PivotAPIError`."""

    def __init__(self, url: str, token: str | None, *, max_backoff: float = 10.0) -> None:
        self.url = url
        self.token = token
        self.rest = AsyncPivotClient(url, token, timeout=10)
        self._max_backoff = max_backoff
        self._ws: ClientConnection | None = None
        self._watched: dict[str, set[str]] = {"run": set(), "experiment": set()}
        """Per-object topics followed besides BASE_TOPICS: the open run's and the open experiment's."""

    async def aclose(self) -> None:
        await self.rest.aclose()

    # -- runs ----------------------------------------------------------------------------------------

    async def runs(self) -> dict[str, RunSummary]:
        with _answered():
            return await self.rest.list_runs()

    async def get_run(self, run_id: str) -> LiteRunDetail:
        """The run with its whole step history, in compact layers."""
        with _answered():
            return await self.rest.get_run(run_id, lite=True)

    async def scalars(self, run_id: str, names: Sequence[str] | None = None, max_points: int = 400) -> ScalarsResponse:
        with _answered():
            return await self.rest.scalars(run_id, names, max_points)

    async def run_logs(self, run_id: str, tail: int = 200) -> list[RunLogLine]:
        """A managed run's last worker log lines, oldest first."""
        with _answered():
            return await self.rest.run_logs(run_id, tail=tail)

    async def resources(self) -> ResourceSample:
        with _answered():
            return await self.rest.resources()

    # Experiments. Bounded: the first page of 100 experiments; a detail's groups come from the export (n, mean,
    # std, ci95 per group as the daemon computes them) and its runs from the same document.

    async def experiments(self) -> list[ExperimentPublic]:
        with _answered():
            return await self.rest.experiments(limit=100)

    async def experiment(self, experiment_id: str) -> ExperimentDetail:
        """The experiment with `results_summary`, `progress`, `epoch_progress` and `eta_seconds`."""
        with _answered():
            return await self.rest.experiment(experiment_id)

    async def experiment_results(self, experiment_id: str) -> ExperimentExport:
        """The export's `results` (`groups` with n/mean/std/ci95/best) and `runs` (with last metric values)."""
        with _answered():
            return await self.rest.experiment_export(experiment_id, ["results", "runs"])

    async def experiment_action(self, experiment_id: str, action: ExperimentAction) -> ExperimentDetail:
        """`start`, `pause`, `resume` or `cancel`; PivotAPIError (409 with the reason) when not allowed."""
        with _answered():
            return await self.rest.experiment_action(experiment_id, action)

    # -- alerts and notifications --------------------------------------------------------------------

    async def alerts(self, status: AlertStatus | None = None) -> list[AlertPublic]:
        with _answered():
            return await self.rest.alerts(status)

    async def alert_rules(self) -> list[AlertRulePublic]:
        with _answered():
            return await self.rest.alert_rules()

    async def notifications(self, limit: int = 50) -> list[NotificationPublic]:
        with _answered():
            return await self.rest.notifications(limit)

    async def acknowledge_alert(self, alert_id: str, by: str | None, notes: str | None) -> AlertPublic:
        with _answered():
            return await self.rest.acknowledge_alert(alert_id, by, notes)

    async def mark_notification_read(self, notification_id: str) -> NotificationRead:
        with _answered():
            return await self.rest.mark_notification_read(notification_id)

    # -- managed training ----------------------------------------------------------------------------

    async def train(self, architecture: Mapping[str, Any], hyperparams: Mapping[str, Any]) -> TrainQueued:
        with _answered():
            return await self.rest.train(architecture, hyperparams)

    async def cancel(self, run_id: str) -> CancelRequested:
        with _answered():
            return await self.rest.cancel(run_id)

    async def managed_run(self, run_id: str) -> ManagedRun:
        """State, epoch, metrics and `param_id` once succeeded; a 404 for a script's run."""
        with _answered():
            return await self.rest.run(run_id)

    async def params(self, param_id: str) -> Params:
        with _answered():
            return await self.rest.params(param_id)

    async def digit_samples(self, count: int = 1, offset: int = 0) -> DigitSamples:
        with _answered():
            return await self.rest.digit_samples(count, offset)

    async def infer_pixels(self, run_id: str, pixels: Sequence[float]) -> PixelInference:
        """One digit's label by a succeeded run."""
        with _answered():
            return await self.rest.infer_pixels(run_id, pixels)

    # -- jobs ----------------------------------------------------------------------------------------

    async def submit_job(self, command: Sequence[str], cwd: str, **fields: Any) -> JobAccepted:
        """Queue `command` (argv) to run in `cwd` on the daemon's machine; `fields` as `JobSpec`'s."""
        with _answered():
            return await self.rest.submit_job(command, cwd, **fields)

    async def job_queue(self) -> JobQueue:
        """Running runs, then queued ones in the order they start, with their GPUs."""
        with _answered():
            return await self.rest.job_queue()

    async def cancel_job(self, run_id: str) -> JobAccepted:
        with _answered():
            return await self.rest.cancel_job(run_id)

    # -- live ----------------------------------------------------------------------------------------

    async def watch_run(self, run_id: str | None) -> None:
        """Follow one run's steps and scalars (`run:<id>`); None stops following any."""
        await self._watch("run", run_id)

    async def watch_experiment(self, experiment_id: str | None) -> None:
        """Follow one experiment's status, progress and finished runs (`experiment:<id>`); None stops."""
        await self._watch("experiment", experiment_id)

    async def _watch(self, prefix: str, object_id: str | None) -> None:
        wanted = {f"{prefix}:{object_id}"} if object_id else set()
        stale, self._watched[prefix] = self._watched[prefix] - wanted, wanted
        if self._ws is not None:
            if stale:
                await self._send({"action": "unsubscribe", "topics": sorted(stale)})
            if wanted:
                await self._send({"action": "subscribe", "topics": sorted(wanted)})

    async def _send(self, message: dict[str, Any]) -> None:
        if self._ws is None:
            return
        with contextlib.suppress(ConnectionClosed):  # the run loop reconnects and re-subscribes
            await self._ws.send(orjson.dumps(message).decode())

    async def run_forever(self, on_event: EventSink, on_state: StateSink) -> None:
        """Stay connected until cancelled, telling `on_state` about every change of connection."""
        backoff = 0.5
        ws_url = self.rest.ws_url
        headers = {"authorization": f"Bearer {self.token}"} if self.token else {}
        while True:
            on_state(Connection.CONNECTING, ws_url)
            try:
                async with connect(ws_url, additional_headers=headers, max_size=None, open_timeout=5) as ws:
                    self._ws = ws
                    backoff = 0.5
                    await self._subscribe_base()
                    on_state(Connection.ONLINE, ws_url)
                    synced = False
                    async for raw in ws:
                        message = orjson.loads(raw)
                        kind = message.get("type", "")
                        if kind == "subscribed" and not synced:
                            synced = True
                            # Re-sync only once the server has the subscription: whatever REST misses
                            # from here on arrives on the socket, so nothing falls between the two.
                            on_event(Event("resync", {"reason": "connected"}))
                        elif kind == "lagged":
                            on_event(Event("resync", {"reason": "lagged", "dropped": message.get("dropped", 0)}))
                        else:
                            on_event(Event(kind, message))
            except InvalidStatus as exc:
                if exc.response.status_code in (401, 403):
                    on_state(Connection.UNAUTHORIZED, "the daemon wants a token: --token or PIVOT_TOKEN")
                else:
                    on_state(Connection.OFFLINE, f"handshake refused: HTTP {exc.response.status_code}")
            except (OSError, ConnectionClosed, TimeoutError, InvalidURI) as exc:
                on_state(Connection.OFFLINE, why_offline(exc))
            finally:
                self._ws = None
            await asyncio.sleep(backoff)
            backoff = min(self._max_backoff, backoff * 2)

    async def _subscribe_base(self) -> None:
        # The `metrics` firehose carries every run's layer-wise steps; the UI follows one run at a time.
        await self._send({"action": "unsubscribe", "topics": ["metrics"]})
        await self._send(
            {"action": "subscribe", "topics": [*BASE_TOPICS, *sorted(set().union(*self._watched.values()))]}
        )
