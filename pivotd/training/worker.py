"""Worker process entry point: `python -m pivotd.training.worker JOB.json`, started by the supervisor.

Protocol: control events are JSON lines on stdout (`started`, `heartbeat`, `epoch`, `checkpoint`, `params`);
logs go to stderr as `LEVEL message` lines, which the supervisor stores as the run's log. SIGTERM stops the loop
at the next step, or the process at once before training begins (nothing to keep yet, and a fresh interpreter
spends seconds of CPU importing torch); exit status 0 means success, anything else failure (the last stderr
line says why).
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
import threading
from pathlib import Path
from typing import Any

from pivotd.training.exiting import end_process

EXIT_CANCELLED = 3
EXIT_ORPHANED = 4
_emit_lock = threading.Lock()


def emit(event: dict[str, Any]) -> None:
    line = json.dumps(event)
    with _emit_lock:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()


def _heartbeat(interval: float, stop: threading.Event) -> None:
    parent = os.getppid()
    while not stop.wait(interval):
        if os.getppid() != parent:
            # The daemon died (crash, SIGKILL): nobody supervises or records this run any more, and the
            # restarted daemon marks it interrupted. Stop rather than train for nobody.
            os._exit(EXIT_ORPHANED)
        emit({"event": "heartbeat"})


def _exit_cancelled(*_: object) -> None:
    raise SystemExit(EXIT_CANCELLED)


def main(argv: list[str]) -> int:
    # No address-space cap here: CUDA reserves far more address space than it uses, so `RLIMIT_AS` made CUDA
    # fail to initialise. The supervisor watches this process's resident memory instead.
    spec = json.loads(Path(argv[0]).read_text())
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(levelname)s %(message)s")
    # stderr is the run's log: one line per request the SDK sends would bury the lines that matter.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.captureWarnings(True)
    signal.signal(signal.SIGTERM, _exit_cancelled)
    beat = threading.Event()
    threading.Thread(target=_heartbeat, args=(spec.get("heartbeat_s", 2.0), beat), daemon=True).start()

    from pivotd.training.trainer import Cancelled, Job, train  # noqa: PLC0415 - after the log setup
    from shared.models.training import Architecture, Hyperparams  # noqa: PLC0415

    threads = spec.get("torch_threads")
    if threads:
        import torch  # noqa: PLC0415

        torch.set_num_threads(int(threads))
    hyperparams = Hyperparams.model_validate(spec["hyperparams"])
    gpus = spec.get("gpus") or []
    if gpus:
        # Pinned: the assigned GPU is the only one CUDA shows (as cuda:0). `auto` and `cuda:N` both mean it, and
        # strictly: a run holding a GPU fails when CUDA is unusable rather than quietly training on CPU.
        hyperparams = hyperparams.model_copy(update={"device": "cuda"})
        logging.info("assigned %s", ", ".join(f"GPU {g['index']} ({g['name']}, {g['uuid']})" for g in gpus))
    job = Job(
        run_id=spec["run_id"],
        architecture=Architecture.model_validate(spec["architecture"]),
        hyperparams=hyperparams,
        run_dir=Path(spec["run_dir"]),
        data_dir=Path(spec["data_dir"]),
        url=spec["url"],
        token=spec.get("token"),
        max_linear=spec.get("max_linear", 5),
        resume_from=spec.get("resume_from"),
    )
    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())  # from here, at the next step: its measures are sent
    try:
        metrics = train(job, emit, stopping.is_set)
    except Cancelled:
        logging.info("cancelled")
        return EXIT_CANCELLED
    except Exception as exc:
        logging.exception("training failed")
        # The last error line becomes the run's `error`: the exception alone, without the module path.
        logging.error("%s: %s", type(exc).__name__, exc)
        return 1
    finally:
        beat.set()
    # Read by people (run logs, the TUI), so 4 significant digits; the full values are the run's scalars.
    logging.info("finished: %s", ", ".join(f"{name} {value:.4g}" for name, value in metrics.items()))
    return 0


if __name__ == "__main__":
    # As a child of the fork server ends (`pivotd.training.forkserver`): without the interpreter's teardown of torch.
    end_process(main(sys.argv[1:]))
