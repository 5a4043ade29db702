"""The training workers' fork server: `python -m pivotd.training.forkserver FD`, started by the daemon.

It imports the worker and torch once, then forks one child per run (and per uploaded checkpoint to check), so
neither starts a fresh interpreter importing torch (1.5 to 2 s of CPU each). A child is what
`python -m MODULE ARGUMENT` would be, for the modules in `MAINS`: its own session, the request's environment,
stdout and stderr on the pipes the daemon passed with the request, and exit statuses as that process's. The
server never computes and never touches CUDA, so children initialise CUDA themselves, after
`CUDA_VISIBLE_DEVICES` is set.

Protocol, over the SOCK_SEQPACKET socket FD (one JSON message per packet): the daemon sends
`{"id", "module", "argument", "env"}` with the child's stdout and stderr as SCM_RIGHTS; the server answers
`{"ready": true}` once (after its imports), `{"id", "pid"}` for each fork (or `{"id", "error"}`), and
`{"pid", "code"}` when a child exits (code as `asyncio`'s returncode: negative for a signal). End of file on the
socket (the daemon is gone) ends the server; running children then see their parent change and stop, as a worker
of a dead daemon does.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import socket
import sys
from collections.abc import Callable
from typing import Any

from pivotd.training import checkpoint_check, worker
from pivotd.training.exiting import end_process

MAINS: dict[str, Callable[[list[str]], int]] = {
    "pivotd.training.worker": worker.main,
    "pivotd.training.checkpoint_check": checkpoint_check.main,
}
"""What a child may be: each module's `main(argv)`, as its `python -m` entry point runs it."""


def _child(sock: socket.socket, wake: tuple[int, int], request: dict[str, Any], fds: list[int]) -> None:
    """In the forked child: become the worker process, then exit with its status (never returns)."""
    code = 1
    try:
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        sock.close()
        for fd in wake:
            os.close(fd)
        os.setsid()  # as start_new_session: a Ctrl-C on the daemon's terminal is the daemon's alone
        os.dup2(fds[0], 1)
        os.dup2(fds[1], 2)
        for fd in fds:
            os.close(fd)
        os.environ.clear()
        os.environ.update(request["env"])
        sys.argv = ["-m", request["argument"]]
        code = MAINS[request["module"]]([request["argument"]])
    except SystemExit as exit_:
        code = exit_.code if isinstance(exit_.code, int) else 1
    except BaseException:
        import traceback  # noqa: PLC0415

        traceback.print_exc()
    finally:
        end_process(code)


def serve(sock: socket.socket) -> None:
    # Everything a worker imports, so that the children do not. Two of them are imported lazily, in every child
    # again otherwise: torch's compiler when the first optimizer is built (`torch._compile._disable_dynamo`, 1 to
    # 4 s of CPU), and httpx's connection pool when the SDK makes its client.
    import httpcore  # noqa: F401, PLC0415
    import torch  # noqa: PLC0415
    import torch._dynamo  # noqa: PLC0415

    from pivotd.training import trainer  # noqa: F401, PLC0415

    if torch.cuda.is_initialized():  # a child could not use CUDA: let the daemon start interpreters instead
        sys.exit("pivotd.training.forkserver: CUDA was initialised while importing the worker; not serving")

    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda *_: None)  # wakes select through the wakeup fd
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the daemon decides when this ends (end of file)
    sock.send(b'{"ready": true}')
    while True:
        ready, _, _ = select.select([sock, wake_r], [], [])
        if wake_r in ready:
            os.read(wake_r, 4096)
        while True:  # reap whatever has exited (a SIGCHLD may stand for several)
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                break
            sock.send(json.dumps({"pid": pid, "code": os.waitstatus_to_exitcode(status)}).encode())
        if sock in ready:
            message, fds, _, _ = socket.recv_fds(sock, 1 << 20, 2)
            if not message:
                return  # the daemon closed its end
            request = json.loads(message)
            try:
                pid = os.fork()
            except OSError as exc:
                for fd in fds:
                    os.close(fd)
                sock.send(json.dumps({"id": request["id"], "error": f"fork failed: {exc}"}).encode())
                continue
            if pid == 0:
                _child(sock, (wake_r, wake_w), request, fds)
            for fd in fds:
                os.close(fd)
            sock.send(json.dumps({"id": request["id"], "pid": pid}).encode())


if __name__ == "__main__":
    # The daemon may go away at any time, also while this server imports torch (nothing waits for that): a write
    # to its closed end is that end, not an error to report.
    with contextlib.suppress(BrokenPipeError, ConnectionResetError):
        serve(socket.socket(fileno=int(sys.argv[1])))
    # The daemon is gone or stopping: exit without the interpreter's teardown of torch (2 to 4 s of CPU on a
    # busy machine, for nothing: the server holds no buffered output, and its children are processes of their own).
    os._exit(0)
