"""Plain PyTorch training with the PIVOT SDK: an MLP or a small CNN on 8x8 digit images, offline.

    pivotd &                                                  # a local daemon; or set PIVOT_URL/PIVOT_TOKEN
    python examples/train_mlp_cnn.py --model cnn --steps 300 --every 10
    python examples/train_mlp_cnn.py --model mlp --amp        # bf16 autocast on CPU, fp16 + GradScaler on CUDA
    pivot-tui                                                 # watch the run's layers live

Data: scikit-learn's bundled `load_digits` when scikit-learn is installed, otherwise synthetic digits (a fixed
noisy 8x8 template per class), so the script runs anywhere without a download.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections import OrderedDict
from pathlib import Path

import torch
from torch import Tensor, nn
from torch.nn import functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from shared.sdk import Monitor

parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
parser.add_argument("--model", choices=["mlp", "cnn"], default="cnn")
parser.add_argument("--steps", type=int, default=300)
parser.add_argument("--every", type=int, default=10, help="layer statistics every N steps")
parser.add_argument("--batch-size", type=int, default=64)
parser.add_argument("--lr", type=float, default=0.05)
parser.add_argument("--eval-interval", type=int, default=50)
parser.add_argument("--amp", action="store_true", help="mixed precision (see the module docstring)")
parser.add_argument("--run-id", default=None, help="default: <model>-<unix time>")
parser.add_argument("--url", default=None, help="default: $PIVOT_URL, then the local daemon")


def load_digits() -> tuple[Tensor, Tensor]:
    """(N, 1, 8, 8) images scaled to [0, 1] and their labels."""
    try:
        from sklearn.datasets import load_digits as sklearn_digits  # noqa: PLC0415 - optional dependency
    except ImportError:
        generator = torch.Generator().manual_seed(0)
        templates = torch.rand(10, 1, 8, 8, generator=generator)
        labels = torch.randint(0, 10, (2048,), generator=generator)
        images = templates[labels] + 0.35 * torch.randn(2048, 1, 8, 8, generator=generator)
        return images.clamp(0, 1), labels
    digits = sklearn_digits()
    images = torch.tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 16.0
    return images, torch.tensor(digits.target)


def build(kind: str) -> nn.Module:
    if kind == "mlp":
        layers = [nn.Flatten(), nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 64), nn.ReLU(), nn.Linear(64, 10)]
        return nn.Sequential(*layers)
    features = nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 32, 3, padding=1), nn.ReLU())
    head = nn.Sequential(nn.MaxPool2d(2), nn.Flatten(), nn.Linear(32 * 4 * 4, 64), nn.ReLU(), nn.Linear(64, 10))
    # Named children become the layer groups shown in the TUI ("features", "head").
    return nn.Sequential(OrderedDict(features=features, head=head))


def main() -> None:
    args = parser.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.manual_seed(0)
    images, labels = load_digits()
    order = torch.randperm(len(labels))
    split = int(0.85 * len(labels))
    train_x, train_y = images[order[:split]].to(device), labels[order[:split]].to(device)
    val_x, val_y = images[order[split:]].to(device), labels[order[split:]].to(device)

    model = build(args.model).to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=0.9)
    amp_dtype = torch.float16 if device.type == "cuda" else torch.bfloat16
    # float16 needs loss scaling; bfloat16 has float32's range and does not.
    scaler = torch.amp.GradScaler(device.type, enabled=args.amp and amp_dtype == torch.float16)
    # Under `pivotctl submit`, pivotd names the job's run in PIVOT_RUN_ID.
    run_id = args.run_id or os.environ.get("PIVOT_RUN_ID") or f"{args.model}-{int(time.time())}"

    with Monitor(model, run_id, url=args.url, every=args.every, scaler=scaler, tags=[args.model]) as mon:
        print(f"run {run_id}: layers {mon.layer_ids}")
        for step in range(args.steps):
            index = torch.randint(0, len(train_y), (args.batch_size,), device=device)
            with torch.autocast(device.type, dtype=amp_dtype, enabled=args.amp):
                loss = F.cross_entropy(model(train_x[index]), train_y[index])
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            # After the optimizer step, before update() and zero_grad(): the monitor reads the gradients.
            # The loss tensor is read on the SDK's sender thread, so this line does not wait for the device.
            mon.step(step, {"train/loss": loss}, lr=optimizer.param_groups[0]["lr"])
            scaler.update()
            optimizer.zero_grad(set_to_none=True)
            if step % args.eval_interval == 0 or step == args.steps - 1:
                model.eval()
                with torch.no_grad(), torch.autocast(device.type, dtype=amp_dtype, enabled=args.amp):
                    logits = model(val_x)
                    val_loss = F.cross_entropy(logits, val_y).item()
                    accuracy = (logits.argmax(1) == val_y).float().mean().item()
                model.train()
                mon.log(step, {"val/loss": val_loss, "val/accuracy": accuracy})
                print(f"step {step}: val loss {val_loss:.3f}, accuracy {accuracy:.3f}")
        delivered = mon.flush(timeout=10)
        print(f"delivery: {mon.stats} (all delivered: {delivered})")


if __name__ == "__main__":
    main()
