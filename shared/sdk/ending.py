"""How a script's run ended, as `POST /api/v1/runs/{id}/finish` says it: from `finish()`'s arguments, from the
exception leaving a `with` block, or at interpreter exit from the exception the script died of.

At exit the interpreter has already handled an uncaught exception, whichever `sys.excepthook` printed it, and keeps
it as `sys.last_value` (`sys.last_exc` from 3.12), so that is where the SDK reads it: a hook of its own could be
replaced by the next library that installs one (rich, IPython-style tracebacks) and miss the crash.
"""

from __future__ import annotations

import sys
import traceback

from shared.models.runs import MAX_ERROR_CHARS, EndStatus, RunEnd

SUCCEEDED = RunEnd(status="succeeded")


def end_of(status: EndStatus | None, error: str | None) -> RunEnd:
    """`finish(status=..., error=...)`: failed when only an error is given, succeeded when neither is."""
    if error is not None:
        error = error[:MAX_ERROR_CHARS]
    return RunEnd.model_validate({"status": status or ("failed" if error else "succeeded"), "error": error})


def end_of_exception(exc: BaseException | None) -> RunEnd:
    """Succeeded without an exception; cancelled for Ctrl-C (the user stopped it); failed otherwise, with the
    exception's line as the traceback ends with it (`ValueError: loss is nan`)."""
    if exc is None:
        return SUCCEEDED
    status: EndStatus = "cancelled" if isinstance(exc, KeyboardInterrupt) else "failed"
    described = traceback.TracebackException(type(exc), exc, None)
    described.__notes__ = None  # notes (`add_note`) would follow the exception's own line
    line = list(described.format_exception_only())[-1]
    return end_of(status, " ".join(line.split()))


def end_at_exit() -> RunEnd:
    """How the script ended, for runs it did not finish itself: the uncaught exception it is exiting with, if any.

    `sys.exit(n)` leaves no trace here (the exit status is not visible to atexit), and neither does an exception
    in an interactive session, where it does not end the session: both end the run succeeded."""
    if hasattr(sys, "ps1"):
        return SUCCEEDED
    return end_of_exception(getattr(sys, "last_exc", None) or getattr(sys, "last_value", None))
