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


async def test_a_token_in_a_websocket_url_never_reaches_the_log(tmp_path) -> None:
    import signal

    from websockets.asyncio.client import connect

    from tests.daemon import start_daemon_process

    daemon = start_daemon_process(tmp_path, env={"PIVOT_TRUST_LOOPBACK": "false", "PIVOT_TOKEN": "tok-SECRET-123"})
    try:
        async with connect(daemon.url.replace("http", "ws") + "/ws?token=tok-SECRET-123") as ws:
            assert '"initial_runs"' in await ws.recv()
    finally:
        daemon.signal(signal.SIGTERM)
        daemon.wait()
    log = "".join(daemon.lines)
    assert "WebSocket /ws?token=***" in log
    assert "tok-SECRET-123" not in log


def test_percent_encoded_token_names_are_redacted_too() -> None:
    """The middleware decodes query names (`%74oken` is `token`), so an encoded name carries a working token."""
    for query in ("%74oken=s3cret", "%74%6F%6B%65%6E=s3cret&x=1", "TOKEN=s3cret", "vsn=2.0.0&t%6fken=s3cret"):
        record = logging.LogRecord(
            "uvicorn.error", logging.INFO, __file__, 1, '%s - "WebSocket %s" %s',
            ("127.0.0.1:5000", f"/socket/websocket?{query}", "[accepted]"), None,
        )  # fmt: skip
        assert RedactSecrets().filter(record)
        assert "s3cret" not in record.getMessage() and "=***" in record.getMessage(), query
