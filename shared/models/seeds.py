"""The reference architectures, as JSON: a CNN and an MLP (MNIST-shaped input).

One copy, used by the demo, the TUI's launch templates and anyone who wants a known-good starting point.
"""

from __future__ import annotations

from typing import Any

SEED_003_MLP: dict[str, Any] = {
    "input_size": 784,
    "layers": [
        {"type": "linear", "in": 784, "out": 128},
        {"type": "relu"},
        {"type": "linear", "in": 128, "out": 10},
    ],
}

SEED_001_CNN: dict[str, Any] = {
    "input_size": 784,
    "input_channels": 1,
    "input_height": 28,
    "input_width": 28,
    "layers": [
        {"type": "conv2d", "in_channels": 1, "out_channels": 32, "kernel_size": 3, "stride": 1, "padding": "same"},
        {"type": "relu"},
        {"type": "maxpool2d", "kernel_size": 2, "stride": 2, "padding": 0},
        {"type": "conv2d", "in_channels": 32, "out_channels": 64, "kernel_size": 3, "stride": 1, "padding": "same"},
        {"type": "relu"},
        {"type": "maxpool2d", "kernel_size": 2, "stride": 2, "padding": 0},
        {"type": "flatten"},
        {"type": "linear", "in": 3136, "out": 128},
        {"type": "relu"},
        {"type": "dropout", "p": 0.5},
        {"type": "linear", "in": 128, "out": 10},
        {"type": "softmax"},
    ],
}
