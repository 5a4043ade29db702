"""The hosts file: the boxes a person watches, by name (`pivot-tui --host NAME`, `--all`; `pivotctl --host NAME`).

`$XDG_CONFIG_HOME/pivot/hosts.toml` (default `~/.config/pivot/hosts.toml`), one table per box:

    [hosts.gpu-1]
    ssh = "gpu-1"                       # reached through the user's own ssh; pivotd stays on loopback there
    [hosts.lab]
    url = "http://10.0.0.5:8000"
    token_file = "~/.config/pivot/lab.token"

A box has either `url` (with an optional `token` or `token_file`) or `ssh` (an ssh destination, with an
optional `state_dir` where that box's pivotd keeps `daemon.json` and `token` when it is not the default).
Mistakes are refused with the file, the host and the field named, before anything connects.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from shared.locations import config_dir

HOSTS_FILE = "hosts.toml"
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
FIELDS = frozenset({"url", "token", "token_file", "ssh", "state_dir"})


class HostsError(ValueError):
    """The hosts file cannot be used as written; the message names the file, the host and the field."""


@dataclass(frozen=True, slots=True)
class Host:
    name: str
    url: str | None = None
    token: str | None = None
    ssh: str | None = None
    state_dir: str | None = None
    """On the remote box, for `ssh` hosts; None tries the user service's then the system service's state dir."""


def hosts_path() -> Path:
    return config_dir() / HOSTS_FILE


def load_hosts(path: Path | None = None) -> dict[str, Host]:
    """Every host in the file, in file order; {} when there is no file."""
    path = path or hosts_path()
    try:
        document = tomllib.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise HostsError(f"{path}: {exc}") from exc
    table = document.get("hosts", {})
    if not isinstance(table, dict) or set(document) - {"hosts"}:
        raise HostsError(f"{path}: expected only [hosts.NAME] tables")
    return {name: _host(path, name, entry) for name, entry in table.items()}


def find_host(name: str, path: Path | None = None) -> Host:
    hosts = load_hosts(path)
    if name not in hosts:
        known = ", ".join(hosts) or "none"
        raise HostsError(f"no host {name!r} in {path or hosts_path()} (known: {known})")
    return hosts[name]


def _host(path: Path, name: str, entry: object) -> Host:
    where = f"{path}: [hosts.{name}]"
    if not NAME.match(name):
        raise HostsError(f"{where}: a host name is letters, digits, '.', '_' and '-' (at most 64)")
    if not isinstance(entry, dict):
        raise HostsError(f"{where}: expected a table")
    unknown = sorted(set(entry) - FIELDS)
    if unknown:
        raise HostsError(f"{where}: unknown field {unknown[0]!r} (fields: {', '.join(sorted(FIELDS))})")
    for field, value in entry.items():
        if not isinstance(value, str) or not value.strip():
            raise HostsError(f"{where}: {field} must be a non-empty string")
    url, ssh = entry.get("url"), entry.get("ssh")
    if (url is None) == (ssh is None):
        raise HostsError(f"{where}: give exactly one of url or ssh")
    if url is not None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise HostsError(f"{where}: url must be http(s)://host[:port], not {url!r}")
        if "state_dir" in entry:
            raise HostsError(f"{where}: state_dir is for ssh hosts (the remote box's pivotd state directory)")
    elif ssh is not None and (ssh.startswith("-") or any(c.isspace() for c in ssh)):
        # An ssh destination, never options: `-oProxyCommand=...` here would run a command locally.
        raise HostsError(f"{where}: ssh must be a destination ([user@]host or a Host from ~/.ssh/config)")
    if "token" in entry and "token_file" in entry:
        raise HostsError(f"{where}: give token or token_file, not both")
    token = entry.get("token")
    if "token_file" in entry:
        token_path = Path(entry["token_file"]).expanduser()
        try:
            token = token_path.read_text().strip()
        except OSError as exc:
            raise HostsError(f"{where}: token_file {token_path}: {exc.strerror or exc}") from exc
    return Host(name, url=url.rstrip("/") if url else None, token=token, ssh=ssh, state_dir=entry.get("state_dir"))
