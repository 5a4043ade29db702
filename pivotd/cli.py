"""`pivotd`: the daemon's command line."""

from __future__ import annotations

import argparse
import functools
import logging
import sys
from pathlib import Path

from pivotd.settings import Settings, SettingsError, load_settings
from shared import __version__
from shared.runtime import tune_gc

log = logging.getLogger("pivotd")

EXIT_CONFIG = 2


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="pivotd",
        description="PIVOT daemon: training runs, layer-wise metrics and live updates over HTTP and WebSocket.",
        epilog="Settings come from defaults < --config TOML file < PIVOT_* environment < these flags.",
    )
    parser.add_argument("--host", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, help="TCP port (default 8000; 0 picks a free one)")
    parser.add_argument("--data-dir", type=Path, help="state directory: database, token, daemon.json")
    parser.add_argument("--config", type=Path, help="TOML settings file (also $PIVOT_CONFIG)")
    parser.add_argument("--log-level", choices=["debug", "info", "warning", "error"])
    parser.add_argument("--demo", action="store_true", help="also feed a synthetic run so there is something live")
    parser.add_argument("--version", action="version", version=f"pivotd {__version__}")
    return parser.parse_args(argv)


def resolve_token(settings: Settings) -> str | None:
    from pivotd.auth import ensure_token  # noqa: PLC0415 (keeps --help/--version free of server imports)

    if settings.token:
        return settings.token
    try:
        return ensure_token(settings.data_dir)
    except OSError as exc:
        log.error("cannot create or read the token in %s: %s", settings.data_dir, exc)
        return None


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        settings = load_settings(
            args.config,
            {"host": args.host, "port": args.port, "data_dir": args.data_dir, "log_level": args.log_level},
        )
    except SettingsError as exc:
        print(f"pivotd: {exc}", file=sys.stderr)
        return EXIT_CONFIG

    from pivotd.logs import configure_logging  # noqa: PLC0415

    configure_logging(settings.log_level)
    token = resolve_token(settings)
    if token is None and (not settings.listens_on_loopback or not settings.trust_loopback):
        log.error("refusing to listen on %s without a token: set PIVOT_TOKEN or fix the data dir", settings.host)
        return EXIT_CONFIG

    from pivotd.app import create_app  # noqa: PLC0415
    from pivotd.demo import feed_demo  # noqa: PLC0415
    from pivotd.server import PivotServer  # noqa: PLC0415

    settings.data_dir.mkdir(parents=True, exist_ok=True)
    app = create_app(settings, token or "")
    server = PivotServer(app, settings, on_ready=functools.partial(feed_demo, token=token) if args.demo else None)
    tune_gc()
    try:
        server.run()
    except SystemExit:  # uvicorn exits this way when it cannot bind; the reason is already logged
        log.error("pivotd could not start on %s:%s", settings.host, settings.port)
        return 1
    return 0 if server.started else 1


if __name__ == "__main__":
    sys.exit(main())
