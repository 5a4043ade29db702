"""Logging to stderr in a form journald understands; never tokens, never payload bodies."""

from __future__ import annotations

import logging
import os
import re
import sys

# journald maps these sd-daemon prefixes to syslog priorities when stderr is the journal.
_PRIORITY = {logging.DEBUG: 7, logging.INFO: 6, logging.WARNING: 4, logging.ERROR: 3, logging.CRITICAL: 2}
# `token=`, also with any of its letters percent-encoded (`%74oken=`): the auth middleware decodes names
# before reading them, so such a name carries a working token too.
_SECRET_QUERY = re.compile("(" + "".join(f"(?:{c}|%{ord(c):02x})" for c in "token") + r")=[^&\s\"]+", re.IGNORECASE)


class _JournalFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        return "\n".join(f"<{_PRIORITY.get(record.levelno, 6)}>{line}" for line in text.splitlines())


class RedactSecrets(logging.Filter):
    """uvicorn's lines carry query strings; a WebSocket client may have put its token there."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.args:
            record.args = tuple(_SECRET_QUERY.sub(r"\1=***", a) if isinstance(a, str) else a for a in record.args)
        return True


def configure_logging(level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if os.environ.get("JOURNAL_STREAM"):  # journald stamps time and unit itself
        handler.setFormatter(_JournalFormatter("%(name)s: %(message)s"))
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True
    # uvicorn.error logs each WebSocket handshake with its query string, as the access log does requests.
    for name in ("uvicorn.access", "uvicorn.error"):
        logging.getLogger(name).addFilter(RedactSecrets())
    # One line per request from our own clients (demo feeder) would drown the log.
    logging.getLogger("httpx").setLevel(logging.WARNING)
