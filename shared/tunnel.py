"""Reach a box's pivotd through the user's own `ssh`: one connection for finding the daemon, reading its token
and forwarding a local port to it, so pivotd stays on the box's loopback and nothing is configured by hand.

The user's ssh is used as it is (their `~/.ssh/config`, keys, agent, jump hosts, known hosts). One master
connection (`ControlMaster`, socket in a private temporary directory) carries everything:

1. `ssh -f -N -M -S SOCKET DEST`: authenticates, then goes to the background; returns once connected.
2. `ssh -S SOCKET DEST sh -c SCRIPT`: prints the remote `daemon.json` and the token file beside it.
3. `ssh -S SOCKET -O forward -L 127.0.0.1:LOCAL:HOST:PORT DEST`: the daemon's port on this machine.

`BatchMode=yes`: a password or host-key prompt fails at once with ssh's own message instead of hanging a TUI
that owns the terminal. `reopen()` rebuilds all three after the connection dropped, on the same local port when it
is still free.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

SSH_ENV = "PIVOT_SSH"
"""The ssh command line to use (shell words), e.g. `ssh -F ~/.ssh/lab_config`; default `ssh`."""
DEFAULT_STATE_DIRS = ('"${XDG_STATE_HOME:-$HOME/.local/state}/pivot"', "/var/lib/pivot")
"""Where the remote daemon announces itself: the user service's state directory, then the system service's."""
TIMEOUT_S = 30.0
SEPARATOR = "--pivot-token--"


class TunnelError(RuntimeError):
    """The box could not be reached or its daemon not found; the message says which and what ssh said."""


@dataclass(frozen=True, slots=True)
class Remote:
    url: str
    """The local end of the forward: `http://127.0.0.1:<port>`."""
    token: str | None
    """The remote daemon's token, or None when this ssh user cannot read it (then pass one in the hosts file)."""
    remote_url: str
    """Where the daemon listens on the box, as its `daemon.json` says."""


def ssh_command() -> list[str]:
    return shlex.split(os.environ.get(SSH_ENV, "ssh"))


class SshTunnel:
    def __init__(
        self,
        destination: str,
        *,
        state_dir: str | None = None,
        ssh: Sequence[str] | None = None,
        local_port: int | None = None,
    ) -> None:
        if not destination or destination.startswith("-"):
            raise TunnelError(f"not an ssh destination: {destination!r}")
        self.destination = destination
        self._state_dir = state_dir
        self._ssh = list(ssh) if ssh is not None else ssh_command()
        self._control_dir: Path | None = None
        self._local_port = local_port
        """The forward's local port: kept across reopen() while free; a caller may choose it before connecting."""
        self.remote: Remote | None = None

    @property
    def local_port(self) -> int | None:
        return self._local_port

    @property
    def _socket(self) -> Path:
        assert self._control_dir is not None
        return self._control_dir / "ssh"  # short: a Unix socket path has ~100 bytes

    def open(self) -> Remote:
        """Connect, find the daemon, forward a local port to it; TunnelError with ssh's words on failure."""
        if self._control_dir is None:
            self._control_dir = Path(tempfile.mkdtemp(prefix="pivot-ssh-"))
        self._run(
            ["-f", "-N", "-M", "-S", str(self._socket), "-o", "ControlPersist=no", "-o", "BatchMode=yes",
             "-o", "ServerAliveInterval=10", "-o", "ServerAliveCountMax=3", "-o", "ExitOnForwardFailure=yes",
             "--", self.destination],
            "connect",
        )  # fmt: skip
        announced, token = self._read_daemon()
        parts = urlsplit(announced)
        if parts.hostname is None or parts.port is None:
            raise TunnelError(f"{self.destination}: daemon.json names no host and port: {announced!r}")
        host = "127.0.0.1" if parts.hostname in ("0.0.0.0", "::", "localhost") else parts.hostname
        port = self._local_port if self._local_port is not None and _free(self._local_port) else free_port()
        self._run(
            ["-S", str(self._socket), "-O", "forward", "-L", f"127.0.0.1:{port}:{host}:{parts.port}",
             "--", self.destination],
            "forward",
        )  # fmt: skip
        self._local_port = port
        self.remote = Remote(f"http://127.0.0.1:{port}", token, announced)
        return self.remote

    def alive(self) -> bool:
        """Whether the master connection is still up (`ssh -O check`)."""
        if self._control_dir is None:
            return False
        check = self._ssh + ["-S", str(self._socket), "-O", "check", "--", self.destination]
        return subprocess.run(check, capture_output=True, timeout=TIMEOUT_S, check=False).returncode == 0

    def reopen(self) -> Remote:
        """After a drop: a new connection and forward, on the same local port where it is still free."""
        self._exit_master()
        return self.open()

    def close(self) -> None:
        self._exit_master()
        if self._control_dir is not None:
            shutil.rmtree(self._control_dir, ignore_errors=True)
            self._control_dir = None

    def __enter__(self) -> SshTunnel:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _exit_master(self) -> None:
        if self._control_dir is not None and self._socket.exists():
            stop = self._ssh + ["-S", str(self._socket), "-O", "exit", "--", self.destination]
            subprocess.run(stop, capture_output=True, timeout=TIMEOUT_S, check=False)
            # A master that died leaves its socket behind, and a new master will not replace an existing one: it
            # would silently connect without multiplexing.
            self._socket.unlink(missing_ok=True)

    def _read_daemon(self) -> tuple[str, str | None]:
        candidates = (shlex.quote(self._state_dir),) if self._state_dir else DEFAULT_STATE_DIRS
        script = (
            f'for d in {" ".join(candidates)}; do if [ -r "$d/daemon.json" ]; then '
            f'cat "$d/daemon.json"; echo; echo {SEPARATOR}; cat "$d/token" 2>/dev/null; exit 0; fi; done; exit 3'
        )
        done = subprocess.run(
            [*self._ssh, "-S", str(self._socket), "--", self.destination, "sh -c " + shlex.quote(script)],
            capture_output=True, text=True, timeout=TIMEOUT_S, check=False,
        )  # fmt: skip
        if done.returncode == 3:
            where = self._state_dir or " or ".join(DEFAULT_STATE_DIRS)
            raise TunnelError(f"{self.destination}: no running pivotd announced itself in {where} (is pivotd running?)")
        if done.returncode != 0:
            raise TunnelError(f"{self.destination}: reading daemon.json failed: {_said(done.stderr)}")
        announcement, _, token = done.stdout.partition(f"\n{SEPARATOR}\n")
        try:
            url = json.loads(announcement)["url"]
        except (ValueError, KeyError, TypeError) as exc:
            raise TunnelError(f"{self.destination}: unreadable daemon.json: {announcement[:200]!r}") from exc
        return str(url), token.strip() or None

    def _run(self, args: list[str], what: str) -> None:
        # Errors go to a file, not a pipe: the master (`-f`) keeps the stderr it was given after it forks, and
        # reading a pipe to its end would wait for the connection to close.
        with tempfile.TemporaryFile("w+") as errors:
            try:
                code = subprocess.run(
                    [*self._ssh, *args], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=errors,
                    timeout=TIMEOUT_S, check=False,
                ).returncode  # fmt: skip
            except subprocess.TimeoutExpired as exc:
                raise TunnelError(f"{self.destination}: ssh {what} took more than {TIMEOUT_S:.0f} s") from exc
            except FileNotFoundError as exc:
                raise TunnelError(f"ssh not found ({self._ssh[0]}): install OpenSSH's client") from exc
            errors.seek(0)
            if code != 0:
                raise TunnelError(f"{self.destination}: ssh {what} failed: {_said(errors.read())}")


def _said(stderr: str) -> str:
    lines = [line for line in stderr.strip().splitlines() if line.strip()]
    return lines[-1] if lines else "no message from ssh"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _free(port: int) -> bool:
    with socket.socket() as probe:
        # As ssh binds its listener: connections of the last forward still in TIME_WAIT do not make the port busy.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True
