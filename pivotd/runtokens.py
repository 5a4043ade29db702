"""Per-run write credentials: what a job's process (and a training worker) reports with instead of the owner's token.

A run token is minted when its run's process starts and revoked when it ends; it lives in memory only (a daemon
restart ends every process that held one). The access middleware lets it do exactly one thing: write to its own
run through the ingest routes (`pivotd.auth`). Tokens are `pvr_` + 256 random bits, indexed by SHA-256 digest as
API keys are.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

RUN_TOKEN_PREFIX = "pvr_"


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


class RunTokens:
    def __init__(self) -> None:
        self._runs: dict[bytes, str] = {}
        self._by_run: dict[str, bytes] = {}

    def mint(self, run_id: str) -> str:
        """A new token for `run_id`, replacing the one it had (a retried job gets a fresh one)."""
        self.revoke(run_id)
        token = RUN_TOKEN_PREFIX + secrets.token_urlsafe(32)
        self._runs[_digest(token)] = run_id
        self._by_run[run_id] = _digest(token)
        return token

    def revoke(self, run_id: str) -> None:
        digest = self._by_run.pop(run_id, None)
        if digest is not None:
            self._runs.pop(digest, None)

    def run_of(self, presented: str) -> str | None:
        """The run `presented` may write to, or None when it is no live run token."""
        wanted = _digest(presented)
        run_id = self._runs.get(wanted)
        if run_id is None or not hmac.compare_digest(self._by_run.get(run_id, b""), wanted):
            return None
        return run_id
