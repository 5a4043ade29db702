"""bench/fanout: POST-to-WebSocket delivery latency, and what subscribers cost ingestion.

1. 10 live /ws subscribers, steps POSTed at 500/s: delivery latency from the POST leaving the
   client to the `new_metrics` message arriving, per subscriber (p50/p99), next to the 202 ack.
2. Closed-loop ingest throughput in the same run with no subscriber (the baseline), with one
   stalled subscriber that never reads, and with 10 live subscribers.

    .venv/bin/python bench/fanout.py [--seconds 8]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from websockets.asyncio.client import connect

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import RawHTTP, percentile, pivotd, step_template
from bench.ingest import run, single

LAYERWISE = "/api/v1/metrics/layerwise"


async def delivery(url: str, subscribers: int, rate: float, seconds: float) -> tuple[list[float], list[float], int]:
    ws_url = "ws" + url.removeprefix("http") + "/ws"
    sockets = [await connect(ws_url, max_size=None) for _ in range(subscribers)]
    for ws in sockets:
        await ws.recv()  # initial_runs
    sent: dict[int, float] = {}
    delays: list[float] = []
    total = int(rate * seconds)

    async def listen(ws) -> None:  # type: ignore[no-untyped-def]
        received = 0
        while received < total:
            message = json.loads(await ws.recv())
            if message["type"] == "new_metrics" and message["run_id"] == "fanout":
                delays.append(time.perf_counter() - sent[message["data"]["step"]])
                received += 1

    listeners = [asyncio.create_task(listen(ws)) for ws in sockets]
    before, after = step_template("fanout", 3)
    http = await RawHTTP.open(url)
    acks: list[float] = []
    start = time.perf_counter()
    for step in range(total):
        delay = start + step / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        sent[step] = time.perf_counter()
        status, _ = await http.post(LAYERWISE, before + str(step).encode() + after)
        acks.append(time.perf_counter() - sent[step])
        assert status == 202
    done, pending = await asyncio.wait(listeners, timeout=10)
    lost = subscribers * total - len(delays)
    for ws in sockets:
        await ws.close()
    http.close()
    return delays, acks, lost


def throughput(url: str, pid: int, seconds: float, label: str) -> str:
    return run(f"ingest, 16 clients, {label}", url, pid, 16, seconds, single(3)).line("steps/s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=8)
    parser.add_argument("--readers", metavar="URL", help=argparse.SUPPRESS)  # internal: 10 live subscribers
    parser.add_argument("--stalled", metavar="URL", help=argparse.SUPPRESS)  # internal: 1 stalled subscriber
    args = parser.parse_args()
    if args.readers or args.stalled:
        asyncio.run(subscribe(args.readers or args.stalled, 10 if args.readers else 1, read=bool(args.readers)))
        return
    print(f"bench/fanout: {args.seconds:.0f} s per scenario\n")
    with pivotd(ws_queue_size="1000") as daemon:
        delays, acks, lost = asyncio.run(delivery(daemon.url, 10, 500, args.seconds))
        print(
            f"10 subscribers @ 500 steps/s: delivery p50 {percentile(delays, 50) * 1e3:.2f} ms "
            f"p99 {percentile(delays, 99) * 1e3:.2f} ms max {max(delays) * 1e3:.2f} ms "
            f"({len(delays):,} deliveries, {lost} missing); POST ack p50 {percentile(acks, 50) * 1e3:.2f} ms "
            f"p99 {percentile(acks, 99) * 1e3:.2f} ms"
        )

        # Alternated twice: the difference must be judged against run-to-run noise.
        for _ in range(2):
            print(throughput(daemon.url, daemon.pid, args.seconds, "no subscriber (baseline)"))
            with helper_process("--stalled", daemon.url):
                print(throughput(daemon.url, daemon.pid, args.seconds, "1 stalled subscriber"))

        with helper_process("--readers", daemon.url):
            print(throughput(daemon.url, daemon.pid, args.seconds, "10 live subscribers"))


@contextmanager
def helper_process(role: str, url: str) -> Iterator[None]:
    """Subscribers live in a process of their own so they take neither the load generator's CPU nor its GIL."""
    helper = subprocess.Popen([sys.executable, __file__, role, url], stdout=subprocess.PIPE)
    assert helper.stdout is not None and helper.stdout.readline().strip() == b"connected"
    try:
        yield
    finally:
        helper.terminate()
        helper.wait(10)
        helper.stdout.close()


async def subscribe(url: str, count: int, read: bool) -> None:
    # A stalled client never reads: with a one-message queue its socket buffers fill and stay full.
    sockets = [
        await connect("ws" + url.removeprefix("http") + "/ws", max_size=None, max_queue=None if read else 1)
        for _ in range(count)
    ]
    print("connected", flush=True)

    async def drain(ws) -> None:  # type: ignore[no-untyped-def]
        async for _ in ws:
            pass

    if read:
        await asyncio.gather(*(drain(ws) for ws in sockets))
    else:
        await asyncio.Event().wait()


if __name__ == "__main__":
    main()
