"""A Hugging Face `Trainer` callback that feeds PIVOT: layer-wise statistics every N steps, plus the logs.

    from hf_trainer_callback import PivotTrainerCallback
    trainer = Trainer(model=model, args=args, train_dataset=ds, callbacks=[PivotTrainerCallback("exp42")])

Run as a script (`python examples/hf_trainer_callback.py --steps 20`), it fine-tunes a tiny BERT built from a
config (random weights, no download) on synthetic tokens, and reports to the pivotd at `PIVOT_URL` (with
`PIVOT_TOKEN`; default the local daemon) as run `hf-example`, or the job's run under pivotd (`PIVOT_RUN_ID`);
it says so when no pivotd took the data.

Hook placement: the monitor is armed in `on_step_begin` and reads gradients in `on_pre_optimizer_step`,
after the Trainer unscaled (AMP) and clipped them, before the optimizer step. With gradient accumulation the
activations are those of the last micro-batch. Numeric entries of the Trainer's logs (`loss`,
`learning_rate`, `grad_norm`, `eval_*`) become scalars `train/<name>` or `eval/<name>`. Only rank 0 posts
under DDP. Tested in tests/sdk/test_examples.py with transformers 5.23.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

import torch
from transformers import (
    BertConfig,
    BertForSequenceClassification,
    Trainer,
    TrainerCallback,
    TrainerControl,
    TrainerState,
    TrainingArguments,
)

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from shared.sdk import Monitor


class PivotTrainerCallback(TrainerCallback):
    def __init__(self, run_id: str | None = None, every: int = 10, **monitor_options: Any) -> None:
        self.run_id = run_id
        self.every = every
        self.options = monitor_options
        self.monitor: Monitor | None = None
        self.delivered: bool | None = None
        """After training: whether everything reached pivotd and the run's end was recorded."""

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
            self.delivered = self.monitor.close()


def main() -> int:
    parser = argparse.ArgumentParser(description="Fine-tune a tiny BERT (built offline), reporting to PIVOT.")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--every", type=int, default=5, help="layer statistics every N steps")
    parser.add_argument("--run-id", help="default: the job's run ($PIVOT_RUN_ID), else hf-example")
    args = parser.parse_args()
    torch.manual_seed(0)
    config = BertConfig(vocab_size=64, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=32, max_position_embeddings=16, num_labels=2)  # fmt: skip
    model = BertForSequenceClassification(config)
    tokens = torch.randint(0, 64, (64, 12))
    rows = [{"input_ids": row, "labels": int(row[0] < 32)} for row in tokens]  # learnable: the first token decides
    run_id = args.run_id or os.environ.get("PIVOT_RUN_ID") or "hf-example"
    callback = PivotTrainerCallback(run_id, every=args.every)
    with tempfile.TemporaryDirectory() as scratch:
        training = TrainingArguments(output_dir=scratch, max_steps=args.steps, per_device_train_batch_size=8,
                                     learning_rate=1e-3, logging_steps=1, save_strategy="no", report_to=[],
                                     use_cpu=True, disable_tqdm=True)  # fmt: skip
        trainer = Trainer(model=model, args=training, train_dataset=rows, callbacks=[callback])
        trainer.train()
    where = os.environ.get("PIVOT_URL", "the local pivotd")
    if callback.delivered:
        print(f"trained {trainer.state.global_step} steps; reported to {where} as run {run_id}")
    else:
        print(f"trained {trainer.state.global_step} steps; {where} did not take the data (is pivotd running? set "
              "PIVOT_URL and PIVOT_TOKEN)")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
