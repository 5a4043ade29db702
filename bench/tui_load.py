"""bench/tui_load: pivot-tui under load, measured in its own process.

A real pivotd, a feeder process streaming N runs (scalars every step, a layer-wise step every 10th)
at a total rate, and the TUI headless in a third process: first on the runs screen, then on one
run's detail. Reports redraws/s (screen updates that changed something), event-loop lag p99, CPU
(share of one core) and peak RSS of the TUI process, and the time from launching the TUI process to
its first rendered runs table. Baseline in the same run: the same TUI process with no load.

`--daemons 3`: as many pivotds, each fed by its own feeder with its share of the runs and of the rate, and
one TUI watching them all (the merged runs table with its Host column, then a run's detail on the first box).

    .venv/bin/python bench/tui_load.py [--seconds 20] [--runs 20] [--rate 50] [--daemons 1]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import percentile, pivotd


def feed(url: str, runs: int, rate: float) -> None:
    """Stream `rate` steps/s spread over `runs` runs until killed."""
    import httpx

    from shared.samples import layerwise_payload, training_scalars

    with httpx.Client(base_url=url, timeout=10) as http:
        start, count = time.perf_counter(), 0
        while True:
            run, step = count % runs, count // runs
            run_id = f"load_run_{run:02d}"
            http.post(f"/api/v1/runs/{run_id}/scalars", json=[{"step": step, "values": training_scalars(step)}])
            if step % 10 == 0:
                http.post("/api/v1/metrics/layerwise", json=layerwise_payload(run_id, step, layers=8))
            count += 1
            delay = start + count / rate - time.perf_counter()
            if delay > 0:
                time.sleep(delay)


def measure_tui(urls: list[str], seconds: float, launched: float) -> dict[str, float]:
    import psutil

    from pivot_tui.app import make_app
    from pivot_tui.config import TuiSettings
    from pivot_tui.screens import RunDetailScreen, RunsScreen
    from pivot_tui.widgets import RunsTable

    redraws = {"count": 0}
    first_table: list[float] = []
    for screen in (RunsScreen, RunDetailScreen):
        original = screen.redraw

        def counting(self, _original=original) -> None:  # type: ignore[no-untyped-def]
            before = getattr(self, "_seen", None)
            _original(self)
            if getattr(self, "_seen", None) != before:
                redraws["count"] += 1
            if not first_table and isinstance(self, RunsScreen) and self.query_one(RunsTable).row_count:
                first_table.append(time.time())

        screen.redraw = counting  # type: ignore[method-assign]

    from shared.hosts import Host
    from shared.runtime import tune_gc

    hosts = tuple(Host(f"box{index}", url=url) for index, url in enumerate(urls)) if len(urls) > 1 else ()
    app = make_app(TuiSettings(urls[0], None, "textual-dark", hosts))
    tune_gc()  # as pivot-tui's entry point does
    lags: list[float] = []
    process = psutil.Process()
    result: dict[str, float] = {}

    detail_lags: list[float] = []

    async def probe_lag() -> None:
        while True:
            before = time.perf_counter()
            await asyncio.sleep(0.02)
            lag = time.perf_counter() - before - 0.02
            (detail_lags if isinstance(app.screen, RunDetailScreen) else lags).append(lag)

    def start() -> None:
        # Measured after start-up (stylesheet, first layout), which the launch time below covers.
        app.run_worker(probe_lag(), group="bench-lag")
        cpu = process.cpu_times()
        result["cpu0"], result["t0"] = cpu.user + cpu.system, time.perf_counter()
        app.set_timer(seconds / 2, lambda: app.open_run(min(app.model.runs) if app.model.runs else "none"))
        app.set_timer(seconds, finish)

    def finish() -> None:
        cpu = process.cpu_times()
        elapsed = time.perf_counter() - result["t0"]
        result.update(
            redraws_per_s=redraws["count"] / elapsed,
            lag_p99_ms=percentile(lags + detail_lags, 99) * 1e3,
            lag_p50_ms=percentile(lags + detail_lags, 50) * 1e3,
            runs_screen_lag_p99_ms=percentile(lags, 99) * 1e3,
            detail_screen_lag_p99_ms=percentile(detail_lags, 99) * 1e3,
            cpu=(cpu.user + cpu.system - result["cpu0"]) / elapsed,
            rss_mb=process.memory_info().rss / 2**20,
            first_table_s=(first_table[0] - launched) if first_table else float("nan"),
        )
        app.exit()

    app.call_later(start)
    app.run(headless=True, size=(120, 40))
    return result


def run_tui(urls: list[str], seconds: float) -> dict[str, float]:
    launched = time.time()
    output = subprocess.run(
        [sys.executable, __file__, "--tui", ",".join(urls), "--seconds", str(seconds), "--launched", str(launched)],
        capture_output=True,
        text=True,
        timeout=seconds + 60,
    )
    return json.loads(output.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--rate", type=float, default=50)
    parser.add_argument("--daemons", type=int, default=1, help="spread the runs over this many pivotds")
    parser.add_argument("--feed", help=argparse.SUPPRESS)
    parser.add_argument("--tui", help=argparse.SUPPRESS)
    parser.add_argument("--launched", type=float, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.feed:
        feed(args.feed, args.runs, args.rate)
        return
    if args.tui:
        print(json.dumps(measure_tui(args.tui.split(","), args.seconds, args.launched)))
        return
    print(f"bench/tui_load: {args.runs} runs, {args.rate:.0f} steps/s in total over {args.daemons} daemon(s), "
          f"{args.seconds:.0f} s per scenario\n")  # fmt: skip
    with contextlib.ExitStack() as stack:
        urls = [stack.enter_context(pivotd()).url for _ in range(args.daemons)]
        baseline = run_tui(urls, args.seconds)
        feeders = [
            subprocess.Popen(
                [
                    sys.executable,
                    __file__,
                    "--feed",
                    url,
                    "--runs",
                    str(share),
                    "--rate",
                    str(args.rate * share / args.runs),
                ]
            )  # fmt: skip
            for index, url in enumerate(urls)
            if (share := args.runs // args.daemons + (index < args.runs % args.daemons))
        ]
        try:
            loaded = run_tui(urls, args.seconds)
        finally:
            for feeder in feeders:
                feeder.kill()
                feeder.wait()
    targets = {"redraws_per_s": ">= 10", "lag_p99_ms": "< 50", "cpu": "< 25% of a core", "rss_mb": "< 200",
               "first_table_s": "< 1.5"}  # fmt: skip
    print(f"{'measurement':24} {'no load':>10} {'under load':>11}   target")
    for key, target in targets.items():
        scale = 100 if key == "cpu" else 1
        print(f"{key:24} {baseline[key] * scale:10.2f} {loaded[key] * scale:11.2f}   {target}")
    for key in ("lag_p50_ms", "runs_screen_lag_p99_ms", "detail_screen_lag_p99_ms"):
        print(f"{key:24} {baseline[key]:10.2f} {loaded[key]:11.2f}")


if __name__ == "__main__":
    main()
