"""Nothing acknowledged is lost: a pivotd killed with SIGKILL or stopped with SIGTERM keeps every 202'd step."""

from __future__ import annotations

import signal
import threading
from pathlib import Path

import httpx
import pytest

from tests.daemon import PLAIN_HTTP, start_daemon_process
from tests.payloads import layerwise_payload
from tests.training.helpers import MLP, hyperparams

pytestmark = pytest.mark.slow


def stream_posts(url: str, run_id: str, acknowledged: list[int], enough: threading.Event) -> None:
    """Post steps one by one until the daemon goes away, recording each step that got a 202."""
    with httpx.Client(verify=PLAIN_HTTP, base_url=url, timeout=5) as http:
        step = 0
        while True:
            try:
                response = http.post("/api/v1/metrics/layerwise", json=layerwise_payload(run_id, step))
            except httpx.HTTPError:
                return
            if response.status_code == 202:
                acknowledged.append(step)
            if len(acknowledged) == 50:
                enough.set()
            step += 1


def steps_on_disk(data_dir: Path, *run_ids: str, stop: int = signal.SIGTERM) -> dict[str, set[int]]:
    """The steps of each run that a pivotd started afterwards on `data_dir` serves, as a restart would; that
    daemon is then stopped with `stop`, and must exit 0."""
    daemon = start_daemon_process(data_dir)
    try:
        with httpx.Client(verify=PLAIN_HTTP, base_url=daemon.url) as http:
            steps = {
                run_id: {s["step"] for s in http.get(f"/api/v1/runs/{run_id}").json()["steps"]} for run_id in run_ids
            }
        daemon.signal(stop)
        assert daemon.wait(timeout=15) == 0
        return steps
    finally:
        daemon.stop()


def test_sigkill_mid_stream_loses_no_acknowledged_step(tmp_path: Path) -> None:
    """Four writers at once, each on its own run (one writer alone is the same path, less contended)."""
    daemon = start_daemon_process(tmp_path)
    workers = 4
    acknowledged: list[list[int]] = [[] for _ in range(workers)]
    enough = [threading.Event() for _ in range(workers)]
    threads = [
        threading.Thread(target=stream_posts, args=(daemon.url, f"run{i}", acknowledged[i], enough[i]))
        for i in range(workers)
    ]
    for thread in threads:
        thread.start()
    for event in enough:  # kill mid-stream, once every writer has 50 acknowledged steps
        assert event.wait(30)
    daemon.signal(signal.SIGKILL)
    assert daemon.wait() == -signal.SIGKILL
    for thread in threads:
        thread.join(10)
    on_disk = steps_on_disk(tmp_path, *(f"run{index}" for index in range(workers)))
    for index, steps in enumerate(acknowledged):
        assert steps, "the stream never got going"
        kept = on_disk[f"run{index}"]
        assert set(steps) <= kept, f"lost {sorted(set(steps) - kept)[:10]}"


def test_sigterm_flushes_ends_open_event_streams_and_exits_zero_and_so_does_sigint(tmp_path: Path) -> None:
    """SIGTERM with a batch acknowledged and an SSE stream open: the batch is flushed, and the daemon ends the stream
    (which has no socket to close with 1001) rather than waiting out uvicorn's graceful timeout and then cancelling
    it with a traceback (what `make run` showed with `pivotctl train --wait` open)."""
    daemon = start_daemon_process(tmp_path)
    config = {"architecture": MLP, "hyperparams": hyperparams()}
    with httpx.Client(verify=PLAIN_HTTP, base_url=daemon.url, timeout=30) as http:
        batch = [layerwise_payload("flushed", step) for step in range(200)]
        assert http.post("/api/v1/metrics/layerwise/batch", json=batch).status_code == 202
        session_id = http.post("/api/v1/training/sessions", json={"config": config}).json()["session_id"]
        with http.stream("GET", f"/api/v1/sse/training/{session_id}") as stream:
            chunks = stream.iter_bytes()
            assert next(chunks)  # the stream is open and has said what it knows: the session waits to start
            daemon.signal(signal.SIGTERM)
            rest = b"".join(chunks)  # ends cleanly (a cut-short chunked body would raise here)
    assert b"event:" not in rest or rest.endswith(b"\n\n")
    assert daemon.wait(timeout=30) == 0
    log = "".join(daemon.lines)
    assert "graceful shutdown exceeded" not in log and "Traceback" not in log, log
    assert not (tmp_path / "daemon.json").exists()
    # The restarted daemon is stopped with SIGINT (Ctrl-C in a terminal), which must also exit 0.
    assert steps_on_disk(tmp_path, "flushed", stop=signal.SIGINT) == {"flushed": set(range(200))}
