"""Provides `Monitor`: automatic layer-wise statistics of a torch model, posted to pivotd in the background.

    mon = Monitor(model, run_id="exp42", every=10)
    for step, (x, y) in enumerate(loader):
        loss = loss_fn(model(x), y)
        loss.backward()
        optimizer.step()
        mon.step(step, loss=loss, lr=lr)   # after optimizer.step(), before zero_grad()
        optimizer.zero_grad()
    mon.close()

Cost model: forward hooks exist only while a monitored step's forward runs (for `torch.compile`d models they
stay registered behind a flag, since adding hooks to a compiled model is not seen by its cached graph), so
other steps pay nothing. On a monitored step every statistic is computed on the device, stacked into one
tensor and copied to the host once; the copy is awaited and the JSON built on the sender thread.

With `max_overhead` (a fraction of the training thread's time) the monitor also skips multiples of `every` while
its smoothed cost per monitored step (hooks plus `step()`'s work) would exceed that fraction of the wall time
since the last monitored step, but never lets more than `MAX_GAP_S` pass: for a small model a monitored step
costs most of a training step, and 100 snapshots a second are more than anyone reads.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import Tensor, nn
from torch.amp.grad_scaler import OptState
from torch.utils.hooks import RemovableHandle

from shared.models.runs import EndStatus, RunEnd
from shared.sdk import cpu_stats
from shared.sdk.cpu_stats import bias_values, grad_values, weight_values
from shared.sdk.ending import end_of, end_of_exception
from shared.sdk.hostcopy import start_copy
from shared.sdk.layers import default_groups, distributed_rank, select_layers, unwrap
from shared.sdk.payload import GRAD_L2, GRAD_MAX, GRAD_STD, SLOTS, LayerSpec, StepCapture, build_payload
from shared.sdk.run import ScalarLogger, check_run_id
from shared.sdk.stats import bias_std, flat_grad, norms, pooled_grad_stats, std_mean, weight_moments
from shared.sdk.transport import Item, Transport, TransportStats

log = logging.getLogger("pivot.sdk")

MAX_GAP_S = 2.0
"""With `max_overhead`: wall seconds after which the next multiple of `every` is monitored whatever it costs."""
COST_SMOOTHING = 0.3
"""Weight of the newest monitored step in the cost's moving average (a single slow step must not halve the rate)."""


@dataclass(slots=True, eq=False)
class _Layer:
    layer_id: str
    module: nn.Module
    params: list[nn.Parameter]
    weight: nn.Parameter | None
    bias: nn.Parameter | None
    u: Tensor | None = None  # power-iteration vector, kept between monitored steps
    act: tuple[Tensor, Tensor] | tuple[float, float] | None = None  # (std, mean) of the last captured output
    shape: list[int] | None = None
    first_call: int | None = None  # order of the first forward call: the layer's depth

    @property
    def spec(self) -> LayerSpec:
        return LayerSpec(self.layer_id, type(self.module).__name__, bool(self.params), self.bias is not None)


def _weight_of(module: nn.Module, params: list[tuple[str, nn.Parameter]]) -> nn.Parameter | None:
    """`module.weight`, else the largest direct parameter that is not a bias (e.g. `in_proj_weight`)."""
    named = dict(params)
    if "weight" in named:
        return named["weight"]
    others = [p for name, p in params if "bias" not in name]
    return max(others, key=lambda p: p.numel()) if others else None


def _first_tensor(output: Any) -> Tensor | None:
    if isinstance(output, Tensor):
        return output
    if isinstance(output, tuple | list) and output and isinstance(output[0], Tensor):
        return output[0]  # e.g. (output, hidden) of recurrent layers
    return None


class Monitor:
    """Collects layer-wise statistics every `every` steps and posts them (and any scalars) to pivotd.

    Call `step(step, ...)` once per optimisation step, after `optimizer.step()` and before `zero_grad()`.
    The forward of step `s` is watched when `s % every == 0`; the monitor arms itself for `step + 1` at the end
    of each `step()` (and for `start_step` at construction), so a loop with consecutive steps needs nothing
    else. Loops that skip numbers call `watch(step)` before the forward.
    """

    def __init__(
        self,
        model: nn.Module,
        run_id: str | None = None,
        *,
        url: str | None = None,
        token: str | None = None,
        every: int = 10,
        layers: Sequence[str] | None = None,
        types: Iterable[type[nn.Module] | str] | None = None,
        exclude: Sequence[str] | None = None,
        layer_groups: Mapping[str, list[str]] | None = None,
        scaler: torch.amp.GradScaler | None = None,
        ranks: Literal["zero", "all"] = "zero",
        start_step: int = 0,
        experiment_id: str | None = None,
        group: str | None = None,
        tags: list[str] | None = None,
        capacity: int = 1000,
        exit_timeout_s: float = 5.0,
        persistent_hooks: bool | None = None,
        max_overhead: float | None = None,
    ) -> None:
        if every < 1:
            raise ValueError("every must be at least 1")
        if max_overhead is not None and not 0 < max_overhead < 1:
            raise ValueError("max_overhead must be between 0 and 1 (exclusive), or None")
        rank, world = distributed_rank()
        self.rank = rank
        self.every = every
        self.max_overhead = max_overhead
        """Budget for layer-wise statistics as a fraction of training time; None: exactly every `every` steps."""
        self.active = ranks == "all" or rank == 0
        """False on ranks that do not post (DDP with `ranks="zero"`): every method is then a no-op."""
        base = check_run_id(run_id)  # None: the job's run (PIVOT_RUN_ID)
        self.run_id = check_run_id(f"{base}-rank{rank}") if ranks == "all" and world > 1 else base
        self.monitored_steps = 0
        """Steps for which layer statistics were queued."""
        self._scaler = scaler
        inner, compiled = unwrap(model)
        self._persistent = compiled if persistent_hooks is None else persistent_hooks
        self._layers = self._build_layers(select_layers(inner, layers, types, exclude))
        if not self._layers:
            raise ValueError("no layer matches the selection (layers=, types=, exclude=)")
        self._model = inner
        self._user_groups = dict(layer_groups) if layer_groups is not None else None
        self._groups = self._compute_groups()
        self._ordered = False
        self._calls = 0
        self._armed = False
        self._decided: tuple[int, bool] | None = None  # (step, monitored?) as armed for that step's forward
        self._cost_s: float | None = None  # smoothed training-thread seconds of a monitored step
        self._hook_s = 0.0  # this forward's seconds in the hooks
        self._last_monitored: float | None = None  # perf_counter at the end of the last monitored step
        self._handles: list[RemovableHandle] = []
        self._warned_unwatched = False
        self._zero = torch.zeros(())  # follows the model's device (see _follow_device)
        # `.to(device)` moves a parameter's data, not the Parameter: its `.device` follows the model's.
        self._first_param = next(inner.parameters(), None)
        self._specs = [layer.spec for layer in self._layers]
        self._run_fields = {k: v for k, v in (("experiment_id", experiment_id), ("group", group), ("tags", tags)) if v}
        self._transport: Transport | None = None
        self._scalars: ScalarLogger | None = None
        if self.active:
            self._transport = Transport(
                self.run_id,
                url=url,
                token=token,
                capacity=capacity,
                exit_timeout_s=exit_timeout_s,
                run_fields=self._run_fields,
            )
            self._scalars = ScalarLogger(self._transport)
            if self._persistent:
                self._register_hooks()
            self._arm(self._decide(start_step))

    # -- public API -------------------------------------------------------------------------------------

    def __enter__(self) -> Monitor:
        return self

    def __exit__(self, kind: object, exc: BaseException | None, traceback: object) -> None:
        self._close(5.0, end_of_exception(exc))  # an exception leaving the block ends the run failed

    @property
    def layer_ids(self) -> list[str]:
        """Monitored module names in depth order (execution order once the first watched forward ran)."""
        return [layer.layer_id for layer in self._layers]

    @property
    def layer_groups(self) -> dict[str, list[str]] | None:
        return self._groups

    def should_log(self, step: int) -> bool:
        """Whether `step` is a monitored step (its forward is watched and its statistics posted).

        With `max_overhead`, for the step the monitor is armed for, what was decided when it armed; for another
        step, whether the budget allows one now.
        """
        if self._decided is not None and self._decided[0] == step:
            return self._decided[1]
        return self._due(step)

    def watch(self, step: int) -> bool:
        """Declare that the next forward belongs to `step`: arms the hooks if it is monitored. Returns that."""
        monitored = self._decide(step)
        self._arm(monitored)
        return monitored

    def step(
        self,
        step: int,
        values: Mapping[str, Any] | None = None,
        /,
        *,
        batch_size: int | None = None,
        epoch: int | None = None,
        **scalars: Any,
    ) -> None:
        """End of optimisation step `step`: queue its scalars, and its layer statistics if it is monitored.

        Scalars may be floats or tensors (tensors are read on the sender thread, so no device sync here);
        names with `/` go in `values`. `batch_size` defaults to the first watched layer's leading dimension.
        """
        if not self.active:
            return
        assert self._scalars is not None
        if values or scalars:
            self._scalars.log(step, values, scalars, epoch)
        if not self.should_log(step):
            self._arm(self._decide(step + 1))
            return
        started = time.perf_counter()
        self._collect(step, batch_size)
        self._arm(self._decide(step + 1))  # removing the hooks is part of the cost
        ended = time.perf_counter()
        cost = ended - started + self._hook_s
        self._hook_s = 0.0
        previous = self._cost_s
        self._cost_s = cost if previous is None else previous + COST_SMOOTHING * (cost - previous)
        self._last_monitored = ended

    def log(
        self, step: int, values: Mapping[str, Any] | None = None, /, *, epoch: int | None = None, **more: Any
    ) -> None:
        """Queue scalars only (validation metrics, anything between steps)."""
        if self._scalars is not None:
            self._scalars.log(step, values, more, epoch)

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until everything queued is delivered; False if `timeout` passed first (e.g. daemon down)."""
        return self._transport.flush(timeout) if self._transport is not None else True

    def close(self, timeout: float = 5.0, *, status: EndStatus | None = None, error: str | None = None) -> bool:
        """Remove the hooks, deliver what is queued (for at most `timeout` s), end the run and stop.

        The run ends `succeeded`; `failed` with `error="diverged"`; or as `status` says (`cancelled`). True when
        everything was delivered and the end recorded; False (and a warning saying what) otherwise.
        """
        return self._close(timeout, end_of(status, error))

    def _close(self, timeout: float, end: RunEnd) -> bool:
        self._remove_hooks()
        self._armed = False
        return self._transport.close(timeout, end) if self._transport is not None else True

    @property
    def stats(self) -> TransportStats:
        """Delivery counters (queued, sent, dropped, rejected, non-finite, retries)."""
        if self._transport is None:
            return TransportStats(0, 0, 0, 0, 0, 0, 0, None)
        return self._transport.stats

    # -- hooks ------------------------------------------------------------------------------------------

    @staticmethod
    def _build_layers(selected: list[tuple[str, nn.Module]]) -> list[_Layer]:
        layers = []
        for layer_id, module in selected:
            named = [(name, p) for name, p in module.named_parameters(recurse=False) if p is not None]
            bias = dict(named).get("bias")
            layers.append(_Layer(layer_id, module, [p for _, p in named], _weight_of(module, named), bias))
        return layers

    def _compute_groups(self) -> dict[str, list[str]] | None:
        if self._user_groups is not None:
            return self._user_groups or None
        return default_groups(self._model, self.layer_ids)

    def _within_budget(self) -> bool:
        """Whether a monitored step now keeps its cost within `max_overhead` of the time since the last one.

        The interval is wall time on the training thread, so on a GPU the syncs that fall in it (and evaluation
        between epochs) count as training time; the cost is what the monitor itself spent on this thread.
        """
        budget = self.max_overhead
        if budget is None or self._last_monitored is None or self._cost_s is None:
            return True
        elapsed = time.perf_counter() - self._last_monitored
        # cost / (elapsed + cost) <= budget  <=>  elapsed >= cost * (1 - budget) / budget
        return elapsed >= min(self._cost_s * (1 - budget) / budget, MAX_GAP_S)

    def _due(self, step: int) -> bool:
        return self.active and step % self.every == 0 and self._within_budget()

    def _decide(self, step: int) -> bool:
        """Whether `step` is monitored, remembered so that the end of that step collects what its forward armed."""
        monitored = self._due(step)
        self._decided = (step, monitored)
        return monitored

    def _arm(self, on: bool) -> None:
        self._armed = on
        if self._persistent:
            return
        if on and not self._handles:
            self._register_hooks()
        elif not on and self._handles:
            self._remove_hooks()

    def _register_hooks(self) -> None:
        for layer in self._layers:
            self._handles.append(layer.module.register_forward_hook(self._hook_for(layer)))

    def _remove_hooks(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    def _hook_for(self, layer: _Layer) -> Any:
        def hook(module: nn.Module, args: Any, output: Any) -> None:
            if not self._armed:  # only reached with persistent hooks
                return
            if torch.compiler.is_compiling():
                record(output)  # traced into the graph: its cost is the graph's, and a clock read would break it
                return
            started = time.perf_counter()
            record(output)
            self._hook_s += time.perf_counter() - started

        def record(output: Any) -> None:
            out = _first_tensor(output)
            if out is None or not out.is_floating_point():
                return
            detached = out.detach()
            # float32 reductions, no copy. On the CPU read at once as floats (see cpu_stats), except inside a
            # compiled graph, where a read would break the graph: tensors there, read by `_host_values`.
            if detached.device.type == "cpu" and not torch.compiler.is_compiling():
                layer.act = cpu_stats.std_mean(detached)
            else:
                layer.act = std_mean(detached)
            shape = list(out.shape)
            layer.shape = [1] * (2 - len(shape)) + shape  # the contract wants batch + features
            if layer.first_call is None:
                layer.first_call = self._calls
                self._calls += 1

        return hook

    # -- collection -------------------------------------------------------------------------------------

    def _inv_scale(self) -> Tensor | None:
        """1/scale while the GradScaler's gradients are still scaled; None when they are not (or no scaler)."""
        scaler = self._scaler
        if scaler is None or not scaler.is_enabled():
            return None
        states = scaler._per_optimizer_states.values()
        if any(state["stage"] is not OptState.READY for state in states):
            return None  # unscale_() (explicit or inside scaler.step) already divided the grads in place
        scale = getattr(scaler, "_scale", None)
        return 1.0 / scale if isinstance(scale, Tensor) else torch.tensor(1.0 / scaler.get_scale())

    def _found_inf(self, device: torch.device) -> Tensor | None:
        """Sum of the scaler's inf/NaN flags for this step (non-zero: the optimizer step was skipped)."""
        if self._scaler is None or not self._scaler.is_enabled():
            return None
        flags = [
            flag
            for state in self._scaler._per_optimizer_states.values()
            for flag in state.get("found_inf_per_device", {}).values()
        ]
        return torch.stack([f.to(device) for f in flags]).sum() if flags else None

    def _follow_device(self) -> torch.device:
        """The model's device now: a Monitor built before `model.cuda()` must not copy statistics one by one."""
        first = self._first_param
        device = first.device if first is not None else torch.device("cpu")
        if self._zero.device != device:
            self._zero = torch.zeros((), device=device)
        return device

    def _order_by_execution(self) -> None:
        """Depth is execution order: sort once, after the first watched forward, by each layer's first call."""
        if self._ordered or not any(layer.first_call is not None for layer in self._layers):
            return
        self._layers.sort(key=lambda layer: (layer.first_call is None, layer.first_call or 0))
        self._specs = [layer.spec for layer in self._layers]
        self._groups = self._compute_groups()
        self._ordered = True

    def _host_values(self, grads: list[list[Tensor]]) -> list[float]:
        """The step's values in per-layer `SLOTS` order (flag last), read now: on the CPU nothing is in flight."""
        inv_scale = self._inv_scale()
        scale = 1.0 if inv_scale is None else float(inv_scale)
        found_inf = self._found_inf(torch.device("cpu"))
        values: list[float] = []
        for layer, layer_grads in zip(self._layers, grads, strict=True):
            values.extend((float(x) for x in layer.act) if layer.act is not None else (0.0, 0.0))
            values.extend([g * scale for g in grad_values(layer_grads)] if layer_grads else (0.0, 0.0, 0.0))
            if layer.weight is not None:
                weight, layer.u = weight_values(layer.weight, layer.u)
                values.extend(weight)
            else:
                values.extend((0.0,) * 4)  # parameter-free layer: zeros, as the contract says
            values.extend(bias_values(layer.bias) if layer.bias is not None else (0.0, 0.0))
        values.append(0.0 if found_inf is None else float(found_inf))
        return values

    def _device_values(self, grads: list[list[Tensor]], device: torch.device) -> Callable[[], list[float]]:
        """Queues the step's statistics and their copy to the host; returns the read, for the sender thread."""
        zero = self._zero
        layers = self._layers
        # One block per kind of statistic, each norm over all layers in one `_foreach_norm`; the host puts the
        # values back in per-layer order (`_per_layer`).
        acts = [
            t if isinstance(t, Tensor) else torch.tensor(t)
            for layer in layers
            for t in (layer.act if layer.act is not None else (zero, zero))
        ]
        grad_block = _grad_block(grads, zero)
        weight_block, bias_block = _parameter_blocks(layers, zero)
        inv_scale = self._inv_scale()
        grad_values = _stack(grad_block, device)
        if inv_scale is not None:
            grad_values = grad_values * inv_scale.to(device)
        found_inf = self._found_inf(device)
        stacked = torch.cat(
            [
                _stack(acts, device),
                grad_values,
                _stack(weight_block, device),
                _stack(bias_block, device),
                _stack([found_inf if found_inf is not None else zero], device),
            ]
        )
        host, wait = start_copy(stacked)  # the sender thread waits, not the training loop

        def read() -> list[float]:
            if wait is not None:
                wait()
            return _per_layer(host.tolist(), len(layers))

        return read

    def _collect(self, step: int, batch_size: int | None) -> None:
        self._order_by_execution()
        device = self._follow_device()
        layers = self._layers
        shapes = [layer.shape if layer.act is not None else None for layer in layers]
        grads = [[p.grad.detach() for p in layer.params if p.grad is not None] for layer in layers]
        has_grad = [bool(g) for g in grads]
        with torch.no_grad():
            if device.type == "cpu":
                ready = self._host_values(grads)
                read: Callable[[], list[float]] = lambda: ready  # noqa: E731
            else:
                read = self._device_values(grads, device)
        for layer in layers:
            layer.act = layer.shape = None
        if all(shape is None for shape in shapes) and not self._warned_unwatched:
            self._warned_unwatched = True
            log.warning("pivot sdk: step %d is monitored but its forward was not watched; call watch(step) first", step)
        if batch_size is None:
            batch_size = next((shape[0] for shape in shapes if shape), 1)
        metadata: dict[str, Any] = {
            "run_id": self.run_id,
            "timestamp": time.time(),
            "global_step": step,
            "batch_size": max(1, batch_size),
            **self._run_fields,
        }
        if self._groups:
            metadata["layer_groups"] = self._groups
        specs = self._specs
        capture = StepCapture(shapes, has_grad)

        def build() -> dict[str, Any]:
            values = read()
            if values[-1] > 0:
                # The GradScaler found inf/NaN and skipped this optimizer step (routine with fp16): not a
                # divergence, so the gradient statistics are zeroed and the step is marked instead.
                for index in range(len(specs)):
                    for slot in (GRAD_L2, GRAD_STD, GRAD_MAX):
                        values[index * SLOTS + slot] = 0.0
                metadata["amp_skipped_step"] = True
            return build_payload(metadata, specs, values, capture)

        assert self._transport is not None
        self._transport.put(Item("layerwise", self.run_id, step, build))
        self.monitored_steps += 1


def _grad_block(grads: list[list[Tensor]], zero: Tensor) -> list[Tensor]:
    """[L2 norm, std, max |g|] per layer over its gradients; zeros where it has none."""
    flats = [flat_grad(g) if g else None for g in grads]
    fused = [i for i, flat in enumerate(flats) if flat is not None]
    fused_flats = [flat for flat in flats if flat is not None]
    l2 = dict(zip(fused, norms(fused_flats, 2), strict=True))
    top = dict(zip(fused, norms(fused_flats, math.inf), strict=True))
    block: list[Tensor] = []
    for i, flat in enumerate(flats):
        if flat is not None:
            block.extend((l2[i], std_mean(flat)[0], top[i]))
        elif grads[i]:
            block.extend(pooled_grad_stats(grads[i]))  # too large to concatenate
        else:
            block.extend((zero, zero, zero))  # no backward this step (evaluation, frozen layer)
    return block


def _parameter_blocks(layers: list[_Layer], zero: Tensor) -> tuple[list[Tensor], list[Tensor]]:
    """Weight [std, mean, spectral, Frobenius] and bias [std, mean |b|] per layer; advances power iteration."""
    weights = [layer.weight.detach() for layer in layers if layer.weight is not None]
    frobenius = iter(norms(weights, 2))
    biases = [layer.bias.detach() for layer in layers if layer.bias is not None]
    abs_means = iter(torch._foreach_div(norms(biases, 1), [float(b.numel()) for b in biases]) if biases else [])
    weight_block: list[Tensor] = []
    bias_block: list[Tensor] = []
    for layer in layers:
        if layer.weight is not None:
            moments, layer.u = weight_moments(layer.weight, layer.u)
            weight_block.extend((*moments, next(frobenius)))
        else:
            weight_block.extend((zero, zero, zero, zero))  # parameter-free layer: zeros, as the contract says
        if layer.bias is not None:
            bias_block.extend((bias_std(layer.bias), next(abs_means)))
        else:
            bias_block.extend((zero, zero))
    return weight_block, bias_block


def _stack(parts: list[Tensor], device: torch.device) -> Tensor:
    return torch.stack([p.to(device, torch.float32) for p in parts])


# Statistics per layer in each kind's block (activation, gradient, weight, bias): the slot order of `SLOTS`.
_BLOCKS = (2, 3, 4, 2)
assert sum(_BLOCKS) == SLOTS


def _per_layer(values: list[float], n_layers: int) -> list[float]:
    """Block order (all activations, all gradients, ...) -> `SLOTS` values per layer; the flag stays last."""
    starts = [0]
    for width in _BLOCKS:
        starts.append(starts[-1] + width * n_layers)
    ordered: list[float] = []
    for layer in range(n_layers):
        for start, width in zip(starts, _BLOCKS, strict=False):
            ordered.extend(values[start + layer * width : start + (layer + 1) * width])
    ordered.append(values[-1])
    return ordered
