"""bench/ingest: K keep-alive HTTP/1.1 clients posting seed-000 payloads to a running daemon.

Reports steps/s (scalar points/s for the scalar route), p50/p99 ack latency, and the daemon's CPU
(share of one core) and peak RSS, for pivotd and, in the same run, for the baseline server
(bench/baseline_server.py: the obvious FastAPI + per-request-commit implementation).

    .venv/bin/python bench/ingest.py [--seconds 8] [--clients 16]

With `--rounds N`, only the single route instead: N rounds alternating pivotd and a peer server on 3- and
50-layer steps, then the medians and their ratio. The peer is the reference server of the layer-wise
protocol given as `--peer PATH` (a checkout of algorithmx/nn_monitor_server: `Python/main.py` run with
uvicorn by `--peer-python`, an interpreter with its FastAPI installed), else bench/baseline_server.py.

    .venv/bin/python bench/ingest.py --rounds 5 --seconds 5 --peer /tmp/nnref --peer-python /tmp/nnref-venv/bin/python
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import DaemonHandle, ProcessMeter, RawHTTP, daemon_process, percentile, pivotd, step_template

LAYERWISE = "/api/v1/metrics/layerwise"
# Body maker: (client index, sequence number) -> (path, body, units of work in it)
BodyMaker = Callable[[int, int], tuple[str, bytes, int]]


@dataclass
class Result:
    name: str
    units: int
    seconds: float
    latencies: list[float]
    errors: int
    cpu: float
    rss: int

    def line(self, unit: str) -> str:
        rate = self.units / self.seconds
        return (
            f"{self.name:44} {rate:>11,.0f} {unit:8} p50 {percentile(self.latencies, 50) * 1e3:6.2f} ms  "
            f"p99 {percentile(self.latencies, 99) * 1e3:7.2f} ms  cpu {self.cpu * 100:4.0f}%  "
            f"rss {self.rss / 2**20:5.0f} MB  errors {self.errors}"
        )


async def load(
    url: str, clients: int, seconds: float, make: BodyMaker, rate: float | None = None, authorization: str | None = None
) -> tuple:
    """Closed loop by default; with `rate`, each client paces itself (open loop) to rate/clients per second."""
    connections = [await RawHTTP.open(url, authorization) for _ in range(clients)]
    latencies: list[float] = []
    counts = {"units": 0, "errors": 0}
    deadline = time.perf_counter() + seconds

    async def worker(index: int, http: RawHTTP) -> None:
        sequence = 0
        interval = clients / rate if rate else 0.0
        next_send = time.perf_counter() + index * interval / clients
        while time.perf_counter() < deadline:
            if rate:
                delay = next_send - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                next_send += interval
            path, body, units = make(index, sequence)
            started = time.perf_counter()
            status, _ = await http.post(path, body)
            latencies.append(time.perf_counter() - started)
            if status == 202:
                counts["units"] += units
            else:
                counts["errors"] += 1
            sequence += 1

    started = time.perf_counter()
    await asyncio.gather(*(worker(i, c) for i, c in enumerate(connections)))
    elapsed = time.perf_counter() - started
    for connection in connections:
        connection.close()
    return counts["units"], elapsed, latencies, counts["errors"]


def run(
    name: str,
    url: str,
    pid: int,
    clients: int,
    seconds: float,
    make: BodyMaker,
    rate: float | None = None,
    authorization: str | None = None,
) -> Result:
    with ProcessMeter(pid) as meter:
        units, elapsed, latencies, errors = asyncio.run(load(url, clients, seconds, make, rate, authorization))
    return Result(name, units, elapsed, latencies, errors, meter.cpu, meter.peak_rss)


def single(layers: int) -> BodyMaker:
    templates: dict[int, tuple[bytes, bytes]] = {}

    def make(client: int, sequence: int) -> tuple[str, bytes, int]:
        if client not in templates:
            templates[client] = step_template(f"bench_{layers}l_{client}", layers)
        before, after = templates[client]
        return LAYERWISE, before + str(sequence).encode() + after, 1

    return make


def batch(size: int) -> BodyMaker:
    templates: dict[int, tuple[bytes, bytes]] = {}

    def make(client: int, sequence: int) -> tuple[str, bytes, int]:
        if client not in templates:
            templates[client] = step_template(f"bench_batch_{client}", 3)
        before, after = templates[client]
        items = [before + str(sequence * size + i).encode() + after for i in range(size)]
        return f"{LAYERWISE}/batch", b"[" + b",".join(items) + b"]", size

    return make


def scalars(points: int, names: int, run: str = "bench_scalars") -> BodyMaker:
    # Only the steps change between requests: the steps, joined by the text between them, keep the client's cost
    # per point far below the daemon's (json.dumps of the whole body, then a format per point, made the client
    # the bottleneck on two busy cores).
    values = json.dumps({f"metric{n}": 0.5 + n for n in range(names)})
    between = f',"values":{values}}},{{"step":'

    def make(client: int, sequence: int) -> tuple[str, bytes, int]:
        first = sequence * points
        body = between.join(map(str, range(first, first + points)))
        return f"/api/v1/runs/{run}_{client}/scalars", f'[{{"step":{body},"values":{values}}}]'.encode(), points * names

    return make


@contextmanager
def peer_server(checkout: Path | None, python: str) -> Iterator[DaemonHandle]:
    """The reference server of a checkout (its `Python/main.py` under uvicorn, as its README runs it), else the
    baseline; neither is part of this repository."""
    if checkout is None:
        with daemon_process([sys.executable, str(Path(__file__).parent / "baseline_server.py")]) as handle:
            yield handle
        return
    command = [python, "-m", "uvicorn", "main:app", "--host", "127.0.0.1", "--port", "0", "--no-access-log"]
    with daemon_process(command, marker="Uvicorn running on ", cwd=checkout / "Python") as handle:
        yield handle


def wrk_round(url: str, pid: int, clients: int, seconds: float, layers: int) -> tuple[float, float]:
    """One round driven by wrk (C, one thread) instead of the asyncio client: steps/s and server CPU per step."""
    before, after = step_template("RUNX", layers)
    with tempfile.TemporaryDirectory() as folder:
        paths = [Path(folder, "before"), Path(folder, "after")]
        for path, text in zip(paths, (before, after), strict=True):
            path.write_bytes(text)
        command = ["wrk", "-t1", f"-c{clients}", f"-d{seconds:g}s", "-s", str(Path(__file__).parent / "wrk_step.lua")]
        with ProcessMeter(pid) as meter:
            output = subprocess.run(
                [*command, url + LAYERWISE, "--", *map(str, paths)], capture_output=True, text=True, check=True
            ).stdout
    failed = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    assert failed is None, f"{failed.group(1)} requests failed"
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))  # type: ignore[union-attr]
    return rate, meter.cpu / rate


def compare(args: argparse.Namespace) -> None:
    """Alternating rounds of the single route, pivotd then the peer, per layer count; medians and their ratio."""
    peer_name = "reference" if args.peer else "baseline"
    print(
        f"bench/ingest: single route, {args.clients} {'wrk' if args.wrk else 'asyncio'} clients, {args.seconds:.0f} s "
        f"per round, {args.rounds} rounds, "
        f"pivotd vs {peer_name} ({args.peer or 'bench/baseline_server.py'})\n"
    )
    layer_counts = [int(n) for n in args.layers.split(",")]
    rates: dict[tuple[str, int], list[float]] = {}
    # Server CPU seconds per step: on a shared machine, other processes move it far less than steps/s.
    costs: dict[tuple[str, int], list[float]] = {}
    with pivotd(max_db_bytes=str(50 * 2**30)) as daemon, peer_server(args.peer, args.peer_python) as peer:
        for layers in layer_counts:  # warm both up (imports, first runs, caches) outside the measured rounds
            run("warm-up", daemon.url, daemon.pid, args.clients, 1, single(layers))
            run("warm-up", peer.url, peer.pid, args.clients, 1, single(layers))
        for round_ in range(args.rounds):
            for layers in layer_counts:
                for name, server in (("pivotd", daemon), (peer_name, peer)):
                    if args.wrk:
                        rate, cost = wrk_round(server.url, server.pid, args.clients, args.seconds, layers)
                        rates.setdefault((name, layers), []).append(rate)
                        costs.setdefault((name, layers), []).append(cost)
                        label = f"{round_ + 1}: {name}, {layers} layers (wrk)"
                        print(f"{label:44} {rate:11,.0f} steps/s  {cost * 1e6:5.0f} us cpu/step")
                        continue
                    result = run(
                        f"{round_ + 1}: {name}, {layers} layers",
                        server.url,
                        server.pid,
                        args.clients,
                        args.seconds,
                        single(layers),
                    )
                    rates.setdefault((name, layers), []).append(result.units / result.seconds)
                    costs.setdefault((name, layers), []).append(result.cpu * result.seconds / result.units)
                    print(result.line("steps/s") + f"  {costs[name, layers][-1] * 1e6:5.0f} us cpu/step")
    print()
    for layers in layer_counts:
        ours, theirs = statistics.median(rates["pivotd", layers]), statistics.median(rates[peer_name, layers])
        print(
            f"{layers:3} layers: median pivotd {ours:7,.0f} steps/s, {peer_name} {theirs:7,.0f} steps/s: "
            f"{ours / theirs:.2f}x"
        )
        ours, theirs = statistics.median(costs["pivotd", layers]), statistics.median(costs[peer_name, layers])
        print(
            f"{layers:3} layers: median server CPU per step pivotd {ours * 1e6:5.0f} us, {peer_name} "
            f"{theirs * 1e6:5.0f} us: {theirs / ours:.2f}x less"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=8)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--rounds", type=int, help="compare the single route with a peer, alternating rounds")
    parser.add_argument("--layers", default="3,50", help="layer counts of the comparison (comma-separated)")
    parser.add_argument("--peer", type=Path, help="a checkout of algorithmx/nn_monitor_server (reference server)")
    parser.add_argument("--peer-python", default=sys.executable, help="the interpreter that runs the reference")
    parser.add_argument(
        "--wrk", action="store_true", help="drive the comparison with wrk instead of the asyncio client"
    )
    args = parser.parse_args()
    if args.rounds:
        compare(args)
        return
    k, t = args.clients, args.seconds
    print(f"bench/ingest: {k} clients, {t:.0f} s per scenario, daemon in one process\n")
    results: list[str] = []
    with pivotd(max_db_bytes=str(50 * 2**30)) as daemon:
        results.append(run("pivotd single route, 3 layers", daemon.url, daemon.pid, k, t, single(3)).line("steps/s"))
        results.append(run("pivotd single route, 50 layers", daemon.url, daemon.pid, k, t, single(50)).line("steps/s"))
        results.append(
            run("pivotd batch route, 100 x 3 layers", daemon.url, daemon.pid, 4, t, batch(100)).line("steps/s")
        )
        results.append(
            run("pivotd scalar route, 2,000 points x 4", daemon.url, daemon.pid, 4, t, scalars(2000, 4)).line(
                "points/s"
            )
        )
        results.append(
            run("pivotd single route, 3 layers @ 500/s", daemon.url, daemon.pid, 8, t, single(3), rate=500).line(
                "steps/s"
            )
        )
        for line in results:
            print(line)
    command = [sys.executable, str(Path(__file__).parent / "baseline_server.py")]
    with daemon_process(command) as baseline:
        for layers in (3, 50):
            line = run(f"baseline single route, {layers} layers", baseline.url, baseline.pid, k, t, single(layers))
            print(line.line("steps/s"))
        print(
            run("baseline single route, 3 layers @ 500/s", baseline.url, baseline.pid, 8, t, single(3), rate=500).line(
                "steps/s"
            )
        )


if __name__ == "__main__":
    main()
