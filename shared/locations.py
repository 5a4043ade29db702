"""Where the local daemon keeps its state: one place, so pivotd, the SDK and the TUI agree.

`$STATE_DIRECTORY` (set by systemd's `StateDirectory=`) wins, then `$XDG_STATE_HOME/pivot`,
then `~/.local/state/pivot`. The daemon's bearer token lives there as `token` (mode 0600) and the
address it listens on as `daemon.json`, so local clients need no configuration.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from urllib.parse import urlsplit

TOKEN_FILE = "token"
DAEMON_FILE = "daemon.json"
DEFAULT_URL = "http://127.0.0.1:8000"


def state_dir() -> Path:
    systemd_dir = os.environ.get("STATE_DIRECTORY")
    if systemd_dir:
        # systemd may pass several colon-separated directories; the first is ours.
        return Path(systemd_dir.split(":")[0])
    xdg = os.environ.get("XDG_STATE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".local" / "state") / "pivot"


def config_dir() -> Path:
    systemd_dir = os.environ.get("CONFIGURATION_DIRECTORY")
    if systemd_dir:
        return Path(systemd_dir.split(":")[0])
    xdg = os.environ.get("XDG_CONFIG_HOME")
    return (Path(xdg) if xdg else Path.home() / ".config") / "pivot"


def read_local_token(directory: Path | None = None) -> str | None:
    """The local daemon's token, or None when there is none or it is not readable by this user."""
    try:
        return (directory or state_dir()).joinpath(TOKEN_FILE).read_text().strip() or None
    except OSError:
        return None


def read_local_url(directory: Path | None = None) -> str | None:
    """The URL the local daemon announced when it became ready, or None."""
    try:
        info = json.loads((directory or state_dir()).joinpath(DAEMON_FILE).read_text())
    except (OSError, ValueError):
        return None
    url = info.get("url") if isinstance(info, dict) else None
    return url if isinstance(url, str) else None


def resolve_url(url: str | None = None) -> str:
    """Explicit argument, then `PIVOT_URL`, then the local daemon's announcement, then the default."""
    return (url or os.environ.get("PIVOT_URL") or read_local_url() or DEFAULT_URL).rstrip("/")


def resolve_token(token: str | None = None, url: str | None = None) -> str | None:
    """Explicit argument, then `PIVOT_TOKEN`, then the local daemon's token file, which goes only to the
    address that daemon announced (or to any address when `url` is None)."""
    return token or os.environ.get("PIVOT_TOKEN") or local_token_for(url)


def local_token_for(url: str | None) -> str | None:
    """The local daemon's token, for `url` when that is the local daemon's own address. Presented to another
    daemon (a second one with its own data dir, a remote one) it is a wrong token: 401, even from loopback,
    where sending none would have been trusted."""
    if url is not None:
        announced = read_local_url()
        if announced is None or _address(announced) != _address(url):
            return None
    return read_local_token()


def _address(url: str) -> tuple[str, str, int | None]:
    """(scheme, host, port) with `localhost` as 127.0.0.1, so spellings of one local address compare equal."""
    parts = urlsplit(url if "://" in url else f"http://{url}")
    host = (parts.hostname or "").lower()
    try:
        port = parts.port or {"http": 80, "https": 443}.get(parts.scheme)
    except ValueError:  # an out-of-range port: no daemon listens there
        port = None
    return parts.scheme, "127.0.0.1" if host == "localhost" else host, port
