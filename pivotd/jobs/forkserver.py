"""The daemon's side of the training workers' fork server (`pivotd/training/forkserver.py`).

One server per daemon process, started with the first run that trains or the first checkpoint upload to check,
not at start-up: a daemon that does neither never loads torch. A run started through it begins training about
1.5 to 2 s of CPU sooner than one in a fresh interpreter, since torch is imported already, and its memory starts
out shared with the server's; an upload's check (`pivotd.training.checkpoint_check`) takes milliseconds instead
of the same 1.5 to 2 s.
`ForkedProcess` is the part of `asyncio.subprocess.Process` that the supervisor uses, for a process that is the
server's child: its exit status comes from the server. The server is shared by every daemon of a process (in
tests, several daemons in one interpreter, each on its own event loop), so replies are read by a thread of its
own and handed to the loop that asked.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Mapping
from typing import Any

STREAM_LIMIT = 2**16  # asyncio's subprocess default

WORKER_ENVIRONMENT = {"PYTHONUNBUFFERED": "1", "CUDA_DEVICE_ORDER": "PCI_BUS_ID"}
"""Set in every run's and job's environment, and in the fork server's whichever request started it: unbuffered
output, and CUDA's device order NVML's (CUDA's own, fastest first, is not: anything a worker reports by index
means NVML's)."""


class ForkServerError(RuntimeError):
    """The server could not be started or went away before it forked the run."""


class ForkServerStarting(ForkServerError):
    """The server is still importing torch (seconds; more on a busy machine). Nobody waits for that: a run or a
    check asked for now starts in a fresh interpreter, as the daemon did before it had a server, so the request
    that started it (`POST /api/train` with a free slot) is answered at once; later ones are forked."""


class ForkedProcess:
    """A worker forked by the server: pid, stdout and stderr readers, `wait`, `terminate`, `kill`."""

    def __init__(self, pid: int, stdout: asyncio.StreamReader, stderr: asyncio.StreamReader) -> None:
        self.pid = pid
        self.stdout = stdout
        self.stderr = stderr
        self.returncode: int | None = None
        self._exited = asyncio.get_running_loop().create_future()

    def _set_exit(self, code: int) -> None:
        if not self._exited.done():
            self.returncode = code
            self._exited.set_result(code)

    async def wait(self) -> int:
        code: int = await asyncio.shield(self._exited)
        return code

    def send_signal(self, sig: int) -> None:
        if self.returncode is None:
            os.kill(self.pid, sig)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)


class _Server:
    def __init__(self, env: Mapping[str, str]) -> None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        with theirs:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "pivotd.training.forkserver", str(theirs.fileno())],
                pass_fds=(theirs.fileno(),), stdin=subprocess.DEVNULL, env=dict(env), start_new_session=True,
            )  # fmt: skip
        self.sock = ours
        self.alive = True
        self.ready = threading.Event()
        self._lock = threading.Lock()
        self._next_id = 0
        self._starting: dict[int, tuple[asyncio.AbstractEventLoop, asyncio.Future[int]]] = {}
        self._running: dict[int, tuple[asyncio.AbstractEventLoop, ForkedProcess]] = {}
        self._exited_early: dict[int, int] = {}
        threading.Thread(target=self._read, name="pivotd-forkserver", daemon=True).start()
        atexit.register(self._stop_if_starting)

    def _stop_if_starting(self) -> None:
        """At this process's exit: a server still importing torch has forked nothing, and would go on importing
        (seconds of CPU) for nobody before it saw the end of its socket."""
        if not self.ready.is_set():
            self.proc.kill()

    def _read(self) -> None:
        while True:
            try:
                message = self.sock.recv(65536)
            except OSError:
                message = b""
            if not message:
                break
            reply = json.loads(message)
            with self._lock:
                if "ready" in reply:
                    self.ready.set()
                elif "id" in reply:
                    loop, future = self._starting.pop(reply["id"])
                    outcome = reply.get("pid", ForkServerError(reply.get("error", "fork failed")))
                    _call(loop, _settle, future, outcome)
                else:
                    entry = self._running.pop(reply["pid"], None)
                    if entry is None:  # the fork's reply is still on its way to the loop that asked
                        self._exited_early[reply["pid"]] = reply["code"]
                    else:
                        _call(entry[0], entry[1]._set_exit, reply["code"])
        with self._lock:  # the server is gone: nothing it forked will be reported any more
            self.alive = False
            self.ready.set()
            for loop, future in self._starting.values():
                _call(loop, _settle, future, ForkServerError("the training fork server exited"))
            for loop, process in self._running.values():  # orphans now: stop them, as a dead daemon's workers
                with contextlib.suppress(OSError):
                    os.kill(process.pid, signal.SIGKILL)
                _call(loop, process._set_exit, -signal.SIGKILL)
            self._starting.clear()
            self._running.clear()
        self.sock.close()
        self.proc.wait()

    async def spawn(self, module: str, argument: str, env: Mapping[str, str]) -> ForkedProcess:
        loop = asyncio.get_running_loop()
        if not self.ready.is_set():
            raise ForkServerStarting("the training fork server is still starting")
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        future: asyncio.Future[int] = loop.create_future()
        try:
            with self._lock:
                if not self.alive:
                    raise ForkServerError("the training fork server exited")
                request_id = self._next_id
                self._next_id += 1
                self._starting[request_id] = (loop, future)
                message = {"id": request_id, "module": module, "argument": argument, "env": dict(env)}
                socket.send_fds(self.sock, [json.dumps(message).encode()], [out_w, err_w])
        except OSError as exc:
            for fd in (out_r, err_r):
                os.close(fd)
            raise ForkServerError(f"the training fork server is unreachable: {exc}") from exc
        except BaseException:
            for fd in (out_r, err_r):
                os.close(fd)
            raise
        finally:
            os.close(out_w)
            os.close(err_w)
        try:
            pid = await future
        except BaseException:
            for fd in (out_r, err_r):
                os.close(fd)
            raise
        process = ForkedProcess(pid, await _reader(out_r), await _reader(err_r))
        with self._lock:
            code = self._exited_early.pop(pid, None)
            if code is None and self.alive:
                self._running[pid] = (loop, process)
        if code is not None:
            process._set_exit(code)
        elif not self.alive:
            process._set_exit(-signal.SIGKILL)
        return process


_server: _Server | None = None
_server_lock = threading.Lock()


def start(env: Mapping[str, str]) -> _Server:
    """This process's fork server, started (with `_server_environment(env)`) if there is none or it has gone. Its
    `ready` is set once it has imported torch, or has exited. Raises ForkServerError."""
    global _server
    with _server_lock:
        if _server is None or not _server.alive:
            try:
                _server = _Server(_server_environment(env))
            except OSError as exc:
                raise ForkServerError(f"the training fork server did not start: {exc}") from exc
        return _server


async def fork(module: str, argument: str, env: Mapping[str, str]) -> ForkedProcess:
    """Fork what `python -m MODULE ARGUMENT` would be (MODULE: `pivotd.training.worker` or
    `pivotd.training.checkpoint_check`) with `env` from this process's fork server, starting one if there is none
    or it has gone. Raises ForkServerError, ForkServerStarting while the server it started is still importing."""
    return await start(env).spawn(module, argument, env)


def _server_environment(env: Mapping[str, str]) -> dict[str, str]:
    """The server's environment: the first request's (a run's or a checkpoint check's), less GPU pinning, with
    `WORKER_ENVIRONMENT` whichever it was (the interpreter reads PYTHONUNBUFFERED once, at start-up, for every
    child it will fork), and with PyTorch's NVML-based CUDA check, so that anything asking whether CUDA is
    available while the server imports asks NVML rather than initialising the CUDA driver, whose state a forked
    child could not use (torch's own `is_initialized` does not see a driver that a device count initialised).
    Each child takes its request's environment in place of this one; its /proc/PID/environ, the block the server
    was started with, does not show that."""
    server = {k: v for k, v in env.items() if k != "CUDA_VISIBLE_DEVICES"}
    server.update(WORKER_ENVIRONMENT, PYTORCH_NVML_BASED_CUDA_CHECK="1")
    return server


async def _reader(fd: int) -> asyncio.StreamReader:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=STREAM_LIMIT, loop=loop)
    pipe = os.fdopen(fd, "rb", buffering=0)
    try:
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader, loop=loop), pipe)
    except BaseException:
        pipe.close()
        raise
    return reader


def _settle(future: asyncio.Future[int], outcome: Any) -> None:
    if future.done():
        return
    if isinstance(outcome, BaseException):
        future.set_exception(outcome)
    else:
        future.set_result(outcome)


def _call(loop: asyncio.AbstractEventLoop, callback: Any, *args: Any) -> None:
    with contextlib.suppress(RuntimeError):  # that loop is closed: nobody waits for this any more
        loop.call_soon_threadsafe(callback, *args)
