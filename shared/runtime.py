"""Process-wide tuning shared by pivotd and pivot-tui."""

from __future__ import annotations

import gc


def tune_gc(threshold: int = 50_000) -> None:
    """Collect cycles less often, and never scan what start-up built.

    Both programs allocate many short-lived, acyclic objects per message (JSON dicts in the daemon,
    render segments and styles in the TUI) which refcounting frees at once; at the default gen-0
    threshold (700) they still set off collections every few messages: half of the daemon's batch
    ingest CPU, and the TUI's worst event-loop stalls (docs/performance.md). Call it once, after the
    program's modules are imported.
    """
    gc.freeze()
    gc.set_threshold(threshold, 20, 20)
