"""Forward passes for the inference service: a loaded model answers logits for a float32 batch."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file

from pivotd.training.model import Net, layout_to_tensors, load_weights
from shared.models.training import Architecture


class Engine:
    """One trained model in eval mode on the inference device."""

    def __init__(self, arch: Architecture, tensors: dict[str, torch.Tensor], device: str) -> None:
        self.device = torch.device(device)
        net = Net(arch)
        load_weights(net, tensors)
        self.net = net.to(self.device).eval()

    @classmethod
    def from_file(cls, arch: Architecture, path: Path, device: str) -> Engine:
        return cls(arch, load_file(path), device)

    @classmethod
    def from_layout(cls, arch: Architecture, parameters: dict[str, Any], device: str) -> Engine:
        return cls(arch, layout_to_tensors(parameters), device)

    @torch.inference_mode()
    def logits(self, inputs: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(inputs).to(self.device, non_blocking=True)
        return self.net(x).float().cpu().numpy()


def set_threads(count: int) -> None:
    torch.set_num_threads(count)
