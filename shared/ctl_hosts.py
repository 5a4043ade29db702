"""`pivotctl --host NAME`: a daemon named in hosts.toml (its url and token, or reached through ssh), or a URL."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from urllib.parse import urlsplit

from shared.hosts import find_host
from shared.tunnel import SshTunnel


@dataclass(frozen=True, slots=True)
class Target:
    url: str
    """Where this machine reaches the daemon (through an ssh forward: a local port)."""
    token: str | None
    address: str
    """The box's own name or address, as other boxes would reach it (a multi-node job's rendezvous host)."""


@contextmanager
def target(host: str, token: str | None) -> Iterator[Target]:
    """`host` is a URL or a hosts.toml name; `token` (from `--token`) wins over the file's. An ssh host's tunnel
    stays open while the block runs."""
    if host.startswith(("http://", "https://")):
        yield Target(host.rstrip("/"), token, urlsplit(host).hostname or host)
        return
    entry = find_host(host)
    if entry.url is not None:
        yield Target(entry.url, token or entry.token, urlsplit(entry.url).hostname or host)
        return
    assert entry.ssh is not None  # the hosts file gives exactly one of url and ssh
    with SshTunnel(entry.ssh, state_dir=entry.state_dir) as tunnel:
        remote = tunnel.open()
        yield Target(remote.url, token or entry.token or remote.token, entry.ssh.rpartition("@")[2])
