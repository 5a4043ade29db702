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
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import httpx
import orjson
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus, InvalidURI

from shared.client import AsyncPivotClient, PivotAPIError
from shared.models import RunSummary, ScalarsResponse
from shared.models.alerts import (
    AlertList,
    AlertPublic,
    AlertRuleList,
    AlertRulePublic,
    AlertStatus,
    NotificationList,
    NotificationPublic,
)
from shared.models.errors import describe_error
from shared.models.experiments import ExperimentAction, ExperimentDetail, ExperimentExport, ExperimentPublic
from shared.models.registry import CancelRequested, ManagedRun, Params, PixelInference, TrainQueued

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
    def __init__(self, url: str, token: str | None, *, max_backoff: float = 10.0) -> None:
        self.url = url
        self.token = token
        self.rest = AsyncPivotClient(url, token, timeout=10)
        self._http = httpx.AsyncClient(
            base_url=url, timeout=10, headers={"authorization": f"Bearer {token}"} if token else {}
        )
        self._max_backoff = max_backoff
        self._ws: ClientConnection | None = None
        self._watched: dict[str, set[str]] = {"run": set(), "experiment": set()}
        """Per-object topics followed besides BASE_TOPICS: the open run's and the open experiment's."""

    async def aclose(self) -> None:
        await self.rest.aclose()
        await self._http.aclose()

    # -- REST ----------------------------------------------------------------------------------------

    async def runs(self) -> dict[str, RunSummary]:
        with _answered():
            return await self.rest.list_runs()

    async def run(self, run_id: str, *, lite: bool = True) -> dict[str, Any]:
        return await self.get_json(f"/api/v1/runs/{run_id}", params={"lite": str(lite).lower()})

    async def scalars(self, run_id: str, names: Sequence[str] | None = None, max_points: int = 400) -> ScalarsResponse:
        with _answered():
            return await self.rest.scalars(run_id, names, max_points)

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

    # Alerts and notifications (seed 002), parsed into their models.

    async def alerts(self, status: AlertStatus | None = None) -> list[AlertPublic]:
        params = None if status is None else {"status": str(status)}
        return AlertList.model_validate(await self.get_json("/api/v1/alerts", params=params)).alerts

    async def alert_rules(self) -> list[AlertRulePublic]:
        return AlertRuleList.model_validate(await self.get_json("/api/v1/alerts/rules")).rules

    async def notifications(self, limit: int = 50) -> list[NotificationPublic]:
        body = await self.get_json("/api/v1/notifications", params={"limit": limit})
        return NotificationList.model_validate(body).notifications

    async def acknowledge_alert(self, alert_id: str, by: str | None, notes: str | None) -> None:
        await self.post_json(f"/api/v1/alerts/{alert_id}/acknowledge", {"acknowledged_by": by, "notes": notes})

    async def mark_notification_read(self, notification_id: str) -> None:
        await self.post_json(f"/api/v1/notifications/{notification_id}/read", {})

    # Managed training (seeds 001 and 003): answers parsed into shared.models.registry models.

    async def train(self, body: dict[str, Any]) -> TrainQueued:
        """Queue `{"architecture", "hyperparams"}` (`POST /api/train`)."""
        return TrainQueued.model_validate(await self.post_json("/api/train", body))

    async def cancel_managed(self, run_id: str) -> CancelRequested:
        return CancelRequested.model_validate(await self.post_json(f"/api/train/{run_id}/cancel", {}))

    async def managed_run(self, run_id: str) -> ManagedRun:
        """`GET /api/runs/{id}`: state, epoch, metrics and `param_id` once succeeded (404 for external runs)."""
        return ManagedRun.model_validate(await self.get_json(f"/api/runs/{run_id}"))

    async def params(self, param_id: str) -> Params:
        return Params.model_validate(await self.get_json(f"/api/params/{param_id}"))

    async def infer_pixels(self, run_id: str, pixels: list[float]) -> PixelInference:
        """Seed 001's one-image inference with a succeeded run."""
        return PixelInference.model_validate(await self.post_json("/api/infer", {"run_id": run_id, "pixels": pixels}))

    async def get_json(self, path: str, params: dict[str, Any] | None = None) -> Any:
        """GET a route; PivotAPIError on any non-2xx (404 means the daemon lacks that feature), Unreachable
        when the daemon does not answer."""
        with _answered():
            response = await self._http.get(path, params=params)
        return self._decoded(response)

    async def post_json(self, path: str, body: Any) -> Any:
        with _answered():
            response = await self._http.post(path, json=body)
        return self._decoded(response)

    @staticmethod
    def _decoded(response: httpx.Response) -> Any:
        if response.is_success:
            return response.json() if response.content else None
        try:
            body = response.json()
        except ValueError:
            raise PivotAPIError(response.status_code, "http_error", response.text[:200]) from None
        code, message = describe_error(body)
        raise PivotAPIError(response.status_code, code or "http_error", message or response.reason_phrase)

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
        ws_url = "ws" + self.url.removeprefix("http") + "/ws"
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
