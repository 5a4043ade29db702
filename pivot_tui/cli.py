"""`pivot-tui`: check the daemon is reachable, then start the terminal UI."""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace

import httpx
from pydantic import ValidationError

from pivot_tui.config import resolve, resolve_hosts
from shared import __version__
from shared.client import PivotAPIError, PivotClient
from shared.runtime import tune_gc

EXIT_UNREACHABLE = 3
EXIT_UNAUTHORIZED = 4


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="pivot-tui",
        description="Terminal client for pivotd: runs, live curves, layer health, resources and alerts.",
        epilog="URL and token default to $PIVOT_URL/$PIVOT_TOKEN, then ~/.config/pivot/tui.toml, then the local "
        "daemon's files. From a laptop: pivot-tui --ssh gpu-box (your own ssh opens the tunnel and reads the token). "
        "Several boxes: repeat --url/--ssh/--host, or --all for every box in ~/.config/pivot/hosts.toml.",
    )
    parser.add_argument(
        "--url", action="append", default=[], help="daemon URL, e.g. http://localhost:8000 (repeatable)"
    )
    parser.add_argument("--token", help="bearer token (needed for a daemon that does not trust you as loopback)")
    parser.add_argument("--host", action="append", default=[], help="a box named in hosts.toml (repeatable)")
    parser.add_argument("--all", action="store_true", help="every box in hosts.toml")
    parser.add_argument("--ssh", action="append", default=[], help="an ssh destination running pivotd (repeatable)")
    parser.add_argument("--theme", help="textual-dark (default), textual-light, or any Textual theme name")
    parser.add_argument("--version", action="version", version=f"pivot-tui {__version__}")
    return parser.parse_args(argv)


def preflight(url: str, token: str | None) -> int | None:
    """Exit code and message when the daemon cannot be used; None when it can."""
    try:
        with PivotClient(url, token, timeout=5) as client:
            client.list_runs(per_page=1)
    except httpx.TransportError as exc:
        print(
            f"pivot-tui: cannot reach pivotd at {url} ({exc.__class__.__name__}).\n"
            "Start it with `pivotd` (or `make run` in a checkout), or point --url at a running daemon.",
            file=sys.stderr,
        )
        return EXIT_UNREACHABLE
    except PivotAPIError as exc:
        if exc.status == 401:
            print(
                f"pivot-tui: {url} needs a token: pass --token or set PIVOT_TOKEN (the daemon's token file is "
                "<state dir>/token on its machine).",
                file=sys.stderr,
            )
            return EXIT_UNAUTHORIZED
        print(f"pivot-tui: {url} answered HTTP {exc.status}; is it a pivotd?", file=sys.stderr)
        return EXIT_UNREACHABLE
    except ValidationError:
        print(f"pivot-tui: {url} answered, but not with pivotd's list of runs; is it a pivotd?", file=sys.stderr)
        return EXIT_UNREACHABLE
    return None


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        hosts = resolve_hosts(args.url, args.host, args.all, args.ssh, args.token)
        # One box given by URL is the single-daemon TUI of old; the others start with hosts and check nothing
        # here: a box that is down (or whose ssh fails) shows as offline while the others update.
        plain = len(hosts) == 1 and hosts[0].url is not None
        single = hosts[0] if plain else None
        settings = resolve(single.url if single else None, single.token if single else args.token, args.theme)
    except ValueError as exc:  # HostsError included: it names the file, the host and the field
        print(f"pivot-tui: {exc}", file=sys.stderr)
        return 2
    if hosts and not plain:
        settings = replace(settings, url=hosts[0].url or f"ssh {hosts[0].ssh}", hosts=hosts)
    else:
        failure = preflight(settings.url, settings.token)
        if failure is not None:
            return failure
        if single is not None and args.host:  # one box of hosts.toml: keep its name (the header shows it)
            settings = replace(settings, hosts=hosts)
    from pivot_tui.app import make_app  # noqa: PLC0415 (keeps --help, --version and errors free of Textual's import)

    app = make_app(settings)
    tune_gc()
    app.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
