"""`pivot-tui`: until the Textual interface lands, a plain listing of the daemon's runs."""

from __future__ import annotations

import argparse
import sys

import httpx

from shared import __version__
from shared.client import PivotAPIError, PivotClient

EXIT_UNREACHABLE = 3


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="pivot-tui", description="Terminal client for a pivotd daemon.")
    parser.add_argument("--url", help="daemon URL (default: $PIVOT_URL, the local daemon, http://127.0.0.1:8000)")
    parser.add_argument("--token", help="bearer token (default: $PIVOT_TOKEN or the local daemon's token file)")
    parser.add_argument("--version", action="version", version=f"pivot-tui {__version__}")
    args = parser.parse_args(argv)
    with PivotClient(args.url, args.token, timeout=5) as client:
        try:
            runs = client.list_runs()
        except httpx.TransportError:
            print(f"pivot-tui: cannot reach pivotd at {client.url}; start it with `pivotd`", file=sys.stderr)
            return EXIT_UNREACHABLE
        except PivotAPIError as exc:
            print(f"pivot-tui: {client.url} answered {exc}", file=sys.stderr)
            return 1
    print(f"{len(runs)} run(s) on {client.url}")
    for run_id, run in runs.items():
        latest = "-" if run.latest_step is None else run.latest_step
        print(f"  {run_id:40} {run.status:10} steps={run.step_count:<6} latest={latest:<8} updated={run.last_update}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
