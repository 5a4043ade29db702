"""A resumed run's optimizer state: Adam's `step` counters stay on the CPU whatever the model's device."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch.nn import functional as F

from pivotd.training.model import Net
from pivotd.training.trainer import _resume
from shared.models.training import Architecture
from tests.training.helpers import MLP


def checkpoint(path: Path, optimizer_type: type[torch.optim.Optimizer]) -> None:
    """One Adam(W) step on CPU, saved the way the trainer saves its checkpoints."""
    torch.manual_seed(0)
    model = Net(Architecture.model_validate(MLP))
    optimizer = optimizer_type(model.parameters(), lr=1e-3)
    F.cross_entropy(model(torch.randn(4, 784)), torch.tensor([0, 1, 2, 3])).backward()
    optimizer.step()
    torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(), "epoch": 1, "metrics": {}}, path)


@pytest.mark.filterwarnings("ignore:.*copying from a non-meta parameter:UserWarning")  # meta params hold no data
@pytest.mark.parametrize("optimizer_type", [torch.optim.Adam, torch.optim.AdamW], ids=["adam", "adamw"])
def test_resumed_step_counters_stay_on_cpu(tmp_path: Path, optimizer_type: type[torch.optim.Optimizer]) -> None:
    """The meta device stands in for CUDA: loading onto the model's device would put `step` there too."""
    path = tmp_path / "epoch_0001.pth"
    checkpoint(path, optimizer_type)
    model = Net(Architecture.model_validate(MLP)).to("meta")
    optimizer = optimizer_type(model.parameters(), lr=1e-3)
    first_epoch, best = _resume({"path": str(path), "epoch": 1, "best": 0.5}, model, optimizer, None, "val_loss")
    assert (first_epoch, best) == (2, 0.5)
    states = list(optimizer.state.values())
    assert len(states) == len(list(model.parameters()))
    for state in states:
        assert state["step"].device.type == "cpu" and state["step"].item() == 1.0
        assert state["exp_avg"].device.type == "meta"  # the moments follow their parameter
