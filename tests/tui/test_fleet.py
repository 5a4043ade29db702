"""pivot-tui over several real pivotd daemons on loopback ports: one merged runs table with a Host column, the
fleet screen, a box that goes away and comes back while the others keep updating; and a box reached over a
real sshd, whose connection is killed and rebuilt."""

from __future__ import annotations

import os
import shlex
import signal
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from textual.widgets import DataTable

from pivot_tui.app import PivotApp, make_app
from pivot_tui.client import Connection
from pivot_tui.config import TuiSettings
from pivot_tui.screens import FleetScreen, RunDetailScreen
from pivot_tui.widgets import RunsTable
from shared.hosts import Host
from tests.daemon import DaemonProcess, daemon_client, running_daemon, start_daemon_process
from tests.payloads import layerwise_payload
from tests.sshd import needs_sshd
from tests.tui.helpers import until


def rows(app: PivotApp) -> list[str]:
    return [str(row.key.value) for row in app.screen.query_one(RunsTable).ordered_rows]  # as displayed


def cell(app: PivotApp, row: str, column: str) -> str:
    table: DataTable[object] = app.screen.query_one("#fleet", DataTable)
    return str(table.get_cell(row, column))


async def post_run(url: str, run_id: str, token: str | None = None) -> None:
    headers = {"authorization": f"Bearer {token}"} if token else {}
    async with daemon_client(url, headers=headers) as http:
        (await http.post("/api/v1/metrics/layerwise", json=layerwise_payload(run_id, 0))).raise_for_status()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def test_three_boxes_in_one_tui_and_one_goes_away_and_comes_back(tmp_path: Path) -> None:
    gamma_port = free_port()
    async with (
        running_daemon(tmp_path / "alpha") as alpha,
        running_daemon(tmp_path / "beta") as beta,
    ):
        gamma_cm = running_daemon(tmp_path / "gamma", port=gamma_port)  # stopped halfway
        gamma = await gamma_cm.__aenter__()
        for url, run_id in ((alpha.url, "same_name"), (beta.url, "same_name"), (gamma.url, "gamma_run")):
            await post_run(url, run_id)
        hosts = tuple(Host(name, url=d.url) for name, d in (("alpha", alpha), ("beta", beta), ("gamma", gamma)))
        app = make_app(TuiSettings(alpha.url, None, "textual-dark", hosts))
        async with app.run_test(size=(120, 40)) as pilot:
            # One table: the same run id on two boxes is two rows, told apart by the Host column.
            await until(pilot, lambda: set(rows(app)) == {"alpha/same_name", "beta/same_name", "gamma/gamma_run"})
            table = app.screen.query_one(RunsTable)
            assert [str(c.label) for c in table.columns.values()][:2] == ["Host", "Run"]
            assert str(table.get_row("beta/same_name")[0]) == "beta"

            # Filtering matches box names too; sorting by host orders across boxes.
            await pilot.press("g", "a", "m")
            await until(pilot, lambda: rows(app) == ["gamma/gamma_run"])
            await pilot.press("escape")
            await until(pilot, lambda: len(rows(app)) == 3)
            await pilot.press("s")
            await until(pilot, lambda: table.sort_column == "host")
            assert [row.split("/")[0] for row in rows(app)] == ["alpha", "beta", "gamma"]
            # Opening a run opens it on its own box.
            table.move_cursor(row=table.get_row_index("beta/same_name"))
            await pilot.press("enter")
            await until(pilot, lambda: isinstance(app.screen, RunDetailScreen) and app.links["beta"].model.followed)
            assert app.current == "beta" and app.links["alpha"].model.followed is None
            await pilot.press("escape")
            if isinstance(app.screen, RunDetailScreen):  # that Esc closed a notice first (as it should)
                await pilot.press("escape")
            await until(pilot, lambda: not isinstance(app.screen, RunDetailScreen))

            # The fleet screen: one row per box.
            await pilot.press("5")
            await until(pilot, lambda: isinstance(app.screen, FleetScreen) and "online" in cell(app, "gamma", "state"))
            assert cell(app, "alpha", "running") == "1" and cell(app, "gamma", "running") == "1"

            # gamma goes away: it is marked offline in place while alpha keeps updating.
            await gamma_cm.__aexit__(None, None, None)
            await until(pilot, lambda: "offline" in cell(app, "gamma", "state"), timeout=20)
            await post_run(alpha.url, "while_gamma_away")
            await until(pilot, lambda: "while_gamma_away" in app.links["alpha"].model.runs)
            assert "online" in cell(app, "alpha", "state")
            await pilot.press("1")
            await until(pilot, lambda: "alpha/while_gamma_away" in rows(app) and "gamma/gamma_run" in rows(app))
            assert "offline: gamma" in str(app.screen.sub_title)
            runs = app.screen.query_one(RunsTable)
            await until(pilot, lambda: "○ gamma" in str(runs.get_row("gamma/gamma_run")[0]))  # its runs: as last read
            assert str(runs.get_row("alpha/same_name")[0]) == "alpha"

            # gamma comes back on its port: online again, with what it learnt meanwhile.
            async with running_daemon(tmp_path / "gamma", port=gamma_port) as again:
                await post_run(again.url, "gamma_after")
                await until(pilot, lambda: "gamma/gamma_after" in rows(app), timeout=20)
                assert app.links["gamma"].model.connection is Connection.ONLINE


@pytest.fixture
def box_daemon(tmp_path: Path) -> Iterator[DaemonProcess]:
    """The box's pivotd, trusting no one without its token (loopback included)."""
    daemon = start_daemon_process(tmp_path / "box-state", env={"PIVOT_TRUST_LOOPBACK": "false"})
    yield daemon
    daemon.signal(signal.SIGTERM)
    daemon.wait()


@needs_sshd
async def test_a_box_over_ssh_reads_its_token_and_survives_a_dropped_connection(
    sshd: list[str], box_daemon: DaemonProcess, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PIVOT_SSH", shlex.join(sshd))
    token = (tmp_path / "box-state" / "token").read_text().strip()
    await post_run(box_daemon.url, "over_ssh", token)
    host = Host("box", ssh="box", state_dir=str(tmp_path / "box-state"))
    app = make_app(TuiSettings("ssh box", None, "textual-dark", (host,)))
    async with app.run_test(size=(100, 30)) as pilot:
        link = app.links["box"]
        await until(pilot, lambda: "over_ssh" in rows(app), timeout=30)  # the token came over ssh: it got in
        assert link.client.token == token and link.client.url.startswith("http://127.0.0.1:")
        url = link.client.url

        # The ssh connection dies: the TUI notices, rebuilds it on the same local port, and re-syncs.
        tunnel = link.tunnel
        assert tunnel is not None
        check = subprocess.run([*sshd, "-S", str(tunnel._socket), "-O", "check", "box"], capture_output=True, text=True)
        os.kill(int(check.stderr.split("pid=")[1].split(")")[0]), signal.SIGKILL)
        await until(pilot, lambda: link.model.connection is not Connection.ONLINE, timeout=20)
        await post_run(box_daemon.url, "after_the_drop", token)
        await until(pilot, lambda: "after_the_drop" in rows(app), timeout=40)
        assert link.client.url == url


def test_a_box_gpus_fit_their_column_hot_ones_in_red() -> None:
    from pivot_tui.screens.fleet import gpus_cell
    from shared.models.monitor import ResourceSample

    def gpu(index: int, utilization: float, temperature: float) -> dict[str, float]:
        return {"id": index, "utilization": utilization, "memory_used_gb": 40, "memory_total_gb": 80,
                "temperature": temperature}  # fmt: skip

    sample = ResourceSample.model_validate(
        {"timestamp": "t", "time": 0, "gpu": [gpu(0, 87, 65), gpu(1, 99, 88), gpu(2, 3, 40), gpu(3, 50, 70)]}
    )
    assert gpus_cell(sample, 80) == "87% 40/80G 65° │ 99% 40/80G [red]88°[/] │ 3% 40/80G 40° │ 50% 40/80G 70°"
    assert gpus_cell(sample, 13) == "87% 65° [dim]+3[/]"  # as many as fit, then how many more
    assert gpus_cell(ResourceSample.model_validate({"timestamp": "t", "time": 0}), 20) == "[dim]unknown[/]"
