"""The GPU check: one command that exercises every CUDA path of the trainer and the SDK and prints one table.

    .venv/bin/python bench/gpu_check.py            # about 8 minutes at most on one H100
    .venv/bin/python bench/gpu_check.py --quick    # a smoke run: fewer steps and rounds, no GPU-marked tests

Sections (each under its own time budget; an error or timeout fills its rows and the next section runs):
environment (CUDA/driver versions, MIG mode), NVML readings next to nvidia-smi's with a child process holding
1 GiB, 200 trainer steps under `torch.cuda.set_sync_debug_mode("error")` with SGD and with a resumed AdamW,
CPU-vs-CUDA layer-wise payload parity (TF32 off), AMP fp16 (GradScaler) and bf16 gradient norms against the
unscaled gradients and peak memory with and without the Monitor, SDK overhead at every=10 and every=1,
`torch.compile` with the hooks, and the GPU-marked tests. Without a CUDA device every GPU row says
"skipped: no CUDA device". Exit status 1 when any target is missed or a section failed.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import math
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

import httpx
import torch
from torch import nn
from torch.nn import functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.sdk_overhead import small_cnn, start_daemon  # noqa: E402
from pivotd.monitor.nvml import Nvml  # noqa: E402
from pivotd.training.model import Net  # noqa: E402
from pivotd.training.trainer import LOG_EVERY, _resume  # noqa: E402
from shared.models.seeds import SEED_001_CNN  # noqa: E402
from shared.models.training import Architecture  # noqa: E402
from shared.sdk import Monitor  # noqa: E402

NO_CUDA = "skipped: no CUDA device"
# The demo's CNN (docs/training.md), at full width: the model `pivotd --demo` trains.
CNN = SEED_001_CNN


@dataclass(slots=True)
class Row:
    section: str
    check: str
    value: str
    target: str = ""
    verdict: str = "info"  # ok, MISSED, error, skipped, info

    @property
    def failed(self) -> bool:
        return self.verdict in ("MISSED", "error")


class SectionTimeout(Exception):
    pass


OPEN: list[Monitor] = []


def monitor(model: nn.Module, name: str, url: str, **options: Any) -> Monitor:
    """A Monitor posting to the check's pivotd, closed when its section ends whatever happened."""
    mon = Monitor(model, f"gpucheck-{name}-{time.time_ns()}", url=url, **options)
    OPEN.append(mon)
    return mon


def finish(mon: Monitor, timeout: float = 30) -> bool:
    """Close a monitor the section is done with: delivered everything and recorded the run's end."""
    OPEN.remove(mon)
    return mon.close(timeout)


class Check:
    """Collects the table's rows; runs each section under a time budget, catching what it raises."""

    def __init__(self, deadline: float) -> None:
        self.rows: list[Row] = []
        self.deadline = deadline
        self.cuda = torch.cuda.is_available()

    def row(self, section: str, check: str, value: Any, target: str = "", ok: bool | None = None) -> None:
        verdict = "info" if ok is None else "ok" if ok else "MISSED"
        self.rows.append(Row(section, check, str(value), target, verdict))

    def section(self, name: str, budget_s: float, run: Callable[[], None], *, gpu: bool = True) -> None:
        if gpu and not self.cuda:
            self.rows.append(Row(name, "-", NO_CUDA, verdict="skipped"))
            return
        left = self.deadline - time.monotonic()
        if left < min(budget_s, 20):
            self.rows.append(Row(name, "-", f"skipped: {left:.0f} s left of the overall budget", verdict="skipped"))
            return
        budget = min(budget_s, left)
        started = time.monotonic()
        try:
            with _alarm(budget):
                run()
        except SectionTimeout:
            self.rows.append(Row(name, "time budget", f"stopped after {budget:.0f} s", verdict="error"))
        except Exception as exc:  # one section's failure must not hide the rest of the table
            message = " ".join(str(exc).split())[:300]
            self.rows.append(Row(name, "exception", f"{type(exc).__name__}: {message}", verdict="error"))
        finally:
            if self.cuda:
                torch.cuda.set_sync_debug_mode("default")
            while OPEN:  # monitors a failed or stopped section left running
                OPEN.pop().close(5)
        print(f"[{name}: {time.monotonic() - started:.1f} s]", file=sys.stderr, flush=True)

    def print_table(self) -> None:
        fields = ("section", "check", "value", "target")
        widths = [max(len(f), *(len(getattr(row, f)) for row in self.rows)) for f in fields]
        widths = [min(w, 60) for w in widths]
        header = ("section", "check", "value", "target", "verdict")
        print("  ".join(h.ljust(w) for h, w in zip(header, [*widths, 7], strict=True)))
        for row in self.rows:
            cells = (row.section, row.check, row.value, row.target, row.verdict)
            print("  ".join(c.ljust(w) for c, w in zip(cells, [*widths, 7], strict=True)).rstrip())


@contextlib.contextmanager
def _alarm(seconds: float) -> Iterator[None]:
    def expire(signum: int, frame: FrameType | None) -> None:
        raise SectionTimeout

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _close_enough(a: float, b: float, rel: float) -> bool:
    return abs(a - b) <= rel * max(abs(a), abs(b), 1e-12)


def numbers_by_path(tree: Any, path: str = "") -> dict[str, float]:
    """Every number in nested dicts/lists by its path (`3.gradient_flow.gradient_l2_norm`)."""
    items = tree.items() if isinstance(tree, dict) else enumerate(tree) if isinstance(tree, list) else None
    if items is None:
        return {path: float(tree)} if isinstance(tree, int | float) and not isinstance(tree, bool) else {}
    found: dict[str, float] = {}
    for key, value in items:
        found.update(numbers_by_path(value, f"{path}.{key}" if path else str(key)))
    return found


def _smi(*query: str) -> list[list[str]]:
    out = subprocess.run(["nvidia-smi", *query, "--format=csv,noheader,nounits"], capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"nvidia-smi {' '.join(query)}: {out.stderr.strip() or out.stdout.strip()}")
    return [[cell.strip() for cell in line.split(",")] for line in out.stdout.strip().splitlines() if line.strip()]


# -- sections ---------------------------------------------------------------------------------------------


def environment(check: Check) -> None:
    s = "environment"
    check.row(s, "torch / CUDA runtime / cuDNN", f"{torch.__version__} / {torch.version.cuda} / "
              f"{torch.backends.cudnn.version()}")  # fmt: skip
    check.row(s, "device", f"{torch.cuda.get_device_name(0)} ({torch.cuda.device_count()} visible)")
    try:
        driver, mig = _smi("--query-gpu=driver_version,mig.mode.current", "-i", "0")[0]
        check.row(s, "driver / MIG mode (nvidia-smi)", f"{driver} / {mig}")
    except (OSError, RuntimeError, ValueError) as exc:
        check.row(s, "driver / MIG mode (nvidia-smi)", f"unavailable: {exc}", ok=False)


_HOLDER = (
    "import sys, torch; x = torch.empty(1 << 30, dtype=torch.uint8, device='cuda'); x.fill_(1); "
    "torch.cuda.synchronize(); print('ready', flush=True); sys.stdin.read()"
)


def nvml_versus_smi(check: Check) -> None:
    s = "NVML vs nvidia-smi"
    nvml = Nvml.system()
    if not nvml.read():  # None: NVML cannot be asked; []: it lists no GPU
        check.row(s, "NVML", "no device through pivotd.monitor.nvml (pynvml missing or no driver)", ok=False)
        return
    holder = subprocess.Popen([sys.executable, "-c", _HOLDER], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None
        if holder.stdout.readline().strip() != "ready":
            raise RuntimeError("the child holding 1 GiB did not start")
        pairs = []
        for _ in range(5):  # alternate readings: power moves between two reads
            gpu = (nvml.read() or [{}])[0]
            power, memory = (float(v) for v in _smi("--query-gpu=power.draw,memory.used", "-i", "0")[0])
            pairs.append((gpu, power, memory / 1024))
            time.sleep(0.2)
        nvml_power = statistics.median(g.get("power_watts", math.nan) for g, _, _ in pairs)
        smi_power = statistics.median(p for _, p, _ in pairs)
        check.row(s, "power W (NVML / smi)", f"{nvml_power:.1f} / {smi_power:.1f}", "within 5%",
                  _close_enough(nvml_power, smi_power, 0.05))  # fmt: skip
        nvml_mem = statistics.median(g.get("memory_used_gb", math.nan) for g, _, _ in pairs)
        smi_mem = statistics.median(m for _, _, m in pairs)
        check.row(s, "memory used GiB (NVML / smi)", f"{nvml_mem:.3f} / {smi_mem:.3f}", "within 5%",
                  _close_enough(nvml_mem, smi_mem, 0.05))  # fmt: skip
        listed = [p for g in nvml.read() or [] for p in g.get("processes", []) if p["pid"] == holder.pid]
        smi_apps = {int(pid): float(mib) / 1024 for pid, mib in _smi("--query-compute-apps=pid,used_memory")}
        held = listed[0]["memory_used_gb"] if listed else None
        check.row(s, "child holding 1 GiB (NVML / smi)",
                  f"pid {holder.pid}: {held if held is not None else 'not listed'} / "
                  f"{smi_apps.get(holder.pid, 'not listed')} GiB",
                  ">= 1 GiB in both (a PID namespace hides pids)",
                  held is not None and held >= 1.0 and smi_apps.get(holder.pid, 0) >= 1.0)  # fmt: skip
    finally:
        holder.kill()
        holder.wait(10)
        nvml.close()


Data = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]


def _data(n: int = 4096) -> Data:
    """Synthetic digits on the GPU, an epoch's shuffled order and the loss accumulator, as the trainer has them."""
    x, y = torch.rand(n, 784, device="cuda"), torch.randint(0, 10, (n,), device="cuda")
    generator = torch.Generator(device="cuda").manual_seed(0)
    return x, y, torch.randperm(n, device="cuda", generator=generator), torch.zeros((), device="cuda")


def _train_steps(
    model: nn.Module, optimizer: torch.optim.Optimizer, mon: Monitor, steps: int, batch: int, data: Data
) -> None:
    """The managed trainer's inner loop (pivotd/training/trainer.py), on data already on the GPU."""
    x, y, order, loss_sum = data
    n = len(x)
    for step in range(steps):
        index = order[(step * batch) % n : (step * batch) % n + batch]
        loss = F.cross_entropy(model(x[index]), y[index])
        loss.backward()
        optimizer.step()
        values = {"train/loss": loss.detach(), "train/lr": 0.01} if step % LOG_EVERY == 0 else None
        mon.step(step, values, batch_size=batch)
        optimizer.zero_grad(set_to_none=True)
        loss_sum += loss.detach()


def sync_free_loop(check: Check, url: str, steps: int) -> None:
    s = "no host sync"
    arch = Architecture.model_validate(CNN)
    for name in ("SGD", "resumed AdamW"):
        torch.manual_seed(0)
        model = Net(arch).cuda()
        if name == "SGD":
            optimizer: torch.optim.Optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
        else:
            first = torch.optim.AdamW(model.parameters(), lr=1e-3)
            warm = monitor(model, "warm", url, every=10)
            _train_steps(model, first, warm, 5, 64, _data())
            finish(warm)
            with tempfile.TemporaryDirectory() as tmp:
                path = Path(tmp) / "epoch_0001.pth"
                torch.save({"model": model.state_dict(), "optimizer": first.state_dict(), "epoch": 1}, path)
                model = Net(arch).cuda()
                optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
                _resume({"path": str(path), "epoch": 1, "best": None}, model, optimizer, None, "val_loss")
            on_cpu = all(state["step"].device.type == "cpu" for state in optimizer.state.values())
            check.row(s, "resumed AdamW step counters", "on CPU" if on_cpu else "on GPU", "on CPU", on_cpu)
        mon = monitor(model, "sync", url, every=10)
        data = _data()
        torch.cuda.synchronize()
        error = ""
        torch.cuda.set_sync_debug_mode("error")
        try:
            _train_steps(model, optimizer, mon, steps, 64, data)
        except RuntimeError as exc:
            error = str(exc).splitlines()[0][:200]
        finally:
            torch.cuda.set_sync_debug_mode("default")
        delivered = finish(mon)
        check.row(s, f"{steps} trainer steps, {name}, Monitor every=10",
                  error or "no sync", "no sync", not error)  # fmt: skip
        check.row(s, f"{name}: statistics delivered", f"{mon.stats.sent_steps} steps, all: {delivered}",
                  "all delivered", delivered and mon.stats.rejected == 0)  # fmt: skip


def _stored_layers(url: str, run_id: str) -> list[dict[str, Any]]:
    response = httpx.get(f"{url}/api/v1/runs/{run_id}", timeout=30)
    response.raise_for_status()
    layers: list[dict[str, Any]] = response.json()["steps"][0]["layers"]
    return layers


def parity(check: Check, url: str) -> None:
    s = "CPU/CUDA parity"
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.manual_seed(0)
    cpu_model = Net(Architecture.model_validate(CNN)).eval()  # eval: dropout masks differ between devices
    x, y = torch.rand(64, 784), torch.randint(0, 10, (64,))
    found = {}
    for device, model in (("cpu", cpu_model), ("cuda", copy.deepcopy(cpu_model).cuda())):
        mon = monitor(model, f"parity-{device}", url, every=1)
        run_id = mon.run_id
        F.cross_entropy(model(x.to(device)), y.to(device)).backward()
        mon.step(0)
        if not finish(mon):
            raise RuntimeError(f"the {device} payload was not delivered")
        found[device] = numbers_by_path(_stored_layers(url, run_id))
    worst, where = 0.0, ""
    for key, want in found["cpu"].items():
        got = found["cuda"].get(key, math.nan)
        error = abs(got - want) / max(abs(want), 1e-2)  # relative, with values under 1e-2 judged absolutely
        if not error <= worst:
            worst, where = error, key
    check.row(s, f"{len(found['cpu'])} layer-wise values, TF32 off", f"worst {worst:.2e} at {where or '-'}",
              "relative 1e-4", worst <= 1e-4 and found["cpu"].keys() == found["cuda"].keys())  # fmt: skip


def amp(check: Check, url: str, steps: int) -> None:
    s = "AMP"
    arch = Architecture.model_validate(CNN)
    x, y = torch.rand(256, 784, device="cuda"), torch.randint(0, 10, (256,), device="cuda")
    for dtype in (torch.float16, torch.bfloat16):
        torch.manual_seed(0)
        model = Net(arch).cuda()
        optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
        # A moderate initial scale, so the one step measured is not one the scaler skips for overflow.
        scaler = torch.amp.GradScaler("cuda", init_scale=2.0**10, enabled=dtype == torch.float16)
        mon = monitor(model, f"amp-{str(dtype)[6:]}", url, every=1, scaler=scaler if dtype == torch.float16 else None)
        run_id = mon.run_id
        with torch.autocast("cuda", dtype=dtype):
            loss = F.cross_entropy(model(x), y)
        scaler.scale(loss).backward()
        # The unscaled reference, before the optimizer step: unscale_ divides the gradients in place.
        scaler.unscale_(optimizer)
        reference = {
            name.replace(".", "/"): torch.linalg.vector_norm(
                torch.cat([p.grad.flatten() for p in module.parameters(recurse=False)])
            ).item()
            for name, module in model.named_modules()
            if next(module.parameters(recurse=False), None) is not None
        }
        scaler.step(optimizer)
        mon.step(0)
        scaler.update()
        if not finish(mon):
            raise RuntimeError("the payload was not delivered")
        stored = {
            layer["layer_id"]: layer["gradient_flow"]["gradient_l2_norm"] for layer in _stored_layers(url, run_id)
        }
        worst = max(abs(stored[k] - v) / max(abs(v), 1e-12) for k, v in reference.items())
        check.row(s, f"{str(dtype)[6:]} gradient L2 vs unscaled reference", f"worst relative {worst:.1e}",
                  "relative 1e-4", worst <= 1e-4)  # fmt: skip
    _amp_memory(check, url, steps)


def _amp_memory(check: Check, url: str, steps: int) -> None:
    """Peak memory of a bf16 LM-head-like model with and without the Monitor: no float32 copy of the logits."""
    s = "AMP"
    tokens, width, vocab = 2048, 1024, 32768
    peaks = {}
    for monitored in (False, True):
        torch.manual_seed(0)
        model = nn.Sequential(nn.Embedding(vocab, width), nn.Linear(width, width), nn.GELU(), nn.Linear(width, vocab))
        model = model.to("cuda", torch.bfloat16)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
        ids = torch.randint(0, vocab, (tokens,), device="cuda")
        mon = monitor(model, "mem", url, every=1) if monitored else None
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        for step in range(min(steps, 10)):
            loss = F.cross_entropy(model(ids).float(), ids)
            loss.backward()
            optimizer.step()
            if mon is not None:
                mon.step(step)
            optimizer.zero_grad(set_to_none=True)
        torch.cuda.synchronize()
        peaks[monitored] = torch.cuda.max_memory_allocated()
        if mon is not None:
            finish(mon)
        del model, optimizer
        torch.cuda.empty_cache()
    extra = peaks[True] - peaks[False]
    logits_fp32 = tokens * vocab * 4
    check.row(s, "bf16 LM head: peak MiB without / with Monitor",
              f"{peaks[False] / 2**20:.0f} / {peaks[True] / 2**20:.0f} (+{extra / 2**20:.0f})",
              f"+ < {logits_fp32 / 2**20:.0f} (one fp32 copy of the logits)", extra < logits_fp32)  # fmt: skip


def overhead(check: Check, url: str, rounds: int, steps: int) -> None:
    s = "SDK overhead"
    torch.manual_seed(0)
    base = small_cnn().cuda()
    batches = [
        (torch.randn(64, 1, 28, 28, device="cuda"), torch.randint(0, 10, (64,), device="cuda")) for _ in range(8)
    ]
    variants: dict[str, tuple[nn.Module, torch.optim.Optimizer, Monitor | None]] = {}
    for name, every in (("baseline", 0), ("every=10", 10), ("every=1", 1)):
        model = copy.deepcopy(base)
        mon = monitor(model, f"overhead-{every}", url, every=every) if every else None
        variants[name] = (model, torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9), mon)
    counters = dict.fromkeys(variants, 0)

    def run(name: str, n: int) -> float:
        model, optimizer, mon = variants[name]
        torch.cuda.synchronize()
        start = time.perf_counter()
        for _ in range(n):
            x, y = batches[counters[name] % len(batches)]
            loss = F.cross_entropy(model(x), y)
            loss.backward()
            optimizer.step()
            if mon is not None:
                mon.step(counters[name], loss=loss)
            optimizer.zero_grad()
            counters[name] += 1
        torch.cuda.synchronize()
        return (time.perf_counter() - start) / n

    names = list(variants)
    for name in names:
        run(name, 20)  # warm-up: allocator, cuDNN autotuning, first hooks, connections
    ratios: dict[str, list[float]] = {name: [] for name in names}
    times: dict[str, list[float]] = {name: [] for name in names}
    for index in range(rounds):
        order = names[index % 3 :] + names[: index % 3]
        measured = {name: run(name, steps) for name in order}
        for name in names:
            times[name].append(measured[name])
            ratios[name].append(measured[name] / measured["baseline"])
    for name, target in (("every=10", 1.03), ("every=1", 1.5)):
        ratio = statistics.median(ratios[name])
        check.row(s, f"{name} (baseline {statistics.median(times['baseline']) * 1e3:.3f} ms/step)",
                  f"{ratio:.3f}x ({statistics.median(times[name]) * 1e3:.3f} ms/step)", f"<= {target}x",
                  ratio <= target)  # fmt: skip
    for _, _, mon in variants.values():
        if mon is not None:
            finish(mon)


def compiled(check: Check, url: str, steps: int) -> None:
    s = "torch.compile"
    import torch._dynamo  # only for this section
    from torch._dynamo.utils import counters

    torch._logging.set_logs(recompiles=True, graph_breaks=True)
    torch._dynamo.reset()
    counters.clear()
    torch.manual_seed(0)
    model = small_cnn().cuda()
    compiled_model = torch.compile(model)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    mon = monitor(compiled_model, "compile", url, every=5)
    x, y = torch.randn(64, 1, 28, 28, device="cuda"), torch.randint(0, 10, (64,), device="cuda")
    for step in range(steps):
        loss = F.cross_entropy(compiled_model(x), y)
        loss.backward()
        optimizer.step()
        mon.step(step, loss=loss)
        optimizer.zero_grad()
    delivered = finish(mon)
    breaks = sum(counters["graph_break"].values())
    recompiles = counters["stats"].get("unique_graphs", 0)
    check.row(s, f"{steps} steps, persistent hooks, every=5", f"{mon.stats.sent_steps} steps delivered: {delivered}",
              "all delivered", delivered)  # fmt: skip
    check.row(s, "graphs compiled / graph breaks", f"{recompiles} / {breaks} (logged above)")


def gpu_tests(check: Check, budget_s: float) -> None:
    s = "GPU-marked tests"
    command = [sys.executable, "-m", "pytest", "-m", "gpu", "-n", "0", "-p", "no:cacheprovider", "-q", "-rs"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=budget_s, env=env)
    summary = next((line for line in reversed(done.stdout.splitlines()) if " in " in line), done.stdout[-200:])
    print(done.stdout[-4000:], file=sys.stderr)
    check.row(s, " ".join(command[1:]), summary.strip("= "), "exit 0, none failed", done.returncode == 0)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run: fewer steps, no GPU-marked tests")
    parser.add_argument("--budget-s", type=float, default=540, help="overall time budget (sections are cut to it)")
    args = parser.parse_args()
    started = time.monotonic()
    check = Check(started + args.budget_s)
    steps = 30 if args.quick else 200
    print(f"command: python bench/gpu_check.py{' --quick' if args.quick else ''}", flush=True)
    daemon = None
    url = ""
    try:
        if check.cuda:
            daemon, url = start_daemon(Path(tempfile.mkdtemp(prefix="pivot-gpucheck-")))
        check.section("environment", 15, lambda: environment(check))
        check.section("NVML vs nvidia-smi", 30, lambda: nvml_versus_smi(check))
        check.section("no host sync", 60, lambda: sync_free_loop(check, url, steps))
        check.section("CPU/CUDA parity", 45, lambda: parity(check, url))
        check.section("AMP", 60, lambda: amp(check, url, steps))
        check.section("SDK overhead", 60, lambda: overhead(check, url, 6 if args.quick else 30, 50))
        check.section("torch.compile", 90, lambda: compiled(check, url, 20 if args.quick else 60))
        if args.quick:
            check.rows.append(Row("GPU-marked tests", "-", "skipped: --quick", verdict="skipped"))
        else:
            check.section("GPU-marked tests", 150, lambda: gpu_tests(check, 140))
    finally:
        if daemon is not None:
            daemon.terminate()
            daemon.wait(10)
    print(f"\ntorch {torch.__version__}, {time.monotonic() - started:.0f} s in all")
    check.print_table()
    failed = [row for row in check.rows if row.failed]
    print(f"\n{len(failed)} target(s) missed or section(s) failed" if failed else "\nall targets met (or skipped)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
