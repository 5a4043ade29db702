"""Run ids `.` and `..` name directories (`<data_dir>/runs/<run_id>/`): refused wherever a run id enters."""

from __future__ import annotations

import asyncio
import re
import sqlite3
from pathlib import Path

import httpx
import pytest

from shared.client import PivotAPIError, PivotClient
from shared.models.layerwise import is_valid_run_id
from shared.sdk import Run
from tests.daemon import RunningDaemon, running_daemon
from tests.payloads import contract_payload

# One daemon for the module: dot run ids are refused, so nothing is stored.
pytestmark = pytest.mark.shared_daemon

DOTS = [".", ".."]
# httpx resolves `.` and `..` segments before sending; percent-encoded, they reach the route as the id.
ENCODED = {".": "%2E", "..": "%2E%2E"}


def sentinels(data_dir: Path) -> list[Path]:
    """Files where deleting run `..` (or `.`) would look for a run's artifacts: the data dir and runs dir."""
    paths = []
    for directory in (data_dir, data_dir / "runs"):
        for name in ("job.json", "epoch_0001.pth", "uploads/ckpt_x.pth"):
            path = directory / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("keep me")
            paths.append(path)
    return paths


def field_of(response: httpx.Response) -> str:
    """The first field a 422 names, in whichever family's envelope it came."""
    assert response.status_code == 422, response.text
    body = response.json()
    if "detail" in body:  # family L: FastAPI's list
        return str(body["detail"][0]["field"])
    if isinstance(body["error"], str):  # families F/M: the message starts with the field
        return str(body["error"]).split(":", 1)[0]
    return str(body["error"]["details"][0]["field"])


def test_the_rule() -> None:
    for good in ("exp42", "a.b", ".hidden", "..a", "...", "a..", "r_0123abcd", "-", "x" * 128):
        assert is_valid_run_id(good), good
    for bad in ("", ".", "..", "a/b", "a b", "x" * 129):
        assert not is_valid_run_id(bad), bad


@pytest.mark.parametrize("run_id", DOTS)
async def test_payloads_naming_a_dot_run_are_refused_and_nothing_stored(
    daemon: RunningDaemon, http: httpx.AsyncClient, run_id: str
) -> None:
    assert field_of(await http.post("/api/v1/metrics/layerwise", json=contract_payload(run_id))) == "metadata.run_id"
    batch = [contract_payload("fine"), contract_payload(run_id)]
    assert field_of(await http.post("/api/v1/metrics/layerwise/batch", json=batch)) == "[1].metadata.run_id"
    points = [{"step": 1, "values": {"loss": 1.0}}]
    assert field_of(await http.post(f"/api/v1/runs/{ENCODED[run_id]}/scalars", json=points)) == "run_id"
    assert (await http.get("/api/v1/runs")).json() == {}

    experiment = (await http.post("/api/v1/experiments", json={"experiment": {"name": "e"}})).json()["data"]["id"]
    attach = await http.post(f"/api/v1/experiments/{experiment}/runs", json={"run_ids": [run_id]})
    assert field_of(attach) == "run_ids[0]"
    test = {"test_type": "two_sample_t_test", "metric": "loss", "groups": {"a": [run_id], "b": ["x"]}}
    assert field_of(await http.post("/api/v1/statistical-results", json={"test": test})).startswith("test.groups")

    files = {"file": ("ckpt.pth", b"not read", "application/octet-stream")}
    upload = await http.post("/api/v1/checkpoints", files=files, data={"session_id": run_id})
    assert field_of(upload) == "session_id"
    assert not (daemon.settings.data_dir / "uploads").exists() and not (daemon.settings.runs_path / "uploads").exists()


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/api/v1/runs/{id}"),
        ("GET", "/api/v1/runs/{id}/latest"),
        ("GET", "/api/v1/runs/{id}/scalars"),
        ("GET", "/api/v1/runs/{id}/logs"),
        ("GET", "/api/v1/runs/{id}/checkpoints"),
        ("GET", "/api/runs/{id}"),
        ("GET", "/api/runs/{id}/events"),
        ("POST", "/api/train/{id}/cancel"),
        ("GET", "/api/v1/training/sessions/{session}"),
        ("POST", "/api/v1/training/sessions/{session}/start"),
        ("GET", "/api/v1/metrics/{session}/history"),
        ("GET", "/api/v1/sse/training/{session}"),
    ],
)
async def test_paths_naming_a_dot_run_are_422(http: httpx.AsyncClient, method: str, path: str) -> None:
    for run_id in DOTS:
        response = await http.request(method, path.format(id=ENCODED[run_id], session=ENCODED[run_id]))
        assert field_of(response) == ("session_id" if "{session}" in path else "run_id")
    listed = await http.get("/api/v1/checkpoints", params={"session_id": ".."})
    assert field_of(listed) == "session_id"


async def raw_request(url: str, method: str, target: str) -> int:
    """The status of a request whose target is sent exactly as given (clients resolve `..` before sending)."""
    host, port = url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(f"{method} {target} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
    await writer.drain()
    status_line = await reader.readline()
    writer.close()
    await writer.wait_closed()
    return int(status_line.split()[1])


@pytest.mark.own_daemon  # plants files in the data directory
async def test_deleting_run_dot_dot_is_refused_and_deletes_no_file(
    daemon: RunningDaemon, http: httpx.AsyncClient
) -> None:
    kept = sentinels(daemon.settings.data_dir)
    for run_id in ("..", "%2E%2E", "%2e%2e", ".%2E", ".", "%2E"):
        assert await raw_request(daemon.url, "DELETE", f"/api/v1/runs/{run_id}") == 422, run_id
    with PivotClient(daemon.url) as client:
        for run_id in DOTS:
            with pytest.raises(PivotAPIError) as refused:
                await asyncio.to_thread(client.delete_run, run_id)
            assert refused.value.status == 422
    assert all(path.read_text() == "keep me" for path in kept)


async def test_a_legacy_dot_dot_run_evicted_by_retention_deletes_no_file(tmp_path: Path) -> None:
    """A `..` run stored before ids were checked: evicting it must not sweep the data directory."""
    data_dir = tmp_path / "state"
    async with running_daemon(data_dir):
        pass  # creates the database
    with sqlite3.connect(data_dir / "pivot.db") as conn:
        conn.execute("INSERT INTO runs (run_id, created_at, last_update) VALUES ('..', 0, 0)")
    kept = sentinels(data_dir)
    async with running_daemon(data_dir, max_runs=1) as daemon, httpx.AsyncClient(base_url=daemon.url) as http:
        assert ".." in (await http.get("/api/v1/runs")).json()
        assert (await http.post("/api/v1/metrics/layerwise", json=contract_payload("newer"))).status_code == 202
        supervisor = daemon.services.supervisor
        async with supervisor.swept:
            await supervisor.swept.wait_for(lambda: ".." in supervisor.swept_runs)
        assert list((await http.get("/api/v1/runs")).json()) == ["newer"]
    assert all(path.read_text() == "keep me" for path in kept)


async def test_the_openapi_document_states_the_rule(http: httpx.AsyncClient) -> None:
    document = (await http.get("/api/v1/openapi.json")).json()
    [param] = [p for p in document["paths"]["/api/v1/runs/{run_id}"]["delete"]["parameters"] if p["name"] == "run_id"]
    in_body = document["components"]["schemas"]["Metadata"]["properties"]["run_id"]
    for schema in (param["schema"], in_body):
        pattern = re.compile(schema["pattern"])
        assert pattern.search("exp42") and pattern.search("...") and schema["maxLength"] == 128
        assert not pattern.search(".") and not pattern.search("..")


def test_the_sdk_refuses_dot_runs() -> None:
    for run_id in DOTS:
        with pytest.raises(ValueError, match="not '.' or '..'"):
            Run(run_id, url="http://127.0.0.1:9")
