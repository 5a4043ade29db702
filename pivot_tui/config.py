"""Where pivot-tui finds its daemon: flags, then `PIVOT_URL`/`PIVOT_TOKEN`, then `tui.toml` under the XDG
config dir, then the local daemon's `daemon.json` and token file, then http://127.0.0.1:8000. Several daemons:
`--url` more than once, `--ssh DEST`, or boxes named in `hosts.toml` (`--host NAME`, `--all`)."""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from shared.hosts import Host, HostsError, find_host, load_hosts
from shared.locations import DEFAULT_URL, config_dir, local_token_for, read_local_url

CONFIG_FILE = "tui.toml"


@dataclass(frozen=True, slots=True)
class TuiSettings:
    url: str
    token: str | None
    theme: str
    hosts: tuple[Host, ...] = ()
    """The boxes to watch; empty: the one daemon at `url`. With one host the UI looks as it does for `url`."""


def _file_settings(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as handle:
            document = tomllib.load(handle)
    except FileNotFoundError:
        return {}
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ValueError(f"cannot read {path}: {exc}") from exc
    section = document.get("tui", document)
    return section if isinstance(section, dict) else {}


def resolve(url: str | None = None, token: str | None = None, theme: str | None = None) -> TuiSettings:
    file = _file_settings(config_dir() / CONFIG_FILE)
    resolved_url = str(url or os.environ.get("PIVOT_URL") or file.get("url") or read_local_url() or DEFAULT_URL)
    resolved_token = token or os.environ.get("PIVOT_TOKEN") or file.get("token") or local_token_for(resolved_url)
    return TuiSettings(
        url=resolved_url.rstrip("/"),
        token=resolved_token,
        theme=theme or os.environ.get("PIVOT_TUI_THEME") or file.get("theme") or "textual-dark",
    )


def resolve_hosts(
    urls: list[str], names: list[str], every: bool, ssh: list[str], token: str | None
) -> tuple[Host, ...]:
    """The boxes named on the command line, in order: `--url`s (named by host:port), `--host` names or `--all` of
    hosts.toml, then `--ssh` destinations; () when no box was named. HostsError for an unknown or repeated name."""
    hosts = [Host(urlsplit(url).netloc, url=url.rstrip("/"), token=token or local_token_for(url)) for url in urls]
    if every:
        hosts += load_hosts().values()
        if not hosts:
            raise HostsError(f"--all: no hosts in {config_dir() / 'hosts.toml'}")
    hosts += [find_host(name) for name in names]
    hosts += [Host(destination, ssh=destination, token=token) for destination in ssh]
    seen: set[str] = set()
    for host in hosts:
        if host.name in seen:
            raise HostsError(f"the box {host.name!r} is named twice")
        seen.add(host.name)
    return tuple(hosts)
