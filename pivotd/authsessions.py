"""Browser sessions: `Cookie: _crucible_ui_key=<session_token>`, a second way to present a caller's
credentials, indexed in memory by the digest of the token as API keys are (`pivotd.apikeys`).

A caller already authenticated (the owner, or an API key) opens a session and it gets that caller's scopes. It
ends when it is closed (logout), when it expires (`session_lifetime_s` after it opened; use does not extend it)
or when the API key that opened it is revoked. A token is `pvs_` + 43 URL-safe characters (256 random bits);
only its SHA-256 digest is stored, for the reason a key's is.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import secrets
import time
from collections.abc import Callable

from pivotd.apikeys import KEY_REVOKED, KeyRing, digest
from pivotd.errors import Unauthorized
from pivotd.ids import new_id
from pivotd.store import Store
from pivotd.store.sessions import DeleteSession, PutSession, Session, live_sessions

log = logging.getLogger(__name__)

COOKIE_NAME = "_crucible_ui_key"
SESSION_PREFIX = "pvs_"
MAX_SESSIONS_PER_CALLER = 100
"""Live sessions per API key, and for the owner: opening one more ends the oldest, so that a key allowed to open
sessions cannot fill the daemon's memory with them."""
SESSION_ENDED, SESSION_EXPIRED = "session ended", "session expired"

EndCallback = Callable[[str], None]
"""Called with why a session ended: SESSION_ENDED, SESSION_EXPIRED or KEY_REVOKED."""


def session_cookie(token: str, max_age: int, secure: bool) -> str:
    """The Set-Cookie value: never readable by scripts, never sent on requests from another site."""
    attributes = f"Path=/; Max-Age={max_age}; HttpOnly; SameSite=Strict" + ("; Secure" if secure else "")
    return f"{COOKIE_NAME}={token}; {attributes}"


CLEARED_COOKIE = session_cookie("", 0, secure=False)
"""Tells the browser to drop the cookie (an attribute-less overwrite is accepted from http and https alike)."""


class SessionRing:
    """The live sessions in memory. `authenticate` is what the access middleware calls per request."""

    def __init__(self, keys: KeyRing, lifetime_s: float) -> None:
        self._keys = keys
        self._lifetime_s = lifetime_s
        self._by_digest: dict[bytes, Session] = {}
        self._by_id: dict[str, Session] = {}  # oldest first
        self._on_end: dict[str, set[EndCallback]] = {}
        self._store: Store | None = None
        keys.revoke_listeners.append(self._key_revoked)

    async def load(self, store: Store) -> None:
        self._store = store
        for session in await live_sessions(store.reader.connection, time.time()):
            self._index(session)

    def authenticate(self, presented: str) -> Session | None:
        """The live session whose token `presented` is, or None (looked up as `KeyRing.authenticate` does)."""
        if not presented.startswith(SESSION_PREFIX):
            return None
        wanted = digest(presented)
        session = self._by_digest.get(wanted)
        if session is None or not hmac.compare_digest(session.digest, wanted):
            return None
        if session.expires_at <= time.time():
            self._end(session, SESSION_EXPIRED)  # its row goes when the next session opens
            return None
        return session

    def on_end(self, session: Session, callback: EndCallback) -> Callable[[], None]:
        """Call `callback` (once) with the reason when `session` ends, expiry included, so that what it opened
        ends too (WebSockets, event streams); returns the function that cancels the call."""
        callbacks = self._on_end.setdefault(session.session_id, set())
        callbacks.add(callback)
        timer = asyncio.get_running_loop().call_later(
            max(0.0, session.expires_at - time.time()), self._end, session, SESSION_EXPIRED
        )

        def cancel() -> None:
            timer.cancel()
            callbacks.discard(callback)
            if not callbacks and self._on_end.get(session.session_id) is callbacks:
                del self._on_end[session.session_id]

        return cancel

    async def open(self, scopes: tuple[str, ...], key_id: str | None) -> tuple[Session, str]:
        """A new session for the caller (an API key, or the owner when `key_id` is None) and its token, which
        only the Set-Cookie header of the response that opens it carries."""
        assert self._store is not None
        if key_id is not None and not self._keys.is_live(key_id):  # revoked since this request was authenticated
            raise Unauthorized("the API key was revoked")
        now = time.time()
        for stale in [s for s in self._by_id.values() if s.expires_at <= now]:
            self._end(stale, SESSION_EXPIRED)
        own = [s for s in self._by_id.values() if s.key_id == key_id]
        evicted = own[: max(0, len(own) + 1 - MAX_SESSIONS_PER_CALLER)]
        for old in evicted:
            self._end(old, SESSION_ENDED)
        token = SESSION_PREFIX + secrets.token_urlsafe(32)
        session = Session(new_id("ses"), digest(token), scopes, key_id, now, now + self._lifetime_s)
        # Indexed before the write is queued: a revocation of its key from now on ends it (in memory; its row is
        # deleted with the key's, or not loaded again, see `live_sessions`).
        self._index(session)
        try:
            await self._store.writer.submit(PutSession(session, tuple(s.session_id for s in evicted)))
        except BaseException:
            self._end(session, SESSION_ENDED)  # never handed out
            raise
        log.info("opened session %s for %s", session.session_id, key_id or "the owner")
        return session, token

    async def close(self, session: Session) -> None:
        """End `session` (logout). Stored first: if the write fails, the session still works and the client
        can try again, instead of it coming back when pivotd restarts."""
        assert self._store is not None
        await self._store.writer.submit(DeleteSession(session.session_id))
        self._end(session, SESSION_ENDED)
        log.info("closed session %s", session.session_id)

    def _index(self, session: Session) -> None:
        self._by_id[session.session_id] = session
        self._by_digest[session.digest] = session

    def _end(self, session: Session, reason: str) -> None:
        if self._by_id.get(session.session_id) is not session:
            return  # ended already
        del self._by_id[session.session_id]
        self._by_digest.pop(session.digest, None)
        for callback in self._on_end.pop(session.session_id, set()):
            callback(reason)

    def _key_revoked(self, key_id: str) -> None:
        for session in [s for s in self._by_id.values() if s.key_id == key_id]:
            self._end(session, KEY_REVOKED)
