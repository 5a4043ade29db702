"""Logs never carry tokens: the access log redacts `token=` in query strings."""

from __future__ import annotations

import logging

from pivotd.logs import RedactSecrets


def test_access_log_redacts_tokens() -> None:
    record = logging.LogRecord(
        "uvicorn.access", logging.INFO, __file__, 1, '%s - "%s %s HTTP/%s" %d',
        ("127.0.0.1:5000", "GET", "/ws?token=s3cret&x=1", "1.1", 101), None,
    )  # fmt: skip
    assert RedactSecrets().filter(record)
    assert "s3cret" not in record.getMessage() and "token=***&x=1" in record.getMessage()
