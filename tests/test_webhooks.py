"""Webhooks against a real daemon and a real HTTP receiver on loopback: signatures, retries, formats,
the test route, validation, secrets, and deliveries that survive a killed daemon."""

from __future__ import annotations

import asyncio
import json
import shutil
import signal
import ssl
import subprocess
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.daemon import RunningDaemon, daemon_client, running_daemon, start_daemon_process
from tests.receiver import Receiver

FAST = {"sample_interval_s": 0.2, "webhook_retry_base_s": 0.05, "alert_check_interval_s": 0.05}
SECRET = "s3cret-for-tests"


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    server = await Receiver().start()
    yield server
    await server.close()


async def register(http: httpx.AsyncClient, url: str, events: list[str], **extra: Any) -> dict[str, Any]:
    response = await http.post("/api/v1/webhooks", json={"url": url, "events": events, "secret": SECRET} | extra)
    assert response.status_code == 201, response.text
    return response.json()


async def fire_scalar_alert(http: httpx.AsyncClient, run_id: str = "r1") -> str:
    spec = {"name": "hot_loss", "metric": "train_loss", "condition": "greater_than", "threshold": 5}
    rule = (await http.post("/api/v1/alerts/rules", json=spec)).json()
    await http.post(f"/api/v1/runs/{run_id}/scalars", json=[{"step": 7, "values": {"train_loss": 9.0}}])
    return str(rule["rule_id"])


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float = 5) -> None:
    """Poll a daemon-side condition that no message announces (delivery bookkeeping)."""
    async with asyncio.timeout(timeout):
        while not await check():
            await asyncio.sleep(0.02)


async def deliveries(http: httpx.AsyncClient, webhook_id: str) -> dict[str, int]:
    return dict((await http.get(f"/api/v1/webhooks/{webhook_id}")).json()["deliveries"])


async def test_alert_delivery_is_signed(tmp_path: Path, receiver: Receiver) -> None:
    async with running_daemon(tmp_path / "s", **FAST) as daemon, daemon_client(daemon.url) as http:
        hook = await register(http, receiver.url, ["alert_triggered", "training_completed"])
        rule_id = await fire_scalar_alert(http)
        got = await receiver.next()
        assert got.path == "/hook" and got.signature_valid(SECRET) and not got.signature_valid("other-secret")
        assert abs(int(got.headers["x-pivot-timestamp"]) - time.time()) < 60
        assert got.headers["x-pivot-event"] == "alert_triggered"
        assert got.headers["content-type"] == "application/json"
        body = got.json()
        assert body["event"] == "alert_triggered" and body["delivery_id"] == got.headers["x-pivot-delivery"]
        assert body["data"]["rule_id"] == rule_id and body["data"]["run_id"] == "r1" and body["data"]["step"] == 7
        assert "train_loss" in body["text"]
        await daemon.services.notifier.run_ended("sess_9", "succeeded")
        training = await receiver.next()
        assert training.headers["x-pivot-event"] == "training_completed" and training.signature_valid(SECRET)
        assert training.json()["data"]["session_id"] == "sess_9"
        await eventually(lambda: _counts_are(http, hook["webhook_id"], delivered=2))


async def _counts_are(http: httpx.AsyncClient, webhook_id: str, **expected: int) -> bool:
    counts = await deliveries(http, webhook_id)
    return all(counts[k] == v for k, v in expected.items())


async def test_receiver_failing_twice_gets_exactly_one_success(tmp_path: Path) -> None:
    receiver = await Receiver(statuses=[500, 503]).start()
    try:
        async with running_daemon(tmp_path / "s", **FAST) as daemon, daemon_client(daemon.url) as http:
            hook = await register(http, receiver.url, ["alert_triggered", "alert_resolved"])
            rule_id = await fire_scalar_alert(http)
            attempts = [await receiver.next() for _ in range(3)]
            assert len({a.headers["x-pivot-delivery"] for a in attempts}) == 1
            assert all(a.signature_valid(SECRET) for a in attempts)
            await eventually(lambda: _counts_are(http, hook["webhook_id"], delivered=1, pending=0, failed=0))
            # The next request the receiver sees is a new event, not a fourth copy of the first.
            await http.post("/api/v1/runs/r1/scalars", json=[{"step": 8, "values": {"train_loss": 1.0}}])
            resolved = await receiver.next()
            assert resolved.headers["x-pivot-event"] == "alert_resolved"
            assert resolved.json()["data"]["rule_id"] == rule_id
            assert resolved.headers["x-pivot-delivery"] != attempts[0].headers["x-pivot-delivery"]
    finally:
        await receiver.close()


async def test_delivery_gives_up_after_max_attempts(tmp_path: Path) -> None:
    receiver = await Receiver(default=500).start()
    try:
        settings = FAST | {"webhook_max_attempts": 2}
        async with running_daemon(tmp_path / "s", **settings) as daemon, daemon_client(daemon.url) as http:
            hook = await register(http, receiver.url, ["alert_triggered"])
            await fire_scalar_alert(http)
            await receiver.next()
            await receiver.next()
            await eventually(lambda: _counts_are(http, hook["webhook_id"], failed=1, pending=0))
    finally:
        await receiver.close()


@pytest.mark.shared_daemon  # refused requests: one daemon for all these cases
@pytest.mark.parametrize(("fmt", "key"), [("slack", "text"), ("discord", "content")])
async def test_slack_and_discord_formats(tmp_path: Path, receiver: Receiver, fmt: str, key: str) -> None:
    async with running_daemon(tmp_path / "s", **FAST) as daemon, daemon_client(daemon.url) as http:
        await register(http, receiver.url, ["alert_triggered"], format=fmt)
        await fire_scalar_alert(http)
        got = await receiver.next()
        body = got.json()
        assert list(body) == [key] and "train_loss" in body[key] and got.signature_valid(SECRET)


async def test_test_route_reports_the_receivers_answer(daemon: RunningDaemon, http: httpx.AsyncClient) -> None:
    receiver = await Receiver(statuses=[200, 404]).start()
    hook = await register(http, receiver.url, ["alert_triggered"])
    result = (await http.post(f"/api/v1/webhooks/{hook['webhook_id']}/test")).json()
    assert result["success"] is True and result["status_code"] == 200 and result["response_time_ms"] >= 0
    got = await receiver.next()
    assert got.headers["x-pivot-event"] == "test" and got.signature_valid(SECRET)
    assert (await http.post(f"/api/v1/webhooks/{hook['webhook_id']}/test")).json()["success"] is False
    await receiver.close()
    down = (await http.post(f"/api/v1/webhooks/{hook['webhook_id']}/test")).json()
    assert down["success"] is False and down["status_code"] is None and "Connect" in down["error"]
    assert (await http.post("/api/v1/webhooks/webhook_nope/test")).status_code == 404


async def test_deliveries_off_send_nothing_and_keep_the_outbox(tmp_path: Path, receiver: Receiver) -> None:
    """`webhook_deliveries = false` (the fuzz's daemon): an alert's delivery waits, the test route connects nowhere,
    and a daemon with deliveries on sends what waited."""
    off = {"webhook_deliveries": False, **FAST}
    async with running_daemon(tmp_path / "s", **off) as daemon, daemon_client(daemon.url) as http:
        hook = await register(http, receiver.url, ["alert_triggered"])
        await fire_scalar_alert(http)
        await eventually(lambda: _counts_are(http, hook["webhook_id"], pending=1))
        tested = (await http.post(f"/api/v1/webhooks/{hook['webhook_id']}/test")).json()
        assert tested["success"] is False and tested["status_code"] is None
        assert "webhook_deliveries is false" in tested["error"]
        assert sum(daemon.services.webhooks.attempts.values()) == 0
    assert receiver.received.empty()
    async with running_daemon(tmp_path / "s", **FAST) as daemon, daemon_client(daemon.url) as http:
        got = await receiver.next()
        assert got.headers["x-pivot-event"] == "alert_triggered" and got.signature_valid(SECRET)
        await eventually(lambda: _counts_are(http, hook["webhook_id"], delivered=1, pending=0))


async def test_secrets_are_shown_once_and_webhooks_delete(daemon: RunningDaemon, http: httpx.AsyncClient) -> None:
    created = (await http.post("/api/v1/webhooks", json={"url": "https://example.com/x", "events": ["*"]})).json()
    assert len(created["secret"]) >= 32 and created["status"] == "active" and created["format"] == "json"
    mine = await register(http, "https://example.com/y", ["training_failed", "alert_triggered"])
    assert mine["secret"] == SECRET and mine["events"] == ["alert_triggered", "training_failed"]
    listing = await http.get("/api/v1/webhooks")
    assert SECRET not in listing.text and created["secret"] not in listing.text and "secret" not in listing.text
    assert [w["webhook_id"] for w in listing.json()["webhooks"]] == [created["webhook_id"], mine["webhook_id"]]
    one = await http.get(f"/api/v1/webhooks/{mine['webhook_id']}")
    assert "secret" not in one.text and one.json()["deliveries"] == {"pending": 0, "delivered": 0, "failed": 0}
    assert (await http.delete(f"/api/v1/webhooks/{mine['webhook_id']}")).status_code == 204
    assert (await http.delete(f"/api/v1/webhooks/{mine['webhook_id']}")).status_code == 404
    assert (await http.get(f"/api/v1/webhooks/{mine['webhook_id']}")).status_code == 404


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"url": "not a url", "events": ["alert_triggered"]}, "url"),
        ({"url": "ftp://example.com/x", "events": ["alert_triggered"]}, "url"),
        ({"url": "https:///nohost", "events": ["alert_triggered"]}, "url"),
        ({"url": "https://example.com", "events": ["alert_exploded"]}, "events"),
        ({"url": "https://example.com", "events": []}, "events"),
        ({"url": "https://example.com", "events": ["alert_triggered"], "secret": "short"}, "secret"),
        ({"url": "https://example.com", "events": ["alert_triggered"], "format": "teams"}, "format"),
        ({"events": ["alert_triggered"]}, "url"),
    ],
)
async def test_bad_webhooks_are_422(daemon: RunningDaemon, http: httpx.AsyncClient, body: dict, field: str) -> None:
    response = await http.post("/api/v1/webhooks", json=body)
    assert response.status_code == 422, response.text
    assert field in [d["field"] for d in response.json()["error"]["details"]]


NOT_PUBLIC = [
    "127.0.0.1:9",
    "localhost",
    "10.1.2.3",
    "[::1]",
    "100.64.0.1",  # carrier-grade NAT, which `is_private` does not cover
    "100.100.100.200",  # a cloud metadata service, in that range
    "169.254.169.254",
    "0.0.0.0",
    "224.0.0.1",
    "[2002:7f00:1::1]",  # 6to4, carrying 127.0.0.1
    "[2002:808:808::1]",  # 6to4, even carrying a global address: relayed by whoever announces the route
    "[2001:0:4136:e378:8000:63bf:3fff:fdd2]",  # Teredo
    "[::ffff:127.0.0.1]",  # IPv4-mapped
    "[64:ff9b::a9fe:a9fe]",  # NAT64 of 169.254.169.254
    "[64:ff9b:1::1]",  # local-use NAT64
    "[fec0::1]",  # site-local
    "[fc00::1]",
    "[ff0e::1]",
]


@pytest.fixture(scope="module")
async def refusing_private_for_module(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[RunningDaemon]:
    """One daemon for every refused target: a refused registration stores nothing."""
    async with running_daemon(tmp_path_factory.mktemp("refusing") / "s", webhook_allow_private=False) as daemon:
        yield daemon


@pytest.mark.shared_daemon  # refused requests: one daemon for all these cases
@pytest.mark.parametrize("host", NOT_PUBLIC)
async def test_private_targets_can_be_refused(refusing_private_for_module: RunningDaemon, host: str) -> None:
    async with daemon_client(refusing_private_for_module.url) as http:
        response = await http.post("/api/v1/webhooks", json={"url": f"http://{host}/x", "events": ["alert_triggered"]})
        assert response.status_code == 422, response.text
        error = response.json()["error"]
        assert error["details"][0]["field"] == "url" and "not a public address" in error["message"]
        assert (await http.get("/api/v1/webhooks")).json()["webhooks"] == []


@pytest.fixture
async def daemon_refusing_private(tmp_path: Path) -> AsyncIterator[RunningDaemon]:
    async with running_daemon(tmp_path / "s", webhook_allow_private=False) as daemon:
        yield daemon


def answers(*sequence: list[str]) -> Callable[[str, int], Awaitable[list[str]]]:
    """A resolver that gives each answer in turn for `hooks.example.test` (the last one from then on)."""
    calls: list[str] = []

    async def resolve(host: str, port: int) -> list[str]:
        assert host == "hooks.example.test", host
        calls.append(host)
        return sequence[min(len(calls), len(sequence)) - 1]

    return resolve


async def test_every_address_a_host_resolves_to_is_checked(daemon_refusing_private: RunningDaemon) -> None:
    daemon_refusing_private.services.webhooks.resolve = answers(["93.184.215.14", "100.64.0.7"])
    async with daemon_client(daemon_refusing_private.url) as http:
        url = "https://hooks.example.test/x"
        response = await http.post("/api/v1/webhooks", json={"url": url, "events": ["alert_triggered"]})
        assert response.status_code == 422 and "100.64.0.7" in response.json()["error"]["message"]


async def test_an_answer_turning_private_after_registration_is_not_delivered(
    daemon_refusing_private: RunningDaemon, receiver: Receiver
) -> None:
    """DNS rebinding: public when registered, loopback at delivery time. Each attempt checks again."""
    webhooks = daemon_refusing_private.services.webhooks
    webhooks.resolve = answers(["93.184.215.14"], ["127.0.0.1"])
    async with daemon_client(daemon_refusing_private.url) as http:
        url = f"http://hooks.example.test:{receiver.port}/hook"
        hook = await register(http, url, ["alert_triggered"])
        result = (await http.post(f"/api/v1/webhooks/{hook['webhook_id']}/test")).json()
    assert result["success"] is False and "127.0.0.1, which is not a public address" in result["error"]
    assert receiver.received.empty()


async def test_a_delivery_goes_to_the_address_its_attempt_resolved(
    daemon: RunningDaemon, http: httpx.AsyncClient, receiver: Receiver
) -> None:
    """One resolution per attempt, and the connection goes to its answer: a second lookup by the HTTP client would
    reach the trap listening on the same port of another loopback address (the answer changed meanwhile)."""
    trap = await Receiver().start(port=receiver.port, host="127.0.0.2")
    try:
        daemon.services.webhooks.resolve = answers(["127.0.0.1"], ["127.0.0.2"])
        hook = await register(http, f"http://hooks.example.test:{receiver.port}/hook", ["alert_triggered"])
        first = (await http.post(f"/api/v1/webhooks/{hook['webhook_id']}/test")).json()
        got = await receiver.next()
        assert first["success"] is True and trap.received.empty()
        assert got.headers["host"] == f"hooks.example.test:{receiver.port}" and got.signature_valid(SECRET)
        second = (await http.post(f"/api/v1/webhooks/{hook['webhook_id']}/test")).json()
        assert second["success"] is True and (await trap.next()).headers["x-pivot-event"] == "test"
        assert receiver.received.empty()
    finally:
        await trap.close()


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs openssl to make a certificate")
async def test_https_to_a_resolved_address_verifies_the_registered_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Connected by address, TLS still sends and verifies the host's name: a certificate for it is accepted, one
    for another name is not."""
    receivers = {}
    for name in ("hooks.example.test", "other.example.test"):
        cert, key = tmp_path / f"{name}.pem", tmp_path / f"{name}.key"
        subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", f"/CN={name}",
             "-addext", f"subjectAltName=DNS:{name}", "-keyout", str(key), "-out", str(cert)],
            check=True, capture_output=True,
        )  # fmt: skip
        tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        tls.load_cert_chain(cert, key)
        receivers[name] = await Receiver().start(tls=tls)
    (tmp_path / "trusted.pem").write_text("".join((tmp_path / f"{n}.pem").read_text() for n in receivers))
    monkeypatch.setenv("SSL_CERT_FILE", str(tmp_path / "trusted.pem"))
    try:
        async with running_daemon(tmp_path / "s") as daemon, daemon_client(daemon.url) as http:
            daemon.services.webhooks.resolve = answers(["127.0.0.1"])
            for name, receiver in receivers.items():
                url = f"https://hooks.example.test:{receiver.port}/hook"
                hook = await register(http, url, ["alert_triggered"])
                result = (await http.post(f"/api/v1/webhooks/{hook['webhook_id']}/test")).json()
                if name == "hooks.example.test":
                    assert result["success"] is True, result
                    assert (await receiver.next()).headers["host"] == f"hooks.example.test:{receiver.port}"
                else:
                    assert result["success"] is False and "CERTIFICATE_VERIFY_FAILED" in result["error"], result
    finally:
        for receiver in receivers.values():
            await receiver.close()


async def test_pending_deliveries_survive_a_killed_daemon(tmp_path: Path) -> None:
    """The receiver refuses while the first daemon runs; after SIGKILL and a restart, the same delivery
    (same id) arrives, and the restart itself is reported as a notification."""
    receiver = await Receiver(default=503).start()
    env = {"PIVOT_WEBHOOK_RETRY_BASE_S": "0.3", "PIVOT_SAMPLE_INTERVAL_S": "0.2"}
    data_dir = tmp_path / "state"
    first = await asyncio.to_thread(start_daemon_process, data_dir, env=env)
    try:
        async with daemon_client(first.url) as http:
            await register(http, receiver.url, ["alert_triggered"])
            await fire_scalar_alert(http)
            refused = await receiver.next()
        first.signal(signal.SIGKILL)
        await asyncio.to_thread(first.wait)
    finally:
        first.stop()
    receiver.default = 200
    while not receiver.received.empty():  # retries that raced the kill
        receiver.received.get_nowait()
    second = await asyncio.to_thread(start_daemon_process, data_dir, env=env)
    try:
        delivered = await receiver.next()
        assert delivered.headers["x-pivot-delivery"] == refused.headers["x-pivot-delivery"]
        assert delivered.body == refused.body and delivered.signature_valid(SECRET)
        async with daemon_client(second.url) as http:
            system = (await http.get("/api/v1/notifications", params={"type": "system"})).json()["notifications"]
            assert len(system) == 1 and "unclean shutdown" in system[0]["message"]
            assert len((await http.get("/api/v1/alerts", params={"status": "active"})).json()["alerts"]) == 1
    finally:
        second.signal(signal.SIGTERM)
        assert await asyncio.to_thread(second.wait) == 0
        await receiver.close()
    assert not (data_dir / "pivotd.running").exists()
    assert json.loads(delivered.body)["event"] == "alert_triggered"


async def test_the_documented_verification_snippet_accepts_a_real_delivery(tmp_path: Path, receiver: Receiver) -> None:
    """docs/api.md's `verify` snippet, run as written against what the daemon sends."""
    api = (Path(__file__).parent.parent / "docs" / "api.md").read_text()
    snippet = api.split("Verifying a delivery", 1)[1].split("```python", 1)[1].split("```", 1)[0]
    namespace: dict[str, Any] = {}
    exec(snippet, namespace)
    verify = namespace["verify"]
    async with running_daemon(tmp_path / "s", **FAST) as daemon, daemon_client(daemon.url) as http:
        await register(http, receiver.url, ["alert_triggered"])
        await fire_scalar_alert(http)
        got = await receiver.next()
    headers = {name: got.headers[name.lower()] for name in ("X-Pivot-Timestamp", "X-Pivot-Signature")}
    assert verify(SECRET, headers, got.body)
    assert not verify("wrong-secret", headers, got.body)
    assert not verify(SECRET, headers, got.body + b" ")
    assert not verify(SECRET, headers | {"X-Pivot-Timestamp": str(int(time.time()) - 3600)}, got.body)
