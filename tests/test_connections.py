"""Connections that never finish a request, or idle after one, are closed: they cannot use up descriptors."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from uvicorn.protocols.http.flow_control import FlowControl
from uvicorn.protocols.http.httptools_impl import RequestResponseCycle

from pivotd.connections import OneWriteResponses
from tests.daemon import RunningDaemon, running_daemon

TIMEOUTS = {"http_header_timeout_s": 0.5, "http_idle_timeout_s": 0.3}


@pytest.fixture
async def strict(tmp_path: Path) -> AsyncIterator[RunningDaemon]:
    async with running_daemon(tmp_path / "state", **TIMEOUTS) as daemon:
        yield daemon


async def closed_by_server(reader: asyncio.StreamReader) -> bytes:
    """Everything the server sent until it closed the connection."""
    return await asyncio.wait_for(reader.read(), 20)


def open_connections(daemon: RunningDaemon) -> int:
    return len(daemon.server.server_state.connections)


async def test_silent_connections_are_closed(strict: RunningDaemon) -> None:
    host, port = strict.url.removeprefix("http://").split(":")
    connections = [await asyncio.open_connection(host, int(port)) for _ in range(200)]
    for reader, writer in connections:
        assert await closed_by_server(reader) == b""
        writer.close()
    assert open_connections(strict) == 0
    async with httpx.AsyncClient(base_url=strict.url) as http:  # the daemon serves on
        assert (await http.get("/health")).status_code == 200


async def test_a_header_trickled_byte_by_byte_is_cut_off(strict: RunningDaemon) -> None:
    host, port = strict.url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(b"GET /health HTTP/1.1\r\nHost: x\r\n")

    async def trickle() -> None:
        # Each byte arrives well inside the deadline: only a deadline on the whole header can end this.
        while not writer.is_closing():
            writer.write(b"X")
            await writer.drain()
            await asyncio.sleep(0.05)

    trickling = asyncio.create_task(trickle())
    try:
        assert await closed_by_server(reader) == b""
    finally:
        trickling.cancel()
        writer.close()


async def test_an_idle_keep_alive_connection_is_closed_after_its_response(strict: RunningDaemon) -> None:
    host, port = strict.url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
    response = await closed_by_server(reader)  # the response, then the close of the idle connection
    assert response.startswith(b"HTTP/1.1 200") and b'"status":"healthy"' in response
    writer.close()


async def test_a_slow_client_that_finishes_its_headers_in_time_is_served(strict: RunningDaemon) -> None:
    host, port = strict.url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    for part in (b"GET /health HTTP/1.1\r\n", b"Host: x\r\n", b"\r\n"):
        writer.write(part)
        await writer.drain()
        await asyncio.sleep(0.1)  # pacing the client, well inside the 0.5 s deadline
    assert (await closed_by_server(reader)).startswith(b"HTTP/1.1 200")
    writer.close()


class _Transport:
    """Records what a response cycle writes."""

    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        self.writes.append(data)

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True


def _cycle(method: str = "POST") -> tuple[RequestResponseCycle, _Transport]:
    transport = _Transport()
    cycle = RequestResponseCycle(
        scope={"type": "http", "method": method, "path": "/", "http_version": "1.1"},  # type: ignore[typeddict-item]
        transport=transport,  # type: ignore[arg-type]
        flow=FlowControl(transport),  # type: ignore[arg-type]
        logger=logging.getLogger("test"),
        access_logger=logging.getLogger("test"),
        access_log=False,
        default_headers=[],
        message_event=asyncio.Event(),
        expect_100_continue=False,
        keep_alive=True,
        on_response=lambda: None,
    )
    cycle.transport = OneWriteResponses(transport, cycle)  # type: ignore[assignment]
    return cycle, transport


async def test_a_response_with_a_length_leaves_in_one_write() -> None:
    cycle, transport = _cycle()
    await cycle.send({"type": "http.response.start", "status": 202, "headers": [(b"content-length", b"2")]})
    assert transport.writes == []
    await cycle.send({"type": "http.response.body", "body": b"{}"})
    assert transport.writes == [b"HTTP/1.1 202 Accepted\r\ncontent-length: 2\r\n\r\n{}"]


@pytest.mark.parametrize(
    ("method", "headers"),
    [("POST", [(b"transfer-encoding", b"chunked")]), ("POST", [(b"content-length", b"0")]), ("HEAD", [])],
    ids=["chunked stream", "empty body", "HEAD"],
)
async def test_heads_without_a_body_to_wait_for_leave_at_once(method: str, headers: list[tuple[bytes, bytes]]) -> None:
    cycle, transport = _cycle(method)
    if method == "HEAD":
        headers = [(b"content-length", b"5")]
    await cycle.send({"type": "http.response.start", "status": 200, "headers": headers})
    assert len(transport.writes) == 1 and transport.writes[0].endswith(b"\r\n\r\n")
