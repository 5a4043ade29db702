"""Named API keys with scopes (`read`, `write`, `admin`, `jobs`), indexed in memory by the digest of the key.

A key is `pvk_` + 43 URL-safe characters (256 random bits). Only its SHA-256 digest is stored: a slow
password hash (bcrypt, argon2) protects low-entropy secrets against guessing, but nobody can guess or
brute-force a 256-bit random value, so one SHA-256 is as safe here and costs microseconds per request.
The daemon is the only writer of the key table, so the index loaded at start and updated by the
management routes is always current: authenticating a request never touches the database.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
import time
from collections.abc import Callable

from pivotd.errors import NotFound
from pivotd.ids import new_id
from pivotd.store import Store
from pivotd.store.apikeys import ApiKey, PutApiKey, RevokeApiKey, TouchApiKey, api_keys
from pivotd.tasks import TaskSet

log = logging.getLogger(__name__)

KEY_PREFIX = "pvk_"
SCOPES = ("read", "write", "admin", "jobs")
# Each of read, write and admin grants itself and every weaker one. `jobs` (running commands as the daemon's user)
# is granted only by name: admin does not imply it.
_GRANTS = {
    "read": frozenset({"read"}),
    "write": frozenset({"read", "write"}),
    "admin": frozenset({"read", "write", "admin"}),
    "jobs": frozenset({"read", "jobs"}),
}
SHOWN_PREFIX_CHARS = 12  # "pvk_" and 8 random characters: enough to recognise a key, 210 bits stay secret
TOUCH_EVERY_S = 60.0  # last_used_at reaches the database at most this often per key
KEY_REVOKED = "API key revoked"  # why what a key opened (a WebSocket, an event stream, a session) ended


def granted(scopes: tuple[str, ...] | frozenset[str]) -> frozenset[str]:
    """Every scope `scopes` imply: write implies read, admin implies read and write, jobs implies read."""
    return frozenset().union(*(_GRANTS[scope] for scope in scopes))


def digest(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


class KeyRing:
    """The key table in memory. `authenticate` is what the access middleware calls per request."""

    def __init__(self) -> None:
        self._by_digest: dict[bytes, ApiKey] = {}
        self._by_id: dict[str, ApiKey] = {}
        self._store: Store | None = None
        self._pending = TaskSet()
        self._on_revoke: dict[str, set[Callable[[], None]]] = {}
        self.revoke_listeners: list[Callable[[str], None]] = []
        """Called with the id of every key revoked, so that what it opened ends (its browser sessions)."""

    async def load(self, store: Store) -> None:
        self._store = store
        for key in await api_keys(store.reader.connection):
            self._by_id[key.key_id] = key
            if key.revoked_at is None:
                self._by_digest[key.digest] = key

    def authenticate(self, presented: str) -> ApiKey | None:
        """The live key `presented` is, or None. Looked up by digest: lookup timing can only reveal
        something about a digest, which does not help to find a key; the final check is constant-time."""
        if not presented.startswith(KEY_PREFIX):
            return None
        wanted = digest(presented)
        key = self._by_digest.get(wanted)
        if key is None or not hmac.compare_digest(key.digest, wanted):
            return None
        self._touch(key)
        return key

    def _touch(self, key: ApiKey) -> None:
        now = time.time()
        key.last_used_at = now
        if self._store is None or (key.stored_last_used_at or 0.0) > now - TOUCH_EVERY_S:
            return
        key.stored_last_used_at = now
        self._pending.spawn(self._store_touch(key.key_id, now))

    async def _store_touch(self, key_id: str, now: float) -> None:
        assert self._store is not None
        try:
            await self._store.writer.submit(TouchApiKey(key_id, now))
        except Exception as exc:  # shutting down, disk full: the in-memory value stays right
            log.warning("could not record the last use of API key %s: %s", key_id, exc)

    def on_revoke(self, key_id: str, callback: Callable[[], None]) -> Callable[[], None]:
        """Call `callback` (once) when key `key_id` is revoked, so what it opened can end (WebSockets);
        returns the function that cancels the call."""
        callbacks = self._on_revoke.setdefault(key_id, set())
        callbacks.add(callback)

        def cancel() -> None:
            callbacks.discard(callback)
            if not callbacks and self._on_revoke.get(key_id) is callbacks:
                del self._on_revoke[key_id]

        return cancel

    def is_live(self, key_id: str) -> bool:
        """Whether key `key_id` exists and is not revoked (from the moment its revocation began)."""
        key = self._by_id.get(key_id)
        return key is not None and self._by_digest.get(key.digest) is key

    def list(self) -> list[ApiKey]:
        return list(self._by_id.values())

    def get(self, key_id: str) -> ApiKey:
        key = self._by_id.get(key_id)
        if key is None:
            raise NotFound(f"API key {key_id!r} not found")
        return key

    async def create(self, name: str, scopes: tuple[str, ...]) -> tuple[ApiKey, str]:
        """A new key and its secret, which is returned here once and never again."""
        assert self._store is not None
        secret = KEY_PREFIX + secrets.token_urlsafe(32)
        key = ApiKey(new_id("key"), name, scopes, secret[:SHOWN_PREFIX_CHARS], digest(secret), time.time())
        await self._store.writer.submit(PutApiKey(key))
        self._by_id[key.key_id] = key
        self._by_digest[key.digest] = key
        log.info("created API key %s (%r, scopes %s)", key.key_id, name, ",".join(scopes))
        return key, secret

    async def revoke(self, key_id: str) -> ApiKey:
        """Revoked keys fail from their next request on; the row stays, so the listing shows them."""
        assert self._store is not None
        key = self.get(key_id)
        # Out of the index first: no request may pass with it while the write commits, and no socket stays open.
        self._by_digest.pop(key.digest, None)
        for callback in self._on_revoke.pop(key_id, set()):
            callback()
        for listener in self.revoke_listeners:
            listener(key_id)
        if key.revoked_at is None:
            revoked_at = time.time()
            await self._store.writer.submit(RevokeApiKey(key_id, revoked_at))
            key.revoked_at = revoked_at  # only once stored: a failed write leaves the retry something to do
            log.info("revoked API key %s (%r)", key_id, key.name)
        return key
