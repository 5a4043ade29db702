"""The training loop (nanoGPT's order: lr -> steps -> evaluate -> checkpoint), reporting through the public API.

Per-step scalars (`train/loss`, `train/lr`, `train/samples_per_s`, `train/step_time_ms`) and layer-wise
statistics go through the SDK's `Monitor`, which posts to `/api/v1/runs/{id}/scalars` and
`/api/v1/metrics/layerwise/batch` from its own thread, like any external script. Per-epoch metrics
(`train_loss`, `train_accuracy`, `val_loss`, `val_accuracy`, `learning_rate`, `epoch_time_s`, `epoch_cpu_s`) go
the same way, with `epoch` set: `train_loss` is the mean of the epoch's batch losses, `train_accuracy` the
accuracy at the end of the epoch (eval mode) on up to 4,096 training samples.
Cost rules: the losses stay on the device (one sum per 256 steps); the host reads them once per epoch. Per-step
scalars are handed to the SDK as tensors and read on its thread, so the loop never waits for the device.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file
from torch import nn

from pivotd.training.datasets import CLASSES, Split, load_split
from pivotd.training.model import Net
from shared.models.training import Architecture, Hyperparams, check_architecture
from shared.sdk import Monitor, Run

log = logging.getLogger(__name__)
LOG_EVERY = 10  # steps between per-step scalar points
EVAL_BATCH = 256  # small enough that evaluation does not grow the allocator's footprint past training's
LOSS_FOLD = 256  # per-step losses kept on the device before one op sums them (a bounded list, whatever the epoch)
TRAIN_ACCURACY_SAMPLES = 4096  # train_accuracy: end-of-epoch accuracy on (up to) this many training samples

Emit = Callable[[dict[str, Any]], None]


class Cancelled(Exception):
    """SIGTERM arrived: stop at the next step boundary."""


@dataclass(frozen=True, slots=True)
class Job:
    run_id: str
    architecture: Architecture
    hyperparams: Hyperparams
    run_dir: Path
    data_dir: Path
    url: str
    token: str | None = None
    max_linear: int = 5
    resume_from: dict[str, Any] | None = None
    """`{"path", "epoch", "best"}` of the checkpoint an interrupted run continues from."""


def cuda_unusable() -> str | None:
    """Why CUDA cannot be used in this process, naming the cause; None when it can."""
    if torch.version.cuda is None:
        return f"this torch ({torch.__version__}) is a CPU-only build: install a CUDA wheel of torch"
    if torch.cuda.is_available():
        return None
    try:
        torch.cuda.init()  # raises with the driver's own reason (no driver, no device nodes, nvidia-uvm missing)
    except Exception as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    else:
        reason = "no CUDA device is visible"
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    shown = f" (CUDA_VISIBLE_DEVICES={visible})" if visible is not None else ""
    return (
        f"CUDA {torch.version.cuda} cannot be initialised{shown}: {reason}. Check the driver, that the process may "
        "open /dev/nvidia* and /dev/nvidia-uvm (systemd: DeviceAllow, PrivateDevices; see docs/gpu.md)"
    )


def pick_device(requested: str) -> torch.device:
    """`auto`: CUDA if usable, else CPU. A cuda device (what a worker pinned to a GPU is always given) is strict:
    unusable CUDA is an error that names why, never a quiet fall back to CPU."""
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(requested)
    if device.type == "cuda":
        problem = cuda_unusable()
        if problem is not None:
            raise RuntimeError(f"device {requested!r} asked for, but {problem}")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise RuntimeError(f"device {requested!r}: only {torch.cuda.device_count()} CUDA devices are visible")
    return device


def build_optimizer(hp: Hyperparams, params: Any) -> torch.optim.Optimizer:
    opt = hp.optimizer
    if opt.type == "sgd":
        return torch.optim.SGD(params, lr=opt.lr, momentum=opt.momentum, weight_decay=opt.weight_decay)
    if opt.type == "adam":
        return torch.optim.Adam(params, lr=opt.lr, weight_decay=opt.weight_decay)
    return torch.optim.AdamW(params, lr=opt.lr, weight_decay=opt.weight_decay)


def build_schedule(hp: Hyperparams, optimizer: torch.optim.Optimizer) -> torch.optim.lr_scheduler.LRScheduler | None:
    schedule = hp.lr_schedule
    if schedule.type == "step":
        return torch.optim.lr_scheduler.StepLR(optimizer, step_size=schedule.step_size, gamma=schedule.gamma)
    if schedule.type == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=hp.epochs)
    return None


class _Reporter:
    """Monitor when layer-wise statistics are wanted, else a scalar-only SDK run: one `step`/`epoch` API."""

    def __init__(self, job: Job, model: nn.Module, start_step: int) -> None:
        hp = job.hyperparams
        tags = ["managed"]
        self.monitor = (
            Monitor(
                model,
                job.run_id,
                url=job.url,
                token=job.token,
                every=hp.layerwise_every,
                max_overhead=hp.layerwise_overhead,
                tags=tags,
                start_step=start_step,
            )
            if hp.layerwise_every
            else None
        )
        self.run = None if self.monitor else Run(job.run_id, url=job.url, token=job.token, tags=tags)

    def step(self, step: int, values: dict[str, Any] | None, batch_size: int) -> None:
        if self.monitor is not None:
            self.monitor.step(step, values, batch_size=batch_size)
        elif values:
            assert self.run is not None
            self.run.log(step, values)

    def epoch(self, step: int, epoch: int, values: dict[str, float]) -> None:
        target = self.monitor or self.run
        assert target is not None
        target.log(step, values, epoch=epoch)

    def close(self, timeout: float = 5.0) -> bool:
        target = self.monitor or self.run
        assert target is not None
        return target.close(timeout) if self.monitor else target.finish(timeout)  # type: ignore[union-attr]


@torch.no_grad()
def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
    """(mean loss, accuracy) over a split; one host sync at the end."""
    model.eval()
    loss_sum = torch.zeros((), device=x.device)
    correct = torch.zeros((), device=x.device, dtype=torch.long)
    for start in range(0, len(x), EVAL_BATCH):
        logits = model(x[start : start + EVAL_BATCH])
        target = y[start : start + EVAL_BATCH]
        loss_sum += nn.functional.cross_entropy(logits, target, reduction="sum")
        correct += (logits.argmax(1) == target).sum()
    model.train()
    n = max(1, len(x))
    return loss_sum.item() / n, correct.item() / n


def save_params(model: Net, path: Path) -> int:
    tensors = {key: value.detach().to("cpu").contiguous() for key, value in model.state_dict().items()}
    save_file(tensors, str(path), metadata={"format": "pivot", "layout": "row_major"})
    return path.stat().st_size


def train(job: Job, emit: Emit, should_stop: Callable[[], bool]) -> dict[str, float]:
    """Train to the end (or until `should_stop`), emitting control events; returns the final epoch metrics."""
    hp = job.hyperparams
    check_architecture(job.architecture, CLASSES, job.max_linear)
    seed = hp.seed if hp.seed is not None else int(time.time_ns() % 2**32)
    torch.manual_seed(seed)
    device = pick_device(hp.device)
    data: Split = load_split(
        hp.dataset, job.data_dir, train_split=hp.train_split, max_samples=hp.max_samples, seed=seed, device=device
    )
    log.info(
        "training on %s: %s, %d train / %d val samples, seed %d",
        device, data.name, len(data.x_train), len(data.x_val), seed,
    )  # fmt: skip
    model = Net(job.architecture).to(device)
    optimizer = build_optimizer(hp, model.parameters())
    schedule = build_schedule(hp, optimizer)
    best: float | None = None
    first_epoch = 1
    if job.resume_from is not None:
        first_epoch, best = _resume(job.resume_from, model, optimizer, schedule, hp.selection_metric)
    generator = torch.Generator(device=device).manual_seed(seed + first_epoch - 1)
    n = len(data.x_train)
    steps_per_epoch = math.ceil(n / hp.batch_size)
    step = (first_epoch - 1) * steps_per_epoch
    reporter = _Reporter(job, model, start_step=step)
    emit({"event": "started", "device": str(device), "dataset": data.name, "epochs": hp.epochs, "seed": seed})
    final: dict[str, float] = {}
    try:
        for epoch in range(first_epoch, hp.epochs + 1):
            lr = optimizer.param_groups[0]["lr"]
            order = torch.randperm(n, device=device, generator=generator) if hp.shuffle else None
            losses: list[torch.Tensor] = []
            tick, tick_step = time.perf_counter(), step
            epoch_started, epoch_cpu = tick, time.process_time()
            for batch in range(steps_per_epoch):
                if should_stop():
                    raise Cancelled
                lo, hi = batch * hp.batch_size, min(n, (batch + 1) * hp.batch_size)
                if order is None:
                    xb, yb = data.x_train[lo:hi], data.y_train[lo:hi]
                else:
                    index = order[lo:hi]
                    xb, yb = data.x_train[index], data.y_train[index]
                logits = model(xb)
                loss = nn.functional.cross_entropy(logits, yb)
                loss.backward()
                optimizer.step()
                values = None
                if step % LOG_EVERY == 0:
                    # Wall time over the interval; on CUDA this counts queued work, which evens out over it.
                    now = time.perf_counter()
                    done = (step - tick_step) or 1
                    values = {
                        "train/loss": loss.detach(),  # read on the SDK's thread: no sync here
                        "train/lr": lr,
                        "train/samples_per_s": done * hp.batch_size / max(now - tick, 1e-9),
                        "train/step_time_ms": (now - tick) * 1000 / done,
                    }
                    tick, tick_step = now, step
                reporter.step(step, values, hi - lo)
                optimizer.zero_grad(set_to_none=True)
                # No device op per step: the losses are kept and summed in one op per `LOSS_FOLD` steps (an
                # add per step is 1% of a small MLP's step; per-step accuracy, four more kernels, would be 5-10%:
                # accuracy is measured once per epoch instead, below).
                losses.append(loss.detach())
                if len(losses) == LOSS_FOLD:
                    losses = [torch.stack(losses).sum()]
                step += 1
            # The epoch's one sync: on CUDA the host ran ahead, so the clock is read after it.
            train_loss = torch.stack(losses).sum().item() / steps_per_epoch
            train_seconds = time.perf_counter() - epoch_started
            # CPU seconds of this process (all threads, the SDK's sender included): unlike wall time, other
            # processes on a shared machine do not move it.
            train_cpu = time.process_time() - epoch_cpu
            _, train_accuracy = evaluate(
                model, data.x_train[:TRAIN_ACCURACY_SAMPLES], data.y_train[:TRAIN_ACCURACY_SAMPLES]
            )
            val_loss, val_acc = evaluate(model, data.x_val, data.y_val)
            final = {
                "train_loss": train_loss,
                "train_accuracy": train_accuracy,
                "val_loss": val_loss,
                "val_accuracy": val_acc,
                "learning_rate": lr,
                "epoch_time_s": train_seconds,
                "epoch_cpu_s": train_cpu,
            }
            reporter.epoch(step, epoch, final)
            emit({"event": "epoch", "epoch": epoch, "step": step, "metrics": final})
            if schedule is not None:
                schedule.step()
            if hp.checkpoint_every and epoch % hp.checkpoint_every == 0:
                best = _checkpoint(job, model, optimizer, epoch, final, best, emit)
        size = save_params(model, job.run_dir / "params.safetensors")
        emit({"event": "params", "path": str(job.run_dir / "params.safetensors"), "size_bytes": size})
    finally:
        # Whatever happened, deliver what was measured (bounded: a dead daemon must not hold the worker).
        reporter.close(timeout=5.0)
    return final


def _resume(
    resume_from: dict[str, Any],
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    schedule: torch.optim.lr_scheduler.LRScheduler | None,
    metric: str,
) -> tuple[int, float | None]:
    """Load model and optimizer state; returns (first epoch to train, best score so far).

    Loaded to the CPU: `load_state_dict` moves each tensor next to its parameter except Adam/AdamW's
    `step`, which must stay on the CPU (loaded onto CUDA, the non-capturable Adam reads it with `.item()`,
    a host sync, twice per parameter every step).
    """
    state = torch.load(resume_from["path"], map_location="cpu", weights_only=True)
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    done = int(state["epoch"])
    for _ in range(done):
        if schedule is not None:
            schedule.step()
    best = resume_from.get("best")
    log.info("resuming from epoch %d (%s)", done, resume_from["path"])
    return done + 1, None if best is None else (best if metric == "val_loss" else -best)


def _checkpoint(
    job: Job,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    epoch: int,
    metrics: dict[str, float],
    best: float | None,
    emit: Emit,
) -> float | None:
    name = job.hyperparams.selection_metric
    value = metrics[name]
    score = value if name == "val_loss" else -value  # lower is better
    is_best = best is None or score < best
    path = job.run_dir / f"epoch_{epoch:04d}.pth"
    # Plain tensors, numbers and strings only: loadable with torch.load(weights_only=True).
    torch.save(
        {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "epoch": epoch, "metrics": metrics}, path
    )
    emit(
        {
            "event": "checkpoint",
            "epoch": epoch,
            "path": str(path),
            "metric_name": name,
            "metric_value": value,
            "size_bytes": path.stat().st_size,
            "is_best": is_best,
            "metrics": metrics,
        }
    )
    return score if is_best else best
