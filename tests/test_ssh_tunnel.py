"""Reaching a box's pivotd through ssh, against a real OpenSSH server the test starts on a loopback port with keys
it generates, and a real pivotd that trusts nobody without its token."""

from __future__ import annotations

import getpass
import os
import shutil
import signal
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from shared.hosts import HostsError, find_host, load_hosts
from shared.tunnel import SshTunnel, TunnelError
from tests.daemon import DaemonProcess, start_daemon_process

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


@pytest.fixture
def box_daemon(tmp_path: Path) -> Iterator[tuple[DaemonProcess, Path]]:
    """The box's pivotd: it trusts no one without its token, loopback included, so a reply proves the token was read."""
    state = tmp_path / "box-state"
    daemon = start_daemon_process(state, env={"PIVOT_TRUST_LOOPBACK": "false"})
    yield daemon, state
    daemon.signal(signal.SIGTERM)
    daemon.wait()


@needs_sshd
def test_a_tunnel_finds_the_daemon_reads_its_token_and_survives_a_drop(
    sshd: list[str], box_daemon: tuple[DaemonProcess, Path]
) -> None:
    daemon, state = box_daemon
    with SshTunnel("box", state_dir=str(state), ssh=sshd) as tunnel:
        remote = tunnel.open()
        assert remote.remote_url == daemon.url and remote.url != daemon.url
        assert remote.token == (state / "token").read_text().strip()
        headers = {"authorization": f"Bearer {remote.token}"}
        assert httpx.get(f"{remote.url}/api/v1/runs", headers=headers).status_code == 200
        assert httpx.get(f"{remote.url}/api/v1/runs").status_code == 401  # the token is what let us in
        assert tunnel.alive()

        # The connection drops (its master process dies): the tunnel says so and comes back on the same port.
        check = subprocess.run([*sshd, "-S", str(tunnel._socket), "-O", "check", "box"], capture_output=True, text=True)
        master = int(check.stderr.split("pid=")[1].split(")")[0])
        os.kill(master, signal.SIGKILL)
        assert not tunnel.alive()
        with pytest.raises(httpx.TransportError):
            httpx.get(f"{remote.url}/api/v1/runs", headers=headers)
        again = tunnel.reopen()
        assert again.url == remote.url
        assert httpx.get(f"{again.url}/api/v1/runs", headers=headers).status_code == 200
    assert not tunnel.alive()


@needs_sshd
def test_no_daemon_on_the_box_is_said_in_words(sshd: list[str], tmp_path: Path) -> None:
    with (
        SshTunnel("box", state_dir=str(tmp_path / "nothing-here"), ssh=sshd) as tunnel,
        pytest.raises(TunnelError) as e,
    ):
        tunnel.open()
    assert "no running pivotd announced itself" in str(e.value)


@needs_sshd
def test_ssh_refusing_the_key_fails_at_once_with_ssh_own_words(sshd: list[str], tmp_path: Path) -> None:
    (Path(sshd[2]).parent / "authorized_keys").write_text("")  # the server no longer knows our key
    with SshTunnel("box", ssh=sshd) as tunnel, pytest.raises(TunnelError) as e:
        tunnel.open()  # BatchMode: no password prompt to hang on
    assert "ssh connect failed" in str(e.value) and "Permission denied" in str(e.value)


def test_a_destination_that_is_an_option_is_refused() -> None:
    with pytest.raises(TunnelError):
        SshTunnel("-oProxyCommand=touch /tmp/pwned")


def test_hosts_file(tmp_path: Path) -> None:
    token_file = tmp_path / "lab.token"
    token_file.write_text("tok-123\n")
    hosts = tmp_path / "hosts.toml"
    hosts.write_text(
        f'[hosts.gpu-1]\nssh = "gpu-1"\n\n[hosts.lab]\nurl = "http://10.0.0.5:8000/"\ntoken_file = "{token_file}"\n'
    )
    loaded = load_hosts(hosts)
    assert list(loaded) == ["gpu-1", "lab"]
    assert loaded["gpu-1"].ssh == "gpu-1" and loaded["gpu-1"].url is None
    assert loaded["lab"].url == "http://10.0.0.5:8000" and loaded["lab"].token == "tok-123"
    assert load_hosts(tmp_path / "absent.toml") == {}
    with pytest.raises(HostsError, match=r"no host 'nope' .*known: gpu-1, lab"):
        find_host("nope", hosts)


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ('url = "http://a:1"\nssh = "a"', "exactly one of url or ssh"),
        ("", "exactly one of url or ssh"),
        ('ssh = "-oProxyCommand=x"', "ssh must be a destination"),
        ('ssh = "a b"', "ssh must be a destination"),
        ('url = "ftp://a"', "url must be http"),
        ('url = "http://a:1"\nstate_dir = "/x"', "state_dir is for ssh hosts"),
        ('url = "http://a:1"\nport = 3', "unknown field 'port'"),
        ("url = 3", "url must be a non-empty string"),
        ('url = "http://a:1"\ntoken = "t"\ntoken_file = "/t"', "token or token_file, not both"),
        ('url = "http://a:1"\ntoken_file = "/no/such/file"', "token_file /no/such/file"),
    ],
)
def test_hosts_file_mistakes_name_the_host_and_field(tmp_path: Path, entry: str, message: str) -> None:
    hosts = tmp_path / "hosts.toml"
    hosts.write_text(f"[hosts.box]\n{entry}\n")
    with pytest.raises(HostsError, match=message) as e:
        load_hosts(hosts)
    assert f"{hosts}: [hosts.box]" in str(e.value)
