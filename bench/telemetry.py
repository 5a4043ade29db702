"""bench/telemetry: telemetry ingest (events/s in batches of 1,000) and aggregate latency over 1M events.

Ingest: K keep-alive HTTP/1.1 clients post batches of 1,000 seed-004 events to pivotd and, in the same run, to
bench/baseline_telemetry.py (pydantic per event, one row per event, a commit per request).
Aggregate: pivotd keeps exactly 1M events (`telemetry_max_events`), spread over 24 h and 5 models; it is asked
for a p95 and an avg of `duration_ms` per 1 h bucket grouped by `metadata.model`, repeatedly; the baseline is
the same question asked of 1M rows in SQLite with JSON columns (GROUP BY with json_extract for avg; values
fetched and numpy per group for p95).
Self-events overhead: layer-wise single-route ingest (bench/ingest.py's scenario) with pivotd's own telemetry
on and off (ABBA order), since every ingest request now also bumps a counter.

    .venv/bin/python bench/telemetry.py [--seconds 8] [--clients 4] [--queries 30]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sqlite3
import sys
import tempfile
import time
from pathlib import Path
from urllib.request import urlopen

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.baseline_telemetry import fill
from bench.common import ProcessMeter, RawHTTP, daemon_process, percentile, pivotd
from bench.ingest import run, single

INGEST = "/api/v1/telemetry/events"
MODELS = ["gpt-4", "claude-3", "llama-2", "mistral", "pivot-mlp"]
BATCH = 1000
START = time.time() - 86400


def bodies(count: int, seed: int) -> list[bytes]:
    """Distinct batches (values, models, timestamps over the last 24 h), built before the clock starts."""
    rng = random.Random(seed)
    made = []
    for _ in range(count):
        events = [
            {
                "event_name": ["crucible", "model", "inference"],
                "measurements": {"duration_ms": round(rng.lognormvariate(5, 0.5), 3), "tokens": rng.randint(10, 500)},
                "metadata": {"experiment_id": "exp_bench", "model": rng.choice(MODELS), "request_id": f"req_{i}"},
                "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(START + rng.random() * 86400))
                + f".{rng.randint(0, 999):03d}Z",
            }
            for i in range(BATCH)
        ]
        made.append(json.dumps({"events": events}).encode())
    return made


async def ingest(url: str, clients: int, seconds: float, batches: list[bytes]) -> tuple[int, float, list[float], int]:
    connections = [await RawHTTP.open(url) for _ in range(clients)]
    latencies: list[float] = []
    counts = {"events": 0, "errors": 0}
    deadline = time.perf_counter() + seconds

    async def worker(index: int, http: RawHTTP) -> None:
        sequence = index
        while time.perf_counter() < deadline:
            body = batches[sequence % len(batches)]
            sequence += clients
            sent = time.perf_counter()
            status, _ = await http.post(INGEST, body)
            latencies.append(time.perf_counter() - sent)
            if status == 202:
                counts["events"] += BATCH
            else:
                counts["errors"] += 1

    started = time.perf_counter()
    await asyncio.gather(*(worker(i, c) for i, c in enumerate(connections)))
    elapsed = time.perf_counter() - started
    for connection in connections:
        connection.close()
    return counts["events"], elapsed, latencies, counts["errors"]


def report_ingest(name: str, url: str, pid: int, clients: int, seconds: float, batches: list[bytes]) -> int:
    with ProcessMeter(pid) as meter:
        events, elapsed, latencies, errors = asyncio.run(ingest(url, clients, seconds, batches))
    print(
        f"{name:34} {events / elapsed:>10,.0f} events/s  p50 {percentile(latencies, 50) * 1e3:6.1f} ms  "
        f"p99 {percentile(latencies, 99) * 1e3:6.1f} ms per batch  cpu {meter.cpu * 100:4.0f}%  "
        f"rss {meter.peak_rss / 2**20:5.0f} MB  errors {errors}"
    )
    return events


def timed_get(url: str) -> tuple[float, dict]:
    started = time.perf_counter()
    with urlopen(url) as response:
        document = json.loads(response.read())
    return time.perf_counter() - started, document


def report_latency(name: str, times: list[float], first: float | None = None) -> None:
    cold = f"  first (cold) {first * 1e3:7.1f} ms" if first is not None else ""
    print(
        f"{name:44} p50 {percentile(times, 50) * 1e3:7.1f} ms  p95 {percentile(times, 95) * 1e3:7.1f} ms  "
        f"({len(times)} queries){cold}"
    )


def aggregate_pivotd(url: str, queries: int) -> None:
    for agg in ("p95", "avg"):
        query = f"{url}/api/v1/telemetry/aggregate?metric=duration_ms&agg={agg}&interval=1h&group_by=model"
        first, document = timed_get(query)
        times = [timed_get(query)[0] for _ in range(queries)]
        report_latency(f"pivotd aggregate {agg}, 1h x model ({len(document['data'])} rows)", times, first)


def aggregate_baseline(path: Path, queries: int) -> None:
    conn = sqlite3.connect(path)
    avg_sql = """SELECT CAST(ts / 3600 AS INTEGER), json_extract(metadata, '$.model'),
                        avg(json_extract(measurements, '$.duration_ms'))
                 FROM events WHERE name = 'crucible.model.inference' GROUP BY 1, 2"""
    p95_sql = """SELECT CAST(ts / 3600 AS INTEGER), json_extract(metadata, '$.model'),
                        json_extract(measurements, '$.duration_ms') FROM events
                 WHERE name = 'crucible.model.inference'"""

    def p95() -> None:
        groups: dict[tuple[int, str], list[float]] = {}
        for bucket, model, value in conn.execute(p95_sql):
            groups.setdefault((bucket, model), []).append(value)
        for values in groups.values():
            np.percentile(values, 95)

    for name, query in (("p95", p95), ("avg", lambda: conn.execute(avg_sql).fetchall())):
        times = []
        for _ in range(max(3, queries // 6)):
            started = time.perf_counter()
            query()
            times.append(time.perf_counter() - started)
        report_latency(f"baseline aggregate {name} (SQLite JSON rows, in-process)", times)
    conn.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=8)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--queries", type=int, default=30)
    args = parser.parse_args()
    batches = bodies(64, seed=7)
    print(f"bench/telemetry: batches of {BATCH} events, {args.clients} clients, {args.seconds:.0f} s per ingest run\n")
    with pivotd(telemetry_max_events="1000000", telemetry_self_events="false") as daemon:
        stored = report_ingest("pivotd ingest", daemon.url, daemon.pid, args.clients, args.seconds, batches)
        while stored < 1_000_000:  # top up to the 1M events the aggregate question is asked over
            stored += asyncio.run(ingest(daemon.url, args.clients, 2, batches))[0]
        aggregate_pivotd(daemon.url, args.queries)
    command = [sys.executable, str(Path(__file__).parent / "baseline_telemetry.py")]
    with daemon_process(command) as baseline:
        report_ingest("baseline ingest (pydantic, row/event)", baseline.url, baseline.pid, args.clients, args.seconds,
                      batches)  # fmt: skip
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "rows.db"
        fill(path, 1_000_000, START, MODELS)
        aggregate_baseline(path, args.queries)
    print()
    for enabled in ("true", "false", "false", "true"):  # ABBA: the machine's drift over time cancels out
        with pivotd(telemetry_self_events=enabled) as daemon:
            result = run(f"layer-wise 3 layers, self events {enabled}", daemon.url, daemon.pid, 16, 4, single(3))
            print(result.line("steps/s"))


if __name__ == "__main__":
    main()
