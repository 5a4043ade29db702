"""bench/tui_load: pivot-tui under load, measured in its own process, per screen.

A real pivotd, a feeder process streaming N runs (scalars every step, a layer-wise step every 10th)
at a total rate, and the TUI in a third process: first on the runs screen, then on one run's detail.
Baseline in the same run: the same TUI process with no load.

Per screen it reports what the screen was offered and what it drew:

- screen updates/s: frames composed for the screen in view that changed something on it (what a
  terminal receives); the target of 10/s holds where the screen has something new at least ten times a
  second (the runs screen under 20 runs; a run's detail only as fast as that run streams);
- new data/s: the changes the screen shows that reached the TUI (the runs screen: run, resource and
  alert messages; the run detail: the followed run's steps and points, and its summary for the title);
- what was redrawn, per part: the runs table and the gauges; the run detail's title line and its plots
  (with heatmap, layer table and log), the plots capped at 1/--plot-interval a second;
- change-to-screen latency: from a change reaching the TUI to the redraw that shows it (the pacing of
  the screen's redraws plus event-loop delays), p50 and p99;
- event-loop lag p99 (the overshoot of a 20 ms sleep), CPU (share of one core) and, for the whole run,
  peak RSS and the time from launching the process to its first rendered runs table.

`--daemons 3`: as many pivotds, each fed by its own feeder with its share of the runs and of the rate, and
one TUI watching them all (the merged runs table with its Host column, then a run's detail on the first box).
`--tmux`: the TUI draws to a terminal (a private tmux server at 120x40) instead of Textual's headless driver,
which skips writing the frames out. `--plot-interval`: the run detail's plot cap, to measure what faster
plots cost.

    .venv/bin/python bench/tui_load.py [--seconds 20] [--runs 20] [--rate 50] [--daemons 1] [--tmux]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import percentile, pivotd

SCREENS = ("runs", "run detail")


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


class Tally:
    """Counts, per screen in view, of what the TUI was offered and what it drew."""

    def __init__(self) -> None:
        self.counts: dict[str, dict[str, float]] = {screen: defaultdict(float) for screen in SCREENS}
        self.samples: dict[str, dict[str, list[float]]] = {screen: defaultdict(list) for screen in SCREENS}
        self.screen = "runs"
        self.on = False
        """Counting: after start-up (which the time to the first table covers)."""

    def add(self, key: str, amount: float = 1) -> None:
        if self.on:
            self.counts[self.screen][key] += amount

    def sample(self, key: str, value: float) -> None:
        if self.on:
            self.samples[self.screen][key].append(value)


def instrument(tally: Tally, first_table: list[float]) -> None:
    """Wrap the TUI's drawing and model calls to count them; the TUI's code is otherwise unchanged."""
    from textual.app import App

    from pivot_tui.model import TuiModel
    from pivot_tui.screens import RunDetailScreen
    from pivot_tui.screens.live import Paced
    from pivot_tui.widgets import RunsTable
    from pivot_tui.widgets.quiet import QuietStatic

    display = App._display

    def counted_display(self: App[Any], screen: Any, renderable: Any) -> None:
        if renderable is not None and screen is self.screen:
            tally.add("frames")
        display(self, screen, renderable)

    App._display = counted_display  # type: ignore[method-assign]

    show = RunsTable.show

    def counted_show(self: RunsTable, *args: Any, **kwargs: Any) -> None:
        show(self, *args, **kwargs)
        tally.add("table")
        if not first_table and self.row_count:
            first_table.append(time.time())

    RunsTable.show = counted_show  # type: ignore[method-assign]

    show_text = QuietStatic.show_text

    def counted_text(self: QuietStatic, *args: Any, **kwargs: Any) -> bool:
        changed = show_text(self, *args, **kwargs)
        if changed and self.id in ("strip", "run-title"):
            tally.add("gauges" if self.id == "strip" else "title")
        return changed

    QuietStatic.show_text = counted_text  # type: ignore[method-assign]

    redraw = RunDetailScreen.redraw

    def counted_redraw(self: RunDetailScreen) -> None:
        before = self._seen
        redraw(self)
        if self._seen != before:
            tally.add("plots")

    RunDetailScreen.redraw = counted_redraw  # type: ignore[method-assign]

    bump, apply = TuiModel.bump, TuiModel.apply

    def counted_bump(self: TuiModel, *parts: str) -> None:
        for part in parts:
            tally.add(f"bump:{part}")
        bump(self, *parts)

    def counted_apply(self: TuiModel, event: Any) -> bool:
        followed = self.followed
        if event.type == "run_updated" and followed is not None and event.data.get("run_id") == followed.run_id:
            tally.add("bump:followed summary")
        return apply(self, event)

    TuiModel.bump, TuiModel.apply = counted_bump, counted_apply  # type: ignore[method-assign]

    poke, run = Paced.poke, Paced._run

    def timed_poke(self: Paced) -> None:
        if not self._due:
            self._poked_at = time.perf_counter()  # type: ignore[attr-defined]
        poke(self)

    def timed_run(self: Paced) -> None:
        run(self)
        which = "plots" if self._draw.__name__ == "_on_heavy" else "draw"
        tally.sample(f"latency:{which}", time.perf_counter() - getattr(self, "_poked_at", time.perf_counter()))

    Paced.poke, Paced._run = timed_poke, timed_run  # type: ignore[method-assign]


def measure_tui(
    urls: list[str], seconds: float, launched: float, plot_interval: float, headless: bool
) -> dict[str, Any]:
    import psutil

    from pivot_tui.app import make_app
    from pivot_tui.config import TuiSettings
    from pivot_tui.screens import run_detail
    from shared.hosts import Host
    from shared.runtime import tune_gc

    run_detail.HEAVY_REDRAW_S = plot_interval
    tally, first_table = Tally(), []
    instrument(tally, first_table)
    hosts = tuple(Host(f"box{index}", url=url) for index, url in enumerate(urls)) if len(urls) > 1 else ()
    app = make_app(TuiSettings(urls[0], None, "textual-dark", hosts))
    tune_gc()  # as pivot-tui's entry point does
    process = psutil.Process()
    marks: dict[str, tuple[float, float]] = {}
    result: dict[str, Any] = {}

    def mark(name: str) -> None:
        times = process.cpu_times()
        marks[name] = (times.user + times.system, time.perf_counter())

    async def probe_lag() -> None:
        while True:
            before = time.perf_counter()
            await asyncio.sleep(0.02)
            tally.sample("lag", time.perf_counter() - before - 0.02)

    def start() -> None:
        app.run_worker(probe_lag(), group="bench-lag")
        tally.on = True
        mark("runs")
        app.set_timer(seconds / 2, open_run)
        app.set_timer(seconds, finish)

    def open_run() -> None:
        mark("run detail")
        tally.screen = "run detail"
        app.open_run(min(app.model.runs) if app.model.runs else "none")

    def finish() -> None:
        mark("end")
        tally.on = False
        for screen, end in zip(SCREENS, ("run detail", "end"), strict=True):
            (cpu0, t0), (cpu1, t1) = marks[screen], marks[end]
            figures = {key: value / (t1 - t0) for key, value in tally.counts[screen].items()}
            figures["cpu"] = (cpu1 - cpu0) / (t1 - t0)
            for key, values in tally.samples[screen].items():
                figures[f"{key} p50 ms"] = percentile(values, 50) * 1e3
                figures[f"{key} p99 ms"] = percentile(values, 99) * 1e3
            result[screen] = figures
        (cpu0, t0), (cpu1, t1) = marks["runs"], marks["end"]
        lags = tally.samples["runs"]["lag"] + tally.samples["run detail"]["lag"]
        result["all"] = {
            "cpu": (cpu1 - cpu0) / (t1 - t0),
            "lag p99 ms": percentile(lags, 99) * 1e3,
            "rss_mb": process.memory_info().rss / 2**20,
            "first_table_s": (first_table[0] - launched) if first_table else float("nan"),
        }
        app.exit()

    app.call_later(start)
    if headless:
        app.run(headless=True, size=(120, 40))
    else:
        app.run()
    return result


def run_tui(urls: list[str], seconds: float, plot_interval: float, in_tmux: bool) -> dict[str, Any]:
    command = [sys.executable, __file__, "--tui", ",".join(urls), "--seconds", str(seconds),
               "--plot-interval", str(plot_interval)]  # fmt: skip
    if not in_tmux:
        launched = time.time()
        command += ["--launched", str(launched)]
        output = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 60)
        return json.loads(output.stdout.strip().splitlines()[-1])
    with tempfile.TemporaryDirectory() as scratch:
        out = Path(scratch) / "result.json"
        socket = f"pivot-bench-{os.getpid()}"
        launched = time.time()
        command += ["--launched", str(launched), "--terminal", "--out", str(out)]
        subprocess.run(["tmux", "-L", socket, "new-session", "-d", "-s", "tui", "-x", "120", "-y", "40",
                        "-e", "TERM=xterm-256color", "-e", "COLORTERM=truecolor", shlex.join(command)],
                       check=True, timeout=10)  # fmt: skip
        try:
            deadline = time.monotonic() + seconds + 60
            while not out.exists() and time.monotonic() < deadline:
                time.sleep(0.5)  # the TUI owns the terminal: its result comes back in a file
            time.sleep(0.5)
            return json.loads(out.read_text())
        finally:
            subprocess.run(["tmux", "-L", socket, "kill-server"], capture_output=True, timeout=10)


def report(baseline: dict[str, Any], loaded: dict[str, Any], plot_interval: float) -> None:
    rows = {
        "runs": [
            ("screen updates/s", "frames", ">= 10 when new data >= 10/s"),
            ("new data/s: runs", "bump:runs", ""),
            ("new data/s: resources", "bump:resources", ""),
            ("runs table redrawn/s", "table", ""),
            ("gauges redrawn/s", "gauges", ""),
            ("change to screen p50 ms", "latency:draw p50 ms", ""),
            ("change to screen p99 ms", "latency:draw p99 ms", "<= 100 + lag"),
            ("event-loop lag p99 ms", "lag p99 ms", "< 50"),
            ("cpu %", "cpu", "< 25"),
        ],
        "run detail": [
            ("screen updates/s", "frames", ""),
            ("new data/s: its points", "bump:run", ""),
            ("new data/s: its summary", "bump:followed summary", ""),
            ("title redrawn/s", "title", "as its summary, up to 10"),
            ("plots redrawn/s", "plots", f"as its points, up to {1 / plot_interval:.0f}"),
            ("title: change to screen p99 ms", "latency:draw p99 ms", "<= 100 + lag"),
            ("plots: change to screen p99 ms", "latency:plots p99 ms", f"<= {plot_interval * 1e3:.0f} + lag"),
            ("event-loop lag p99 ms", "lag p99 ms", "< 50"),
            ("cpu %", "cpu", "< 25"),
        ],
    }
    print(f"{'':34} {'no load':>10} {'under load':>11}   target")
    for screen, lines in rows.items():
        print(f"{screen} screen")
        for label, key, target in lines:
            scale = 100 if key == "cpu" else 1
            before, after = baseline[screen].get(key, 0.0) * scale, loaded[screen].get(key, 0.0) * scale
            print(f"  {label:32} {before:10.2f} {after:11.2f}   {target}")
    print("whole run")
    targets = {"lag p99 ms": "< 50", "cpu": "< 25", "rss_mb": "< 200", "first_table_s": "< 1.5"}
    for key, target in targets.items():
        scale = 100 if key == "cpu" else 1
        print(f"  {key:32} {baseline['all'][key] * scale:10.2f} {loaded['all'][key] * scale:11.2f}   {target}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=20, help="per scenario, half on each screen")
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--rate", type=float, default=50)
    parser.add_argument("--daemons", type=int, default=1, help="spread the runs over this many pivotds")
    parser.add_argument("--plot-interval", type=float, default=0.25, help="the run detail's plot cap, seconds")
    parser.add_argument("--tmux", action="store_true", help="the TUI draws to a terminal (tmux), not headless")
    parser.add_argument("--feed", help=argparse.SUPPRESS)
    parser.add_argument("--tui", help=argparse.SUPPRESS)
    parser.add_argument("--launched", type=float, help=argparse.SUPPRESS)
    parser.add_argument("--terminal", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.feed:
        feed(args.feed, args.runs, args.rate)
        return
    if args.tui:
        result = measure_tui(args.tui.split(","), args.seconds, args.launched, args.plot_interval, not args.terminal)
        if args.out:
            Path(args.out).write_text(json.dumps(result))
        else:
            print(json.dumps(result))
        return
    where = "in tmux" if args.tmux else "headless"
    print(f"bench/tui_load: {args.runs} runs, {args.rate:.0f} steps/s in total over {args.daemons} daemon(s), "
          f"pivot-tui {where}, {args.seconds:.0f} s per scenario, plots at most every {args.plot_interval} s; "
          f"load average {os.getloadavg()[0]:.2f} at the start\n")  # fmt: skip
    with contextlib.ExitStack() as stack:
        urls = [stack.enter_context(pivotd()).url for _ in range(args.daemons)]
        baseline = run_tui(urls, args.seconds, args.plot_interval, args.tmux)
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
            loaded = run_tui(urls, args.seconds, args.plot_interval, args.tmux)
        finally:
            for feeder in feeders:
                feeder.kill()
                feeder.wait()
    report(baseline, loaded, args.plot_interval)
    print(f"\nload average {os.getloadavg()[0]:.2f} at the end")


if __name__ == "__main__":
    main()
