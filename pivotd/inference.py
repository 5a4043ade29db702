"""Inference: trained parameters loaded once into a bounded LRU of ready models, batches of up to 512 inputs.

torch is imported on the first request (in the inference thread), not when the daemon starts: a daemon that
only monitors never pays for it. Forward passes run on one dedicated thread, so the event loop stays free
and models are never used by two threads at once.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from pivotd.errors import ValidationFailed, invalid_field
from shared.models.training import Architecture

MAX_BATCH = 512


def as_batch(inputs: Any, features: int, field: str = "inputs", single: bool = False) -> np.ndarray:
    """A (N, features) float32 array; 422 naming the first bad input (and value) otherwise.

    `single`: `inputs` wraps one input the client sent bare (the `{run_id, pixels}` form's `pixels`), so names
    carry no row index.
    """

    def name(index: int) -> str:
        return field if single else f"{field}[{index}]"

    if not isinstance(inputs, list) or not inputs:
        raise invalid_field(field, "must be a non-empty list of inputs")
    if len(inputs) > MAX_BATCH:
        raise invalid_field(field, f"batch of {len(inputs)} inputs exceeds the maximum of {MAX_BATCH}")
    for index, row in enumerate(inputs):
        if not isinstance(row, list) or len(row) != features:
            got = f"{len(row)} values" if isinstance(row, list) else type(row).__name__
            raise invalid_field(name(index), f"expected {features} numbers, got {got}")
    array = np.array(inputs)
    if array.dtype.kind not in "fiu":
        for index, row in enumerate(inputs):  # slow path, errors only: find the offender
            for position, value in enumerate(row):
                if isinstance(value, bool) or not isinstance(value, int | float):
                    raise invalid_field(f"{name(index)}[{position}]", "must be a number")
    batch = array.astype(np.float32)
    finite = np.isfinite(batch)
    if not finite.all():
        index, position = (int(i) for i in np.argwhere(~finite)[0])
        raise invalid_field(f"{name(index)}[{position}]", "must be a finite number")
    return batch


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)


class Inference:
    def __init__(self, cache_size: int, device: str) -> None:
        self.cache_size = cache_size
        self.device = device
        self._models: OrderedDict[str, Any] = OrderedDict()
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="pivotd-infer")
        self._loading: dict[str, asyncio.Future[Any]] = {}

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)

    async def _run(self, fn: Any, *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    async def engine(self, param_id: str, arch: Architecture, path: Path) -> Any:
        """The loaded model for `param_id`, loading it once even under concurrent first requests."""
        engine = self._models.get(param_id)
        if engine is not None:
            self._models.move_to_end(param_id)
            return engine
        pending = self._loading.get(param_id)
        if pending is None:
            pending = asyncio.ensure_future(self._run(_load_file, arch, path, self.device))
            self._loading[param_id] = pending
            try:
                engine = await pending
            finally:
                del self._loading[param_id]
            self._models[param_id] = engine
            while len(self._models) > self.cache_size:
                self._models.popitem(last=False)
            return engine
        return await asyncio.shield(pending)

    async def logits(self, engine: Any, batch: np.ndarray) -> tuple[np.ndarray, float]:
        started = time.perf_counter()
        logits = await self._run(engine.logits, batch)
        return logits, (time.perf_counter() - started) * 1000

    async def adhoc(self, arch: Architecture, parameters: Any, batch: np.ndarray) -> tuple[np.ndarray, float]:
        if not isinstance(parameters, dict):
            raise invalid_field("parameters", 'must be an object {"layers": [...]}')
        try:
            engine = await self._run(_load_layout, arch, parameters, self.device)
        except ValueError as exc:
            raise ValidationFailed(str(exc)) from None
        return await self.logits(engine, batch)


def _load_file(arch: Architecture, path: Path, device: str) -> Any:
    from pivotd.training.inference import Engine, set_threads  # noqa: PLC0415 - torch on first use only

    set_threads(1)  # single requests: one thread answers fastest and leaves the cores to training
    return Engine.from_file(arch, path, device)


def _load_layout(arch: Architecture, parameters: dict[str, Any], device: str) -> Any:
    from pivotd.training.inference import Engine  # noqa: PLC0415

    return Engine.from_layout(arch, parameters, device)


def outputs(logits: np.ndarray, wanted: dict[str, bool]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    if wanted.get("labels", True):
        result["labels"] = logits.argmax(axis=1).tolist()
    if wanted.get("probabilities", True):
        result["probabilities"] = softmax(logits).tolist()
    if wanted.get("logits", False):
        result["logits"] = logits.tolist()
    return result
