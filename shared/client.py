"""API client for pivotd: `PivotClient` (sync) and `AsyncPivotClient`, typed with the `shared` models.

URL and token default to `PIVOT_URL`/`PIVOT_TOKEN`, then the local daemon's `daemon.json` and token
file (see `shared.locations`), so a script on the GPU box needs no configuration.
"""

from __future__ import annotations

import json
import ssl
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any, Literal, TypeVar, overload
from urllib.parse import quote

import httpx
from pydantic import BaseModel, TypeAdapter

from shared.locations import resolve_token, resolve_url
from shared.models.alerts import (
    AlertList,
    AlertPublic,
    AlertRuleList,
    AlertRulePublic,
    AlertSeverity,
    AlertStatus,
    NotificationList,
    NotificationPublic,
    NotificationRead,
)
from shared.models.apikeys import ApiKeyCreated, ApiKeyList, ApiKeyPublic
from shared.models.checkpoints import CheckpointDeleted, CheckpointList, CheckpointPublic, RunCheckpoint, RunCheckpoints
from shared.models.datasets import DigitSamples
from shared.models.envelopes import Data, Page
from shared.models.errors import describe_error
from shared.models.experiments import (
    FINAL_EXPERIMENT_STATUSES,
    ComparisonReport,
    ExperimentAction,
    ExperimentDetail,
    ExperimentExport,
    ExperimentPublic,
    ExperimentRun,
    ExportPart,
    RunsAttached,
    StatisticalResult,
)
from shared.models.jobs import JobAccepted, JobQueue, JobSpec
from shared.models.layerwise import LayerwisePayload, Step
from shared.models.logs import LogLevel, RunLogLine, RunLogs
from shared.models.monitor import Health, ResourceSample
from shared.models.registry import (
    CancelRequested,
    Inference,
    ManagedRun,
    ManagedRunPage,
    ModelSummary,
    Params,
    PixelInference,
    TrainQueued,
)
from shared.models.runs import (
    FINAL_STATES,
    Accepted,
    BatchAccepted,
    EndStatus,
    FinishedRun,
    LiteRunDetail,
    RunDetail,
    RunEnd,
    RunSummary,
)
from shared.models.scalars import ScalarPoint, ScalarsAccepted, ScalarsResponse
from shared.models.sessions import SessionCreated, SessionMetricsMessage, SessionPublic, SessionStarted, SessionStopped
from shared.models.training import FINAL_SESSION_STATUSES

_RUNS = TypeAdapter(dict[str, RunSummary])
_KEY_CREATED = TypeAdapter(Data[ApiKeyCreated])
_MODELS = TypeAdapter(list[ModelSummary])
Payload = LayerwisePayload | Mapping[str, Any]
_T = TypeVar("_T", bound=BaseModel)


def _segment(value: str) -> str:
    """An id as one path segment: `/`, `?`, `#` and `%` in it are quoted, so it cannot name another route; so are
    the dots of `.` and `..`, which httpx would otherwise resolve against the path before it (the daemon refuses
    both as ids)."""
    return quote(value, safe="") if value not in (".", "..") else value.replace(".", "%2E")


class PivotAPIError(Exception):
    """A non-2xx answer, whichever of the daemon's error envelopes it came in."""

    def __init__(self, status: int, code: str, message: str, body: Any = None) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.body = body


def _raise_for(response: httpx.Response) -> None:
    if response.is_success:
        return
    try:
        body = response.json()
    except ValueError:
        raise PivotAPIError(response.status_code, "http_error", response.text[:200]) from None
    code, message = describe_error(body)
    raise PivotAPIError(response.status_code, code or "http_error", message or response.reason_phrase, body)


def _encode(payload: Payload | BaseModel) -> bytes:
    if isinstance(payload, BaseModel):
        return payload.model_dump_json(exclude_none=True).encode()
    return json.dumps(payload).encode()


def _encode_many(payloads: Iterable[Payload | BaseModel]) -> bytes:
    return b"[" + b",".join(_encode(p) for p in payloads) + b"]"


def _scalar_body(
    points: Sequence[ScalarPoint | Mapping[str, Any]],
    experiment_id: str | None,
    group: str | None,
    tags: list[str] | None,
) -> bytes:
    encoded = _encode_many(points)
    extras = {k: v for k, v in (("experiment_id", experiment_id), ("group", group), ("tags", tags)) if v is not None}
    if not extras:
        return encoded
    return b'{"points":' + encoded + b"," + json.dumps(extras).encode()[1:]


def _tls(url: str) -> ssl.SSLContext | bool:
    """What the client verifies TLS with: httpx's default (the CA bundle, which costs about 30 ms to load, for every
    client) for an https URL; for a plain-http daemon a context without certificates, which its requests never use
    and which would refuse any https server (fails closed)."""
    return True if url.lower().startswith("https:") else ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)


def _headers(token: str | None) -> dict[str, str]:
    headers = {"content-type": "application/json", "user-agent": "pivot-client"}
    if token:
        headers["authorization"] = f"Bearer {token}"
    return headers


class _Base:
    def __init__(self, url: str | None, token: str | None) -> None:
        self.url = resolve_url(url)
        self.token = resolve_token(token, self.url)

    @property
    def ws_url(self) -> str:
        return "ws" + self.url.removeprefix("http") + "/ws"


FINAL_SESSION_STATES = FINAL_SESSION_STATUSES
"""Kept for callers that imported it from here; defined in `shared.models.training`."""


_PER_PAGE = 100
"""The most rows a paged list answers at once."""


def _experiment_path(experiment_id: str, *rest: str) -> str:
    return "/".join(("/api/v1/experiments", _segment(experiment_id), *rest))


def _experiment_fields(
    name: str, config: Mapping[str, Any] | None, description: str | None, tags: Sequence[str]
) -> dict[str, Any]:
    fields: dict[str, Any] = {"name": name, "config": dict(config or {}), "tags": list(tags)}
    return fields if description is None else fields | {"description": description}


def _test(
    experiment_id: str,
    groups: Sequence[str] | Mapping[str, Sequence[str]],
    metric: str,
    test_type: str,
    options: Mapping[str, Any],
) -> dict[str, Any]:
    return {
        "experiment_id": experiment_id,
        "test_type": test_type,
        "groups": {label: list(ids) for label, ids in groups.items()} if isinstance(groups, Mapping) else list(groups),
        "metric": metric,
        **({"options": dict(options)} if options else {}),
    }


def _result_filters(experiment_id: str | None, test_type: str | None) -> dict[str, str]:
    found = (("filter[experiment_id]", experiment_id), ("filter[test_type]", test_type))
    return {key: value for key, value in found if value is not None}


def _export_body(format: str, include: Sequence[str] | None) -> dict[str, Any]:
    return {"format": format, **({"include": list(include)} if include is not None else {})}


StepsShown = Literal["none", "latest", "all"]


def _run_query(run_id: str, steps: StepsShown, lite: bool) -> tuple[str, dict[str, str]]:
    return f"/api/v1/runs/{_segment(run_id)}", {"steps": steps, "lite": str(lite).lower()}


def _train_request(
    architecture: Mapping[str, Any] | None, hyperparams: Mapping[str, Any] | None, model_id: str | None
) -> tuple[str, dict[str, Any]]:
    """The path and body that queue a run: of a stored model (`model_id`), or of an inline architecture."""
    if model_id is not None:
        return f"/api/models/{_segment(model_id)}/train", {
            "hyperparams": hyperparams
        } if hyperparams is not None else {}
    if architecture is None:
        raise ValueError("give an architecture or a model_id")
    return "/api/train", {"architecture": architecture, "hyperparams": hyperparams or {}}


def _infer_body(param_id: str, inputs: Sequence[Sequence[float]], logits: bool) -> dict[str, Any]:
    return {"param_id": param_id, "inputs": [list(x) for x in inputs],
            "return": {"logits": logits, "probabilities": True, "labels": True}}  # fmt: skip


def _digit_params(count: int, offset: int) -> dict[str, int]:
    return {"count": count, "offset": offset}


def _logs_path(run_id: str) -> str:
    return f"/api/v1/runs/{_segment(run_id)}/logs"


def _logs_params(level: LogLevel | None, since: str | float | None, tail: int) -> dict[str, Any]:
    params: dict[str, Any] = {"tail": tail}
    if level is not None:
        params["level"] = str(level)
    if since is not None:
        params["since"] = str(since)
    return params


def _sse_events(lines: Iterator[str]) -> Iterator[tuple[str, Any]]:
    """(event, data) pairs of a Server-Sent Events stream; comments (keep-alives) are skipped."""
    event, data = "message", []
    for line in lines:
        if line.startswith("event: "):
            event = line[7:]
        elif line.startswith("data: "):
            data.append(line[6:])
        elif line == "" and data:
            yield event, json.loads("\n".join(data))
            event, data = "message", []


class PivotClient(_Base):
    """Blocking client; use as a context manager or call `close()`.

    Also spelled `PIVOTClient(base_url=...)`; both spellings work.
    """

    def __init__(
        self, url: str | None = None, token: str | None = None, timeout: float = 10.0, *, base_url: str | None = None
    ) -> None:
        super().__init__(url or base_url, token)
        self._http = httpx.Client(
            base_url=self.url, headers=_headers(self.token), timeout=timeout, verify=_tls(self.url)
        )

    def __enter__(self) -> PivotClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def _call(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        response = self._http.request(method, path, **kwargs)
        _raise_for(response)
        return response

    def health(self) -> Health:
        return Health.model_validate_json(self._call("GET", "/health").content)

    def resources(self) -> ResourceSample:
        """The latest resource sample (CPU, memory, swap, disk, load, GPUs)."""
        return ResourceSample.model_validate_json(self._call("GET", "/api/v1/monitor/resources").content)

    def post_layerwise(self, payload: Payload) -> Accepted:
        return Accepted.model_validate_json(
            self._call("POST", "/api/v1/metrics/layerwise", content=_encode(payload)).content
        )

    def post_layerwise_batch(self, payloads: Iterable[Payload]) -> BatchAccepted:
        response = self._call("POST", "/api/v1/metrics/layerwise/batch", content=_encode_many(payloads))
        return BatchAccepted.model_validate_json(response.content)

    def post_scalars(
        self,
        run_id: str,
        points: Sequence[ScalarPoint | Mapping[str, Any]],
        *,
        experiment_id: str | None = None,
        group: str | None = None,
        tags: list[str] | None = None,
    ) -> ScalarsAccepted:
        body = _scalar_body(points, experiment_id, group, tags)
        return ScalarsAccepted.model_validate_json(
            self._call("POST", f"/api/v1/runs/{_segment(run_id)}/scalars", content=body).content
        )

    def list_runs(self, **params: Any) -> dict[str, RunSummary]:
        return _RUNS.validate_json(self._call("GET", "/api/v1/runs", params=params).content)

    @overload
    def get_run(self, run_id: str, *, steps: StepsShown = "all", lite: Literal[False] = False) -> RunDetail: ...
    @overload
    def get_run(self, run_id: str, *, steps: StepsShown = "all", lite: Literal[True]) -> LiteRunDetail: ...
    def get_run(self, run_id: str, *, steps: StepsShown = "all", lite: bool = False) -> RunDetail | LiteRunDetail:
        """A run with its steps (`lite`: compact layers, `shared.models.layerwise.LiteLayer`)."""
        path, params = _run_query(run_id, steps, lite)
        return (LiteRunDetail if lite else RunDetail).model_validate_json(
            self._call("GET", path, params=params).content
        )

    def latest(self, run_id: str) -> Step:
        return Step.model_validate_json(self._call("GET", f"/api/v1/runs/{_segment(run_id)}/latest").content)

    def scalars(self, run_id: str, names: Sequence[str] | None = None, max_points: int = 2000) -> ScalarsResponse:
        params: dict[str, Any] = {"max_points": max_points}
        if names:
            params["names"] = ",".join(names)
        return ScalarsResponse.model_validate_json(
            self._call("GET", f"/api/v1/runs/{_segment(run_id)}/scalars", params=params).content
        )

    def delete_run(self, run_id: str) -> None:
        self._call("DELETE", f"/api/v1/runs/{_segment(run_id)}")

    def finish_run(self, run_id: str, status: EndStatus = "succeeded", error: str | None = None) -> FinishedRun:
        """End a script's run (`POST /api/v1/runs/{id}/finish`); the SDK's `finish()` does it for its runs."""
        body = RunEnd(status=status, error=error).model_dump_json(exclude_none=True).encode()
        return FinishedRun.model_validate_json(
            self._call("POST", f"/api/v1/runs/{_segment(run_id)}/finish", content=body).content
        )

    # -- managed training: models, runs, inference ---------------------------------------------------------------

    def _json(self, method: str, path: str, body: Any = None, **kwargs: Any) -> Any:
        if body is not None:
            kwargs["content"] = json.dumps(body).encode()
        return self._call(method, path, **kwargs).json()

    def _model(self, model: type[_T], method: str, path: str, body: Any = None, **kwargs: Any) -> _T:
        if body is not None:
            kwargs["content"] = json.dumps(body).encode()
        return model.model_validate_json(self._call(method, path, **kwargs).content)

    def models(self) -> list[ModelSummary]:
        """Every model definition with its training summary."""
        return _MODELS.validate_json(self._call("GET", "/api/models").content)

    def create_model(
        self, architecture: Mapping[str, Any], hyperparams: Mapping[str, Any] | None = None, **fields: Any
    ) -> ModelSummary:
        body = {"architecture": architecture, **({"hyperparams": hyperparams} if hyperparams else {}), **fields}
        return self._model(ModelSummary, "POST", "/api/models", body)

    def train(
        self,
        architecture: Mapping[str, Any] | None = None,
        hyperparams: Mapping[str, Any] | None = None,
        *,
        model_id: str | None = None,
    ) -> TrainQueued:
        """Queue a run: of a stored model (`model_id`), or of an inline architecture. Returns `run_id` and more."""
        path, body = _train_request(architecture, hyperparams, model_id)
        return self._model(TrainQueued, "POST", path, body)

    def run(self, run_id: str) -> ManagedRun:
        """A managed run: state, epoch, metrics, param_id once succeeded, error."""
        return self._model(ManagedRun, "GET", f"/api/runs/{_segment(run_id)}")

    def model_runs(self, model_id: str, limit: int = 100) -> list[ManagedRun]:
        runs: list[ManagedRun] = []
        cursor: str | None = None
        while True:
            params: dict[str, Any] = {"limit": limit, **({"cursor": cursor} if cursor else {})}
            page = self._model(ManagedRunPage, "GET", f"/api/models/{_segment(model_id)}/runs", params=params)
            runs += page.items
            cursor = page.next_cursor
            if cursor is None:
                return runs

    def cancel(self, run_id: str) -> CancelRequested:
        return self._model(CancelRequested, "POST", f"/api/train/{_segment(run_id)}/cancel")

    def run_events(self, run_id: str) -> Iterator[tuple[str, dict[str, Any]]]:
        """A run's `state` and `metric` events (history first) until its final state."""
        with self._http.stream(
            "GET", f"/api/runs/{_segment(run_id)}/events", timeout=httpx.Timeout(10, read=None)
        ) as response:
            if not response.is_success:
                response.read()
                _raise_for(response)
            yield from _sse_events(response.iter_lines())

    def wait_run(self, run_id: str) -> ManagedRun:
        """Block until the run finishes; returns it (check `state`)."""
        for event, data in self.run_events(run_id):
            if event == "state" and data["state"] in FINAL_STATES:
                break
        return self.run(run_id)

    def params(self, param_id: str) -> Params:
        """Trained parameters: `parameters` is `{"layers": [{"type", "W", "b"}, ...]}`."""
        return self._model(Params, "GET", f"/api/params/{_segment(param_id)}")

    def infer(
        self,
        inputs: Sequence[Sequence[float]],
        *,
        param_id: str | None = None,
        run_id: str | None = None,
        logits: bool = False,
    ) -> Inference:
        """Labels and probabilities for up to 512 inputs, by `param_id` or by a succeeded `run_id`."""
        if param_id is None:
            if run_id is None:
                raise ValueError("give param_id or run_id")
            param_id = self.run(run_id).param_id
            if param_id is None:
                raise ValueError(f"run {run_id} has no parameters (not succeeded)")
        return self._model(Inference, "POST", "/api/infer", _infer_body(param_id, inputs, logits))

    def infer_pixels(self, run_id: str, pixels: Sequence[float]) -> PixelInference:
        """One 28x28 image's label and probabilities, by a succeeded run (`{run_id, pixels}`)."""
        return self._model(PixelInference, "POST", "/api/infer", {"run_id": run_id, "pixels": list(pixels)})

    # -- training sessions ----------------------------------------------------------------------------------------

    def create_session(
        self,
        config_path: str | None = None,
        session_name: str | None = None,
        tags: list[str] | None = None,
        *,
        config: Mapping[str, Any] | None = None,
    ) -> SessionCreated:
        """A session from a config file under the daemon's config dir, or an inline `config`. Session answers
        are models that also index like dicts (`session['session_id']`)."""
        body = {k: v for k, v in (("config_path", config_path), ("config", config), ("session_name", session_name),
                                  ("tags", tags)) if v is not None}  # fmt: skip
        return self._model(SessionCreated, "POST", "/api/v1/training/sessions", body)

    def start_training(self, session_id: str) -> SessionStarted:
        return self._model(SessionStarted, "POST", f"/api/v1/training/sessions/{_segment(session_id)}/start")

    def stop_training(self, session_id: str) -> SessionStopped:
        return self._model(SessionStopped, "POST", f"/api/v1/training/sessions/{_segment(session_id)}/stop")

    def get_session(self, session_id: str) -> SessionPublic:
        return self._model(SessionPublic, "GET", f"/api/v1/training/sessions/{_segment(session_id)}")

    def stream_metrics(self, session_id: str) -> Iterator[SessionMetricsMessage]:
        """Per-epoch metrics (`epoch`, `train_loss`, `val_loss`, ...) as they come, until the session ends."""
        path = f"/api/v1/sse/training/{_segment(session_id)}"
        with self._http.stream("GET", path, timeout=httpx.Timeout(10, read=None)) as response:
            if not response.is_success:
                response.read()
                _raise_for(response)
            for event, data in _sse_events(response.iter_lines()):
                if event == "metrics":
                    yield SessionMetricsMessage.model_validate(data)
                elif event == "status" and data["status"] in FINAL_SESSION_STATUSES:
                    return

    def wait_for_completion(self, session_id: str) -> SessionPublic:
        """Block until the session ends; returns its final state (`status`, `latest_metrics`, `error`, ...)."""
        for _ in self.stream_metrics(session_id):
            pass
        return self.get_session(session_id)

    # -- experiments, statistics, exports, datasets, checkpoints, run logs -------------------------------------

    def _pages(self, item: type[_T], path: str, params: Mapping[str, Any], limit: int | None = None) -> list[_T]:
        """Every row of a paged list (at most `limit`), walked by cursor."""
        rows: list[_T] = []
        query = {**params, "per_page": min(_PER_PAGE, limit or _PER_PAGE)}
        while True:
            page = self._model(Page[item], "GET", path, params=query)
            rows += page.data
            if not page.meta.has_more or (limit is not None and len(rows) >= limit):
                return rows[:limit]
            query["cursor"] = page.meta.next_cursor

    def create_experiment(
        self,
        name: str,
        config: Mapping[str, Any] | None = None,
        *,
        description: str | None = None,
        tags: Sequence[str] = (),
    ) -> ExperimentPublic:
        """A new experiment; a `{"type": "sweep", ...}` config makes it startable (docs/training.md, Sweeps)."""
        body = {"experiment": _experiment_fields(name, config, description, tags)}
        return self._model(Data[ExperimentPublic], "POST", "/api/v1/experiments", body).data

    def experiments(self, *, limit: int | None = None, **params: Any) -> list[ExperimentPublic]:
        """Experiments, newest first (all pages, or the first `limit`); `params` are the list's filters and sort:
        `experiments(**{"filter[status]": "running"})`."""
        return self._pages(ExperimentPublic, "/api/v1/experiments", params, limit)

    def experiment(self, experiment_id: str) -> ExperimentDetail:
        """One experiment with its runs, `progress` and `results_summary`."""
        return self._model(Data[ExperimentDetail], "GET", _experiment_path(experiment_id)).data

    def experiment_runs(self, experiment_id: str, **params: Any) -> list[ExperimentRun]:
        """Every run of the experiment (all pages), with group, status and latest metrics."""
        return self._pages(ExperimentRun, _experiment_path(experiment_id, "runs"), params)

    def attach_runs(self, experiment_id: str, run_ids: Sequence[str], group: str | None = None) -> list[ExperimentRun]:
        """Move existing runs into the experiment (under `group`, if given); returns them as they now stand."""
        body: dict[str, Any] = {"run_ids": list(run_ids), **({"group": group} if group is not None else {})}
        return self._model(RunsAttached, "POST", _experiment_path(experiment_id, "runs"), body).data

    def experiment_action(self, experiment_id: str, action: ExperimentAction) -> ExperimentDetail:
        """`start`, `pause`, `resume` or `cancel`; a transition the experiment does not allow is a 409."""
        return self._model(Data[ExperimentDetail], "POST", _experiment_path(experiment_id, action)).data

    def start_experiment(self, experiment_id: str) -> ExperimentDetail:
        """Queue the sweep's runs; a config that is not a sweep is refused (422)."""
        return self.experiment_action(experiment_id, "start")

    def pause_experiment(self, experiment_id: str) -> ExperimentDetail:
        return self.experiment_action(experiment_id, "pause")

    def resume_experiment(self, experiment_id: str) -> ExperimentDetail:
        return self.experiment_action(experiment_id, "resume")

    def cancel_experiment(self, experiment_id: str) -> ExperimentDetail:
        return self.experiment_action(experiment_id, "cancel")

    def clone_experiment(self, experiment_id: str, name: str | None = None) -> ExperimentDetail:
        body = {"name": name} if name is not None else {}
        return self._model(Data[ExperimentDetail], "POST", _experiment_path(experiment_id, "clone"), body).data

    def wait_experiment(
        self, experiment_id: str, poll_s: float = 1.0, timeout: float | None = None
    ) -> ExperimentDetail:
        """Poll until the experiment is completed, failed or cancelled; returns it. TimeoutError past `timeout`."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while (experiment := self.experiment(experiment_id)).status not in FINAL_EXPERIMENT_STATUSES:
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError(f"experiment {experiment_id} still {experiment.status} after {timeout} s")
            time.sleep(poll_s)
        return experiment

    def compare(
        self,
        experiment_id: str,
        groups: Sequence[str] | Mapping[str, Sequence[str]],
        metric: str,
        test_type: str = "two_sample_t_test",
        **options: Any,
    ) -> StatisticalResult:
        """Run and store a statistical test between groups (labels, or `{label: [run_id, ...]}`)."""
        body = {"test": _test(experiment_id, groups, metric, test_type, options)}
        return self._model(Data[StatisticalResult], "POST", "/api/v1/statistical-results", body).data

    def statistical_results(
        self, experiment_id: str | None = None, test_type: str | None = None
    ) -> list[StatisticalResult]:
        """Stored results, newest first: all, or those of one experiment and/or test."""
        return self._pages(StatisticalResult, "/api/v1/statistical-results", _result_filters(experiment_id, test_type))

    def statistical_result(self, result_id: str) -> StatisticalResult:
        path = f"/api/v1/statistical-results/{_segment(result_id)}"
        return self._model(Data[StatisticalResult], "GET", path).data

    def experiment_export(self, experiment_id: str, include: Sequence[ExportPart] | None = None) -> ExperimentExport:
        """The experiment's JSON export, parsed: the parts in `include` (default all)."""
        body = _export_body("json", include)
        return self._model(ExperimentExport, "POST", _experiment_path(experiment_id, "export"), body)

    def export_experiment(
        self, experiment_id: str, format: Literal["json", "csv"] = "json", include: Sequence[str] | None = None
    ) -> bytes:
        """The experiment's export file, as the daemon serves it for download."""
        body = json.dumps(_export_body(format, include))
        return self._call("POST", _experiment_path(experiment_id, "export"), content=body).content

    def comparison(self, experiment_ids: Sequence[str], metric: str | None = None) -> ComparisonReport:
        """The comparison report across experiments, parsed (its JSON form)."""
        body = {"experiment_ids": list(experiment_ids), "format": "json", **({"metric": metric} if metric else {})}
        return self._model(ComparisonReport, "POST", "/api/v1/export/comparison", body)

    def export_comparison(
        self, experiment_ids: Sequence[str], format: Literal["json", "csv", "latex"] = "latex", **fields: Any
    ) -> bytes:
        """A comparison report across experiments; `latex` is a booktabs table ready for a paper."""
        body = {"experiment_ids": list(experiment_ids), "format": format, **fields}
        return self._call("POST", "/api/v1/export/comparison", content=json.dumps(body)).content

    def digit_samples(self, count: int = 1, offset: int = 0) -> DigitSamples:
        """Images of the shipped digits dataset, scaled as training scales them (inputs for `infer`)."""
        return self._model(DigitSamples, "GET", "/api/v1/datasets/digits/samples", params=_digit_params(count, offset))

    def checkpoints(self, session_id: str | None = None, limit: int = 100) -> list[CheckpointPublic]:
        """Checkpoints, newest first: all, or one run's (`session_id`)."""
        params: dict[str, Any] = {"limit": limit, **({"session_id": session_id} if session_id else {})}
        return self._model(CheckpointList, "GET", "/api/v1/checkpoints", params=params).checkpoints

    def run_checkpoints(self, run_id: str) -> list[RunCheckpoint]:
        """A run's checkpoints, trainer-written and uploaded, oldest first."""
        return self._model(RunCheckpoints, "GET", f"/api/v1/runs/{_segment(run_id)}/checkpoints").data

    def download_checkpoint(self, checkpoint_id: str) -> bytes:
        return self._call("GET", f"/api/v1/checkpoints/{_segment(checkpoint_id)}/download").content

    def delete_checkpoint(self, checkpoint_id: str) -> CheckpointDeleted:
        return self._model(CheckpointDeleted, "DELETE", f"/api/v1/checkpoints/{_segment(checkpoint_id)}")

    def run_logs(
        self, run_id: str, *, level: LogLevel | None = None, since: str | float | None = None, tail: int = 200
    ) -> list[RunLogLine]:
        """A managed run's last `tail` log lines, oldest first: `level` and worse, after `since` (ISO or Unix s)."""
        return self._model(RunLogs, "GET", _logs_path(run_id), params=_logs_params(level, since, tail)).data

    # -- jobs: any command as a managed run ------------------------------------------------------------------

    def submit_job(self, command: Sequence[str], cwd: str, **fields: Any) -> JobAccepted:
        """Queue `command` (an argv list) to run in `cwd` on the daemon's machine; `fields` as `JobSpec`'s."""
        spec = JobSpec.model_validate({"command": list(command), "cwd": cwd, **fields})
        body = {"job": spec.model_dump(mode="json", exclude_unset=True)}
        return _JOB_ACCEPTED.validate_python(self._json("POST", "/api/v1/jobs", body)).data

    def job_queue(self) -> JobQueue:
        """Running runs, then queued ones in the order they start (jobs and built-in training runs)."""
        return self._model(JobQueue, "GET", "/api/v1/jobs")

    def cancel_job(self, run_id: str) -> JobAccepted:
        """Stop a job (SIGTERM to its process group, SIGKILL after the grace); returns once it ended."""
        return _JOB_ACCEPTED.validate_python(self._json("POST", f"/api/v1/jobs/{_segment(run_id)}/cancel")).data

    # -- API keys (admin) --------------------------------------------------------------------------------------

    def create_api_key(self, name: str, scopes: Sequence[str] = ("read",)) -> ApiKeyCreated:
        """A new key; `key` in the result is the secret, shown this once and never again."""
        body = json.dumps({"api_key": {"name": name, "scopes": list(scopes)}}).encode()
        return _KEY_CREATED.validate_json(self._call("POST", "/api/v1/api-keys", content=body).content).data

    def api_keys(self) -> list[ApiKeyPublic]:
        """Every key (revoked ones too), without the secrets."""
        return ApiKeyList.model_validate_json(self._call("GET", "/api/v1/api-keys").content).data

    def revoke_api_key(self, key_id: str) -> None:
        self._call("DELETE", f"/api/v1/api-keys/{_segment(key_id)}")


_JOB_ACCEPTED: TypeAdapter[Data[JobAccepted]] = TypeAdapter(Data[JobAccepted])

# The client's other spelling.
PIVOTClient = PivotClient


class AsyncPivotClient(_Base):
    """The same calls for asyncio programs (the daemon's demo feeder, the TUI)."""

    def __init__(self, url: str | None = None, token: str | None = None, timeout: float = 10.0) -> None:
        super().__init__(url, token)
        self._http = httpx.AsyncClient(
            base_url=self.url, headers=_headers(self.token), timeout=timeout, verify=_tls(self.url)
        )

    async def __aenter__(self) -> AsyncPivotClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _call(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        response = await self._http.request(method, path, **kwargs)
        _raise_for(response)
        return response

    async def health(self) -> Health:
        return Health.model_validate_json((await self._call("GET", "/health")).content)

    async def resources(self) -> ResourceSample:
        """The latest resource sample (CPU, memory, swap, disk, load, GPUs)."""
        return ResourceSample.model_validate_json((await self._call("GET", "/api/v1/monitor/resources")).content)

    async def post_layerwise(self, payload: Payload) -> Accepted:
        response = await self._call("POST", "/api/v1/metrics/layerwise", content=_encode(payload))
        return Accepted.model_validate_json(response.content)

    async def post_layerwise_batch(self, payloads: Iterable[Payload]) -> BatchAccepted:
        response = await self._call("POST", "/api/v1/metrics/layerwise/batch", content=_encode_many(payloads))
        return BatchAccepted.model_validate_json(response.content)

    async def post_scalars(
        self,
        run_id: str,
        points: Sequence[ScalarPoint | Mapping[str, Any]],
        *,
        experiment_id: str | None = None,
        group: str | None = None,
        tags: list[str] | None = None,
    ) -> ScalarsAccepted:
        body = _scalar_body(points, experiment_id, group, tags)
        response = await self._call("POST", f"/api/v1/runs/{_segment(run_id)}/scalars", content=body)
        return ScalarsAccepted.model_validate_json(response.content)

    async def list_runs(self, **params: Any) -> dict[str, RunSummary]:
        return _RUNS.validate_json((await self._call("GET", "/api/v1/runs", params=params)).content)

    @overload
    async def get_run(self, run_id: str, *, steps: StepsShown = "all", lite: Literal[False] = False) -> RunDetail: ...
    @overload
    async def get_run(self, run_id: str, *, steps: StepsShown = "all", lite: Literal[True]) -> LiteRunDetail: ...
    async def get_run(self, run_id: str, *, steps: StepsShown = "all", lite: bool = False) -> RunDetail | LiteRunDetail:
        path, params = _run_query(run_id, steps, lite)
        response = await self._call("GET", path, params=params)
        return (LiteRunDetail if lite else RunDetail).model_validate_json(response.content)

    async def latest(self, run_id: str) -> Step:
        return Step.model_validate_json((await self._call("GET", f"/api/v1/runs/{_segment(run_id)}/latest")).content)

    async def scalars(self, run_id: str, names: Sequence[str] | None = None, max_points: int = 2000) -> ScalarsResponse:
        params: dict[str, Any] = {"max_points": max_points}
        if names:
            params["names"] = ",".join(names)
        response = await self._call("GET", f"/api/v1/runs/{_segment(run_id)}/scalars", params=params)
        return ScalarsResponse.model_validate_json(response.content)

    async def delete_run(self, run_id: str) -> None:
        await self._call("DELETE", f"/api/v1/runs/{_segment(run_id)}")

    async def finish_run(self, run_id: str, status: EndStatus = "succeeded", error: str | None = None) -> FinishedRun:
        body = RunEnd(status=status, error=error).model_dump_json(exclude_none=True).encode()
        response = await self._call("POST", f"/api/v1/runs/{_segment(run_id)}/finish", content=body)
        return FinishedRun.model_validate_json(response.content)

    # -- managed training: runs, parameters, inference ---------------------------------------------------------

    async def train(
        self,
        architecture: Mapping[str, Any] | None = None,
        hyperparams: Mapping[str, Any] | None = None,
        *,
        model_id: str | None = None,
    ) -> TrainQueued:
        """Queue a run: of a stored model (`model_id`), or of an inline architecture."""
        path, body = _train_request(architecture, hyperparams, model_id)
        return await self._model(TrainQueued, "POST", path, body)

    async def run(self, run_id: str) -> ManagedRun:
        """A managed run: state, epoch, metrics, param_id once succeeded, error."""
        return await self._model(ManagedRun, "GET", f"/api/runs/{_segment(run_id)}")

    async def cancel(self, run_id: str) -> CancelRequested:
        return await self._model(CancelRequested, "POST", f"/api/train/{_segment(run_id)}/cancel")

    async def params(self, param_id: str) -> Params:
        """Trained parameters: `parameters` is `{"layers": [{"type", "W", "b"}, ...]}`."""
        return await self._model(Params, "GET", f"/api/params/{_segment(param_id)}")

    async def infer(
        self,
        inputs: Sequence[Sequence[float]],
        *,
        param_id: str | None = None,
        run_id: str | None = None,
        logits: bool = False,
    ) -> Inference:
        """Labels and probabilities for up to 512 inputs, by `param_id` or by a succeeded `run_id`."""
        if param_id is None:
            if run_id is None:
                raise ValueError("give param_id or run_id")
            param_id = (await self.run(run_id)).param_id
            if param_id is None:
                raise ValueError(f"run {run_id} has no parameters (not succeeded)")
        return await self._model(Inference, "POST", "/api/infer", _infer_body(param_id, inputs, logits))

    async def infer_pixels(self, run_id: str, pixels: Sequence[float]) -> PixelInference:
        """One 28x28 image's label and probabilities, by a succeeded run (`{run_id, pixels}`)."""
        return await self._model(PixelInference, "POST", "/api/infer", {"run_id": run_id, "pixels": list(pixels)})

    async def digit_samples(self, count: int = 1, offset: int = 0) -> DigitSamples:
        """Images of the shipped digits dataset, scaled as training scales them (inputs for `infer`)."""
        params = _digit_params(count, offset)
        return await self._model(DigitSamples, "GET", "/api/v1/datasets/digits/samples", params=params)

    # -- alerts and notifications ------------------------------------------------------------------------------

    async def alerts(
        self, status: AlertStatus | None = None, severity: AlertSeverity | None = None, limit: int = 100
    ) -> list[AlertPublic]:
        """Alerts, newest first."""
        params: dict[str, Any] = {"limit": limit}
        if status is not None:
            params["status"] = str(status)
        if severity is not None:
            params["severity"] = str(severity)
        return AlertList.model_validate_json((await self._call("GET", "/api/v1/alerts", params=params)).content).alerts

    async def alert_rules(self) -> list[AlertRulePublic]:
        return AlertRuleList.model_validate_json((await self._call("GET", "/api/v1/alerts/rules")).content).rules

    async def acknowledge_alert(self, alert_id: str, by: str | None = None, notes: str | None = None) -> AlertPublic:
        """Acknowledge an active alert; PivotAPIError 409 when it is not active."""
        body = json.dumps({"acknowledged_by": by, "notes": notes}).encode()
        response = await self._call("POST", f"/api/v1/alerts/{_segment(alert_id)}/acknowledge", content=body)
        return AlertPublic.model_validate_json(response.content)

    async def notifications(self, limit: int = 100, unread: bool | None = None) -> list[NotificationPublic]:
        """Notifications, newest first."""
        params: dict[str, Any] = {"limit": limit}
        if unread is not None:
            params["unread"] = str(unread).lower()
        response = await self._call("GET", "/api/v1/notifications", params=params)
        return NotificationList.model_validate_json(response.content).notifications

    async def mark_notification_read(self, notification_id: str) -> NotificationRead:
        response = await self._call("POST", f"/api/v1/notifications/{_segment(notification_id)}/read")
        return NotificationRead.model_validate_json(response.content)

    # -- experiments, statistics, run logs and checkpoints -----------------------------------------------------

    async def _model(self, model: type[_T], method: str, path: str, body: Any = None, **kwargs: Any) -> _T:
        if body is not None:
            kwargs["content"] = json.dumps(body).encode()
        return model.model_validate_json((await self._call(method, path, **kwargs)).content)

    async def _pages(self, item: type[_T], path: str, params: Mapping[str, Any], limit: int | None = None) -> list[_T]:
        rows: list[_T] = []
        query = {**params, "per_page": min(_PER_PAGE, limit or _PER_PAGE)}
        while True:
            page = await self._model(Page[item], "GET", path, params=query)
            rows += page.data
            if not page.meta.has_more or (limit is not None and len(rows) >= limit):
                return rows[:limit]
            query["cursor"] = page.meta.next_cursor

    async def experiments(self, *, limit: int | None = None, **params: Any) -> list[ExperimentPublic]:
        """Experiments, newest first (all pages, or the first `limit`)."""
        return await self._pages(ExperimentPublic, "/api/v1/experiments", params, limit)

    async def experiment(self, experiment_id: str) -> ExperimentDetail:
        return (await self._model(Data[ExperimentDetail], "GET", _experiment_path(experiment_id))).data

    async def experiment_runs(self, experiment_id: str, **params: Any) -> list[ExperimentRun]:
        return await self._pages(ExperimentRun, _experiment_path(experiment_id, "runs"), params)

    async def experiment_action(self, experiment_id: str, action: ExperimentAction) -> ExperimentDetail:
        """`start`, `pause`, `resume` or `cancel`; a transition the experiment does not allow is a 409."""
        return (await self._model(Data[ExperimentDetail], "POST", _experiment_path(experiment_id, action))).data

    async def experiment_export(
        self, experiment_id: str, include: Sequence[ExportPart] | None = None
    ) -> ExperimentExport:
        body = _export_body("json", include)
        return await self._model(ExperimentExport, "POST", _experiment_path(experiment_id, "export"), body)

    async def statistical_results(
        self, experiment_id: str | None = None, test_type: str | None = None
    ) -> list[StatisticalResult]:
        params = _result_filters(experiment_id, test_type)
        return await self._pages(StatisticalResult, "/api/v1/statistical-results", params)

    async def run_logs(
        self, run_id: str, *, level: LogLevel | None = None, since: str | float | None = None, tail: int = 200
    ) -> list[RunLogLine]:
        params = _logs_params(level, since, tail)
        return (await self._model(RunLogs, "GET", _logs_path(run_id), params=params)).data

    async def submit_job(self, command: Sequence[str], cwd: str, **fields: Any) -> JobAccepted:
        """As `PivotClient.submit_job`."""
        spec = JobSpec.model_validate({"command": list(command), "cwd": cwd, **fields})
        body = json.dumps({"job": spec.model_dump(mode="json", exclude_unset=True)}).encode()
        return _JOB_ACCEPTED.validate_json((await self._call("POST", "/api/v1/jobs", content=body)).content).data

    async def job_queue(self) -> JobQueue:
        return await self._model(JobQueue, "GET", "/api/v1/jobs")

    async def cancel_job(self, run_id: str) -> JobAccepted:
        response = await self._call("POST", f"/api/v1/jobs/{_segment(run_id)}/cancel")
        return _JOB_ACCEPTED.validate_json(response.content).data

    async def run_checkpoints(self, run_id: str) -> list[RunCheckpoint]:
        return (await self._model(RunCheckpoints, "GET", f"/api/v1/runs/{_segment(run_id)}/checkpoints")).data
