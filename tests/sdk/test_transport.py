"""Delivery: a down or hung daemon never blocks the loop, memory stays bounded, buffered steps arrive later."""

from __future__ import annotations

import asyncio
import socket
import statistics
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import httpx
import pytest
import torch
from torch import nn
from torch.nn import functional as F

from shared.sdk import DROPPED_SCALAR, Monitor, Run
from shared.sdk.transport import Item, Transport
from tests.daemon import RunningDaemon, daemon_client, running_daemon
from tests.payloads import contract_payload
from tests.sdk.models import MLP, batch

# Its tests that take the `daemon` fixture read and write only their own run ids: they share the module's one.
pytestmark = pytest.mark.shared_daemon


def timed_loop(mon: Monitor, model: nn.Module, steps: int, capacity: int) -> tuple[list[float], list[float]]:
    """Train `steps` steps; the durations of `mon.step` on unmonitored and on monitored steps."""
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    x, y = batch(model)
    plain: list[float] = []
    monitored: list[float] = []
    for step in range(steps):
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        optimizer.step()
        start = time.perf_counter()
        mon.step(step, loss=loss)
        (monitored if mon.should_log(step) else plain).append(time.perf_counter() - start)
        optimizer.zero_grad()
        assert mon.stats.queued <= capacity
    return plain, monitored


async def test_daemon_down_then_up_delivers_the_newest_steps(tmp_path: Path, free_port: int) -> None:
    """Refused connections: entries wait (oldest dropped past capacity) and arrive once pivotd starts."""
    url = f"http://127.0.0.1:{free_port}"
    model = MLP()
    mon = Monitor(model, "offline", url=url, every=1, capacity=6)
    plain, monitored = timed_loop(mon, model, 12, capacity=6)
    assert max(monitored) < 0.25
    assert not await asyncio.to_thread(mon.flush, 0.2)  # nothing can be delivered yet

    # In this process: the monitor's sender is a thread of its own, so it reaches the daemon as from a script.
    async with running_daemon(tmp_path / "daemon", port=free_port), daemon_client(url) as http:
        assert await asyncio.to_thread(mon.flush, 20)
        stats = mon.stats
        # 12 steps x (layer-wise step + loss point) = 24 entries; the queue kept the newest 6.
        assert (stats.dropped, stats.sent_steps, stats.sent_points, stats.queued) == (18, 3, 3, 0)
        run = (await http.get("/api/v1/runs/offline")).json()
        assert [step["step"] for step in run["steps"]] == [9, 10, 11]
        series = (await http.get("/api/v1/runs/offline/scalars")).json()["series"]
        assert series["loss"]["steps"] == [9, 10, 11]
        assert series[DROPPED_SCALAR] == {"steps": [11], "values": [18.0], "timestamps": [None]}
        assert not await asyncio.to_thread(mon.close)  # what was queued arrived, but 18 entries were dropped
        assert (await http.get("/api/v1/runs/offline")).json()["status"] == "succeeded"  # ended all the same


@pytest.fixture
def hung_daemon(free_port: int) -> Iterator[str]:
    """A port that accepts TCP connections and never answers: requests hang until their timeout."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", free_port))
        listener.listen(64)
        yield f"http://127.0.0.1:{free_port}"


def test_hung_daemon_never_blocks_the_loop(hung_daemon: str) -> None:
    """step() stays in microseconds while the sender thread waits on a daemon that does not answer."""
    model = MLP()
    mon = Monitor(model, "hung", url=hung_daemon, every=10, capacity=8)
    plain, monitored = timed_loop(mon, model, 60, capacity=8)
    # A blocked call would take the 10 s request timeout; the bounds leave room for a loaded test machine.
    assert statistics.median(plain) < 500e-6
    assert max(plain) < 0.1
    assert max(monitored) < 0.25
    assert mon.stats.queued <= 8
    assert mon.stats.dropped > 0
    start = time.monotonic()
    assert not mon.close(timeout=0.3)  # bounded: gives up and says so
    assert time.monotonic() - start < 2.5
    assert mon.stats.sent_steps == 0


def test_log_is_microseconds_and_bounded(free_port: int) -> None:
    run = Run("bounded", url=f"http://127.0.0.1:{free_port}", capacity=100)
    start = time.perf_counter()
    for step in range(2000):
        run.log(step, {"train/loss": 1.0 / (step + 1)}, lr=0.1)
    per_call = (time.perf_counter() - start) / 2000
    assert per_call < 50e-6
    stats = run.stats
    assert stats.queued <= 100
    assert stats.dropped >= 1900
    assert not run.finish(timeout=0.2)


async def test_validation_errors_are_not_retried(daemon: RunningDaemon, http: httpx.AsyncClient) -> None:
    """A 4xx is final: counted as rejected, never retried. The batch route is atomic, so a refused batch is
    resent entry by entry and only the bad entry is lost."""
    transport = Transport("refused", url=daemon.url)
    transport.put(Item("layerwise", "refused", 0, {"metadata": {"run_id": "refused"}, "layer_statistics": []}))
    transport.put(Item("layerwise", "refused", 1, contract_payload("refused", step=1)))
    transport.put(Item("scalars", "refused", 1, {"step": 1, "values": {"ok": 1.0}}))
    assert await asyncio.to_thread(transport.flush, 10)
    stats = transport.stats
    assert (stats.rejected, stats.retries, stats.sent_steps, stats.sent_points) == (1, 0, 1, 1)
    assert [step["step"] for step in (await http.get("/api/v1/runs/refused")).json()["steps"]] == [1]
    assert stats.last_error is not None and stats.last_error.startswith("422 Unprocessable Entity: metadata.")
    assert not await asyncio.to_thread(transport.close)  # one entry was refused


async def test_non_finite_step_is_sent_alone_and_recorded(daemon: RunningDaemon, http: httpx.AsyncClient) -> None:
    """NaN statistics are not dropped silently: the daemon refuses the step but records an event naming it."""
    model = MLP()
    mon = Monitor(model, "diverged", url=daemon.url, every=1)
    x, y = batch(model)
    F.cross_entropy(model(x), y).backward()
    mon.step(0, loss=1.0)
    with torch.no_grad():
        model.head.weight[0, 0] = float("nan")
    model(x)
    mon.step(1, {"train/loss": float("nan")}, lr=0.1)
    assert await asyncio.to_thread(mon.flush, 10)
    stats = mon.stats
    assert (stats.sent_steps, stats.non_finite) == (1, 2)  # the step and the NaN loss
    run = (await http.get("/api/v1/runs/diverged")).json()
    assert [step["step"] for step in run["steps"]] == [0]
    layer_events = [event for event in run["events"] if (event["field"] or "").startswith("layer_statistics[4]")]
    assert [event["step"] for event in layer_events] == [1]  # names the step and the layer (head)
    assert any("train/loss" in (event["field"] or "") for event in run["events"])
    series = (await http.get("/api/v1/runs/diverged/scalars")).json()["series"]
    assert series["lr"]["steps"] == [1]  # the finite values of that step were kept
    assert await asyncio.to_thread(mon.close)


class Flaky(BaseHTTPRequestHandler):
    """Answers 503 (daemon overloaded) to the first request, 202 afterwards, and keeps what it accepted."""

    bodies: ClassVar[list[bytes]] = []
    refused: ClassVar[int] = 0

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["content-length"]))
        if not Flaky.refused:
            Flaky.refused += 1
            status, reply = 503, b'{"detail": {"error": "unavailable", "message": "busy"}}'
        else:
            Flaky.bodies.append(body)
            status, reply = 202, b'{"status": "accepted"}'
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)

    def log_message(self, format: str, *args: object) -> None:  # keep the test output clean
        pass


def test_server_errors_are_retried() -> None:
    """A 5xx is transient: the same entries are sent again (after the backoff, or at once on flush)."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), Flaky)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        transport = Transport("flaky", url=f"http://127.0.0.1:{server.server_port}", backoff_s=0.05, linger_s=0)
        transport.put(Item("scalars", "flaky", 0, {"step": 0, "values": {"loss": 1.0}}))
        assert transport.flush(10)
        stats = transport.stats
        assert (stats.retries, stats.sent_points, stats.rejected) == (1, 1, 0)
        assert stats.last_error is not None and stats.last_error.startswith("503")
        assert len(Flaky.bodies) == 1 and b'"loss":1.0' in Flaky.bodies[0]
        assert transport.close()
    finally:
        server.shutdown()
        server.server_close()
