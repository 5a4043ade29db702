"""bench/idle_cpu: CPU of an idle pivotd with the resource sampler at 1 s (target: under 1% of one core).

Measures the daemon process's CPU time over a window, with nothing connected, for the sampler at
`--interval` and, in the same run, at 60 s (which leaves the daemon with almost nothing to do), so the
sampler's own share shows as the difference.

    .venv/bin/python bench/idle_cpu.py [--seconds 60] [--interval 1]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import ProcessMeter, pivotd


def measure(interval: float, seconds: float, warmup: float) -> tuple[float, int]:
    with pivotd(sample_interval_s=str(interval)) as daemon:
        time.sleep(warmup)  # start-up work (imports, migrations, first NVML probe) is not idle time
        with ProcessMeter(daemon.pid) as meter:
            time.sleep(seconds)
        return meter.cpu, meter.peak_rss


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--interval", type=float, default=1.0)
    parser.add_argument("--warmup", type=float, default=5)
    args = parser.parse_args()
    print(f"bench/idle_cpu: idle pivotd, {args.seconds:.0f} s window after {args.warmup:.0f} s warm-up\n")
    for interval in (args.interval, 60.0):
        cpu, rss = measure(interval, args.seconds, args.warmup)
        print(f"sampler every {interval:>4g} s   cpu {cpu * 100:6.3f}% of one core   rss {rss / 2**20:5.0f} MB")


if __name__ == "__main__":
    main()
