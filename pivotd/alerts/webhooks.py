"""Webhooks: registration, signed JSON deliveries from a persisted outbox, retries with backoff.

A delivery is written to the `webhook_outbox` table in the same breath as the alert or notification
that caused it, then sent by one dispatcher task. Each attempt is signed afresh:

    X-Pivot-Timestamp: <unix seconds>
    X-Pivot-Signature: sha256=<hex HMAC-SHA256(secret, timestamp + "." + raw body)>
    X-Pivot-Event: <event>
    X-Pivot-Delivery: <delivery id, the same on every retry>

A 2xx ends a delivery; anything else (or a timeout) retries after `webhook_retry_base_s * 2**n`, up to
`webhook_max_attempts`. Rows survive restarts, so a killed daemon sends what was pending when it
starts again. Delivery is at least once: a daemon killed between a receiver's 2xx and recording it sends
that delivery again, which the delivery id lets a receiver ignore.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import ipaddress
import logging
import secrets
import socket
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import orjson

from pivotd.errors import InsufficientStorage, NotFound, ValidationFailed
from pivotd.settings import Settings
from pivotd.store import Store
from pivotd.store.monitoring import (
    DeleteWebhook,
    Delivery,
    DeliveryRow,
    EnqueueDeliveries,
    PutWebhook,
    RecordAttempt,
    WebhookRow,
)
from pivotd.timefmt import iso
from shared import __version__

if TYPE_CHECKING:
    import httpx

log = logging.getLogger(__name__)
EVENTS = (
    "alert_triggered",
    "alert_resolved",
    "training_completed",
    "training_failed",
    "training_cancelled",
    "daemon_recovered",
)
MAX_BACKOFF_S = 3600.0
DELIVERIES_OFF = "not sent: webhook deliveries are off (webhook_deliveries is false)"
BATCH = 32


def sign(secret: str, timestamp: int, body: bytes) -> str:
    digest = hmac.new(secret.encode(), str(timestamp).encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def render(fmt: str, event: str, delivery_id: str, now: float, data: dict[str, Any], text: str) -> bytes:
    """The body for one webhook: PIVOT's JSON, or what Slack / Discord incoming webhooks accept."""
    if fmt == "slack":
        return orjson.dumps({"text": text})
    if fmt == "discord":
        return orjson.dumps({"content": text[:2000]})
    return orjson.dumps({"event": event, "delivery_id": delivery_id, "timestamp": iso(now), "text": text, "data": data})


Resolve = Callable[[str, int], Awaitable[list[str]]]
"""Host and port -> every address to try. The daemon asks DNS; a test substitutes answers."""

# Tunnels and translators whose packets go to an IPv4 address derived from the IPv6 one, through a relay or
# gateway nobody chose: 6to4, Teredo, local-use NAT64; and IPv4-compatible addresses (deprecated, tunnelled).
# Python's `is_global` calls some of them global (which ones depends on the patch release), so they are listed.
_TUNNELS = tuple(ipaddress.IPv6Network(net) for net in ("2002::/16", "2001::/32", "64:ff9b:1::/48", "::/96"))
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
"""The well-known NAT64 prefix: its gateway connects to the embedded IPv4 address, so that is what is judged."""


def is_public(address: str) -> bool:
    """Whether `address` is a global unicast address, the only kind a webhook may reach with private targets
    refused. `is_global`, not `not is_private`: carrier-grade NAT (100.64.0.0/10, where cloud metadata services
    live too) is neither. An IPv4-mapped or NAT64 address is judged by the IPv4 address it carries, since that is
    where the connection goes."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return is_public(str(ip.ipv4_mapped))
        if ip in _NAT64:
            return is_public(str(ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)))
        if ip.is_site_local or any(ip in net for net in _TUNNELS):
            return False
    return ip.is_global and not ip.is_multicast and not ip.is_unspecified


async def resolve_host(host: str, port: int) -> list[str]:
    """Every address `host` resolves to, in the resolver's order, without repeats (an IP literal: itself)."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def _parse(url: str) -> httpx.URL:
    # httpx is imported where a webhook URL is first met, not at start-up: with click and rich installed it
    # loads its command line and them too, about a tenth of the daemon's import time.
    import httpx  # noqa: PLC0415

    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError) as exc:
        raise ValueError(f"not a valid URL: {exc}") from None
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise ValueError("must be an absolute http:// or https:// URL with a host")
    return parsed


async def checked_addresses(url: str, allow_private: bool, resolve: Resolve) -> tuple[httpx.URL, list[str]]:
    """The URL parsed and the addresses its host resolves to now; with `allow_private` false, every one of them
    must be public (one private answer among public ones could be the one a connection picks)."""
    parsed = _parse(url)
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    try:
        addresses = await resolve(parsed.raw_host.decode("ascii"), port)
    except OSError as exc:
        raise ValueError(f"host {parsed.host!r} does not resolve: {exc}") from None
    if not addresses:
        raise ValueError(f"host {parsed.host!r} does not resolve")
    if not allow_private:
        for address in addresses:
            if not is_public(address):
                raise ValueError(
                    f"host {parsed.host!r} resolves to {address}, which is not a public address "
                    "(loopback, private, carrier-grade NAT, link-local, multicast, ...): private targets are "
                    "refused (webhook_allow_private is false)"
                )
    return parsed, addresses


async def check_url(url: str, allow_private: bool, resolve: Resolve = resolve_host) -> None:
    """Refuse what is not an absolute http(s) URL; with `allow_private` false, also a host that resolves to any
    address that is not public (checked again before each attempt, which connects to what it checked)."""
    if allow_private:
        _parse(url)  # the host may not resolve yet: a local relay started later
    else:
        await checked_addresses(url, allow_private, resolve)


class Webhooks:
    def __init__(self, settings: Settings, store: Store) -> None:
        self._settings = settings
        self._store = store
        self._hooks: dict[str, WebhookRow] = {}
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._client: httpx.AsyncClient | None = None
        self.attempts: Counter[str] = Counter()
        """Delivery attempts since start by outcome (`delivered`, `retrying`, `failed` for good), for `/metrics`."""
        self.resolve: Resolve = resolve_host
        """How hosts are resolved, once per attempt (tests replace it to change DNS answers between calls)."""

    async def __aenter__(self) -> Webhooks:
        self._hooks = {row.webhook_id: row for row in await self._store.monitoring.webhooks()}
        if self._settings.webhook_deliveries:  # off: the outbox keeps every delivery for a daemon that sends
            self._task = asyncio.create_task(self._dispatch(), name="pivotd-webhooks")
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._client is not None:
            await self._client.aclose()

    def _http(self) -> httpx.AsyncClient:
        """The delivery client, made on the first attempt: its TLS context loads the system's CA bundle (about
        30 ms), which a daemon start would otherwise pay even with no webhook registered."""
        if self._client is None:
            import httpx  # noqa: PLC0415 - see _parse

            self._client = httpx.AsyncClient(
                timeout=self._settings.webhook_timeout_s,
                follow_redirects=False,  # a redirect could lead a signed body to a host nobody registered
                headers={"User-Agent": f"pivotd/{__version__}", "Content-Type": "application/json"},
            )
        return self._client

    def list(self) -> list[WebhookRow]:
        return list(self._hooks.values())

    def get(self, webhook_id: str) -> WebhookRow:
        hook = self._hooks.get(webhook_id)
        if hook is None:
            raise NotFound(f"webhook {webhook_id!r} not found")
        return hook

    async def register(self, url: str, events: list[str], secret: str | None, fmt: str) -> tuple[WebhookRow, str]:
        try:
            await check_url(url, self._settings.webhook_allow_private, self.resolve)
        except ValueError as exc:
            raise ValidationFailed(f"url: {exc}", details=[{"field": "url", "message": str(exc)}]) from None
        secret = secret or secrets.token_urlsafe(32)
        row = WebhookRow(f"webhook_{secrets.token_hex(6)}", url, events, secret, fmt, time.time())
        await self._store.writer.submit(PutWebhook(row.webhook_id, url, events, secret, fmt))
        self._hooks[row.webhook_id] = row
        return row, secret

    async def delete(self, webhook_id: str) -> None:
        await self._store.writer.submit(DeleteWebhook(webhook_id))
        self._hooks.pop(webhook_id, None)

    async def enqueue(self, event: str, data: dict[str, Any], text: str) -> int:
        """Persist one delivery per webhook subscribed to `event`; returns how many."""
        now = time.time()
        deliveries = []
        for hook in self._hooks.values():
            if event in hook.events or "*" in hook.events:
                delivery_id = f"dlv_{secrets.token_hex(8)}"
                body = render(hook.format, event, delivery_id, now, data, text)
                deliveries.append(Delivery(delivery_id, hook.webhook_id, event, body))
        if deliveries:
            await self._store.writer.submit(EnqueueDeliveries(deliveries))
            self._wake.set()
        return len(deliveries)

    async def test(self, webhook_id: str) -> dict[str, Any]:
        """Send a `test` event now, outside the outbox, and report how the receiver answered."""
        hook = self.get(webhook_id)
        delivery_id = f"dlv_{secrets.token_hex(8)}"
        body = render(hook.format, "test", delivery_id, time.time(), {"webhook_id": webhook_id}, "PIVOT webhook test")
        started = time.perf_counter()
        status, error = await self._post(hook, "test", delivery_id, body)
        result: dict[str, Any] = {
            "success": status is not None and 200 <= status < 300,
            "status_code": status,
            "response_time_ms": round((time.perf_counter() - started) * 1000, 1),
            "delivery_id": delivery_id,
        }
        if error is not None:
            result["error"] = error
        return result

    async def _post(self, hook: WebhookRow, event: str, delivery_id: str, body: bytes) -> tuple[int | None, str | None]:
        """One attempt. The host is resolved once and the addresses checked; the request is then sent to a checked
        address itself, so a DNS answer that changes after the check (rebinding) cannot redirect it. The Host
        header and, for https, the name TLS sends and verifies (SNI) stay the registered host's. `Connection:
        close`: a pooled connection, keyed by address, must not carry another host's request over TLS that was
        verified for this one."""
        if not self._settings.webhook_deliveries:
            return None, DELIVERIES_OFF
        import httpx  # noqa: PLC0415 - see _parse

        try:
            url, addresses = await checked_addresses(hook.url, self._settings.webhook_allow_private, self.resolve)
        except ValueError as exc:
            return None, str(exc)
        timestamp = int(time.time())
        headers = {
            "Host": url.netloc.decode("ascii"),
            "Connection": "close",
            "X-Pivot-Timestamp": str(timestamp),
            "X-Pivot-Signature": sign(hook.secret, timestamp, body),
            "X-Pivot-Event": event,
            "X-Pivot-Delivery": delivery_id,
        }
        extensions = {"sni_hostname": url.raw_host.decode("ascii")} if url.scheme == "https" else {}
        error = "no address"
        for address in addresses:  # in the resolver's order, the next one only when no connection could be made
            try:
                target = url.copy_with(host=address)
                response = await self._http().post(target, content=body, headers=headers, extensions=extensions)
            except httpx.ConnectError as exc:
                error = f"ConnectError: {exc}" if str(exc) else "ConnectError"
                continue
            except (httpx.HTTPError, httpx.InvalidURL) as exc:
                return None, f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            return response.status_code, None if response.is_success else f"HTTP {response.status_code}"
        return None, error

    async def _attempt(self, delivery: DeliveryRow) -> None:
        hook = self._hooks.get(delivery.webhook_id)
        if hook is None:
            return  # deleted while pending; its outbox rows went with it
        status, error = await self._post(hook, delivery.event, delivery.delivery_id, delivery.body)
        attempts = delivery.attempts + 1
        now = time.time()
        if error is None:
            outcome, next_at = "delivered", now
        elif attempts >= self._settings.webhook_max_attempts:
            outcome, next_at = "failed", now
            log.warning("webhook delivery %s to %s failed for good: %s", delivery.delivery_id, hook.url, error)
        else:
            outcome = "pending"
            next_at = now + min(MAX_BACKOFF_S, self._settings.webhook_retry_base_s * 2 ** (attempts - 1))
        self.attempts["retrying" if outcome == "pending" else outcome] += 1
        await self._store.writer.submit(RecordAttempt(delivery.delivery_id, outcome, attempts, next_at, status, error))

    async def _dispatch(self) -> None:
        reader = self._store.monitoring
        while True:
            try:
                self._wake.clear()  # before the query: an enqueue during it sets the event again
                due = await reader.due_deliveries(time.time(), BATCH)
                if due:
                    await asyncio.gather(*(self._attempt(d) for d in due))
                    continue
                next_due = await reader.next_due()
            except asyncio.CancelledError:
                raise
            except InsufficientStorage:
                next_due = time.time() + 1  # the writer reports a full disk once; deliveries wait for room
            except Exception:
                log.exception("webhook dispatcher failed; retrying")
                next_due = time.time() + 1
            timeout = None if next_due is None else max(0.0, next_due - time.time())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout)
