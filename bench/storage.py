"""Layer-wise storage: bytes per stored step, and reads of a long run, against a baseline tree's pivotd.

Two daemons (this tree and `--baseline`, by default /work/main, another checkout of pivotd) each get the
same 50-layer steps through the batch route. Sizes are exact (pages in use in the database over steps
stored), taken once the daemon has packed every step (it packs when idle: `pivotd/store/compaction.py`).
Reads alternate between the two daemons, round by round, and report medians:
`GET /api/v1/runs/{id}?from_step=..&to_step=..` for ranges of several lengths, and `/latest`.

Two kinds of step: `sdk`, whose statistics are float32 values as pivot's SDK sends them (it computes them in
float32 tensors), and `float64`, the samples' values at full double precision (a client computing in
float64), which cannot be packed below 8 bytes per number without loss.

    .venv/bin/python bench/storage.py --steps 20000 --rounds 7
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import statistics
import struct
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from bench.common import ROOT, daemon_process
from bench.ingest import batch, run, single
from shared.samples import layerwise_payload

LAYERS = 50
BATCH = 40
TEMPLATES = 100
F32 = struct.Struct("<f")


@dataclass
class Daemon:
    name: str
    url: str
    pid: int
    db: Path


@contextmanager
def daemon(name: str, tree: Path, data_dir: Path, max_steps: int) -> Iterator[Daemon]:
    # -P: the tree comes from PYTHONPATH alone, not from the current directory
    command = [sys.executable, "-P", "-m", "pivotd.cli", "--port", "0", "--data-dir", str(data_dir)]
    env = {"PYTHONPATH": str(tree), "PIVOT_MAX_STEPS_PER_RUN": str(max_steps), "PIVOT_MAX_DB_BYTES": str(2**40)}
    with daemon_process(command, env) as handle:
        yield Daemon(name, handle.url, handle.pid, data_dir / "pivot.db")


def rounded(node: object) -> object:
    """The statistics as float32 values, as the SDK sends them."""
    if isinstance(node, dict):
        return {key: rounded(value) for key, value in node.items()}
    if isinstance(node, list):
        return [rounded(value) for value in node]
    if isinstance(node, float):
        return F32.unpack(F32.pack(node))[0]
    return node


def templates(run_id: str, kind: str) -> list[tuple[bytes, bytes]]:
    """Step documents split around their global_step: the client then costs little per step."""
    found = []
    for index in range(TEMPLATES):
        document = layerwise_payload(run_id, index, layers=LAYERS)
        if kind == "sdk":
            document["layer_statistics"] = rounded(document["layer_statistics"])
            document["cross_layer_analysis"] = rounded(document["cross_layer_analysis"])
        document["metadata"]["global_step"] = 987654321
        before, after = json.dumps(document).encode().split(b"987654321")
        found.append((before, after))
    return found


def fill(target: Daemon, run_id: str, kind: str, steps: int) -> float:
    """Post `steps` steps in batches; returns the seconds it took."""
    parts = templates(run_id, kind)
    started = time.perf_counter()
    with httpx.Client(base_url=target.url, timeout=120) as http:
        for first in range(0, steps, BATCH):
            body = (
                b"["
                + b",".join(
                    parts[step % TEMPLATES][0] + str(step).encode() + parts[step % TEMPLATES][1]
                    for step in range(first, min(steps, first + BATCH))
                )
                + b"]"
            )
            response = http.post(
                "/api/v1/metrics/layerwise/batch", content=body, headers={"content-type": "application/json"}
            )
            response.raise_for_status()
    return time.perf_counter() - started


def packed(db: Path, timeout: float = 600) -> float:
    """Seconds until the daemon has packed every step (at once for a tree that stores JSON only)."""
    started = time.perf_counter()
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        if "shape" not in {row[1] for row in conn.execute("PRAGMA table_info(steps)")}:
            return 0.0
        while conn.execute("SELECT count(*) FROM steps WHERE shape IS NULL").fetchone()[0]:
            if time.perf_counter() - started > timeout:
                raise RuntimeError("steps not packed in time")
            time.sleep(0.2)  # a benchmark polling another process's database: no event to await
        return time.perf_counter() - started
    finally:
        conn.close()


def used_bytes(db: Path) -> int:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        pages = conn.execute("PRAGMA page_count").fetchone()[0] - conn.execute("PRAGMA freelist_count").fetchone()[0]
        return int(pages * conn.execute("PRAGMA page_size").fetchone()[0])
    finally:
        conn.close()


def timed_get(http: httpx.Client, path: str, params: dict[str, str]) -> tuple[float, int]:
    started = time.perf_counter()
    response = http.get(path, params=params)
    response.raise_for_status()
    return time.perf_counter() - started, len(response.content)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=20000, help="steps in the long run (sdk kind)")
    parser.add_argument("--size-steps", type=int, default=2000, help="steps per kind for the size figures")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--baseline", type=Path, default=Path("/work/main"))
    parser.add_argument("--ingest-rounds", type=int, default=3, help="0: no ingest figures")
    parser.add_argument("--ingest-seconds", type=float, default=5)
    args = parser.parse_args()
    print(f"bench/storage: {LAYERS}-layer steps; load {os.getloadavg()[0]:.2f} at start (machine shared)")
    reads: dict[str, dict[str, list[float]]] = {}
    with tempfile.TemporaryDirectory() as scratch, ExitStack() as stack:
        daemons = [
            stack.enter_context(daemon(name, tree, Path(scratch) / name, max(args.steps, args.size_steps) + 1))
            for name, tree in (("baseline", args.baseline), ("this tree", ROOT))
        ]
        for target in daemons:
            for kind in ("sdk", "float64"):
                before = used_bytes(target.db)
                seconds = fill(target, f"size_{kind}", kind, args.size_steps)
                waited = packed(target.db)
                grown = used_bytes(target.db) - before
                print(
                    f"  {target.name:10} {kind:8} {grown / args.size_steps:8,.0f} bytes/step "
                    f"({args.size_steps} steps, {args.size_steps / seconds:6,.0f} steps/s posting batches of {BATCH}, "
                    f"all packed {waited:.1f} s after the last)"
                )
        for target in daemons:
            seconds = fill(target, "long", "sdk", args.steps)
            waited = packed(target.db)
            size = used_bytes(target.db) / 2**20
            print(
                f"  {target.name:10} long run: {args.steps} steps in {seconds:.1f} s, packed {waited:.1f} s later, "
                f"database {size:,.1f} MB"
            )
        middle = args.steps // 2
        queries = {
            "range of 100 steps": {"from_step": str(middle), "to_step": str(middle + 99)},
            "range of 1,000 steps": {"from_step": str(middle), "to_step": str(middle + 999)},
            "lite range of 1,000 steps": {"from_step": str(middle), "to_step": str(middle + 999), "lite": "true"},
        }
        clients = {
            target.name: stack.enter_context(httpx.Client(base_url=target.url, timeout=120)) for target in daemons
        }
        for _ in range(args.rounds):
            for target in daemons:  # alternating, so both see the same load
                http = clients[target.name]
                for label, params in queries.items():
                    reads.setdefault(label, {}).setdefault(target.name, []).append(
                        timed_get(http, "/api/v1/runs/long", params)[0]
                    )
                reads.setdefault("latest step", {}).setdefault(target.name, []).append(
                    timed_get(http, "/api/v1/runs/long/latest", {})[0]
                )
    print(f"  reads, median of {args.rounds} alternating rounds (ms): baseline / this tree")
    for label, by in reads.items():
        base, new = (statistics.median(by[name]) * 1e3 for name in ("baseline", "this tree"))
        print(f"    {label:28} {base:8.1f} / {new:8.1f}   ratio {new / base:5.2f}")
    if args.ingest_rounds > 0:
        ingest(args)
    print(f"load {os.getloadavg()[0]:.2f} at the end")


def ingest(args: argparse.Namespace) -> None:
    """Ingest throughput of both trees (fresh daemons, 16 clients), alternating tree by tree, round by round."""
    scenarios = {"single route, 50 layers": single(50), "single route, 3 layers": single(3), "batch route": batch(100)}
    rates: dict[str, dict[str, list[float]]] = {label: {} for label in scenarios}
    for _ in range(args.ingest_rounds):
        for label, make in scenarios.items():
            for name, tree in (("baseline", args.baseline), ("this tree", ROOT)):
                with tempfile.TemporaryDirectory() as scratch, daemon(name, tree, Path(scratch), 10_000) as target:
                    pid = target.pid
                    result = run(label, target.url, pid, 16, args.ingest_seconds, make)
                    rates[label].setdefault(name, []).append(result.units / result.seconds)
    print(
        f"  ingest, steps/s, median of {args.ingest_rounds} alternating rounds of {args.ingest_seconds} s: "
        "baseline / this tree"
    )
    for label, by in rates.items():
        base, new = (statistics.median(by[name]) for name in ("baseline", "this tree"))
        print(f"    {label:28} {base:8,.0f} / {new:8,.0f}   ratio {new / base:5.2f}")


if __name__ == "__main__":
    main()
