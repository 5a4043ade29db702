"""A torchrun-ready DDP script that reports to PIVOT: a tiny MLP on synthetic data, a few steps.

    torchrun --standalone --nproc-per-node 2 examples/ddp_train.py --steps 20
    pivotctl submit --nproc 2 -- examples/ddp_train.py --steps 20          # as a pivotd job
    pivotctl submit --nodes 2 --host a --host b -- examples/ddp_train.py   # one node per daemon

gloo on CPU, NCCL where CUDA is visible. Only rank 0 posts (into the job's run, `PIVOT_RUN_ID`, or `--run-id`);
`--ranks all` gives each rank its own run `<run>-rank<N>`. Run without torchrun, it trains as one process.
Where no pivotd answers at `PIVOT_URL` (or the local daemon) it says so at the end and still exits 0.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn
from torch.nn import functional as F
from torch.nn.parallel import DistributedDataParallel

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from shared.sdk import Monitor


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--every", type=int, default=5, help="layer statistics every N steps")
    parser.add_argument("--lr", type=float, default=0.1)
    parser.add_argument("--ranks", choices=["zero", "all"], default="zero", help="which ranks post")
    parser.add_argument("--run-id", help="default: the job's run ($PIVOT_RUN_ID), else ddp-example")
    args = parser.parse_args()
    distributed = "WORLD_SIZE" in os.environ  # set by torchrun
    if distributed:
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    rank, world = (dist.get_rank(), dist.get_world_size()) if distributed else (0, 1)
    device = torch.device(f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}" if torch.cuda.is_available() else "cpu")
    torch.manual_seed(0)  # the same initial weights on every rank, as DDP expects
    net = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 4)).to(device)
    model: nn.Module = DistributedDataParallel(net) if distributed else net
    optimizer = torch.optim.SGD(model.parameters(), lr=args.lr)
    run_id = args.run_id or os.environ.get("PIVOT_RUN_ID") or "ddp-example"
    monitor = Monitor(model, run_id, every=args.every, ranks=args.ranks)
    generator = torch.Generator().manual_seed(rank)  # each rank its own shard of the data
    x = torch.randn(256, 16, generator=generator).to(device)
    y = (x[:, :4].argmax(dim=1)).to(device)
    for step in range(args.steps):
        monitor.watch(step)
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        monitor.step(step, lr=args.lr)
        optimizer.step()
        optimizer.zero_grad()
        mean = loss.detach()
        if distributed:
            dist.all_reduce(mean)
            mean /= world
        monitor.log(step, {"train/loss": mean})
    delivered = monitor.close()
    if monitor.active:
        print(f"rank {rank} of {world}: final loss {mean.item():.4f}; run {monitor.run_id}")
        if not delivered:
            print(f"rank {rank}: pivotd did not take the data (is one running? set PIVOT_URL and PIVOT_TOKEN)")
    if distributed:
        dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
