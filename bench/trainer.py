"""Daemon trainer throughput versus a plain hand-written PyTorch loop, same model, data and batch, in one run.

    .venv/bin/python bench/trainer.py                       # MLP and seed 001's CNN, 2 threads each
    .venv/bin/python bench/trainer.py --rounds 5 --threads 1 --max-samples 5000

The daemon side is a real managed run (`POST /api/train`: worker process, SDK Monitor posting scalars every 10 steps
and layer-wise statistics every 10 steps, or less often within `layerwise_overhead`, to the same pivotd); its
samples/s come from the trainer's own per-epoch `epoch_time_s` and `epoch_cpu_s` (training steps only, like the
plain loop's clock); on both sides the first epoch of a run is warm-up (a fresh process's first kernels are several
times slower) and is not counted. The plain loop runs in this process with the same thread count, on the same
digits, with the same shuffled index gathers and SGD. Rounds alternate daemon and plain so drift favours neither;
the figure is the median over rounds of daemon/plain samples/s, by wall clock and by process CPU time (which other
processes on a shared machine do not move). Also reported: time from `POST /api/train` to the `running` state and to
the first training step seen on /ws (which includes the SDK's 0.5 s send linger). Target (issue 4): ratio >= 0.97.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import torch
import websockets
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import pivotd
from pivotd.demo import DEMO_ARCHITECTURE
from pivotd.training.datasets import load_split

MLP = {
    "input_size": 784,
    "layers": [{"type": "linear", "in": 784, "out": 128}, {"type": "relu"}, {"type": "linear", "in": 128, "out": 10}],
}
MODELS = {"mlp": ("MLP 784-128-10", MLP), "cnn": ("seed 001 CNN", DEMO_ARCHITECTURE)}


def plain_model(name: str) -> nn.Module:
    """The same networks written by hand, as a user would."""
    if name.startswith("MLP"):
        return nn.Sequential(nn.Flatten(), nn.Linear(784, 128), nn.ReLU(), nn.Linear(128, 10))
    return nn.Sequential(
        nn.Conv2d(1, 32, 3, padding="same"), nn.ReLU(), nn.MaxPool2d(2, 2),
        nn.Conv2d(32, 64, 3, padding="same"), nn.ReLU(), nn.MaxPool2d(2, 2),
        nn.Flatten(), nn.Linear(3136, 128), nn.ReLU(), nn.Dropout(0.5), nn.Linear(128, 10),
    )  # fmt: skip


def plain_samples_per_s(name: str, hp: dict[str, Any]) -> tuple[float, float]:
    """(samples per wall second, samples per CPU second) after the warm-up epoch."""
    torch.manual_seed(hp["seed"])
    data = load_split("digits", Path("."), train_split=hp["train_split"], max_samples=hp["max_samples"],
                      seed=hp["seed"], device=torch.device("cpu"))  # fmt: skip
    model = plain_model(name)
    optimizer = torch.optim.SGD(model.parameters(), lr=hp["optimizer"]["lr"])
    n, batch = len(data.x_train), hp["batch_size"]
    seconds = cpu = 0.0
    for epoch in range(hp["epochs"]):
        started, cpu_started = time.perf_counter(), time.process_time()
        order = torch.randperm(n)
        for lo in range(0, n, batch):
            index = order[lo : lo + batch]
            loss = nn.functional.cross_entropy(model(data.x_train[index]), data.y_train[index])
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        if epoch:  # the first epoch warms up kernels and allocator; both sides skip it
            seconds += time.perf_counter() - started
            cpu += time.process_time() - cpu_started
    samples = n * (hp["epochs"] - 1)
    return samples / seconds, samples / cpu


async def daemon_run(url: str, arch: dict[str, Any], hp: dict[str, Any]) -> tuple[float, float, float, float]:
    """(samples per wall s, per CPU s, seconds to `running`, seconds to the first step on /ws) of one run."""
    async with (
        httpx.AsyncClient(base_url=url, timeout=60) as http,
        websockets.connect(url.replace("http", "ws") + "/ws", max_size=None) as socket,
    ):
        # Only what is measured: run states, and the run's own topic until its first step. Every step's broadcast
        # (the `metrics` topic every connection starts on) would make this process parse JSON on the shared
        # cores while the worker trains, and the plain loop has no such neighbour.
        await socket.send(json.dumps({"action": "unsubscribe", "topics": ["metrics"]}))
        await socket.send(json.dumps({"action": "subscribe", "topics": ["runs"]}))
        while json.loads(await socket.recv())["type"] != "subscribed":
            pass
        posted = time.perf_counter()
        run_id = (await http.post("/api/train", json={"architecture": arch, "hyperparams": hp})).json()["run_id"]
        await socket.send(json.dumps({"action": "subscribe", "topics": [f"run:{run_id}"]}))
        to_running = to_step = None
        async for raw in socket:
            message = json.loads(raw)
            if message.get("run_id") != run_id:
                continue
            now = time.perf_counter() - posted
            if message["type"] == "run_state":
                if message["state"] == "running" and to_running is None:
                    to_running = now
                if message["state"] in ("succeeded", "failed", "cancelled"):
                    assert message["state"] == "succeeded", message
                    break
            elif message["type"] in ("scalars", "new_metrics") and to_step is None:
                to_step = now
                await socket.send(json.dumps({"action": "unsubscribe", "topics": [f"run:{run_id}"]}))
        metrics = (await http.get(f"/api/v1/training/sessions/{run_id}/metrics")).json()["metrics"]
    n_train = round(hp["max_samples"] * hp["train_split"])
    samples = n_train * (len(metrics) - 1)  # after the warm-up epoch, as for the plain loop
    wall = sum(m["epoch_time_s"] for m in metrics[1:])
    cpu = sum(m["epoch_cpu_s"] for m in metrics[1:])
    return samples / wall, samples / cpu, to_running or float("nan"), to_step or float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--max-samples", type=int, default=4096)
    parser.add_argument("--epochs", type=int, default=3, help="per run; the first is warm-up on both sides")
    parser.add_argument("--layerwise-every", type=int, default=10, help="0: scalars only")
    parser.add_argument("--layerwise-overhead", type=float, default=0.03, help="0: none (exactly every N steps)")
    parser.add_argument("--models", nargs="+", choices=["mlp", "cnn"], default=["mlp", "cnn"])
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    hp = {
        "epochs": args.epochs, "batch_size": 64, "optimizer": {"type": "sgd", "lr": 0.1}, "seed": 42,
        "train_split": 0.9, "shuffle": True, "max_samples": args.max_samples, "dataset": "digits",
        "layerwise_every": args.layerwise_every, "layerwise_overhead": args.layerwise_overhead or None,
        "checkpoint_every": 0,
    }  # fmt: skip
    print(
        f"torch {torch.__version__}, {args.threads} threads, batch 64, {args.max_samples} digits, {args.epochs} "
        f"epochs per run, {args.rounds} rounds, layer-wise every {args.layerwise_every} steps, overhead budget "
        f"{args.layerwise_overhead or None}"
    )
    with pivotd(worker_threads=str(args.threads)) as daemon:
        for key in args.models:
            name, arch = MODELS[key]
            wall, cpu, daemon_rates, plain_rates, to_running, to_step = [], [], [], [], [], []
            for _ in range(args.rounds):
                rate, rate_cpu, running, step = asyncio.run(daemon_run(daemon.url, arch, hp))
                plain, plain_cpu = plain_samples_per_s(name, hp)
                daemon_rates.append(rate)
                plain_rates.append(plain)
                wall.append(rate / plain)
                cpu.append(rate_cpu / plain_cpu)
                to_running.append(running)
                to_step.append(step)
            print(
                f"{name:16} daemon {statistics.median(daemon_rates):7.0f} samples/s  plain "
                f"{statistics.median(plain_rates):7.0f} samples/s  ratio wall {statistics.median(wall):.3f} "
                f"({', '.join(f'{r:.2f}' for r in wall)})  CPU {statistics.median(cpu):.3f} "
                f"({', '.join(f'{r:.2f}' for r in cpu)})\n{'':16} POST->running "
                f"{statistics.median(to_running) * 1000:.0f} ms, "
                f"POST->first step on /ws {statistics.median(to_step):.2f} s"
            )


if __name__ == "__main__":
    main()
