"""`create_app(settings)`: the FastAPI application and its lifespan. No work happens at import time."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from functools import partial
from pathlib import Path
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Receive, Scope, Send

from pivotd.alerts.actions import Actions
from pivotd.alerts.engine import AlertEngine
from pivotd.alerts.notifications import Notifier
from pivotd.alerts.webhooks import Webhooks
from pivotd.api import alerts as alerts_api
from pivotd.api import apikeys as apikeys_api
from pivotd.api import auth_session as auth_session_api
from pivotd.api import (
    checkpoints,
    datasets,
    experiments,
    exports,
    health,
    layerwise,
    models,
    models_v1,
    monitor,
    notifications,
    prometheus,
    runlogs,
    scalars,
    sessions,
    socket,
    statistics,
    ws,
)
from pivotd.api import jobs as jobs_api
from pivotd.api import run_ends as run_ends_api
from pivotd.api import telemetry as telemetry_api
from pivotd.api import webhooks as webhooks_api
from pivotd.api.body import install_openapi
from pivotd.api.docs import install_docs
from pivotd.api.ingest_route import LayerwiseIngestRoute, OwnerIngestFront
from pivotd.api.layerwise import LAYERWISE_PATH
from pivotd.api.responses import json_response
from pivotd.apikeys import KeyRing
from pivotd.auth import AccessMiddleware
from pivotd.authsessions import SessionRing
from pivotd.datadir import RUNNING_MARKER, write_private
from pivotd.errors import (
    HttpError,
    InternalError,
    MethodNotAllowed,
    NotFound,
    PivotError,
    family_for_path,
    render_error,
    request_failed,
)
from pivotd.experiments.lifecycle import ExperimentEvents, ExperimentLifecycle
from pivotd.hub import Hub
from pivotd.inference import Inference
from pivotd.ingest import Ingest
from pivotd.jobs import GpuAllocator, Supervisor
from pivotd.jobs.commands import Jobs
from pivotd.jobs.service import Training
from pivotd.monitor.nvml import Nvml
from pivotd.monitor.sampler import ResourceMonitor
from pivotd.policy import Category, requirement
from pivotd.ratelimit import RateLimiter
from pivotd.refusals import Refusals
from pivotd.run_ends import RunEnds
from pivotd.runtokens import RunTokens
from pivotd.services import Services
from pivotd.settings import Settings
from pivotd.store import Retention, Store
from pivotd.telemetry.service import Telemetry
from shared import __version__

log = logging.getLogger(__name__)
OPENAPI_URL = "/api/v1/openapi.json"


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Build services in dependency order, each given what it uses, and its listeners in the order they run;
    the exit stack tears them down in reverse.

    Two dependencies run both ways and are cut by a small interface each. The supervisor's run listeners
    include the experiment events, whose actions go through the supervisor: `ExperimentEvents` (listeners)
    and `ExperimentLifecycle` (actions) are separate, built before and after it. A rule's `cancel` action needs
    the supervisor, whose run-end listener needs the alert engine: the engine knows actions by name only, and
    the handler is registered in `Actions` once the supervisor exists."""
    settings: Settings = app.state.settings
    retention = Retention(settings.max_runs, settings.max_steps_per_run, settings.max_db_bytes, settings.step_retention)
    async with AsyncExitStack() as stack:
        store = await stack.enter_async_context(Store.open(settings.db_path, retention))
        await app.state.keys.load(store)
        await app.state.sessions.load(store)
        hub = Hub(queue_size=settings.ws_queue_size)
        # Registered after the store: on the way down, sockets close (1001) before the final flush.
        stack.push_async_callback(hub.close_all, 1001)
        telemetry = await stack.enter_async_context(Telemetry(settings, store, hub))
        webhooks = await stack.enter_async_context(Webhooks(settings, store))
        notifier = Notifier(store, hub, webhooks)
        actions = Actions()
        alerts = await stack.enter_async_context(AlertEngine(settings, store, hub, notifier, actions))
        experiment_events = ExperimentEvents(store, hub)
        # Managed and external runs end with the same listeners, in this order: the notification and webhooks,
        # the run's alerts closed, then the experiment events.
        run_finished = (_run_finished(notifier, alerts), experiment_events.run_finished)
        # One NVML for the sampler and the GPU allocator: one initialisation, one retry schedule.
        nvml: Nvml = app.state.nvml or Nvml.system()
        supervisor = Supervisor(
            settings,
            store,
            hub,
            app.state.token,
            telemetry,
            on_finished=run_finished,
            on_started=(experiment_events.run_started,),
            on_epoch=(experiment_events.run_epoch,),
            gpus=GpuAllocator.system(nvml, lambda: supervisor.worker_pids()),
            run_tokens=app.state.run_tokens,
        )
        ingest = Ingest(store, hub, telemetry, alerts, removed_listeners=(supervisor.forget_run,))
        monitor = ResourceMonitor(settings, store, hub, listeners=(alerts.on_sample,), nvml=nvml)
        await stack.enter_async_context(monitor)
        # After the store and the alert engine: on the way down, workers stop (and their runs are
        # recorded, notified and their alerts closed) before those close.
        await stack.enter_async_context(supervisor)
        actions.register("cancel", _cancel_action(supervisor))
        inference = Inference(settings.inference_cache_size, settings.inference_device)
        stack.callback(inference.close)
        training = Training(settings, store, supervisor)
        jobs = Jobs(settings, store, supervisor)
        experiments_lifecycle = ExperimentLifecycle(settings, store, training, experiment_events)
        await experiments_lifecycle.cancel_stranded()  # a cancel the previous daemon did not finish
        run_ends = RunEnds(settings, store, hub, on_finished=run_finished, on_revived=(experiment_events.run_started,))
        await stack.enter_async_context(run_ends)
        app.state.services = Services(
            settings,
            store,
            hub,
            ingest,
            started_at=time.time(),
            monitor=monitor,
            alerts=alerts,
            notifier=notifier,
            webhooks=webhooks,
            actions=actions,
            supervisor=supervisor,
            training=training,
            jobs=jobs,
            inference=inference,
            experiments=experiments_lifecycle,
            telemetry=telemetry,
            run_ends=run_ends,
        )
        log.info("store open at %s", settings.db_path)
        await _report_unclean_shutdown(settings, notifier)
        stack.callback(_running_marker(settings).unlink, missing_ok=True)
        yield
        log.info("shutting down: flushing pending writes")


def _run_finished(notifier: Notifier, alerts: AlertEngine) -> Callable[[str, str, str | None], Awaitable[None]]:
    async def finished(run_id: str, state: str, error: str | None) -> None:
        await notifier.run_ended(run_id, state, error)
        # A run that ended is not a silent one: no `no_data_for` for it, and its open alerts resolve.
        await alerts.close_run(run_id, f"run {state}: {error}" if error else f"run {state}")

    return finished


def _cancel_action(supervisor: Supervisor) -> Callable[[str, dict[str, Any]], Awaitable[None]]:
    async def cancel(run_id: str, alert: dict[str, Any]) -> None:
        await supervisor.cancel(run_id)

    return cancel


def _running_marker(settings: Settings) -> Path:
    return settings.data_dir / RUNNING_MARKER


async def _report_unclean_shutdown(settings: Settings, notifier: Notifier) -> None:
    """A marker lives in the data dir while the daemon runs and goes on a clean exit: finding one at
    start means the previous daemon crashed, was killed, or lost power."""
    marker = _running_marker(settings)
    if marker.exists():
        previous = marker.read_text().strip() or "unknown"
        log.warning("the previous pivotd (pid %s) did not shut down cleanly", previous)
        await notifier.notify(
            "system",
            "high",
            f"pivotd restarted after an unclean shutdown (previous pid {previous})",
            {"previous_pid": previous},
            "daemon_recovered",
        )
    write_private(marker, str(os.getpid()))


def _render(request: Request, error: PivotError, headers: dict[str, str] | None = None) -> Response:
    status, body = render_error(error, family_for_path(request.url.path))
    request.app.state.refusals.record(requirement(request.method, request.url.path).category, status)
    return json_response(body, status_code=status, headers=headers)


def allowed_methods(request: Request) -> list[str]:
    """The methods the request's path supports, over every route whose path matches (Starlette's own 405 names only
    the first such route's, and one path is often several routes: GET and POST of a collection). FastAPI keeps an
    included router's routes behind a wrapper (`original_router`); they carry their full path."""
    methods: set[str] = set()
    pending = list(request.app.router.routes)
    while pending:
        route = pending.pop()
        included = getattr(route, "original_router", None)
        if included is not None:
            pending.extend(included.routes)
        elif getattr(route, "methods", None) and route.path_regex.match(request.scope["path"]):
            methods |= route.methods
    return sorted(methods)


def install_error_handlers(app: FastAPI) -> None:
    """Every failure, ours or the framework's, leaves in the envelope of the request's route family."""

    @app.exception_handler(PivotError)
    async def pivot_error(request: Request, exc: PivotError) -> Response:
        return _render(request, exc)

    @app.exception_handler(RequestValidationError)
    async def request_invalid(request: Request, exc: RequestValidationError) -> Response:
        return _render(request, request_failed(exc.errors()))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        if exc.status_code == 404:
            error: PivotError = NotFound(f"no route for {request.method} {request.url.path}")
        elif exc.status_code == 405:
            allowed = allowed_methods(request)
            error = MethodNotAllowed(
                f"method {request.method} is not allowed on {request.url.path}; use {', '.join(allowed)}"
            )
            return _render(request, error, {"Allow": ", ".join(allowed)})
        else:
            error = HttpError(exc.status_code, str(exc.detail))
        return _render(request, error, exc.headers)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> Response:
        return _render(request, InternalError("internal error; see the daemon log"))  # logged by _LogOnce


class _LogOnce:
    """Logs an unexpected exception of an HTTP request once, with its method and path.

    Starlette's ServerErrorMiddleware, inside this, answers it with the `Exception` handler's 500 and then
    re-raises it so that the server logs it; uvicorn would, without method or path, after a handler that logged
    it already. This catches the re-raise instead. A response cut short mid-body has no 500 to send: uvicorn
    closes the connection when this returns, and says so in a line of its own."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        try:
            await self.app(scope, receive, send)
        except Exception:
            log.exception("unhandled error on %s %s", scope["method"], scope["path"])


class PivotApp(FastAPI):
    ingest_front: OwnerIngestFront | None = None
    """The single-step ingest route's entry for the owner's requests (`pivotd.api.ingest_route`)."""

    def build_middleware_stack(self) -> ASGIApp:
        return _LogOnce(super().build_middleware_stack())

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.ingest_front is not None and scope["type"] == "http" and scope["path"] == LAYERWISE_PATH:
            await self.ingest_front(scope, receive, send)
        else:
            await super().__call__(scope, receive, send)


def serve(app: FastAPI, router: APIRouter) -> None:
    """Serve the router's own routes rather than an inclusion of it. FastAPI builds an included router's routes
    again for every app, lazily on its first request (each parameter and response model through a new pydantic
    TypeAdapter: 0.2-0.3 s of CPU here), although their module built them when it was imported; the routes carry
    their router's prefix, tags and responses already. A process's apps (one for a daemon, hundreds over a test
    run) share them."""
    app.router.routes.extend(router.routes)


def create_app(settings: Settings, token: str, nvml: Nvml | None = None) -> PivotApp:
    """`nvml`: the NVML seam to use instead of the system's (tests hand a stand-in `pynvml` to it)."""
    app = PivotApp(
        title="pivotd",
        version=__version__,
        description="PIVOT daemon: layer-wise training metrics, runs, scalars and live updates over /ws.",
        lifespan=lifespan,
        openapi_url=OPENAPI_URL,
        docs_url=None,  # pivotd.api.docs serves both pages with local assets
        redoc_url=None,
        # FastAPI's OpenTelemetry hook looks for global providers (environment reads) on every request, 3 us of
        # a ~170 us ingest step; pivotd exports its own metrics (/metrics) and configures no provider.
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    app.state.settings = settings
    app.state.token = token  # training workers report back with it
    app.state.nvml = nvml
    routers = (health, layerwise, scalars, run_ends_api, ws, socket, monitor, alerts_api, notifications, webhooks_api)
    for module in (
        *routers,
        models,
        models_v1,
        sessions,
        checkpoints,
        runlogs,
        datasets,
        experiments,
        statistics,
        exports,
        telemetry_api,
        jobs_api,
    ):
        serve(app, module.router)
    serve(app, apikeys_api.router)
    serve(app, auth_session_api.router)
    serve(app, prometheus.router)
    install_error_handlers(app)
    install_openapi(app)
    install_docs(app, OPENAPI_URL)
    app.state.refusals = Refusals()
    app.state.keys = KeyRing()  # loaded from the store in the lifespan, as the sessions are
    app.state.run_tokens = RunTokens()  # minted by the supervisor as runs' processes start
    app.state.sessions = SessionRing(app.state.keys, settings.session_lifetime_s)
    # The single-step route, inside the access middleware for what it must check (the owner's requests are
    # answered in front of the whole stack: `build_middleware_stack`).
    app.add_middleware(LayerwiseIngestRoute)
    app.ingest_front = OwnerIngestFront(partial(FastAPI.__call__, app), app.state, token, settings.trust_loopback)
    app.add_middleware(
        AccessMiddleware,
        token=token,
        trust_loopback=settings.trust_loopback,
        keys=app.state.keys,
        sessions=app.state.sessions,
        limiter=rate_limiter(settings),
        refusals=app.state.refusals,
        telemetry_max_body_bytes=settings.telemetry_max_body_bytes,
        run_tokens=app.state.run_tokens,
        max_body_bytes=settings.max_body_bytes,
    )
    return app


def rate_limiter(settings: Settings) -> RateLimiter:
    limits = {
        Category.READ: settings.rate_limit_read_per_min,
        Category.WRITE: settings.rate_limit_write_per_min,
        Category.INGEST: settings.rate_limit_ingest_per_min,
        Category.TELEMETRY: settings.rate_limit_telemetry_events_per_min,
        Category.EXPORT: settings.rate_limit_export_per_min,
    }
    return RateLimiter(limits, settings.rate_limit_max_clients)
