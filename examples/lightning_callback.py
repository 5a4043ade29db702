"""A Lightning callback that feeds PIVOT: layer-wise statistics every N optimizer steps, plus the loss.

    from lightning_callback import PivotCallback
    trainer = L.Trainer(max_steps=1000, callbacks=[PivotCallback("exp42", every=10)])

Run as a script (`python examples/lightning_callback.py --steps 40`), it trains a tiny classifier on synthetic
data, offline, and reports to the pivotd at `PIVOT_URL` (with `PIVOT_TOKEN`; default the local daemon) as run
`lightning-example`, or the job's run under pivotd (`PIVOT_RUN_ID`); it says so when no pivotd took the data.

Hook placement: the monitor is armed in `on_train_batch_start` (so the forward of a monitored step is watched)
and reads gradients and weights in `on_before_optimizer_step`, where Lightning has already unscaled AMP
gradients and the step has not run yet (weights are the pre-step ones). With `accumulate_grad_batches > 1`
the activations are those of the last micro-batch. Only rank 0 posts under DDP (pass `ranks="all"` for one
run per rank). Tested in tests/sdk/test_examples.py with lightning 2.6.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

import lightning as L
import torch
from torch import nn
from torch.nn import functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from shared.sdk import Monitor


class PivotCallback(L.Callback):
    def __init__(self, run_id: str | None = None, every: int = 10, **monitor_options: Any) -> None:
        self.run_id = run_id
        self.every = every
        self.options = monitor_options
        self.monitor: Monitor | None = None
        self.delivered: bool | None = None
        """After fit: whether everything reached pivotd and the run's end was recorded."""

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.monitor = Monitor(pl_module, self.run_id, every=self.every, **self.options)

    def on_train_batch_start(
        self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        assert self.monitor is not None
        self.monitor.watch(trainer.global_step)

    def on_before_optimizer_step(
        self, trainer: L.Trainer, pl_module: L.LightningModule, optimizer: torch.optim.Optimizer
    ) -> None:
        assert self.monitor is not None
        self.monitor.step(trainer.global_step, lr=optimizer.param_groups[0]["lr"])

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        assert self.monitor is not None
        loss = outputs["loss"] if isinstance(outputs, dict) else outputs
        if isinstance(loss, torch.Tensor):
            # global_step already counts this batch's optimizer step; the tensor is read off the training thread.
            self.monitor.log(trainer.global_step - 1, {"train/loss": loss})

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.monitor is not None and not trainer.sanity_checking:
            metrics = {k: v for k, v in trainer.callback_metrics.items() if k.startswith("val")}
            self.monitor.log(trainer.global_step, metrics)

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.monitor is not None:
            self.delivered = self.monitor.close()


class TinyClassifier(L.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 3))

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        x, y = batch
        return F.cross_entropy(self.net(x), y)

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        x, y = batch
        self.log("val_loss", F.cross_entropy(self.net(x), y))

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.1)


def main() -> int:
    parser = argparse.ArgumentParser(description="Train a tiny Lightning classifier, reporting to PIVOT.")
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--every", type=int, default=10, help="layer statistics every N steps")
    parser.add_argument("--run-id", help="default: the job's run ($PIVOT_RUN_ID), else lightning-example")
    args = parser.parse_args()
    torch.manual_seed(0)
    x = torch.randn(64, 8)
    data = torch.utils.data.TensorDataset(x, x[:, :3].argmax(dim=1))
    loader = torch.utils.data.DataLoader(data, batch_size=8)
    run_id = args.run_id or os.environ.get("PIVOT_RUN_ID") or "lightning-example"
    callback = PivotCallback(run_id, every=args.every)
    with tempfile.TemporaryDirectory() as scratch:
        trainer = L.Trainer(max_steps=args.steps, accelerator="cpu", logger=False, enable_checkpointing=False,
                            enable_progress_bar=False, enable_model_summary=False, default_root_dir=scratch,
                            val_check_interval=min(args.steps, 8), check_val_every_n_epoch=None,
                            callbacks=[callback])  # fmt: skip
        trainer.fit(TinyClassifier(), loader, loader)
    where = os.environ.get("PIVOT_URL", "the local pivotd")
    if callback.delivered:
        print(f"trained {trainer.global_step} steps; reported to {where} as run {run_id}")
    else:
        print(f"trained {trainer.global_step} steps; {where} did not take the data (is pivotd running? set "
              "PIVOT_URL and PIVOT_TOKEN)")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
