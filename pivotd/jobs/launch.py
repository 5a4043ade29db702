"""A job's argv as the supervisor starts it: the command as given, or under torchrun (PyTorch's elastic launcher)
when it asks for several processes per node or is one node of a multi-node job.

torchrun is the one on the job's `PATH` (its `env` may set one), else the daemon's own
(`python -m torch.distributed.run`). A command whose first item is a `.py` file runs as torchrun's script, with
the Python torchrun runs in; any other first item is an executable (`--no-python`).
"""

from __future__ import annotations

import shutil
import sys
from typing import Any


def torchrun(path: str | None) -> list[str]:
    found = shutil.which("torchrun", path=path)
    return [found] if found is not None else [sys.executable, "-m", "torch.distributed.run"]


def job_argv(config: dict[str, Any], path: str | None) -> list[str]:
    """The argv of a job's main process; `path` is the `PATH` it runs with."""
    command: list[str] = config["command"]
    nproc = int(config.get("nproc_per_node", 1))
    rendezvous: dict[str, Any] | None = config.get("rendezvous")
    if nproc == 1 and rendezvous is None:
        return command
    if rendezvous is None:
        where = ["--standalone"]
    else:
        where = [
            f"--nnodes={rendezvous['nnodes']}",
            f"--node-rank={rendezvous['node_rank']}",
            "--rdzv-backend=c10d",
            f"--rdzv-endpoint={rendezvous['endpoint']}",
            f"--rdzv-id={rendezvous['id']}",
        ]
    script = [] if command[0].endswith(".py") else ["--no-python"]
    return [*torchrun(path), *where, f"--nproc-per-node={nproc}", *script, *command]
