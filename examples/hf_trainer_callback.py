"""A Hugging Face `Trainer` callback that feeds PIVOT: layer-wise statistics every N steps, plus the logs.

    from hf_trainer_callback import PivotTrainerCallback
    trainer = Trainer(model=model, args=args, train_dataset=ds, callbacks=[PivotTrainerCallback("exp42")])

Hook placement: the monitor is armed in `on_step_begin` and reads gradients in `on_pre_optimizer_step`,
after the Trainer unscaled (AMP) and clipped them, before the optimizer step. With gradient accumulation the
activations are those of the last micro-batch. Numeric entries of the Trainer's logs (`loss`,
`learning_rate`, `grad_norm`, `eval_*`) become scalars `train/<name>` or `eval/<name>`. Only rank 0 posts
under DDP. Tested in tests/sdk/test_examples.py with transformers 5.23.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from shared.sdk import Monitor


class PivotTrainerCallback(TrainerCallback):
    def __init__(self, run_id: str | None = None, every: int = 10, **monitor_options: Any) -> None:
        self.run_id = run_id
        self.every = every
        self.options = monitor_options
        self.monitor: Monitor | None = None

    def on_train_begin(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        self.monitor = Monitor(kwargs["model"], self.run_id, every=self.every, **self.options)

    def on_step_begin(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        if self.monitor is not None:
            self.monitor.watch(state.global_step)

    def on_pre_optimizer_step(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        if self.monitor is not None:
            self.monitor.step(state.global_step)

    def on_log(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        logs: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        if self.monitor is None or not logs:
            return
        values = {
            (f"eval/{name[5:]}" if name.startswith("eval_") else f"train/{name}"): float(value)
            for name, value in logs.items()
            if isinstance(value, int | float) and not isinstance(value, bool)
        }
        self.monitor.log(state.global_step, values)

    def on_train_end(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        if self.monitor is not None:
            self.monitor.close()
