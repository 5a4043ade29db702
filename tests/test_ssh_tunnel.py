"""Reaching a box's pivotd through ssh, against a real OpenSSH server the test starts on a loopback port with keys
it generates, and a real pivotd that trusts nobody without its token."""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from shared.hosts import HostsError, find_host, load_hosts
from shared.tunnel import SshTunnel, TunnelError
from tests.daemon import DaemonProcess, start_daemon_process
from tests.sshd import needs_sshd


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


@needs_sshd
def test_pivotctl_host_reaches_a_box_over_ssh_and_by_url(
    sshd: list[str],
    box_daemon: tuple[DaemonProcess, Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from shared.ctl import main

    daemon, state = box_daemon
    token = (state / "token").read_text().strip()
    (tmp_path / "config" / "pivot").mkdir(parents=True)
    (tmp_path / "config" / "pivot" / "hosts.toml").write_text(
        f'[hosts.box]\nssh = "box"\nstate_dir = "{state}"\n\n[hosts.direct]\nurl = "{daemon.url}"\ntoken = "{token}"\n'
    )
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.setenv("PIVOT_SSH", " ".join(sshd))
    for host in ("box", "direct"):  # the box's daemon wants its token: each way found it
        assert main(["--host", host, "--json", "runs"]) == 0
        assert capsys.readouterr().out.strip().startswith(("[", "{"))
    assert main(["--host", "nope", "runs"]) == 2
    assert "no host 'nope'" in capsys.readouterr().err
