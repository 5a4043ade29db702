"""Shared benchmark plumbing: a lean HTTP/1.1 keep-alive client, daemon processes, statistics."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parent.parent


class RawHTTP:
    """One keep-alive connection speaking just enough HTTP/1.1 to post JSON and read the answer.

    A load generator on the same 2 cores must cost far less than the server it measures; httpx
    costs about as much per request as pivotd itself, this costs a few microseconds.
    """

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, host: str, headers: str) -> None:
        self.reader, self.writer, self.host, self.headers = reader, writer, host, headers

    @classmethod
    async def open(cls, url: str, authorization: str | None = None) -> RawHTTP:
        host, port = url.removeprefix("http://").split(":")
        reader, writer = await asyncio.open_connection(host, int(port))
        return cls(reader, writer, host, f"Authorization: {authorization}\r\n" if authorization else "")

    async def post(self, path: str, body: bytes) -> tuple[int, bytes]:
        head = (
            f"POST {path} HTTP/1.1\r\nHost: {self.host}\r\nContent-Type: application/json\r\n{self.headers}"
            f"Content-Length: {len(body)}\r\n\r\n"
        ).encode()
        self.writer.write(head + body)
        return await self._response()

    async def _response(self) -> tuple[int, bytes]:
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        length = 0
        for line in head.split(b"\r\n"):
            if line[:15].lower() == b"content-length:":
                length = int(line[15:])
        return status, await self.reader.readexactly(length)

    def close(self) -> None:
        self.writer.close()


@dataclass
class DaemonHandle:
    proc: subprocess.Popen[bytes]
    url: str

    @property
    def pid(self) -> int:
        return self.proc.pid


@contextmanager
def daemon_process(
    command: list[str], env: dict[str, str] | None = None, marker: str = "listening on ", cwd: Path | None = None
) -> Iterator[DaemonHandle]:
    """Start a server process that prints `marker` then its URL on stderr; stop it afterwards."""
    proc = subprocess.Popen(
        command, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, env={**os.environ, **(env or {})}, cwd=cwd
    )
    assert proc.stderr is not None
    url: list[str] = []
    ready = threading.Event()

    def watch() -> None:
        assert proc.stderr is not None
        for raw in proc.stderr:
            line = raw.decode(errors="replace")
            if not url and marker in line:
                url.append(line.split(marker, 1)[1].split()[0])
                ready.set()
        ready.set()

    reader = threading.Thread(target=watch, daemon=True)
    reader.start()
    if not ready.wait(60) or not url:
        proc.kill()
        raise RuntimeError(f"server did not start: {command}")
    try:
        yield DaemonHandle(proc, url[0])
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
        reader.join(5)
        proc.stderr.close()


@contextmanager
def pivotd(**settings: str) -> Iterator[DaemonHandle]:
    with tempfile.TemporaryDirectory() as data_dir:
        env = {f"PIVOT_{k.upper()}": v for k, v in settings.items()}
        command = [sys.executable, "-m", "pivotd.cli", "--port", "0", "--data-dir", data_dir]
        with daemon_process(command, env) as handle:
            yield handle


class ProcessMeter:
    """CPU (share of one core) and peak RSS of a process over a measured window."""

    def __init__(self, pid: int) -> None:
        self.process = psutil.Process(pid)
        self.peak_rss = 0
        self._stop = threading.Event()
        self._sampler = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.wait(0.2):
            self.peak_rss = max(self.peak_rss, self.process.memory_info().rss)

    def __enter__(self) -> ProcessMeter:
        times = self.process.cpu_times()
        self._cpu0, self._t0 = times.user + times.system, time.perf_counter()
        self._sampler.start()
        return self

    def __exit__(self, *exc: object) -> None:
        times = self.process.cpu_times()
        self.cpu = (times.user + times.system - self._cpu0) / (time.perf_counter() - self._t0)
        self._stop.set()
        self._sampler.join()
        self.peak_rss = max(self.peak_rss, self.process.memory_info().rss)


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q / 100 * len(ordered)))]


def step_template(run_id: str, layers: int) -> tuple[bytes, bytes]:
    """A payload split around its global_step, so each request gets a fresh step cheaply."""
    from shared.samples import layerwise_payload

    document = layerwise_payload(run_id, 0, layers=layers)
    document["metadata"]["global_step"] = 987654321
    text = json.dumps(document).encode()
    before, after = text.split(b"987654321")
    return before, after
