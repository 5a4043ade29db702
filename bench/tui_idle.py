"""bench/tui_idle: CPU of an idle pivot-tui on each screen (target: under 1% of one core on every screen).

A real pivotd holding 20 finished runs and one run with 200 layer-wise steps of 12 layers and its
scalars, nothing streaming, and `pivot-tui` in its own process at 120x40. The TUI visits each screen
(runs, run detail, resources, alerts, experiments, fleet, queue) in turn, lets it settle, and measures
its process's CPU time (user + system, the counters of /proc/PID/stat) over an equal share of `--seconds`.
The daemon's resource sampler keeps running (at its default interval), as it does on any box: the gauges
it feeds are the only thing that changes.

Two ways to run the TUI:

- headless (the default): Textual's headless driver, driven from inside the TUI's process. Nothing is
  written to a terminal, so it leaves out what drawing costs there.
- `--tmux`: `pivot-tui` itself, in a terminal: a private tmux server at 120x40, driven by keys (`1`..`6`,
  Enter, Escape) as a user would. Also reports the bytes the TUI wrote to the terminal per second.

    .venv/bin/python bench/tui_idle.py [--tmux] [--seconds 600] [--settle 3] [--screens runs,resources]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import ROOT, pivotd

DETAIL_RUN = "idle_detail"
SCREENS = ("runs", "run detail", "resources", "alerts", "experiments", "fleet", "queue")
MODE_KEYS = {"runs": "1", "resources": "2", "alerts": "3", "experiments": "4", "fleet": "5", "queue": "6"}


def seed(url: str) -> None:
    """20 finished runs of a few steps, and the run the run-detail screen shows (created last: the top row)."""
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


def measure_tui(url: str, screens: list[str], seconds: float, settle: float) -> dict[str, float]:
    """Headless, in the TUI's own process: CPU time (user + system) per screen, as a share of one core."""
    import psutil

    from pivot_tui.app import make_app
    from pivot_tui.config import TuiSettings
    from shared.runtime import tune_gc

    app = make_app(TuiSettings(url, None, "textual-dark"))
    tune_gc()  # as pivot-tui's entry point does
    process = psutil.Process()
    share = seconds / len(screens)
    result: dict[str, float] = {}
    visits: dict[str, Callable[[], object]] = {mode: (lambda mode=mode: app.switch_mode(mode)) for mode in MODE_KEYS}
    visits["run detail"] = lambda: app.open_run(DETAIL_RUN)  # over the screen in view

    def cpu() -> float:
        times = process.cpu_times()
        return times.user + times.system

    async def visit_all() -> None:
        import asyncio

        for name in screens:
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


class Tmux:
    """A private tmux server (its own socket) with one window: the TUI, at a fixed size."""

    def __init__(self) -> None:
        self.socket = f"pivot-bench-{os.getpid()}"

    def __call__(self, *args: str) -> str:
        done = subprocess.run(["tmux", "-L", self.socket, *args], capture_output=True, text=True, timeout=10)
        return done.stdout

    def screen(self) -> str:
        return self("capture-pane", "-p", "-t", "tui")

    def wait_for(self, *texts: str, timeout: float = 30) -> str:
        """Until every one of `texts` is on the screen at once (the TUI draws asynchronously)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            screen = self.screen()
            if all(text in screen for text in texts):
                return screen
            time.sleep(0.2)  # reading a terminal from outside: there is no event to wait on
        raise RuntimeError(f"{texts!r} never appeared; the screen was:\n{self.screen()}")

    def keys(self, *keys: str) -> None:
        for key in keys:
            self("send-keys", "-t", "tui", key)


def measure_tmux(url: str, screens: list[str], seconds: float, settle: float) -> dict[str, dict[str, float]]:
    """`pivot-tui` in a terminal, driven by keys: its process's CPU and its output to the terminal per screen."""
    import psutil

    tmux = Tmux()
    share = seconds / len(screens)
    result: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as scratch:
        output = Path(scratch) / "terminal.out"
        output.touch()
        command = f"exec {shlex.quote(sys.executable)} -m pivot_tui.cli --url {url}"
        tmux("new-session", "-d", "-s", "tui", "-x", "120", "-y", "40", "-c", str(ROOT), "-e", "TERM=xterm-256color",
             "-e", "COLORTERM=truecolor", command)  # fmt: skip
        try:
            tmux("pipe-pane", "-t", "tui", "-o", f"cat >> {shlex.quote(str(output))}")  # what the TUI writes
            process = psutil.Process(int(tmux("display", "-p", "-t", "tui", "#{pane_pid}")))
            tmux.wait_for(DETAIL_RUN, "online")
            for name in screens:
                if name == "run detail":
                    tmux.keys("1", "Home")  # the newest run first: the seeded detail run
                    tmux.wait_for(DETAIL_RUN, "online")
                    tmux.keys("Enter")
                    tmux.wait_for(f"LIVE  {DETAIL_RUN}", "gradient_l2_norm")
                else:
                    tmux.keys(MODE_KEYS[name])
                time.sleep(settle)  # the screen's first load and draw are not idle time
                times, size, t0 = process.cpu_times(), output.stat().st_size, time.perf_counter()
                time.sleep(share)
                elapsed = time.perf_counter() - t0
                after = process.cpu_times()
                result[name] = {
                    "cpu": (after.user + after.system - times.user - times.system) / elapsed,
                    "bytes_per_s": (output.stat().st_size - size) / elapsed,
                }
                if name == "run detail":
                    while "LIVE " in tmux.screen():  # Esc closes a notice first, then leaves the run
                        tmux.keys("Escape")
                        time.sleep(0.5)
        finally:
            tmux("kill-server")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=600, help="measured time, shared equally by the screens")
    parser.add_argument("--settle", type=float, default=3, help="seconds on each screen before measuring")
    parser.add_argument("--tmux", action="store_true", help="run pivot-tui in a terminal (tmux) rather than headless")
    parser.add_argument("--screens", default=",".join(SCREENS), help="which screens, comma-separated")
    parser.add_argument("--tui", help=argparse.SUPPRESS)
    args = parser.parse_args()
    screens = args.screens.split(",")
    if unknown := set(screens) - set(SCREENS):
        parser.error(f"unknown screens {sorted(unknown)}; known: {', '.join(SCREENS)}")
    if args.tui:
        print(json.dumps(measure_tui(args.tui, screens, args.seconds, args.settle)))
        return
    where = "in tmux" if args.tmux else "headless"
    print(f"bench/tui_idle: idle pivot-tui {where} at 120x40, {args.seconds / len(screens):.0f} s per screen "
          f"(Python {platform.python_version()}, load average {os.getloadavg()[0]:.2f} at the start)\n")  # fmt: skip
    with pivotd() as daemon:
        seed(daemon.url)
        if args.tmux:
            result = measure_tmux(daemon.url, screens, args.seconds, args.settle)
        else:
            output = subprocess.run(
                [sys.executable, __file__, "--tui", daemon.url, "--seconds", str(args.seconds),
                 "--settle", str(args.settle), "--screens", args.screens],
                capture_output=True, text=True, timeout=args.seconds + 30 * len(screens) + 60,
            )  # fmt: skip
            if output.returncode:
                sys.exit(f"the TUI process failed:\n{output.stderr[-3000:]}")
            result = {name: {"cpu": cpu} for name, cpu in json.loads(output.stdout.strip().splitlines()[-1]).items()}
    print(f"{'screen':14} {'cpu, % of one core':>20} {'to terminal, B/s':>18}   target < 1%")
    for name in screens:
        written = result[name].get("bytes_per_s")
        print(f"{name:14} {result[name]['cpu'] * 100:20.2f} {'' if written is None else f'{written:18.0f}'}")
    print(f"\nload average {os.getloadavg()[0]:.2f} at the end")


if __name__ == "__main__":
    main()
