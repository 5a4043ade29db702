"""`pivotd`: the daemon's command line (serve by default; `backup` and `restore` for its data directory)."""

from __future__ import annotations

import argparse
import functools
import logging
import os
import sys
from pathlib import Path
from typing import Any

from pivotd.settings import Settings, SettingsError, load_settings
from shared import __version__
from shared.runtime import tune_gc

log = logging.getLogger("pivotd")

EXIT_CONFIG = 2
EXIT_REFUSED = 3
"""The data directory is held by another daemon, or its database must not be opened: a restart cannot help
(the systemd units list it in RestartPreventExitStatus)."""


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="pivotd",
        description="PIVOT daemon: training runs, layer-wise metrics and live updates over HTTP and WebSocket.",
        epilog="Settings come from defaults < --config TOML file < PIVOT_* environment < these flags. "
        "See docs/operating.md for running, backing up, upgrading and moving pivotd.",
    )
    parser.add_argument("--host", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, help="TCP port (default 8000; 0 picks a free one)")
    parser.add_argument("--data-dir", type=Path, help="state directory: database, token, daemon.json")
    parser.add_argument("--config", type=Path, help="TOML settings file (also $PIVOT_CONFIG)")
    parser.add_argument("--log-level", choices=["debug", "info", "warning", "error"])
    parser.add_argument(
        "--demo",
        action="store_true",
        help="also start a demo run: the reference CNN trained on the 5,000 real MNIST digits shipped with pivotd",
    )
    parser.add_argument("--version", action="version", version=f"pivotd {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="{backup,restore}")
    # SUPPRESS: a subcommand's unset option must not overwrite the same option given before the subcommand.
    common: dict[str, Any] = {"default": argparse.SUPPRESS}
    backup = commands.add_parser(
        "backup",
        help="copy the database and artifacts into a new directory, safely while pivotd runs",
        description="Copy the data directory's database (SQLite's online backup), token and run artifacts into "
        "DEST, which must be new or empty. The copy is itself a data directory: `pivotd --data-dir DEST` serves it.",
    )
    backup.add_argument("dest", type=Path, metavar="DEST")
    restore = commands.add_parser(
        "restore",
        help="put a backup in place of a stopped daemon's data directory",
        description="Copy the backup SRC (a directory made by `pivotd backup`, or a pivot.db file) into the data "
        "directory. Refused while a daemon uses the directory, and over an existing database without --force.",
    )
    restore.add_argument("source", type=Path, metavar="SRC")
    restore.add_argument("--force", action="store_true", help="replace the database already in the data directory")
    for command in (backup, restore):
        command.add_argument("--data-dir", type=Path, help="the daemon's data directory", **common)
        command.add_argument("--config", type=Path, help="TOML settings file naming the data directory", **common)
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
    overrides = {"data_dir": args.data_dir}
    if args.command is None:
        overrides |= {"host": args.host, "port": args.port, "log_level": args.log_level}
    try:
        settings = load_settings(args.config, overrides)
    except SettingsError as exc:
        print(f"pivotd: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    # Everything pivotd and its workers create (database, WAL, token, checkpoints, weights) is the owner's alone,
    # whatever umask the shell or unit handed over.
    os.umask(0o077)
    if args.command == "backup":
        return _backup(settings, args.dest)
    if args.command == "restore":
        return _restore(settings, args.source, args.force)
    return serve(settings, demo=args.demo)


def serve(settings: Settings, *, demo: bool) -> int:
    # The server stack (about 1.2 s of CPU) is imported once the directory is claimed and its database checked:
    # a start that is refused exits without it.
    from pivotd.datadir import DataDir, DataDirError  # noqa: PLC0415
    from pivotd.logs import configure_logging  # noqa: PLC0415
    from pivotd.store.integrity import DatabaseUnusable, check_database  # noqa: PLC0415

    configure_logging(settings.log_level)
    try:
        data_dir = DataDir.claim(settings.data_dir)
    except DataDirError as exc:
        log.error("%s; not starting", exc)
        return EXIT_REFUSED
    with data_dir:
        try:
            check_database(settings.db_path)
        except DatabaseUnusable as exc:
            log.error("%s", exc)
            return EXIT_REFUSED
        token = resolve_token(settings)
        if token is None and (not settings.listens_on_loopback or not settings.trust_loopback):
            log.error("refusing to listen on %s without a token: set PIVOT_TOKEN or fix the data dir", settings.host)
            return EXIT_CONFIG

        from pivotd.app import create_app  # noqa: PLC0415
        from pivotd.connections import raise_descriptor_limit  # noqa: PLC0415
        from pivotd.server import PivotServer  # noqa: PLC0415

        before, after = raise_descriptor_limit()
        if after != before:
            log.debug("open-files limit raised from %d to %d", before, after)
        app = create_app(settings, token or "")
        ready = None
        if demo:
            # Only here: the demo's client (httpx, and the click and rich it loads) is a tenth of a start-up.
            from pivotd.demo import feed_demo  # noqa: PLC0415

            ready = functools.partial(feed_demo, token=token)
        server = PivotServer(app, settings, data_dir, on_ready=ready)
        tune_gc()
        try:
            server.run()
        except SystemExit:  # uvicorn exits this way when the lifespan fails; the reason is already logged
            log.error("pivotd could not start on %s:%s", settings.host, settings.port)
            return 1
        return 0 if server.started else 1


def _backup(settings: Settings, dest: Path) -> int:
    from pivotd.backup import BackupError, backup  # noqa: PLC0415

    try:
        copied = backup(settings.data_dir, dest)
    except BackupError as exc:
        print(f"pivotd: backup refused: {exc}", file=sys.stderr)
        return 1
    print(f"backed up {settings.data_dir} to {dest}: {copied.describe()}")
    return 0


def _restore(settings: Settings, source: Path, force: bool) -> int:
    from pivotd.backup import BackupError, restore  # noqa: PLC0415
    from pivotd.datadir import DataDirBusy, DataDirError  # noqa: PLC0415

    try:
        copied = restore(source, settings.data_dir, replace=force)
    except DataDirBusy as exc:
        print(f"pivotd: restore refused: {exc}; stop it first", file=sys.stderr)
        return EXIT_REFUSED
    except (BackupError, DataDirError) as exc:
        print(f"pivotd: restore refused: {exc}", file=sys.stderr)
        return 1
    print(f"restored {source} into {settings.data_dir}: {copied.describe()}; start pivotd to serve it")
    return 0


if __name__ == "__main__":
    sys.exit(main())
