"""The training-script SDK: `Monitor` (layer-wise statistics of a torch model) and `init`/`log`/`finish` (scalars).

`import shared.sdk` does not import torch: `Monitor` is loaded on first access, so scripts that only log
scalars run where torch is not installed. See docs/sdk.md.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from shared.sdk.run import Run, finish, init, log
from shared.sdk.transport import DROPPED_SCALAR, TransportStats

if TYPE_CHECKING:
    from shared.sdk.monitor import Monitor

__all__ = ["DROPPED_SCALAR", "Monitor", "Run", "TransportStats", "finish", "init", "log"]


def __getattr__(name: str) -> Any:
    if name == "Monitor":
        from shared.sdk.monitor import Monitor  # noqa: PLC0415 - torch is imported only when Monitor is used

        return Monitor
    raise AttributeError(f"module 'shared.sdk' has no attribute {name!r}")
