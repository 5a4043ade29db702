"""`python -m pivotd.training.checkpoint_check FILE`: is an uploaded checkpoint plain tensors? Exit 0 if so.

Run in its own short-lived process with a memory cap (`RLIMIT_DATA`, see MEMORY_CAP): a child of the training fork
server (`pivotd/training/forkserver.py`, which has imported torch already), or where there is none, a fresh
interpreter. The daemon never unpickles an upload itself, and `torch.load(weights_only=True)` refuses any pickle
that would construct anything but tensors, containers and primitives, so code hidden in the file is never
executed. The verdict is one JSON line on stdout.
"""

from __future__ import annotations

import json
import resource
import sys
from typing import Any

from pivotd.training.exiting import end_process

# A cap on the data segment (heap and anonymous mappings), generous enough for any checkpoint worth uploading.
# Not `RLIMIT_AS`: a CUDA build of torch maps several GiB of address space as it loads (its kernels, the driver's
# reservations), so an address-space cap that fits a CPU build can make `import torch` itself fail on a GPU box.
# `map_location="cpu"` keeps every tensor in ordinary memory, which `RLIMIT_DATA` counts (Linux >= 4.7).
MEMORY_CAP = 4 * 1024**3


def _tensor_count(value: Any, torch: Any) -> int:
    if isinstance(value, torch.Tensor):
        return 1
    if isinstance(value, dict):
        return sum(_tensor_count(v, torch) for v in value.values())
    if isinstance(value, list | tuple):
        return sum(_tensor_count(v, torch) for v in value)
    return 0


def main(argv: list[str]) -> int:
    """Check the file `argv[0]`. The cap counts the process's whole data, torch's import included, in a fork
    server's child as in a fresh interpreter."""
    path = argv[0]
    resource.setrlimit(resource.RLIMIT_DATA, (MEMORY_CAP, MEMORY_CAP))
    import torch  # noqa: PLC0415 - after the cap

    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # UnpicklingError for code, RuntimeError/EOFError for non-checkpoints
        reason = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__
        print(json.dumps({"ok": False, "reason": reason}))
        return 1
    tensors = _tensor_count(loaded, torch)
    if not tensors:
        print(json.dumps({"ok": False, "reason": "the file holds no tensors"}))
        return 1
    print(json.dumps({"ok": True, "tensors": tensors}))
    return 0


if __name__ == "__main__":
    # As a child of the fork server ends (`pivotd.training.forkserver`): without the interpreter's teardown of torch.
    end_process(main(sys.argv[1:]))
