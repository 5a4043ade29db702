"""`GET /metrics` against a real daemon: what a scrape says after real traffic, read back with Prometheus's
parsers (prometheus_client's, and `promtool check metrics` where Prometheus is installed)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample
from websockets.asyncio.client import connect

from pivotd.api.prometheus_families import resource_families
from pivotd.monitor.nvml import Nvml
from pivotd.monitor.sampler import read_sample
from shared.models.alerts import AlertSeverity
from shared.models.monitor import ResourceSample
from shared.models.runs import RunState
from tests.daemon import TEST_TOKEN, RunningDaemon, daemon_client, running_daemon
from tests.payloads import contract_payload
from tests.test_monitor import fake_pynvml

GIB = 1024**3


def samples(text: str) -> dict[str, list[Sample]]:
    return {family.name: family.samples for family in text_string_to_metric_families(text)}


def value(found: dict[str, list[Sample]], family: str, name: str | None = None, **labels: str) -> float:
    matching = [s.value for s in found[family] if s.name == (name or family) and labels.items() <= s.labels.items()]
    assert len(matching) == 1, (family, labels, found[family])
    return matching[0]


async def scrape(http: httpx.AsyncClient) -> str:
    response = await http.get("/metrics")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
    return response.text


async def test_a_scrape_counts_what_was_ingested_refused_and_connected(daemon: RunningDaemon) -> None:
    async with daemon_client(daemon.url) as http, connect(daemon.ws_url):
        assert (await http.post("/api/v1/metrics/layerwise", json=contract_payload("prom-a", 1))).status_code == 202
        batch = [contract_payload("prom-b", step) for step in (1, 2)]
        assert (await http.post("/api/v1/metrics/layerwise/batch", json=batch)).status_code == 202
        points = [{"step": step, "values": {"loss": 1.0 / step, "lr": 0.1}} for step in (1, 2)]
        assert (await http.post("/api/v1/runs/prom-a/scalars", json=points)).status_code == 202
        refused = contract_payload("prom-a", 3) | {"metadata": {"run_id": "prom-a"}}  # no timestamp or step
        assert (await http.post("/api/v1/metrics/layerwise", json=refused)).status_code == 422
        assert (await http.get("/api/v1/runs/no-such-run")).status_code == 404  # a read: not an ingest refusal

        found = samples(await scrape(http))

    assert value(found, "pivot_ingest_steps", "pivot_ingest_steps_total") == 3
    assert value(found, "pivot_ingest_scalar_points", "pivot_ingest_scalar_points_total") == 4
    assert value(found, "pivot_ingest_requests", "pivot_ingest_requests_total", route="layerwise") == 2
    assert value(found, "pivot_ingest_requests", "pivot_ingest_requests_total", route="scalars") == 1
    refusals = [s for s in found["pivot_ingest_refused"] if s.name == "pivot_ingest_refused_total"]
    assert [(s.labels, s.value) for s in refusals] == [({"category": "ingest", "code": "422"}, 1.0)]
    assert value(found, "pivot_websocket_connections") == 1
    assert value(found, "pivot_runs", kind="external", state=RunState.RUNNING) == 2
    assert value(found, "pivot_runs", kind="managed", state=RunState.QUEUED) == 0
    assert value(found, "pivot_queue_length") == 0
    assert value(found, "pivot_training_slots") >= 1
    # Resource gauges from the first scrape on: the route samples when the sampler has not yet.
    assert 0 <= value(found, "pivot_cpu_utilization_percent") <= 100
    assert 0 < value(found, "pivot_memory_used_bytes") < value(found, "pivot_memory_total_bytes")
    assert value(found, "pivot_build_info", version=found["pivot_build_info"][0].labels["version"]) == 1


async def test_series_do_not_grow_with_runs_and_alerts_are_counted(daemon: RunningDaemon) -> None:
    async with daemon_client(daemon.url) as http:
        before = samples(await scrape(http))
        spec = {"name": "loss_high", "metric": "loss", "condition": "greater_than", "threshold": 5, "severity": "high"}
        assert (await http.post("/api/v1/alerts/rules", json=spec)).status_code == 201
        for run in range(5):
            response = await http.post(
                f"/api/v1/runs/prom-many-{run}/scalars", json=[{"step": 1, "values": {"loss": 9}}]
            )
            assert response.status_code == 202
        after = samples(await scrape(http))

    assert len(after["pivot_runs"]) == len(before["pivot_runs"]) == 3 * len(RunState)  # external, managed, job
    assert not any("run" in label for s in after["pivot_runs"] for label in s.labels if label != "kind")
    # Alerts are applied with the request that raised them (pivotd/ingest.py), so the scrape sees all five.
    assert value(after, "pivot_alerts_open", severity=AlertSeverity.HIGH, status="active") == 5
    assert value(after, "pivot_alerts_open", severity=AlertSeverity.LOW, status="active") == 0


def test_gpu_gauges_per_device_with_unknown_counters_left_out(tmp_path: Path) -> None:
    sample = ResourceSample.model_validate(read_sample(tmp_path, Nvml(fake_pynvml(devices=2))))
    families = {family.name: family for family in resource_families(sample)}
    utilization = families["pivot_gpu_utilization_percent"].samples
    assert [(s.labels["gpu"], s.labels["name"], s.value) for s in utilization] == [
        ("0", "NVIDIA Test GPU", 93),
        ("1", "NVIDIA Test GPU", 93),
    ]
    assert families["pivot_gpu_temperature_celsius"].samples[0].value == 71
    assert families["pivot_gpu_power_watts"].samples[0].value == pytest.approx(250.5)
    assert families["pivot_gpu_memory_total_bytes"].samples[0].value == pytest.approx(
        sample.gpu[0].memory_total_gb * GIB  # type: ignore[operator]
    )

    failing = ResourceSample.model_validate(
        read_sample(tmp_path, Nvml(fake_pynvml(failing=("nvmlDeviceGetTemperature",))))
    )
    names = {family.name for family in resource_families(failing)}
    assert "pivot_gpu_temperature_celsius" not in names  # not a made-up 0 °C
    assert "pivot_gpu_utilization_percent" in names


async def test_metrics_need_the_same_credentials_as_other_reads(tmp_path: Path) -> None:
    async with running_daemon(tmp_path, trust_loopback=False) as daemon, daemon_client(daemon.url) as http:
        assert (await http.get("/metrics")).status_code == 401
        owner = {"authorization": f"Bearer {TEST_TOKEN}"}
        created = await http.post(
            "/api/v1/api-keys", json={"api_key": {"name": "prom", "scopes": ["read"]}}, headers=owner
        )
        read_key = {"authorization": f"Bearer {created.json()['data']['key']}"}
        assert (await http.get("/metrics", headers=read_key)).status_code == 200
        # Refused ingest counts whoever refused it: here the access check, before the route.
        anonymous = await http.post("/api/v1/metrics/layerwise", json=contract_payload("prom-anon", 1))
        assert anonymous.status_code == 401
        found = samples((await http.get("/metrics", headers=read_key)).text)
    assert value(found, "pivot_ingest_refused", "pivot_ingest_refused_total", category="ingest", code="401") == 1


async def test_a_step_the_route_refuses_counts_as_an_ingest_refusal(tmp_path: Path) -> None:
    async with running_daemon(tmp_path) as daemon, daemon_client(daemon.url) as http:
        refused = await http.post("/api/v1/metrics/layerwise", json={"metadata": {}})
        assert refused.status_code == 422
        assert refused.json()["detail"][0]["loc"][0] == "body"
        found = samples((await http.get("/metrics")).text)
    assert value(found, "pivot_ingest_refused", "pivot_ingest_refused_total", category="ingest", code="422") == 1


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool (Debian's prometheus package) is not installed")
async def test_promtool_accepts_the_exposition(daemon: RunningDaemon, tmp_path: Path) -> None:
    async with daemon_client(daemon.url) as http:
        await http.post("/api/v1/metrics/layerwise", json=contract_payload("prom-tool", 1))
        text = await scrape(http)
    checked = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True, text=True, check=False)
    # promtool exits 0 for a valid exposition and lists naming-convention lints (if any) on stdout.
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert checked.stdout.strip() == "", checked.stdout
