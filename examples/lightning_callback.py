"""A Lightning callback that feeds PIVOT: layer-wise statistics every N optimizer steps, plus the loss.

    from lightning_callback import PivotCallback
    trainer = L.Trainer(max_steps=1000, callbacks=[PivotCallback("exp42", every=10)])

Hook placement: the monitor is armed in `on_train_batch_start` (so the forward of a monitored step is watched)
and reads gradients and weights in `on_before_optimizer_step`, where Lightning has already unscaled AMP
gradients and the step has not run yet (weights are the pre-step ones). With `accumulate_grad_batches > 1`
the activations are those of the last micro-batch. Only rank 0 posts under DDP (pass `ranks="all"` for one
run per rank). Tested in tests/sdk/test_examples.py with lightning 2.6.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import lightning as L
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from shared.sdk import Monitor


class PivotCallback(L.Callback):
    def __init__(self, run_id: str | None = None, every: int = 10, **monitor_options: Any) -> None:
        self.run_id = run_id
        self.every = every
        self.options = monitor_options
        self.monitor: Monitor | None = None

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
            self.monitor.close()
