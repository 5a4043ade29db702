"""bench/tui_idle: CPU of an idle pivot-tui on each screen (target: under 1% of one core on every screen).

A real pivotd holding 20 finished runs and one run with 200 layer-wise steps of 12 layers and its
scalars, nothing streaming, and `pivot-tui` headless in its own process at 120x40. The TUI visits each
screen (runs, run detail, resources, alerts, experiments) in turn, lets it settle, and measures its own
process's CPU time over an equal share of `--seconds`. The daemon's resource sampler keeps running (at
its default interval), as it does on any box: the gauges it feeds are the only thing that changes.

    .venv/bin/python bench/tui_idle.py [--seconds 600] [--settle 3]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import pivotd

DETAIL_RUN = "idle_detail"
SCREENS = ("runs", "run detail", "resources", "alerts", "experiments")


def seed(url: str) -> None:
    """20 finished runs of a few steps, and the run the run-detail screen shows."""
    import httpx

    from shared.samples import layerwise_payload, training_scalars

    with httpx.Client(base_url=url, timeout=30) as http:
        for index in range(20):
            run_id = f"idle_run_{index:02d}"
            points = [{"step": step, "values": training_scalars(step)} for step in range(50)]
            http.post(f"/api/v1/runs/{run_id}/scalars", json=points).raise_for_status()
        points = [{"step": step, "values": training_scalars(step)} for step in range(0, 2000, 10)]
        http.post(f"/api/v1/runs/{DETAIL_RUN}/scalars", json=points).raise_for_status()
        for step in range(0, 2000, 10):
            payload = layerwise_payload(DETAIL_RUN, step, layers=12)
            http.post("/api/v1/metrics/layerwise", json=payload).raise_for_status()


def measure_tui(url: str, seconds: float, settle: float) -> dict[str, float]:
    """In the TUI's own process: CPU time (user + system) per screen, as a share of one core."""
    import psutil

    from pivot_tui.app import make_app
    from pivot_tui.config import TuiSettings
    from shared.runtime import tune_gc

    app = make_app(TuiSettings(url, None, "textual-dark"))
    tune_gc()  # as pivot-tui's entry point does
    process = psutil.Process()
    share = seconds / len(SCREENS)
    result: dict[str, float] = {}
    visits = {
        "runs": lambda: app.switch_mode("runs"),
        "run detail": lambda: app.open_run(DETAIL_RUN),
        "resources": lambda: app.switch_mode("resources"),
        "alerts": lambda: app.switch_mode("alerts"),
        "experiments": lambda: app.switch_mode("experiments"),
    }

    def cpu() -> float:
        times = process.cpu_times()
        return times.user + times.system

    async def visit_all() -> None:
        import asyncio

        for name in SCREENS:
            visits[name]()
            await asyncio.sleep(settle)  # the screen's first load and draw are not idle time
            cpu0, t0 = cpu(), time.perf_counter()
            await asyncio.sleep(share)
            result[name] = (cpu() - cpu0) / (time.perf_counter() - t0)
            if name == "run detail":
                app.pop_screen()
        app.exit()

    app.call_later(lambda: app.run_worker(visit_all(), group="bench-idle"))
    app.run(headless=True, size=(120, 40))
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=600, help="measured time, shared equally by the screens")
    parser.add_argument("--settle", type=float, default=3, help="seconds on each screen before measuring")
    parser.add_argument("--tui", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.tui:
        print(json.dumps(measure_tui(args.tui, args.seconds, args.settle)))
        return
    print(f"bench/tui_idle: idle pivot-tui at 120x40, {args.seconds / len(SCREENS):.0f} s per screen\n")
    with pivotd() as daemon:
        seed(daemon.url)
        output = subprocess.run(
            [sys.executable, __file__, "--tui", daemon.url, "--seconds", str(args.seconds),
             "--settle", str(args.settle)],
            capture_output=True, text=True, timeout=args.seconds + 30 * len(SCREENS) + 60,
        )  # fmt: skip
    if output.returncode:
        sys.exit(f"the TUI process failed:\n{output.stderr[-3000:]}")
    result = json.loads(output.stdout.strip().splitlines()[-1])
    print(f"{'screen':14} {'cpu, % of one core':>20}   target < 1%")
    for name in SCREENS:
        print(f"{name:14} {result[name] * 100:20.2f}")


if __name__ == "__main__":
    main()
