"""One rank of the 2-process DDP test (spawned: must be importable, so not inside the test module)."""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch.nn import functional as F
from torch.nn.parallel import DistributedDataParallel

from pivotd.training.exiting import end_process
from shared.sdk import Monitor
from tests.sdk.models import MLP, batch


def train(rank: int, world: int, init_method: str, url: str) -> None:
    dist.init_process_group("gloo", init_method=init_method, rank=rank, world_size=world)
    try:
        torch.manual_seed(0)  # same initial weights on both ranks, as DDP expects
        model = DistributedDataParallel(MLP())
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
        only_zero = Monitor(model, "ddp", url=url, every=1)
        each = Monitor(model, "ddp", url=url, every=1, ranks="all")
        x, y = batch(model.module, seed=rank)  # different data per rank
        for step in range(2):
            F.cross_entropy(model(x), y).backward()
            optimizer.step()
            only_zero.step(step)
            each.step(step)
            optimizer.zero_grad()
        assert only_zero.active == (rank == 0)
        assert only_zero.close(10) and each.close(10)
    finally:
        dist.destroy_process_group()
    # Done: exit as pivotd's training processes do, without the interpreter's teardown of torch.distributed (about
    # 1 s of CPU per rank). The spawning parent reads the exit status only.
    end_process(0)
