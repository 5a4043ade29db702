"""A real OpenSSH server on a loopback port, with keys generated for the test: the `sshd` fixture, for the tunnel's
tests and the TUI's."""

from __future__ import annotations

import getpass
import os
import shutil
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

SSHD = Path("/usr/sbin/sshd")
needs_sshd = pytest.mark.skipif(
    not SSHD.exists() or shutil.which("ssh") is None, reason="OpenSSH's server and client are not installed"
)


def keygen(path: Path) -> None:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True, timeout=30)


@pytest.fixture
def sshd(tmp_path: Path) -> Iterator[list[str]]:
    """A real sshd on a free loopback port; yields the ssh command line (`ssh -F config`) that reaches it as `box`."""
    keys = tmp_path / "ssh"
    keys.mkdir(mode=0o700)
    keygen(keys / "host")
    keygen(keys / "client")
    (keys / "authorized_keys").write_text((keys / "client.pub").read_text())
    if os.geteuid() == 0:
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # privilege separation wants it when run as root
    config = keys / "sshd_config"
    config.write_text(
        f"ListenAddress 127.0.0.1\nPort 0\nHostKey {keys / 'host'}\nAuthorizedKeysFile {keys / 'authorized_keys'}\n"
        f"PidFile {keys / 'sshd.pid'}\nUsePAM no\nStrictModes no\nPasswordAuthentication no\n"
        "KbdInteractiveAuthentication no\nAllowTcpForwarding yes\nPermitRootLogin prohibit-password\n"
        "LogLevel VERBOSE\n"
    )
    port = free_port()
    server = subprocess.Popen(
        [SSHD, "-D", "-e", "-f", config, "-p", str(port)],
        stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert server.stderr is not None
    listening = threading.Event()
    log: list[str] = []

    def drain() -> None:  # read sshd's log to its end, so that it never blocks on a full pipe
        assert server.stderr is not None
        with server.stderr:
            for line in server.stderr:
                log.append(line)
                if "Server listening on" in line:
                    listening.set()
        listening.set()

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    if not listening.wait(30) or server.poll() is not None:  # sshd says when it listens: no polling of the port
        pytest.fail(f"sshd did not start: {''.join(log)}")
    host_key = (keys / "host.pub").read_text().split()
    (keys / "known_hosts").write_text(f"[127.0.0.1]:{port} {host_key[0]} {host_key[1]}\n")
    client = keys / "ssh_config"
    client.write_text(
        f"Host box\n  HostName 127.0.0.1\n  Port {port}\n  User {getpass.getuser()}\n"
        f"  IdentityFile {keys / 'client'}\n  IdentitiesOnly yes\n  UserKnownHostsFile {keys / 'known_hosts'}\n"
        "  StrictHostKeyChecking yes\n  LogLevel ERROR\n"
    )
    yield ["ssh", "-F", str(client)]
    server.terminate()
    server.wait(10)
    # The log ends once the connections' processes are gone too; they end with their clients (the tunnels,
    # closed by the tests), so this is quick, and a tunnel left open shows as a reader still running.
    reader.join(10)
    print("".join(log))  # shown when a test fails
    assert not reader.is_alive(), "an ssh connection outlived its test"


def free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])
