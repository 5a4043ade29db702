"""Schema fuzz (schemathesis) of every operation in the daemon's own OpenAPI document, against a real pivotd.

The daemon is a process of its own with its own data directory, a token and `trust_loopback = false`, so the fuzz
authenticates the way a remote client does and reaches the handlers; with `webhook_deliveries = false`, URLs it
registers reach nothing. Objects are created first, by a daemon on the same data directory (a trained run, a
model, a session, an experiment, a webhook, an alert, ...), and their ids are offered for path parameters and
body fields half the time, so operations on existing objects get past their 404. Any 5xx, a request that takes
longer than `REQUEST_TIMEOUT_S` (a hang), or a traceback in the daemon's log fails the test.

The default run is bounded and seeded (CI finds the same cases every time) and split into a test per part
(`PARTS`), each on a copy of the seeded data directory, so that pytest-xdist's workers share it; the `fuzz_long` run
generates many more with a fresh seed, in one test, and is deselected unless `--fuzz-long` is given
(docs/testing.md).
"""

from __future__ import annotations

import fcntl
import json
import os
import random
import shutil
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from schemathesis.config import SchemathesisConfig
from schemathesis.engine import Status, StopReason, events
from schemathesis.schemas import BaseSchema

from tests.daemon import start_daemon_process
from tests.payloads import contract_payload
from tests.training.helpers import MLP, hyperparams

TOKEN = "fuzz-token-0123456789abcdef"
REQUEST_TIMEOUT_S = 10.0
"""Longer than any request of a healthy daemon takes, even on two busy cores: past it the request hung."""
DAEMON_ENV = {
    "PIVOT_TOKEN": TOKEN,
    "PIVOT_TRUST_LOOPBACK": "false",
    "PIVOT_WEBHOOK_DELIVERIES": "false",
    "PIVOT_TRAINING_SLOTS": "1",
    "PIVOT_WORKER_THREADS": "1",
}
FUZZED_ENV = DAEMON_ENV | {"PIVOT_WORKER_MEMORY_LIMIT_MB": "32", "PIVOT_JOBS_ENABLED": "false"}
"""The fuzzed daemon's training workers fail at once (torch cannot load in 32 MiB): fuzzed training requests are
valid often enough to queue hundreds of runs, which would train one after another on a core the fuzz needs. Jobs
are off: a generated argv in an existing directory would run as this user (their validation is fuzzed all the same,
and answers 403 once valid; tests/test_jobs.py runs real ones)."""


@dataclass(frozen=True)
class Budget:
    max_examples: int
    """Cases per operation in the fuzzing phase (the coverage phase adds its own, and the stateful phase)."""
    stateful_scenarios: int
    """Sequences of calls in the stateful phase, each of at most `stateful_steps`."""
    stateful_steps: int
    min_cases_per_operation: int
    """Fewer cases than this for each operation through the examples, coverage and fuzzing phases: the fuzz did
    not run, whatever it reported."""
    min_stateful_cases: int
    """The same for the stateful phase."""


DEFAULT = Budget(
    max_examples=5, stateful_scenarios=10, stateful_steps=10, min_cases_per_operation=20, min_stateful_cases=60
)
LONG = Budget(
    max_examples=150, stateful_scenarios=150, stateful_steps=50, min_cases_per_operation=90, min_stateful_cases=100
)
CHECKS = (
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_headers_conformance",
    "response_schema_conformance",
    "positive_data_acceptance",
)
BEYOND_THE_SCHEMA: dict[str, str] = {
    "POST /api/v1/alerts/rules": "the metric must be one the daemon knows; the condition decides threshold or range",
    "PUT /api/v1/alerts/rules/{rule_id}": "as POST /api/v1/alerts/rules",
    "PATCH /api/v1/alerts/rules/{rule_id}": "as POST /api/v1/alerts/rules, for the rule the change makes",
    "POST /api/v1/training/sessions": "exactly one of config and config_path; the path must name a file; layer shapes",
    "POST /api/v1/statistical-results": "groups and the metric must be the experiment's; `experiment_id` must exist",
    "POST /api/v1/experiments/{experiment_id}/statistical-results": "as POST /api/v1/statistical-results",
    "POST /api/v1/experiments/{experiment_id}/start": "only an experiment whose config is a sweep can start",
    "POST /api/v1/webhooks": "the URL's host must resolve",
    "POST /api/v1/experiments": "a free-form `config` holds no integer beyond 64 bits, no nesting past 64 levels",
    "PATCH /api/v1/experiments/{experiment_id}": "as POST /api/v1/experiments",
    "POST /api/v1/models": "as POST /api/v1/experiments; `config.architecture` as POST /api/models",
    "PATCH /api/v1/models/{model_id}": "as POST /api/v1/models",
    "POST /api/v1/metrics/layerwise": "layers must be sorted by depth_index",
    "POST /api/v1/runs/{run_id}/finish": "an `error` only with an unsuccessful status",
    "POST /api/v1/metrics/layerwise/batch": "as POST /api/v1/metrics/layerwise",
    "POST /api/v1/telemetry/events": "an event's timestamp must be recent enough to keep",
    "POST /api/v1/telemetry/export": "a field must name a column or a measurement the filter can hold",
    "GET /api/v1/telemetry/events": "`agg` and `agg_field`/`group_by` go together; the cursor must be one issued",
    "GET /api/v1/telemetry/aggregate": "`agg` and `metric` go together; `group_by` names a key or `event_name`",
    "GET /api/v1/experiments": "a cursor is valid only if the daemon issued it",
    "GET /api/v1/experiments/{experiment_id}/runs": "as GET /api/v1/experiments",
    "GET /api/v1/experiments/{experiment_id}/statistical-results": "as GET /api/v1/experiments",
    "GET /api/v1/statistical-results": "as GET /api/v1/experiments",
    "GET /api/v1/models": "as GET /api/v1/experiments",
    "GET /api/models/{model_id}/runs": "as GET /api/v1/experiments",
    "POST /api/models": "an architecture's layers must fit together (each one's input is the previous one's output)",
    "POST /api/train": "as POST /api/models",
    "POST /api/models/{model_id}/save": "as POST /api/models; a `run_id` must be a succeeded run of the model",
    "POST /api/infer": "an input must have the size the model takes",
    "POST /api/infer_adhoc": "as POST /api/models; the parameters must have the layers' shapes",
    "POST /api/v1/checkpoints": "the file must be a checkpoint torch loads",
    "POST /api/v1/jobs": "`cwd` must be an existing directory; `gpus` at most what pivotd may use",
}
"""Operations whose validators enforce rules a JSON schema cannot state (existence, cross-field rules, opaque
cursors), by schemathesis's label: `positive_data_acceptance` is not checked on them; a 422 there is the rule
doing its job. Every other operation accepts whatever its schema admits."""
DEFAULT_SEED = 20260212
"""The default run's seed: CI fuzzes the same cases every time. The long run takes a fresh one."""


PARTS: tuple[frozenset[str], ...] = (frozenset({"models and training", "checkpoints", "layer-wise metrics"}),)
"""The default run's unit parts by OpenAPI tag, and one more for every other tag: each part's operations go through
the examples, coverage and fuzzing phases (which take one operation at a time) in a test of its own, so that
xdist's workers share them. A tag's operations stay together: ids one of them answers feed the others' requests.
Each part costs a daemon of its own (its start and OpenAPI document, and the schema's load: about 1.5 s of CPU), so
there are as few as balance the workers (docs/performance.md)."""
UNIT_PHASES = ("examples", "coverage", "fuzzing")
ALL_PHASES = (*UNIT_PHASES, "stateful")
STATEFUL_PART = 0
"""The part whose daemon also runs the stateful phase, after the part's own: its sequences follow links from any
operation to any other, so it takes them all. Part 0 holds the training operations, and a daemon that trains
starts a fork server importing torch (about 4 s of CPU): the stateful phase's runs are forked from the same one."""


@dataclass(frozen=True)
class Pass:
    """One run of schemathesis's engine on the daemon: these phases, over the operations whose tags `select` picks
    (all of them without it)."""

    phases: tuple[str, ...]
    select: Callable[[list[str]], bool] | None = None


@dataclass(frozen=True)
class Seeded:
    data_dir: Path
    """A stopped daemon's data directory holding one object of each kind; each test fuzzes a copy of it."""
    known: dict[str, list[str]]
    """The objects' ids, by path parameter name."""


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory, worker_id: str) -> Seeded:
    """Seeded once per run: training the seed run and starting its daemon is most of a part's set-up. Under xdist
    the first worker to get here seeds into the run's temporary root while the others wait on the lock."""
    root = tmp_path_factory.getbasetemp()
    root = root if worker_id == "master" else root.parent
    with (root / "fuzz-seeded.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        data_dir, ids = root / "fuzz-seeded" / "state", root / "fuzz-seeded" / "ids.json"
        if not ids.is_file():
            shutil.rmtree(data_dir.parent, ignore_errors=True)  # a seeding that failed half-way
            known = seed_data_dir(data_dir)
            ids.write_text(json.dumps(known))
    return Seeded(data_dir, json.loads(ids.read_text()))


@pytest.mark.slow
@pytest.mark.timeout(240)
@pytest.mark.parametrize("part", range(len(PARTS) + 1))
def test_fuzz_every_operation(seeded: Seeded, part: int, tmp_path: Path) -> None:
    data_dir = tmp_path / "state"
    shutil.copytree(seeded.data_dir, data_dir)
    passes = [Pass(UNIT_PHASES, lambda tags: part_of(tags) == part)]
    if part == STATEFUL_PART:
        passes.append(Pass(("stateful",)))
    unit, *stateful = run_fuzz(data_dir, seeded.known, DEFAULT, DEFAULT_SEED, passes)
    assert unit.cases >= DEFAULT.min_cases_per_operation * unit.operations, unit
    for fuzzed in stateful:
        assert fuzzed.cases >= DEFAULT.min_stateful_cases, fuzzed


@pytest.mark.fuzz_long
@pytest.mark.timeout(3600)
def test_fuzz_every_operation_long(tmp_path: Path) -> None:
    seed, examples = os.environ.get("PIVOT_FUZZ_SEED"), os.environ.get("PIVOT_FUZZ_EXAMPLES")
    budget = replace(LONG, max_examples=int(examples), stateful_scenarios=int(examples)) if examples else LONG
    data_dir = tmp_path / "state"
    known = seed_data_dir(data_dir)
    (fuzzed,) = run_fuzz(data_dir, known, budget, int(seed) if seed else random.getrandbits(64), [Pass(ALL_PHASES)])
    assert fuzzed.cases >= budget.min_cases_per_operation * fuzzed.operations + budget.min_stateful_cases, fuzzed


def part_of(tags: list[str]) -> int:
    """The unit part of an operation with these tags: the first part naming one of them, else the last part."""
    return next((index for index, part in enumerate(PARTS) if part & set(tags)), len(PARTS))


def seed_data_dir(data_dir: Path) -> dict[str, list[str]]:
    """Objects of every kind created by a daemon on `data_dir`, stopped cleanly afterwards; their ids."""
    seeder = start_daemon_process(data_dir, env=DAEMON_ENV)
    try:
        with httpx.Client(base_url=seeder.url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=60) as http:
            assert http.get("/api/v1/runs", headers={"Authorization": ""}).status_code == 401  # a token is needed
            known = seed_objects(http, data_dir)
        seeder.signal(signal.SIGTERM)
        assert seeder.wait(60) == 0 and "Traceback" not in "".join(seeder.lines), "".join(seeder.lines)[-3000:]
    finally:
        seeder.stop()
    return known


def run_fuzz(
    data_dir: Path, known: dict[str, list[str]], budget: Budget, seed: int, passes: list[Pass]
) -> list[Fuzzed]:
    """Fuzz through each of `passes` in turn, on one daemon started on `data_dir`; fails on any problem the fuzz
    found (in any pass, the daemon's log and its exit included)."""
    daemon = start_daemon_process(data_dir, env=FUZZED_ENV)
    result = FuzzResult()
    try:
        fuzzed = [fuzz_pass(daemon.url, known, budget, seed, each, result) for each in passes]
        daemon.signal(signal.SIGTERM)
        code = daemon.wait(60)
    finally:
        daemon.stop()
    log = "".join(daemon.lines)
    if code != 0:
        result.report(f"the daemon exited with {code} after the fuzz:\n{log[-3000:]}")
    if "Traceback" in log:  # an unhandled error, whatever the response was; or one in a background task
        first = log.index("Traceback")
        result.report("the daemon logged a traceback:\n" + log[max(0, first - 500) : first + 4000])
    assert not result.problems, f"seed {seed} (PIVOT_FUZZ_SEED replays it)\n\n" + "\n\n".join(result.problems)
    assert result.stop_reasons == [StopReason.COMPLETED] * len(passes)
    return fuzzed


def fuzz_pass(
    url: str, known: dict[str, list[str]], budget: Budget, seed: int, each: Pass, result: FuzzResult
) -> Fuzzed:
    """Run schemathesis's engine once, as `each` says, recording into `result`; what it fuzzed."""
    config = SchemathesisConfig.from_dict(fuzz_config(known, budget, seed, each.phases))
    schema: BaseSchema = schemathesis.openapi.from_url(f"{url}/api/v1/openapi.json", config=config)
    operations = [operation.ok() for operation in schema.get_all_operations()]
    assert len(operations) >= 90  # every operation, not a part that happened to load
    if each.select is not None:
        chosen = [operation.label for operation in operations if each.select(operation.tags or [])]
        assert chosen, "a part without operations"
        # Excluded, not included: the per-operation settings above are include filters, which would add theirs.
        schema = schema.exclude(name=[operation.label for operation in operations if operation.label not in chosen])
        assert sorted(operation.ok().label for operation in schema.get_all_operations()) == sorted(chosen)
    started = time.monotonic()
    cases = result.cases
    for event in schemathesis.engine.from_schema(schema).execute():
        result.record(event)
    phases = ", ".join(each.phases)
    print(f"fuzz: {result.cases - cases} cases ({phases}) in {time.monotonic() - started:.0f} s, seed {seed}")
    return Fuzzed(result.cases - cases, len(list(schema.get_all_operations())))


@dataclass(frozen=True)
class Fuzzed:
    cases: int
    operations: int


@dataclass
class FuzzResult:
    cases: int = 0
    problems: list[str] = field(default_factory=list)
    stop_reasons: list[StopReason] = field(default_factory=list)
    """One per pass of the engine."""

    def record(self, event: events.EngineEvent) -> None:
        if isinstance(event, events.ScenarioFinished | events.FuzzScenarioFinished):
            self.cases += len(event.recorder.cases)
            for checks in event.recorder.checks.values():
                for check in checks:
                    if check.status is Status.FAILURE and check.failure_info is not None:
                        failure = check.failure_info.failure
                        self.report(f"{event.recorder.label}: {failure.title}: {failure.message}\n"
                                    f"{check.failure_info.code_sample}")  # fmt: skip
        elif isinstance(event, events.NonFatalError):  # a timeout (a hang), a dropped connection, an engine error
            self.report(f"{event.label}: {event.info.format()}")
        elif isinstance(event, events.FatalError):
            raise event.exception
        elif isinstance(event, events.EngineFinished):
            self.stop_reasons.append(event.stop_reason)

    def report(self, problem: str) -> None:
        """Kept for the assertion and shown at once under `-s`: a long run's first failure is seen before its end."""
        self.problems.append(problem)
        print(problem, file=sys.stderr, flush=True)


def fuzz_config(known: dict[str, list[str]], budget: Budget, seed: int, phases: tuple[str, ...]) -> dict[str, Any]:
    """schemathesis.toml's settings, as a dict: `CHECKS` on every response, `phases` on."""
    return {
        "seed": seed,
        "headers": {"Authorization": f"Bearer {TOKEN}"},
        "request-timeout": REQUEST_TIMEOUT_S,
        "workers": 1,
        "continue-on-failure": True,
        "checks": {"enabled": False} | {name: {"enabled": True} for name in CHECKS},
        "generation": {"max-examples": budget.max_examples, "database": "none"},
        "phases": {name: {"enabled": name in phases} for name in ALL_PHASES}
        | {
            "stateful": {
                "enabled": "stateful" in phases,
                "generation": {"max-examples": budget.stateful_scenarios},
                "max-steps": budget.stateful_steps,
            }
        },
        "dictionaries": {name: {"values": values} for name, values in known.items()},
        "operations": [
            {"include-name": label, "checks": {"positive_data_acceptance": {"enabled": False}}}
            for label in BEYOND_THE_SCHEMA
        ],
        # The same ids in request bodies: inference's `param_id`, a statistical test's `experiment_id`, ...
        "parameters": {
            f"{where}.{name}": {"dictionary": name, "probability": 0.5} for name in known for where in ("path", "body")
        },  # fmt: skip
    }


def seed_objects(http: httpx.Client, data_dir: Path) -> dict[str, list[str]]:
    """Objects of every kind the path parameters name, created through the API as a client would, by a daemon on
    `data_dir`; their ids by path parameter name. Runs and sessions are over before the fuzz starts, so their SSE
    streams end."""

    def created(response: httpx.Response) -> Any:
        assert response.status_code in (200, 201, 202), response.text
        return response.json()

    layerwise = contract_payload(run_id="fuzz_layerwise_run")
    created(http.post("/api/v1/metrics/layerwise", json=layerwise))
    rule = created(http.post("/api/v1/alerts/rules", json={
        "name": "hot_loss", "metric": "train_loss", "condition": "greater_than", "threshold": 5,
    }))  # fmt: skip
    created(http.post("/api/v1/runs/fuzz_scalar_run/scalars", json=[{"step": 7, "values": {"train_loss": 9.0}}]))
    model = created(http.post("/api/models", json={"name": "fuzz", "architecture": MLP}))
    trained = created(http.post(f"/api/models/{model['model_id']}/train", json={"hyperparams": hyperparams(epochs=1)}))
    run_id = trained["run_id"]
    with http.stream("GET", f"/api/runs/{run_id}/events", timeout=120) as stream:  # ends when the run ends
        assert stream.status_code == 200 and "succeeded" in "".join(stream.iter_text())
    params = created(http.get(f"/api/models/{model['model_id']}/runs"))
    config = {"architecture": MLP, "hyperparams": hyperparams()}
    session = created(http.post("/api/v1/training/sessions", json={"config": config}))
    session_id = session["session_id"]
    # The trained run's own checkpoint, plain tensors: this process need not import torch (~1.5 s of CPU) to write one.
    checkpoint_file = data_dir / "runs" / run_id / "epoch_0001.pth"
    upload = {"file": ("ckpt.pth", checkpoint_file.read_bytes(), "application/octet-stream")}
    checkpoint = created(http.post("/api/v1/checkpoints", files=upload, data={"session_id": session_id}))
    created(http.post(f"/api/v1/training/sessions/{session_id}/stop"))
    model_v1 = created(http.post("/api/v1/models", json={"model": {"name": "fuzz", "config": {"architecture": MLP}}}))
    experiment = created(http.post("/api/v1/experiments", json={"experiment": {"name": "fuzz"}}))
    hook = created(http.post("/api/v1/webhooks", json={"url": "http://127.0.0.1:9/hook", "events": ["*"]}))
    key = created(http.post("/api/v1/api-keys", json={"api_key": {"name": "fuzz", "scopes": ["read"]}}))
    alerts = created(http.get("/api/v1/alerts"))["alerts"]
    notifications = created(http.get("/api/v1/notifications"))["notifications"]
    return {
        "run_id": [run_id, session_id, "fuzz_layerwise_run", "fuzz_scalar_run"],
        "model_id": [model["model_id"], model_v1["data"]["id"]],
        "session_id": [session_id, run_id],
        "param_id": [run["param_id"] for run in params["items"] if run.get("param_id")],
        "checkpoint_id": [str(checkpoint["checkpoint_id"])],
        "experiment_id": [experiment["data"]["id"]],
        "rule_id": [rule["rule_id"]],
        "alert_id": [alert["alert_id"] for alert in alerts],
        "notification_id": [notification["id"] for notification in notifications],
        "webhook_id": [hook["webhook_id"]],
        "key_id": [key["data"]["id"]],
    }
