"""Scalar route and batch route ingest, and reads of a long series, against a baseline tree's pivotd.

Two daemons, this tree's and `--baseline`'s (a checkout of an older commit, such as a4a2757: the row-per-point
scalar store), alternate round by round (medians):

- the scalar route: 4 keep-alive clients, 2,000 points x 4 names per request, each client its own run;
- the batch route: 4 clients, 100 steps of 3 layers per request;

then each daemon gets one series of `--long` points (1M by default, in requests of 2,000 points, with epochs and
timestamps) and answers `GET /api/v1/runs/{id}/scalars?names=loss&max_points=2000` (the whole series, downsampled)
and a window whose ends cut chunks, `--reads` times each, alternating. Both daemons must give the same answers:
the script compares them (the downsampling chose the same points).

Throughput on a shared machine follows the share of the cores the daemon gets, so the daemon's CPU time per
point (per step) is printed too, and what it comes to for a daemon with one core to itself: it moves far less
with other load.

    mkdir /tmp/base && git archive a4a2757 | tar -x -C /tmp/base
    .venv/bin/python bench/scalars.py --baseline /tmp/base --rounds 5 --seconds 5
"""

from __future__ import annotations

import argparse
import asyncio
import math
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import orjson
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import ROOT, RawHTTP, daemon_process
from bench.ingest import batch, run, scalars


@dataclass
class Daemon:
    name: str
    url: str
    pid: int


@contextmanager
def daemon(name: str, tree: Path, data_dir: str) -> Iterator[Daemon]:
    # -P: the tree comes from PYTHONPATH alone, not from the current directory
    command = [sys.executable, "-P", "-m", "pivotd.cli", "--port", "0", "--data-dir", data_dir]
    env = {"PYTHONPATH": str(tree), "PIVOT_MAX_DB_BYTES": str(2**40)}
    with daemon_process(command, env) as handle:
        yield Daemon(name, handle.url, handle.pid)


def long_points(first: int, count: int) -> bytes:
    """A loss-like curve with noise and rare spikes, an epoch every 10,000 steps, a timestamp per point."""
    points = [
        {
            "step": step,
            "epoch": step // 10_000,
            "timestamp": 1.7e9 + step * 0.01,
            "values": {"loss": 2 / math.sqrt(step + 1) + 0.01 * math.sin(step * 0.7) + 5 * (step % 99_991 == 0)},
        }
        for step in range(first, first + count)
    ]
    return orjson.dumps(points)


async def write_long(url: str, count: int) -> float:
    http = await RawHTTP.open(url)
    started = time.perf_counter()
    for first in range(0, count, 2000):
        status, answer = await http.post("/api/v1/runs/long/scalars", long_points(first, min(2000, count - first)))
        assert status == 202, answer
    http.close()
    return time.perf_counter() - started


def timed_get(client: httpx.Client, pid: int, params: dict[str, str | int]) -> tuple[float, float, bytes]:
    """(seconds, daemon CPU seconds, body) of one read."""
    process = psutil.Process(pid)
    before = process.cpu_times()
    started = time.perf_counter()
    response = client.get("/api/v1/runs/long/scalars", params=params)
    elapsed = time.perf_counter() - started
    after = process.cpu_times()
    assert response.status_code == 200, response.text
    return elapsed, after.user + after.system - before.user - before.system, response.content


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--baseline", type=Path, required=True, help="another checkout of pivotd (`git archive` of an older commit)"
    )
    parser.add_argument("--rounds", type=int, default=5, help="ingest rounds (0: only the long series' reads)")
    parser.add_argument("--seconds", type=float, default=5)
    parser.add_argument("--long", type=int, default=1_000_000, help="points of the long series")
    parser.add_argument("--reads", type=int, default=15)
    args = parser.parse_args()
    print(
        f"bench/scalars: this tree ({ROOT}) vs baseline ({args.baseline}), {args.rounds} rounds of {args.seconds:g} s "
        "per route, alternating\n"
    )
    rates: dict[tuple[str, str], list[float]] = {}
    costs: dict[tuple[str, str], list[float]] = {}
    routes = {"scalars": (scalars(2000, 4), "points/s"), "batch": (batch(100), "steps/s")}
    with ExitStack() as stack:
        daemons = [
            stack.enter_context(daemon(name, tree, stack.enter_context(tempfile.TemporaryDirectory())))
            for name, tree in (("this tree", ROOT), ("baseline", args.baseline))
        ]
        for server in daemons if args.rounds else ():  # warm-up: imports, first runs, caches
            for route, (make, _) in routes.items():
                run(f"warm-up {route}", server.url, server.pid, 4, 1, make)
        for round_ in range(args.rounds):
            for route, (make, unit) in routes.items():
                for server in daemons if round_ % 2 == 0 else daemons[::-1]:
                    result = run(f"{round_ + 1}: {server.name}, {route}", server.url, server.pid, 4, args.seconds, make)
                    assert result.errors == 0, f"{result.errors} requests failed"
                    rates.setdefault((server.name, route), []).append(result.units / result.seconds)
                    costs.setdefault((server.name, route), []).append(result.cpu * result.seconds / result.units)
                    print(result.line(unit) + f"  {costs[server.name, route][-1] * 1e6:6.2f} us cpu/unit")
        print()
        for route, (_, unit) in routes.items() if args.rounds else ():
            ours, theirs = statistics.median(rates["this tree", route]), statistics.median(rates["baseline", route])
            cost, their_cost = statistics.median(costs["this tree", route]), statistics.median(costs["baseline", route])
            print(
                f"{route:8} median {ours:11,.0f} {unit} vs baseline {theirs:11,.0f}: {ours / theirs:.2f}x; "
                f"daemon CPU per unit {cost * 1e6:.2f} vs {their_cost * 1e6:.2f} us ({their_cost / cost:.2f}x less), "
                f"i.e. {1 / cost:,.0f} vs {1 / their_cost:,.0f} {unit} of daemon CPU (one core busy)"
            )

        print(f"\nlong series: {args.long:,} points of one name, 2,000 per request")
        for server in daemons:
            seconds = asyncio.run(write_long(server.url, args.long))
            print(f"  {server.name}: written in {seconds:.1f} s ({args.long / seconds:,.0f} points/s, one client)")
        low, high = args.long // 8 - 3, args.long * 7 // 8 - 7  # not at chunk boundaries
        reads = {
            "whole series, max_points=2000": {"names": "loss", "max_points": 2000},
            f"steps {low:,}..{high:,}, max_points=2000": {
                "names": "loss",
                "max_points": 2000,
                "from_step": low,
                "to_step": high,
            },
            "steps 5,001..9,000 (4,000 points), max_points=10000": {
                "names": "loss",
                "max_points": 10_000,
                "from_step": 5001,
                "to_step": 9000,
            },
        }
        clients = {
            server.name: stack.enter_context(httpx.Client(base_url=server.url, timeout=60)) for server in daemons
        }
        for label, params in reads.items():
            latencies: dict[str, list[float]] = {server.name: [] for server in daemons}
            cpu: dict[str, list[float]] = {server.name: [] for server in daemons}
            answers: dict[str, bytes] = {}
            for server in daemons:
                answers[server.name] = timed_get(clients[server.name], server.pid, params)[2]  # cold: not counted
            for index in range(args.reads):
                for server in daemons if index % 2 == 0 else daemons[::-1]:
                    elapsed, used, answers[server.name] = timed_get(clients[server.name], server.pid, params)
                    latencies[server.name].append(elapsed)
                    cpu[server.name].append(used)
            same = orjson.loads(answers["this tree"]) == orjson.loads(answers["baseline"])
            shown = len(orjson.loads(answers["this tree"])["series"]["loss"]["steps"])
            ours, theirs = (statistics.median(latencies[name]) for name in ("this tree", "baseline"))
            # Means: the kernel counts CPU time in 10 ms ticks, which a median of reads this short would round away.
            our_cpu, their_cpu = (statistics.fmean(cpu[name]) for name in ("this tree", "baseline"))
            print(
                f"  {label:52} this tree {ours * 1e3:7.1f} ms (mean daemon CPU {our_cpu * 1e3:5.1f} ms), baseline "
                f"{theirs * 1e3:7.1f} ms (CPU {their_cpu * 1e3:6.1f} ms); medians of {args.reads}; {shown} points; "
                f"same answer: {'yes' if same else 'NO'}"
            )


if __name__ == "__main__":
    main()
