"""bench/jobs: what pivotd adds to starting a command, and what a deep queue costs it.

1. Submit-to-start latency: from before `POST /api/v1/jobs` to the moment the job's process opens a FIFO
   (`sh -c ': > FIFO'`), against a bare `subprocess.Popen` of the same command measured in the same run,
   interleaved; the ratio is pivotd's overhead (HTTP, the queue insert, dispatch, run token, pipes, setsid).
2. The queue's cost with 1,000 queued jobs versus a short queue (one slot, held by a sleeping job, so every
   submission queues): `POST /api/v1/jobs` latency, `GET /api/v1/jobs` latency, and the dispatch gap, from one
   job's end (`finished_at`) to the next one's start (`started_at`) once the slot frees, which is the
   dispatcher's work per start (it reads up to 100 queued runs ahead for backfill).

    .venv/bin/python bench/jobs.py [--samples 30] [--deep 1000] [--shallow 50]

Latencies are wall time on a shared machine: read the ratios, measured in the same run, not the absolutes.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import pivotd


def _opened(fifo: Path, at: list[float]) -> threading.Thread:
    """A reader that records when a writer opened `fifo` (its open returns then), then drains it."""

    def read() -> None:
        with open(fifo, "rb") as stream:
            at.append(time.perf_counter())
            stream.read()

    thread = threading.Thread(target=read, daemon=True)
    thread.start()
    return thread


def _start_latency(fifo: Path, start: Any) -> float:
    at: list[float] = []
    reader = _opened(fifo, at)
    time.sleep(0.01)  # let the reader block in open() first; not part of what is measured
    t0 = time.perf_counter()
    start()
    reader.join(30)
    return at[0] - t0


def _wait_idle(http: httpx.Client) -> None:
    while (meta := http.get("/api/v1/jobs").json()["meta"])["running"] + meta["queued"]:
        time.sleep(0.05)  # a benchmark polling its daemon, not a test


def _submit(http: httpx.Client, command: list[str], cwd: str, **fields: Any) -> str:
    response = http.post("/api/v1/jobs", json={"job": {"command": command, "cwd": cwd, "gpus": 0, **fields}})
    response.raise_for_status()
    run_id: str = response.json()["data"]["run_id"]
    return run_id


def start_latency(http: httpx.Client, samples: int, scratch: str) -> tuple[list[float], list[float]]:
    fifo = Path(scratch) / "started"
    os.mkfifo(fifo)
    command = ["sh", "-c", f": > {fifo}"]
    bare: list[float] = []
    job: list[float] = []
    for _ in range(samples):
        bare.append(_start_latency(fifo, lambda: subprocess.Popen(command).wait()))
        job.append(_start_latency(fifo, lambda: _submit(http, command, scratch)))
        _wait_idle(http)
    return bare, job


def _stamp(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


def _timed_posts(http: httpx.Client, count: int, scratch: str) -> tuple[list[str], list[float]]:
    ids, seconds = [], []
    for _ in range(count):
        t0 = time.perf_counter()
        ids.append(_submit(http, ["true"], scratch))
        seconds.append(time.perf_counter() - t0)
    return ids, seconds


def _gaps(http: httpx.Client, run_ids: list[str]) -> list[float]:
    """finished_at of each job to started_at of the one that started next (ms resolution on the wire)."""
    jobs = [http.get(f"/api/v1/runs/{run_id}", params={"steps": "none"}).json()["job"] for run_id in run_ids]
    spans = sorted((_stamp(job["started_at"]), _stamp(job["finished_at"])) for job in jobs)
    return [after[0] - before[1] for before, after in zip(spans, spans[1:], strict=False)]


def queue_cost(http: httpx.Client, depth: int, measured: int, scratch: str) -> dict[str, list[float]]:
    """With one slot held: POST and GET latencies at `depth` queued jobs, then the dispatch gaps of the first
    `measured` starts once the slot frees (with `depth == measured`, the queue has drained on return)."""
    blocker = _submit(http, ["sleep", "600"], scratch)
    first, _ = _timed_posts(http, depth - measured, scratch)
    ids, posts = _timed_posts(http, measured, scratch)
    listing = []
    for _ in range(10):
        t0 = time.perf_counter()
        http.get("/api/v1/jobs").raise_for_status()
        listing.append(time.perf_counter() - t0)
    http.post(f"/api/v1/jobs/{blocker}/cancel").raise_for_status()
    started = [*first, *ids][:measured]
    while http.get(f"/api/v1/runs/{started[-1]}", params={"steps": "none"}).json()["status"] in ("queued", "running"):
        time.sleep(0.05)  # the rest of a deep queue need not drain: the daemon stops after the last measurement
    return {"post": posts, "list": listing, "gap": _gaps(http, started)}


def _ms(values: list[float]) -> str:
    p90 = sorted(values)[int(0.9 * len(values))]
    return f"median {statistics.median(values) * 1000:7.2f} ms  p90 {p90 * 1000:7.2f} ms"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=int, default=30, help="start-latency samples of each kind")
    parser.add_argument("--deep", type=int, default=1000, help="queued jobs in the deep queue")
    parser.add_argument("--shallow", type=int, default=50, help="queued jobs in the short queue (also measured)")
    args = parser.parse_args()
    print("bench/jobs (a shared machine: compare the ratios, measured in the same run)\n")
    # max_runs above the runs made here: retention would evict finished ones, the cancelled blocker included,
    # and that is not what is measured.
    with (
        pivotd(training_slots="1", max_runs="100000") as daemon,
        httpx.Client(base_url=daemon.url, timeout=60) as http,
        tempfile.TemporaryDirectory() as scratch,
    ):
        bare, job = start_latency(http, args.samples, scratch)
        print(f"start latency, bare Popen of sh -c ': > FIFO'   {_ms(bare)}")
        print(f"start latency, the same as a pivotd job         {_ms(job)}")
        print(f"  ratio of medians {statistics.median(job) / statistics.median(bare):.1f}x "
              f"(+{(statistics.median(job) - statistics.median(bare)) * 1000:.1f} ms)\n")  # fmt: skip
        shallow = queue_cost(http, args.shallow, args.shallow, scratch)
        deep = queue_cost(http, args.deep, args.shallow, scratch)
    for name, what in (("post", "POST /api/v1/jobs"), ("list", "GET /api/v1/jobs"), ("gap", "dispatch gap")):
        ratio = statistics.median(deep[name]) / max(statistics.median(shallow[name]), 1e-4)
        print(f"{what:18} queue {args.shallow:>5}: {_ms(shallow[name])}")
        print(f"{what:18} queue {args.deep:>5}: {_ms(deep[name])}   ratio {ratio:.2f}x")


if __name__ == "__main__":
    main()
