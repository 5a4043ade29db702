"""Provides `start_copy`: a device tensor copied to pinned host memory without waiting, plus the wait.

The training thread only queues the copy; the SDK's sender thread calls the returned wait before reading.
The event goes on the stream that runs the copy, the current stream of the tensor's own device (a model on
`cuda:1` while device 0 is current would otherwise be read before its copy lands, and open a context on
GPU 0), and is a blocking-sync event, so the waiting thread sleeps instead of spinning on a core.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def start_copy(tensor: Any) -> tuple[Any, Callable[[], None] | None]:
    """(host tensor, wait): read the host tensor only after `wait()` returned; CPU tensors come back as-is,
    with no wait (None)."""
    if not getattr(tensor, "is_cuda", False):
        return tensor, None
    import torch  # noqa: PLC0415 - only reached with a CUDA tensor in hand: scalar-only users need no torch

    host = tensor.to("cpu", non_blocking=True)  # pinned destination: the copy runs asynchronously
    ready = torch.cuda.Event(blocking=True)
    ready.record(torch.cuda.current_stream(tensor.device))
    return host, ready.synchronize
