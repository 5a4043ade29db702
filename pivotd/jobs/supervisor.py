"""The supervisor: a persisted queue of managed runs and one worker process per training slot.

The queue is the `runs` table itself (status `queued`, ordered by `queued_at`), so a restart loses nothing:
runs a dead daemon left `running` become `failed` with reason `interrupted`, queued ones are started again.
Each run trains in a process of its own, forked from the training fork server (`forkserver.py`, which has
imported the worker and torch once; the daemon itself never imports torch) or, where that server cannot be had,
started as `python -m pivotd.training.worker`. Its stdout carries JSON control events and a heartbeat, and its
stderr is kept as the run's log. Cancel is SIGTERM, a grace period, then SIGKILL. Whatever the worker does
(raise, crash, get killed for memory) only its run fails: the daemon waits for its exit status like any child's.

GPUs: where NVML lists any, every run that may use one (`device` auto, cuda or cuda:N) is pinned to its own
through `CUDA_VISIBLE_DEVICES=<uuid>` (`gpus.py`), and the assignment is stored on the run. `cuda:N` means GPU N
of the box by NVML index: the run waits while another pivotd run holds it and fails if it does not exist or
other processes compute on it. `auto` takes a free GPU, else trains on CPU with every GPU hidden. Runs that get
no GPU see none, so none lands on a GPU by accident. Without NVML (no `pynvml`, no driver) nothing is pinned.
Memory: `worker_memory_limit_mb` caps the resident memory of a worker and its children, checked by a watchdog,
not the address space (CUDA maps far more address space than it uses).

Jobs (kind `job`, docs/jobs.md) are people's own commands on the same queue and slots: started in a session of
their own with `PIVOT_RUN_ID` and a run token, given `gpus` whole GPUs, their stdout and stderr kept as the run's
log, their exit status their state. Signals go to the job's whole process group, so what it started goes with it.

Queue order: priority, then age. A run that cannot get its GPUs does not hold back the runs behind it that can
(backfill), until it has waited `RESERVE_AFTER_S`: from then on nothing behind it starts, so the GPUs pivotd's own
runs free up are kept for it, and it starts once enough are free.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import re
import signal
import sys
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import psutil

import pivotd
from pivotd.datadir import write_private
from pivotd.errors import Conflict, NotFound
from pivotd.hub import Hub, run_topic
from pivotd.ids import new_id
from pivotd.jobs.forkserver import WORKER_ENVIRONMENT, ForkedProcess, ForkServerError, ForkServerStarting, fork
from pivotd.jobs.gpus import Gpu, GpuAllocator, Refusal
from pivotd.jobs.launch import job_argv
from pivotd.runtokens import RunTokens
from pivotd.settings import Settings
from pivotd.store import Store
from pivotd.store.training import (
    AddCheckpoint,
    AddParams,
    AppendLogs,
    JobRow,
    LogLine,
    RecoverJobs,
    SetEpoch,
    SetGpus,
    TrainingReader,
    Transition,
)
from pivotd.tasks import TaskSet
from pivotd.telemetry.service import EPOCH_EVENT, Telemetry
from shared.models.layerwise import is_valid_run_id
from shared.models.runs import FINAL_STATES, RunState

log = logging.getLogger(__name__)
_LEVELED = re.compile(r"^(DEBUG|INFO|WARNING|ERROR|CRITICAL) (.*)$", re.DOTALL)
LOG_FLUSH_S = 0.5
RSS_CHECK_S = 0.25  # how often a worker's resident memory is compared with its limit
QUEUE_LOOKAHEAD = 100
"""How many queued runs one dispatch considers, in queue order, for a free slot."""
RESERVE_AFTER_S = 300.0
"""A run waiting this long for GPUs stops runs behind it from starting (see the module's docstring)."""
MAX_LOG_CHARS = 8192  # a longer output line is cut: a log line, not a file
OUTPUT_LIMIT = 1 << 20  # bytes a job's output line may reach before it is taken in pieces


def resident_bytes(pid: int) -> int:
    """Resident memory of a process and its descendants (DataLoader workers count against the run too)."""
    proc = psutil.Process(pid)
    total = proc.memory_info().rss
    for child in proc.children(recursive=True):
        with contextlib.suppress(psutil.Error):  # a child that exits meanwhile
            total += child.memory_info().rss
    return total


@dataclass(frozen=True, slots=True)
class _Wait:
    """A queued run that cannot get its GPUs now. `reserve`: pivotd's own runs hold what it lacks, so it starts
    once they end (devices busy with foreign processes may never be free, and are not waited for)."""

    reserve: bool


WAIT = _Wait(reserve=True)


@dataclass(slots=True, eq=False)
class _Worker:
    run_id: str
    proc: asyncio.subprocess.Process | ForkedProcess
    slot: int
    last_beat: float = field(default_factory=time.monotonic)
    cancel_requested: bool = False
    fatal: str | None = None  # a reason decided by the supervisor (lost heartbeat)
    params: dict[str, Any] | None = None
    last_error: str | None = None
    logs: list[LogLine] = field(default_factory=list)
    done: asyncio.Event = field(default_factory=asyncio.Event)
    step: int | None = None  # the global step at the last epoch's end (the worker reports cumulative steps)
    gpus: list[Gpu] = field(default_factory=list)
    job: bool = False
    """A job (a person's command): signalled as a process group; its stderr's last line is `last_error`."""


RunFinished = Callable[[str, str, str | None], Awaitable[None]]
RunListener = Callable[[str], Awaitable[None]]


class Supervisor:
    def __init__(
        self,
        settings: Settings,
        store: Store,
        hub: Hub,
        token: str | None,
        telemetry: Telemetry,
        *,
        on_finished: Sequence[RunFinished],
        on_started: Sequence[RunListener],
        on_epoch: Sequence[RunListener],
        gpus: GpuAllocator,
        run_tokens: RunTokens,
    ) -> None:
        """The listeners run in the order given, each awaited before the next. `gpus` hands out the GPUs;
        `run_tokens` the credential each run's process reports with (its own run only)."""
        self._settings = settings
        self._run_tokens = run_tokens
        self._store = store
        self._hub = hub
        self._token = token or None
        self._telemetry = telemetry
        """Each reported epoch becomes a `pivot.training.epoch` event."""
        self.reader = TrainingReader(store.reader.connection)
        self.gpus = gpus
        self.slots = settings.training_slots or max(1, len(gpus.inventory()))
        self._workers: dict[str, _Worker] = {}
        self._tasks = TaskSet()
        self._dispatch_lock = asyncio.Lock()
        self._url: str | None = None
        self._closing = False
        self._starting: set[str] = set()
        self._cancel_on_start: set[str] = set()
        self.swept = asyncio.Condition()
        """Notified after a deleted run's artifacts are removed; `swept_runs` holds the latest ids."""
        self.swept_runs: deque[str] = deque(maxlen=100)
        self._on_finished = tuple(on_finished)
        """Called with (run_id, state, error) when a run reaches succeeded, failed or cancelled."""
        self._on_started = tuple(on_started)
        """Called with the run id when a run starts running (after its `run_state`)."""
        self._on_epoch = tuple(on_epoch)
        """Called with the run id after a run's epoch is stored and its `run_progress` published."""

    # -- lifecycle ------------------------------------------------------------------------------------------

    async def __aenter__(self) -> Supervisor:
        interrupted, resumed = await self._store.writer.submit(RecoverJobs(self._settings.resume_interrupted))
        for run_id in interrupted:
            log.warning("run %s was running when pivotd stopped; marked failed (interrupted)", run_id)
            self._hub.publish_run_state(run_id, RunState.FAILED, "interrupted")
        for run_id in resumed:
            log.warning("run %s was running when pivotd stopped; queued to resume from its last checkpoint", run_id)
            self._hub.publish_run_state(run_id, RunState.QUEUED, None)
        return self

    async def stop(self) -> None:
        """Stop every worker (SIGTERM, grace, SIGKILL) and wait for them; their runs fail as interrupted. The server
        calls it while it still listens, so that a stopping worker's last reports reach the daemon."""
        self._closing = True
        for worker in list(self._workers.values()):
            worker.fatal = "interrupted (pivotd stopped)"
            self._terminate(worker)
        await self._tasks.wait()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def attach(self, url: str) -> None:
        """The daemon listens at `url` (known only once bound): workers report there; start queued runs."""
        self._url = url
        self._tasks.spawn(self.dispatch())

    def worker_pid(self, run_id: str) -> int | None:
        """The process id training `run_id`, while it runs."""
        worker = self._workers.get(run_id)
        return worker.proc.pid if worker is not None else None

    def worker_pids(self) -> set[int]:
        """The process ids of every worker running now."""
        return {worker.proc.pid for worker in self._workers.values()}

    # -- queue ----------------------------------------------------------------------------------------------

    async def enqueue(self, run_id: str) -> None:
        """Queue a created run (a training session being started) and start it if a slot is free."""
        await self._transition(run_id, RunState.QUEUED, (RunState.CREATED,))
        await self.dispatch()

    async def dispatch(self) -> None:
        """Start queued runs while slots are free. Awaited by routes so a free slot starts the run at once."""
        if self._url is None or self._closing:
            return
        async with self._dispatch_lock:
            while len(self._workers) < self.slots and await self._start_next():
                pass

    async def _start_next(self) -> bool:
        """Start (or fail) the first queued run that can be placed; False when none can."""
        now = time.time()
        for job in await self.reader.next_queued(QUEUE_LOOKAHEAD):
            placed = await self._place(job)
            if isinstance(placed, _Wait):
                if placed.reserve and now - (job.queued_at or now) >= RESERVE_AFTER_S:
                    return False  # it has waited long enough: what pivotd's runs free up is kept for it
                continue  # backfill: a run behind it that fits starts now; a run's end dispatches again
            await self._start(job, placed)
            return True
        return False

    async def _start(self, job: JobRow, placed: str | list[Gpu] | None) -> None:
        held = placed if isinstance(placed, list) else []
        self._starting.add(job.run_id)
        try:
            if isinstance(placed, str):
                await self._finish(job.run_id, RunState.FAILED, placed)
                return
            await self._transition(job.run_id, RunState.RUNNING, (RunState.QUEUED,))
            await self._launch(job, None if placed is None else held)
        except (Conflict, NotFound):
            self.gpus.release(held)
            return  # cancelled or deleted in between
        except Exception as exc:  # cannot even start a process: that run fails, the queue goes on
            self.gpus.release(held)
            self._run_tokens.revoke(job.run_id)
            what = "the command" if job.kind == "job" else "worker"
            log.warning("could not start %s of run %s: %s", what, job.run_id, exc)
            await self._finish(job.run_id, RunState.FAILED, f"could not start {what}: {exc}")
            return
        finally:
            self._starting.discard(job.run_id)
        if job.run_id in self._cancel_on_start:
            self._cancel_on_start.discard(job.run_id)
            started = self._workers.get(job.run_id)
            if started is not None:
                started.cancel_requested = True
                self._terminate(started)

    async def _place(self, job: JobRow) -> _Wait | str | list[Gpu] | None:
        """Where the run trains: its GPUs ([]: none, every GPU hidden), None (NVML lists no GPU: nothing
        pinned), a reason it cannot run, or a _Wait while it cannot get the GPUs it needs now."""
        if job.kind == "job":
            return await self._place_job(job)
        device: str = job.config["hyperparams"].get("device", "auto")
        if not await asyncio.to_thread(self.gpus.inventory):
            return None
        if device == "cpu":
            return []
        index = int(device.split(":", 1)[1]) if ":" in device else None
        taken = await asyncio.to_thread(self.gpus.acquire, 1, index)
        if taken is not None:
            return taken
        if device == "auto":
            return []
        refusal = await asyncio.to_thread(self.gpus.refusal, index)
        return WAIT if refusal is None else f"device {device!r}: {refusal.reason}"

    async def _place_job(self, job: JobRow) -> _Wait | str | list[Gpu] | None:
        wanted = job.gpus_requested or 0
        inventory = await asyncio.to_thread(self.gpus.inventory)
        if len(inventory) < wanted:  # the GPUs it was submitted for are gone
            return f"the job asks for {wanted} GPU(s); NVML lists {len(inventory)} that pivotd may use"
        if not inventory:
            return None
        if wanted == 0:
            return []
        taken = await asyncio.to_thread(self.gpus.acquire, wanted)
        if taken is not None:
            return taken
        return _Wait(reserve=await asyncio.to_thread(self.gpus.could_have, wanted))

    def device_refusal(self, device: str) -> Refusal | None:
        """Why a run asking for `device` could not get its GPU now; None if it can or may once a run ends.
        Nothing is refused where NVML lists no GPU (the worker finds out from CUDA)."""
        if not device.startswith("cuda") or not self.gpus.inventory():
            return None
        return self.gpus.refusal(int(device.split(":", 1)[1]) if ":" in device else None)

    async def cancel(self, run_id: str, wait: bool = False) -> str:
        """Cancel a queued or running run; returns the state it was in. Conflict if it already finished.

        With `wait`, a running run's worker is awaited (at most the grace period and a little more), so the
        caller can answer with the final state.
        """
        worker = self._workers.get(run_id)
        if worker is None and run_id in self._starting:
            self._cancel_on_start.add(run_id)  # between `running` and the process existing: stop it once it does
            return RunState.RUNNING
        if worker is not None:
            if not worker.cancel_requested:
                worker.cancel_requested = True
                self._terminate(worker)
            if wait:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(worker.done.wait(), self._settings.cancel_grace_s + 5)
            return RunState.RUNNING
        previous = await self._transition(run_id, RunState.CANCELLED, (RunState.CREATED, RunState.QUEUED))
        return previous

    # -- workers --------------------------------------------------------------------------------------------

    def _environment(self, gpus: list[Gpu] | None) -> dict[str, str]:
        env = {**os.environ, **WORKER_ENVIRONMENT}
        if gpus is not None:
            env["CUDA_VISIBLE_DEVICES"] = ",".join(gpu.uuid for gpu in gpus)  # "": no GPU at all
        return env

    async def _launch(self, job: JobRow, gpus: list[Gpu] | None) -> None:
        if job.kind == "job":
            await self._launch_job(job, gpus)
            return
        settings = self._settings
        run_dir = settings.runs_path / job.run_id
        run_dir.mkdir(parents=True, exist_ok=True)
        spec = {
            "run_id": job.run_id,
            "architecture": job.config["architecture"],
            "hyperparams": job.config["hyperparams"],
            "run_dir": str(run_dir),
            "data_dir": str(settings.datasets_path),
            "url": self._url,
            "token": self._run_tokens.mint(job.run_id),
            "max_linear": settings.max_linear_layers,
            "torch_threads": settings.worker_threads,
            "heartbeat_s": min(5.0, settings.heartbeat_timeout_s / 4),
            "resume_from": self._resume_from(job),
            "gpus": [gpu.record() for gpu in gpus or ()],
        }
        spec_path = run_dir / "job.json"
        write_private(spec_path, json.dumps(spec))  # it carries the run's token
        slot = self._free_slot()
        env = self._environment(gpus)
        # The worker imports the same pivotd as this daemon, installed or not.
        root = str(Path(pivotd.__file__).resolve().parent.parent)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
        await self._store.writer.submit(SetGpus(job.run_id, spec["gpus"]))
        proc: asyncio.subprocess.Process | ForkedProcess
        try:  # forked from a process that has imported torch already: the run starts ~2 s of CPU sooner
            proc = await fork("pivotd.training.worker", str(spec_path), env)
        except ForkServerError as exc:
            (log.info if isinstance(exc, ForkServerStarting) else log.warning)(
                "run %s: %s; starting its worker in a fresh interpreter", job.run_id, exc
            )
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "pivotd.training.worker", str(spec_path),
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env,
                start_new_session=True,  # a Ctrl-C on the daemon's terminal is the daemon's to handle, not the worker's
            )  # fmt: skip
        worker = _Worker(job.run_id, proc, slot, gpus=gpus or [])
        self._workers[job.run_id] = worker
        where = ", ".join(f"GPU {g.index} {g.uuid}" for g in worker.gpus) or "no GPU"
        log.info("run %s started (pid %d, slot %d, %s)", job.run_id, proc.pid, slot, where)
        if gpus == [] and job.config["hyperparams"].get("device", "auto") == "auto":
            worker.logs.append(LogLine(time.time(), "warning", "no free GPU: training on CPU"))
        self._tasks.spawn(self._supervise(worker, job))

    def _free_slot(self) -> int:
        return min(set(range(self.slots)) - {w.slot for w in self._workers.values()})

    async def _launch_job(self, job: JobRow, gpus: list[Gpu] | None) -> None:
        config = job.config
        env = self._environment(gpus)
        env.update(config.get("env") or {})
        command = job_argv(config, env.get("PATH"))
        assert self._url is not None
        # Its own run and a credential for that run only: never the owner's token, whatever the daemon's env held.
        env.update(PIVOT_URL=self._url, PIVOT_RUN_ID=job.run_id, PIVOT_TOKEN=self._run_tokens.mint(job.run_id))
        records = [gpu.record() for gpu in gpus or ()]
        await self._store.writer.submit(SetGpus(job.run_id, records))
        proc = await asyncio.create_subprocess_exec(
            *command, cwd=config["cwd"], env=env, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE, limit=OUTPUT_LIMIT,
            start_new_session=True,  # its own process group: a cancel signals everything it started
        )  # fmt: skip
        worker = _Worker(job.run_id, proc, self._free_slot(), gpus=gpus or [], job=True)
        self._workers[job.run_id] = worker
        where = ", ".join(f"GPU {g.index} {g.uuid}" for g in worker.gpus) or "no GPU"
        log.info("job %s started (pid %d, %s): %s", job.run_id, proc.pid, where, " ".join(command)[:200])
        self._tasks.spawn(self._supervise(worker, job))

    def _resume_from(self, job: JobRow) -> dict[str, Any] | None:
        """The checkpoint a resumed run continues from, its recorded path resolved in this data directory."""
        resume_from: dict[str, Any] | None = job.config.get("resume_from")
        if resume_from is None:
            return None
        return {**resume_from, "path": str(self._settings.artifact_path(resume_from["path"]))}

    async def _supervise(self, worker: _Worker, job: JobRow) -> None:
        proc = worker.proc
        assert proc.stdout is not None and proc.stderr is not None
        watchdogs = [asyncio.create_task(self._flush_logs_every(worker))]
        if worker.job:
            readers = [
                asyncio.create_task(self._read_output(worker, proc.stdout, "info")),
                asyncio.create_task(self._read_output(worker, proc.stderr, "error")),
            ]
            if job.config.get("max_runtime_s"):
                watchdogs.append(asyncio.create_task(self._expire(worker, float(job.config["max_runtime_s"]))))
        else:
            readers = [
                asyncio.create_task(self._read_events(worker, job, proc.stdout)),
                asyncio.create_task(self._read_logs(worker, proc.stderr)),
            ]
            watchdogs.append(asyncio.create_task(self._watch(worker)))
        if self._settings.worker_memory_limit_mb:
            watchdogs.append(asyncio.create_task(self._watch_memory(worker, self._settings.worker_memory_limit_mb)))
        try:
            code = await proc.wait()
            if worker.job:
                # Whatever it left behind in its group goes with it, and lets go of the output pipes.
                _signal_group(proc.pid, signal.SIGKILL)
            _, pending = await asyncio.wait(readers, timeout=5.0 if worker.job else None)
            for reader in pending:  # a process that left the group still holds a pipe: stop listening to it
                reader.cancel()
        finally:
            for task in watchdogs:
                task.cancel()
            await self._flush_logs(worker)
            self._workers.pop(worker.run_id, None)
            self.gpus.release(worker.gpus)
            self._run_tokens.revoke(worker.run_id)
        if worker.job:
            await self._job_ended(worker, job, code)
            return
        state, error = self._outcome(worker, code)
        if state == RunState.SUCCEEDED:
            assert worker.params is not None
            path = self._settings.artifact_ref(Path(worker.params["path"]))
            await self._store.writer.submit(
                AddParams(new_id("p"), job.run_id, job.model_id, path, worker.params["size_bytes"])
            )
        log.info("run %s %s (exit %s)%s", job.run_id, state, code, f": {error}" if error else "")
        await self._finish(job.run_id, state, error)
        worker.done.set()
        if not self._closing:
            await self.dispatch()

    async def _job_ended(self, worker: _Worker, job: JobRow, code: int) -> None:
        state, error = _job_outcome(worker, code)
        attempt, retries = job.attempts + 1, int(job.config.get("retries", 0))
        log.info("job %s %s (exit %s)%s", job.run_id, state, code, f": {error}" if error else "")
        try:
            with contextlib.suppress(Conflict, NotFound):  # deleted meanwhile: nothing to record
                if state == RunState.FAILED and attempt <= retries:
                    # Queued again; while pivotd stops, it starts on the next start.
                    why = f"retry {attempt} of {retries} after: {error}"
                    await self._transition(job.run_id, RunState.QUEUED, (RunState.RUNNING,), why, code)
                else:
                    await self._transition(job.run_id, state, (RunState.RUNNING,), error, code)
        finally:
            worker.done.set()
        if not self._closing:
            await self.dispatch()

    @staticmethod
    def _outcome(worker: _Worker, code: int) -> tuple[str, str | None]:
        if worker.cancel_requested:
            return RunState.CANCELLED, None
        if worker.fatal is not None:
            return RunState.FAILED, worker.fatal
        if code == 0 and worker.params is not None:
            return RunState.SUCCEEDED, None
        if code < 0:
            name = signal.Signals(-code).name
            hint = " (out of memory? the kernel's OOM killer sends SIGKILL)" if -code == signal.SIGKILL else ""
            return RunState.FAILED, f"worker killed by {name}{hint}"
        reason = worker.last_error or f"worker exited with status {code}"
        if "MemoryError" in reason or "can't allocate memory" in reason or "out of memory" in reason.lower():
            reason = f"out of memory: {reason}"
        return RunState.FAILED, reason

    async def _read_events(self, worker: _Worker, job: JobRow, stream: asyncio.StreamReader) -> None:
        async for raw in stream:
            worker.last_beat = time.monotonic()
            try:
                event = orjson.loads(raw)
            except orjson.JSONDecodeError:
                worker.logs.append(LogLine(time.time(), "info", raw.decode(errors="replace").rstrip()))
                continue
            if not isinstance(event, dict):
                continue
            kind = event.get("event")
            if kind == "epoch":
                # Logs first: what the worker logged during the epoch is stored before its progress is announced.
                await self._flush_logs(worker)
                await self._store.writer.submit(SetEpoch(job.run_id, int(event["epoch"])))
                self._publish(
                    job.run_id, {"type": "run_progress", "epoch": event["epoch"], "metrics": event["metrics"]}
                )
                self._emit_epoch(job, worker, event)
                for listener in self._on_epoch:
                    await listener(job.run_id)
            elif kind == "checkpoint":
                await self._store.writer.submit(
                    AddCheckpoint(
                        new_id("ckpt"), job.run_id, event["epoch"], event["metric_name"], event["metric_value"],
                        event.get("metrics") or {}, self._settings.artifact_ref(Path(event["path"])),
                        event["size_bytes"], bool(event["is_best"]), "trainer",
                    )
                )  # fmt: skip
            elif kind == "params":
                worker.params = event

    async def _read_output(self, worker: _Worker, stream: asyncio.StreamReader, level: str) -> None:
        """A job's stdout (`info`) or stderr (`error`) as log lines; a `LEVEL message` line keeps its level. The last
        stderr line is what a failure reports."""
        async for raw in _lines(stream):
            # A progress bar rewrites its line with `\r`: keep what a terminal would show.
            text = raw.decode(errors="replace").rstrip().rsplit("\r", 1)[-1][:MAX_LOG_CHARS]
            if not text.strip():
                continue
            match = _LEVELED.match(text)
            line = (
                LogLine(time.time(), match.group(1).lower(), match.group(2))
                if match
                else LogLine(time.time(), level, text)
            )
            if level == "error":
                worker.last_error = text
            worker.logs.append(line)

    async def _expire(self, worker: _Worker, seconds: float) -> None:
        await asyncio.sleep(seconds)
        worker.fatal = f"ran past max_runtime_s ({seconds:g} s); stopped"
        self._terminate(worker)

    def _emit_epoch(self, job: JobRow, worker: _Worker, event: dict[str, Any]) -> None:
        metrics = event.get("metrics") or {}
        seconds = metrics.get("epoch_time_s")
        step, previous = event.get("step"), worker.step
        worker.step = step if isinstance(step, int) else None
        if not isinstance(seconds, int | float):
            return
        measurements = {"duration_ms": seconds * 1000, "epoch": event["epoch"]}
        if isinstance(step, int):
            measurements["steps"] = step
            # A resumed run's first epoch has no previous step here; its step time is left out.
            steps_this_epoch = step - previous if previous is not None else step if event["epoch"] == 1 else 0
            if steps_this_epoch > 0:
                measurements["step_ms"] = seconds * 1000 / steps_this_epoch
        if isinstance(metrics.get("epoch_cpu_s"), int | float):
            measurements["cpu_s"] = metrics["epoch_cpu_s"]
        self._telemetry.emit(EPOCH_EVENT, measurements, {"run_id": job.run_id, "model_id": job.model_id})

    async def _read_logs(self, worker: _Worker, stream: asyncio.StreamReader) -> None:
        in_traceback = False
        async for raw in stream:
            text = raw.decode(errors="replace").rstrip()
            if not text:
                continue
            match = _LEVELED.match(text)
            if match:
                level, message = match.group(1).lower(), match.group(2)
                in_traceback = False
            else:
                # Unprefixed stderr is what Python prints when the worker dies: a traceback.
                in_traceback = in_traceback or text.startswith("Traceback")
                level, message = "error", text
            if level in ("error", "critical") and not message.startswith(" "):
                worker.last_error = message
            worker.logs.append(LogLine(time.time(), level, message))

    async def _flush_logs_every(self, worker: _Worker) -> None:
        while True:
            await asyncio.sleep(LOG_FLUSH_S)
            await self._flush_logs(worker)

    async def _flush_logs(self, worker: _Worker) -> None:
        lines, worker.logs = worker.logs, []
        if not lines:
            return
        await self._store.writer.submit(AppendLogs(worker.run_id, lines))
        topic = run_topic(worker.run_id)
        if self._hub.has_subscribers(topic):
            for line in lines:
                self._publish(
                    worker.run_id,
                    {"type": "log", "timestamp": line.timestamp, "level": line.level, "message": line.message},
                )

    async def _watch(self, worker: _Worker) -> None:
        timeout = self._settings.heartbeat_timeout_s
        while True:
            await asyncio.sleep(min(timeout / 4, 5.0))
            silent = time.monotonic() - worker.last_beat
            if silent > timeout:
                worker.fatal = f"no heartbeat for {silent:.0f} s; worker killed"
                _kill(worker)
                return

    async def _watch_memory(self, worker: _Worker, limit_mb: int) -> None:
        """Kill the worker once its resident memory passes the limit. Resident memory, not address space: a
        CUDA context reserves tens of GiB of address space it never touches, so `RLIMIT_AS` breaks CUDA."""
        limit = limit_mb * 1024 * 1024
        while True:
            await asyncio.sleep(RSS_CHECK_S)
            try:
                rss = resident_bytes(worker.proc.pid)
            except psutil.Error:
                return  # exited: the supervisor reaps it
            if rss > limit:
                worker.fatal = (
                    f"out of memory: resident memory {rss / 2**20:.0f} MiB passed the worker's limit of {limit_mb} "
                    "MiB (worker_memory_limit_mb); worker killed"
                )
                _kill(worker)
                return

    def _terminate(self, worker: _Worker) -> None:
        if worker.job:
            _signal_group(worker.proc.pid, signal.SIGTERM)
        else:
            with contextlib.suppress(ProcessLookupError):
                worker.proc.terminate()
        self._tasks.spawn(self._kill_after_grace(worker))

    async def _kill_after_grace(self, worker: _Worker) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(worker.proc.wait(), self._settings.cancel_grace_s)
            return
        log.warning("run %s did not stop within %.0f s of SIGTERM; sending SIGKILL", worker.run_id,
                    self._settings.cancel_grace_s)  # fmt: skip
        _kill(worker)

    def forget_run(self, run_id: str) -> None:
        """A run was deleted or evicted: remove its checkpoints and job file in the background.

        The weights (`params.safetensors`) stay: a params row outlives its run, and a promoted model points at it.
        Registered with `Ingest.removed_listeners`, which hears of every deletion, unlike a lossy hub mailbox.
        """
        self._tasks.spawn(self._remove_artifacts(run_id))

    async def _remove_artifacts(self, run_id: str) -> None:
        # A run stored before `.` and `..` were refused names no directory of its own: `runs/..` is the data dir.
        if is_valid_run_id(run_id):
            await asyncio.to_thread(_remove_artifacts, self._settings.runs_path / run_id)
        async with self.swept:
            self.swept_runs.append(run_id)
            self.swept.notify_all()

    # -- state ----------------------------------------------------------------------------------------------

    async def _transition(
        self, run_id: str, state: str, allowed: tuple[str, ...], error: str | None = None, exit_code: int | None = None
    ) -> str:
        previous: str = await self._store.writer.submit(Transition(run_id, state, allowed, error, exit_code))
        if state in FINAL_STATES:
            # Before announcing the state: a client that sees the run end finds its notification.
            for listener in self._on_finished:
                try:
                    await listener(run_id, state, error)
                except Exception:  # a failing listener must not leave the run's worker unreaped
                    log.exception("run-finished listener failed for %s", run_id)
        self._hub.publish_run_state(run_id, state, error)
        if state == RunState.RUNNING:
            for started in self._on_started:
                try:
                    await started(run_id)
                except Exception:
                    log.exception("run-started listener failed for %s", run_id)
        return previous

    async def _finish(self, run_id: str, state: str, error: str | None) -> None:
        with contextlib.suppress(Conflict, NotFound):  # deleted meanwhile: nothing to record
            await self._transition(run_id, state, (RunState.RUNNING, RunState.QUEUED), error)

    def _publish(self, run_id: str, body: dict[str, Any]) -> None:
        topic = run_topic(run_id)
        if self._hub.has_subscribers(topic):
            self._hub.publish((topic,), orjson.dumps({**body, "topic": topic, "run_id": run_id}).decode())


def _signal_group(pid: int, sig: signal.Signals) -> None:
    """Signal the process group `pid` leads (a job's: it started in a session of its own)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


def _kill(worker: _Worker) -> None:
    if worker.job:
        _signal_group(worker.proc.pid, signal.SIGKILL)
        return
    with contextlib.suppress(ProcessLookupError):
        worker.proc.kill()


def _job_outcome(worker: _Worker, code: int) -> tuple[str, str | None]:
    """Exit 0 succeeded; anything else failed, saying the exit status or signal and the last stderr line."""
    if worker.cancel_requested:
        return RunState.CANCELLED, None
    if worker.fatal is not None:
        return RunState.FAILED, worker.fatal
    if code == 0:
        return RunState.SUCCEEDED, None
    said = f": {worker.last_error}" if worker.last_error else ""
    if code < 0:
        return RunState.FAILED, f"killed by {signal.Signals(-code).name}{said}"
    return RunState.FAILED, f"exit code {code}{said}"


async def _lines(stream: asyncio.StreamReader) -> AsyncIterator[bytes]:
    """The stream's lines; one longer than the reader's limit comes in pieces instead of ending the reading."""
    while True:
        try:
            yield await stream.readuntil(b"\n")
        except asyncio.IncompleteReadError as exc:  # the end, perhaps after a last line without a newline
            if exc.partial:
                yield exc.partial
            return
        except asyncio.LimitOverrunError as exc:
            yield await stream.read(exc.consumed)


def _remove_artifacts(run_dir: Path) -> None:
    if not run_dir.is_dir():
        return  # an external run, or one that never started
    for path in [*run_dir.glob("epoch_*.pth"), *run_dir.glob("uploads/*.pth"), run_dir / "job.json"]:
        path.unlink(missing_ok=True)
