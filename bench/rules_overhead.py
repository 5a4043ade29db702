"""bench/rules_overhead: ingest throughput with 50 enabled alert rules versus none, in one daemon.

Phases alternate (none, rules, none, rules, ...) on the same daemon so drift and other processes on a
shared machine hit both modes alike; each line is one phase, and the summary compares the medians of
throughput and of the daemon's CPU time per step (which other processes do not move).
The rules never fire (thresholds out of reach), so this measures evaluation, not alert I/O:
30 layer-wise rules over six fields and five conditions, 10 scalar rules, 5 `any_value` silence rules
and 5 system rules. Built-in rules are disabled in both modes.

    .venv/bin/python bench/rules_overhead.py [--seconds 5] [--rounds 3] [--clients 16] [--layers 3]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import pivotd
from bench.ingest import run, single

FIELDS = ("gradient_l2_norm", "gradient_max_abs", "activation_std", "activation_mean", "weight_std", "bias_std")
CONDITIONS: tuple[dict[str, Any], ...] = (
    {"condition": "greater_than", "threshold": 1e9},
    {"condition": "less_than", "threshold": -1e9},
    {"condition": "outside_range", "range": [-1e9, 1e9]},
    {"condition": "equals", "threshold": 12345.678},
    {"condition": "grows_by_factor", "threshold": 1e6},
)


def rule_specs() -> list[dict[str, Any]]:
    specs = [{"name": f"layer_{f}_{i}", "metric": f} | c for f in FIELDS for i, c in enumerate(CONDITIONS)]  # 30
    high = {"condition": "greater_than", "threshold": 1e9}
    specs += [{"name": f"scalar_{i}", "metric": f"train_m{i}"} | high for i in range(10)]
    silent = {"metric": "any_value", "condition": "no_data_for", "threshold": 3600}
    specs += [{"name": f"silent_{i}"} | silent for i in range(5)]
    specs += [
        {"name": f"system_{i}", "metric": m, "condition": "greater_than", "threshold": 1e9}
        for i, m in enumerate(("cpu_percent", "memory_percent", "disk_percent", "swap_percent", "load_1m"))
    ]
    return specs


async def setup(url: str) -> list[str]:
    async with httpx.AsyncClient(base_url=url, timeout=30) as http:
        for rule in (await http.get("/api/v1/alerts/rules")).json()["rules"]:
            await http.patch(f"/api/v1/alerts/rules/{rule['rule_id']}", json={"enabled": False})
        ids = []
        for spec in rule_specs():
            response = await http.post("/api/v1/alerts/rules", json=spec | {"enabled": False})
            response.raise_for_status()
            ids.append(response.json()["rule_id"])
        return ids


async def toggle(url: str, ids: list[str], enabled: bool) -> None:
    async with httpx.AsyncClient(base_url=url, timeout=30) as http:
        for rule_id in ids:
            (await http.patch(f"/api/v1/alerts/rules/{rule_id}", json={"enabled": enabled})).raise_for_status()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=5)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--layers", type=int, default=3)
    args = parser.parse_args()
    print(f"bench/rules_overhead: {args.clients} clients, {args.layers} layers, {args.seconds:.0f} s phases\n")
    rates: dict[bool, list[float]] = {False: [], True: []}
    # Daemon CPU seconds per step: unlike steps/s, other processes on a shared machine do not move it.
    costs: dict[bool, list[float]] = {False: [], True: []}
    with pivotd(max_db_bytes=str(50 * 2**30)) as daemon:
        ids = asyncio.run(setup(daemon.url))
        assert len(ids) == 50
        for _ in range(args.rounds):
            for enabled in (False, True):
                asyncio.run(toggle(daemon.url, ids, enabled))
                name = f"{'50 rules' if enabled else 'no rules'}, {args.layers} layers"
                result = run(name, daemon.url, daemon.pid, args.clients, args.seconds, single(args.layers))
                rates[enabled].append(result.units / result.seconds)
                costs[enabled].append(result.cpu * result.seconds / result.units)
                print(result.line("steps/s") + f"  {costs[enabled][-1] * 1e6:5.0f} us cpu/step")
    none, some = statistics.median(rates[False]), statistics.median(rates[True])
    print(f"\nmedian steps/s: no rules {none:,.0f}, 50 rules {some:,.0f}: {100 * (some / none - 1):+.1f}%")
    none, some = statistics.median(costs[False]), statistics.median(costs[True])
    change = 100 * (some / none - 1)
    print(f"median daemon cpu/step: no rules {none * 1e6:.0f} us, 50 rules {some * 1e6:.0f} us: {change:+.1f}%")


if __name__ == "__main__":
    main()
