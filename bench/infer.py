"""Inference latency and throughput: single inputs and 512-input batches against a trained seed 001 CNN.

    .venv/bin/python bench/infer.py                      # trains a small CNN in a throwaway pivotd first
    .venv/bin/python bench/infer.py --requests 3000 --batches 100 --connections 1

Requests go over keep-alive connections with a minimal HTTP client (bench.common.RawHTTP), so the figures are
the daemon's, not the client's. Client-side latency (request written -> response read) and the daemon's own
`latency_ms` (forward pass plus the hop to the inference thread) are both reported. The first requests, which
load the model into the LRU, are excluded. Target (issue 4): p99 < 5 ms for a single CNN input on this CPU.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import time
from pathlib import Path

import httpx
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import RawHTTP, percentile, pivotd
from pivotd.demo import DEMO_ARCHITECTURE
from pivotd.training.datasets import DIGITS_FILE


async def train(url: str) -> str:
    hp = {"epochs": 1, "max_samples": 1000, "dataset": "digits", "layerwise_every": 0, "checkpoint_every": 0}
    async with httpx.AsyncClient(base_url=url, timeout=120) as http:
        run_id = (await http.post("/api/train", json={"architecture": DEMO_ARCHITECTURE, "hyperparams": hp})).json()
        async with http.stream("GET", f"/api/runs/{run_id['run_id']}/events") as events:
            async for line in events.aiter_lines():
                if line.startswith("data: ") and json.loads(line[6:]).get("state") in ("succeeded", "failed"):
                    break
        run = (await http.get(f"/api/runs/{run_id['run_id']}")).json()
    assert run["state"] == "succeeded", run
    return str(run["param_id"])


async def measure(url: str, bodies: list[bytes], connections: int) -> tuple[list[float], list[float], float]:
    """(client latencies ms, server latency_ms, requests/s) over `connections` keep-alive connections."""
    client: list[float] = []
    server: list[float] = []
    queue = list(bodies)

    async def worker() -> None:
        http = await RawHTTP.open(url)
        try:
            while queue:
                body = queue.pop()
                started = time.perf_counter()
                status, answer = await http.post("/api/infer", body)
                client.append((time.perf_counter() - started) * 1000)
                assert status == 200, answer[:200]
                server.append(json.loads(answer)["latency_ms"])
        finally:
            http.close()

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(connections)))
    return client, server, len(bodies) / (time.perf_counter() - started)


def report(name: str, client: list[float], server: list[float], rate: float) -> None:
    print(
        f"{name:14} {rate:7.0f} req/s   client p50 {percentile(client, 50):6.2f} ms  "
        f"p99 {percentile(client, 99):6.2f} ms"
        f"   server latency_ms p50 {percentile(server, 50):6.2f}  p99 {percentile(server, 99):6.2f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--batches", type=int, default=60)
    parser.add_argument("--connections", type=int, default=1)
    args = parser.parse_args()
    with np.load(DIGITS_FILE) as archive:
        images = (archive["images"].reshape(-1, 784) / 255.0).round(4).tolist()
    rng = random.Random(0)
    with pivotd() as daemon:
        param_id = asyncio.run(train(daemon.url))

        def body(count: int) -> bytes:
            return json.dumps({"param_id": param_id, "inputs": rng.sample(images, count)}).encode()

        asyncio.run(measure(daemon.url, [body(1) for _ in range(50)], 1))  # load the model, warm up
        print(f"seed 001 CNN, {args.connections} connection(s), inference on the CPU (1 torch thread)")
        single = [body(1) for _ in range(args.requests)]
        report("single input", *asyncio.run(measure(daemon.url, single, args.connections)))
        batches = [body(512) for _ in range(args.batches)]
        report("batch of 512", *asyncio.run(measure(daemon.url, batches, args.connections)))


if __name__ == "__main__":
    main()
