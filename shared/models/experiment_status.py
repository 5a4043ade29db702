"""Family C's status words (seed 004's experiments API): how runs and experiments read there.

pivotd's own run states are `RunState`; family C has a closed vocabulary of its own. The mapping lives here,
beside `RunState`, so the store's derived experiment status, the `experiment:<id>` events, the routes' filters
and the client all speak the same words.
"""

from __future__ import annotations

from shared.models.runs import RunState

# Seed 004's closed vocabulary has no `lost`: a lost run shows as `failed`, its error says why.
C_RUN_STATUS = {
    RunState.CREATED: "pending",
    RunState.QUEUED: "pending",
    RunState.RUNNING: "running",
    RunState.SUCCEEDED: "completed",
    RunState.FAILED: "failed",
    RunState.CANCELLED: "cancelled",
    RunState.LOST: "failed",
}
C_TO_INTERNAL = {
    "pending": (RunState.CREATED, RunState.QUEUED),
    "running": (RunState.RUNNING,),
    "completed": (RunState.SUCCEEDED,),
    "failed": (RunState.FAILED, RunState.LOST),
    "cancelled": (RunState.CANCELLED,),
}
EXPERIMENT_STATUSES = (*C_TO_INTERNAL, "paused")
FINAL_EXPERIMENT_STATUSES = frozenset({"completed", "failed", "cancelled"})
