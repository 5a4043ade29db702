"""A runnable experiment config (`{"type": "sweep", ...}`) checked in full and expanded into its grid of runs.

Everything is checked before anything is queued: the config's shape, the architecture (the training routes'
rules), the base hyperparameters, every variation path and value, and the grid's size. Each failure is a 422
naming the field (`config.variations.optimizer.lr`), so a sweep never half-starts.
"""

from __future__ import annotations

import copy
import itertools
import json
import math
import re
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from pivotd.errors import invalid_field, validation_failed
from shared.models.jobs import JobSpec
from shared.models.training import Hyperparams

SEED_KEY = "seed"
DEFAULT_GROUP = "default"
"""The group of every run of a sweep that varies nothing but the seed (or nothing at all)."""
METRICS = ("val_accuracy", "val_loss", "train_accuracy", "train_loss", "learning_rate")
"""What a managed run records per epoch: the metrics a sweep can be judged by."""


class SweepConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: Literal["sweep"]
    model_id: Annotated[str, Field(min_length=1, max_length=64)] | None = None
    architecture: dict[str, Any] | None = None
    command: list[Any] | None = None
    """A command sweep's argv, `{name}` placeholders for the variations; each grid point is a job."""
    cwd: Any = None
    env: Any = None
    gpus: Any = None
    hyperparams: dict[str, Any] = Field(default_factory=dict)
    variations: dict[Annotated[str, Field(min_length=1, max_length=128)], list[Any]] = Field(default_factory=dict)
    metric: Annotated[str, Field(min_length=1, max_length=200)] = "val_accuracy"


@dataclass(frozen=True, slots=True)
class GridPoint:
    group: str
    hyperparams: Hyperparams
    seed: Any


def judged_metric(config: dict[str, Any]) -> str | None:
    """The metric an experiment's runs are judged by: the config's `metric`, a sweep's default when it names
    none, or None for a config that is not a sweep and names none."""
    metric = config.get("metric")
    if isinstance(metric, str):
        return metric
    return SweepConfig.model_fields["metric"].default if config.get("type") == "sweep" else None


def parse(config: dict[str, Any]) -> SweepConfig:
    """The config as a sweep, or a 422: a config of another type is stored fine but cannot be started."""
    kind = config.get("type")
    if kind != "sweep":
        raise invalid_field(
            "config.type",
            f"only a sweep config can be started (type 'sweep' with model_id or architecture, hyperparams, "
            f"variations and metric); this one has type {kind!r}, which is stored but not runnable",
        )
    try:
        sweep = SweepConfig.model_validate(config)
    except ValidationError as exc:
        raise validation_failed(exc, "config", SweepConfig) from None
    if sweep.command is not None:
        return _command_sweep(sweep)
    for field in JOB_FIELDS:
        if getattr(sweep, field) is not None:
            raise invalid_field(f"config.{field}", "is for a command sweep (one that gives `command`)")
    if (sweep.model_id is None) == (sweep.architecture is None):
        raise invalid_field("config.model_id", "give exactly one of model_id, architecture or command")
    if sweep.metric not in METRICS:
        raise invalid_field("config.metric", f"unknown metric {sweep.metric!r}; one of {', '.join(METRICS)}")
    return sweep


def _check_path(key: str) -> None:
    """`optimizer.lr` must name a hyperparameter; each part but the last a nested group of them."""
    model: type[BaseModel] = Hyperparams
    parts = key.split(".")
    for index, part in enumerate(parts):
        field = model.model_fields.get(part)
        if field is None:
            known = ", ".join(model.model_fields)
            where = ".".join(parts[:index]) or "hyperparams"
            raise invalid_field(
                f"config.variations.{key}", f"unknown hyperparameter {part!r} in {where}; one of {known}"
            )
        nested = field.annotation
        if index < len(parts) - 1:
            if not (isinstance(nested, type) and issubclass(nested, BaseModel)):
                raise invalid_field(f"config.variations.{key}", f"{'.'.join(parts[: index + 1])} has no nested fields")
            model = nested


def _with(base: dict[str, Any], key: str, value: Any) -> dict[str, Any]:
    result = copy.deepcopy(base)
    target = result
    *parents, last = key.split(".")
    for part in parents:
        child = target.get(part)
        if not isinstance(child, dict):
            child = target[part] = {}
        target = child
    target[last] = value
    return result


def _label(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True)


def group_label(assignment: dict[str, Any]) -> str:
    """`optimizer.lr=0.1,batch_size=32` for the non-seed variations, keys sorted so the label is stable."""
    parts = [f"{key}={_label(assignment[key])}" for key in sorted(assignment) if key != SEED_KEY]
    return ",".join(parts) or DEFAULT_GROUP


def _hyperparams(values: dict[str, Any], field: str) -> Hyperparams:
    try:
        return Hyperparams.model_validate(values)
    except ValidationError as exc:
        error = validation_failed(exc, "hyperparams", Hyperparams)
        message = error.message
        raise invalid_field(field, message) from None


def _at(hp: Hyperparams, key: str) -> Any:
    """The validated value at a variation path, as JSON would hold it (`1` for a float field is `1.0`)."""
    value: Any = hp
    for part in key.split("."):
        value = getattr(value, part)
    return value.model_dump() if isinstance(value, BaseModel) else value


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    return "a string" if isinstance(value, str) else type(value).__name__


def _coerced(base: dict[str, Any], key: str, values: list[Any]) -> list[Any]:
    """Each value as the hyperparameter holds it, refusing one of another JSON type (pydantic would take `true`
    as 1 and `1` as true) and one listed twice once coerced (`1` and `1.0` would be two groups of one config)."""
    field = f"config.variations.{key}"
    seen: list[Any] = []
    result: list[Any] = []
    for index, value in enumerate(values):
        where = f"{field}[{index}]"
        held = _at(_hyperparams(_with(base, key, value), where), key)
        if value is not None and _kind(value) != _kind(held):
            raise invalid_field(where, f"must be {_kind(held)}, not {_kind(value)}")
        if held in seen:
            raise invalid_field(where, f"lists {_label(held)} twice (also at [{seen.index(held)}])")
        seen.append(held)
        # An object keeps the keys listed (coerced), not every default: it names the group, and applied to the
        # base it gives the same hyperparameters.
        result.append({name: held[name] for name in value if name in held} if isinstance(value, dict) else held)
    return result


def expand(sweep: SweepConfig, base: dict[str, Any], max_runs: int) -> list[GridPoint]:
    """Every combination of the variations' values applied to `base`, validated; in a stable order."""
    try:
        Hyperparams.model_validate(base)
    except ValidationError as exc:
        raise validation_failed(exc, "config.hyperparams", Hyperparams) from None
    keys = list(sweep.variations)
    variations: dict[str, list[Any]] = {}
    for key in keys:
        _check_path(key)
        if not sweep.variations[key]:
            raise invalid_field(f"config.variations.{key}", "must list at least one value")
        variations[key] = _coerced(base, key, sweep.variations[key])
    size = math.prod(len(values) for values in variations.values())
    if size > max_runs:
        raise invalid_field(
            "config.variations", f"the grid has {size} runs; at most {max_runs} (setting max_sweep_runs)"
        )
    points = []
    for combination in itertools.product(*(variations[key] for key in keys)):
        assignment = dict(zip(keys, combination, strict=True))
        values = base
        for key, value in assignment.items():
            values = _with(values, key, value)
        hp = _hyperparams(values, "config.variations")
        points.append(GridPoint(group_label(assignment), hp, assignment.get(SEED_KEY, hp.seed)))
    return points


def merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """`override` on top of `base`, nested objects merged key by key (a stored model's hyperparams + the sweep's)."""
    result = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(result.get(key), dict):
            result[key] = merge(result[key], value)
        else:
            result[key] = copy.deepcopy(value)
    return result


# ---- command sweeps -----------------------------------------------------------------------------------------

JOB_FIELDS = ("cwd", "env", "gpus")
"""What a command sweep gives its jobs besides the command, checked as `POST /api/v1/jobs` checks them."""
PLACEHOLDER = re.compile(r"\{\{|\}\}|\{([^{}\s]+)\}")
"""`{name}` (no spaces) is a variation's value; `{{` and `}}` are literal braces (as in Python's str.format);
any other brace is left as it is."""


@dataclass(frozen=True, slots=True)
class CommandPoint:
    group: str
    command: list[str]
    assignment: dict[str, Any]
    seed: Any


def _command_sweep(sweep: SweepConfig) -> SweepConfig:
    """A command sweep's shape: no model, no hyperparameters, and the job fields as a job's."""
    for field, value in (("model_id", sweep.model_id), ("architecture", sweep.architecture)):
        if value is not None:
            raise invalid_field(f"config.{field}", "give exactly one of model_id, architecture or command")
    if sweep.hyperparams:
        raise invalid_field("config.hyperparams", "a command sweep varies its command's placeholders, not hyperparams")
    if sweep.cwd is None:
        raise invalid_field("config.cwd", "a command sweep needs the directory its command runs in")
    fields = {name: getattr(sweep, name) for name in ("command", *JOB_FIELDS) if getattr(sweep, name) is not None}
    try:
        JobSpec.model_validate(fields)
    except ValidationError as exc:
        raise validation_failed(exc, "config", JobSpec) from None
    return sweep


def _argument(value: Any) -> str:
    """A variation's value as a command-line argument: strings as they are, anything else as JSON writes it."""
    return value if isinstance(value, str) else json.dumps(value)


def _substitute(arg: str, assignment: dict[str, Any]) -> str:
    def replace(match: re.Match[str]) -> str:
        token = match.group(0)
        if token in ("{{", "}}"):
            return token[0]
        return _argument(assignment[match.group(1)])

    return PLACEHOLDER.sub(replace, arg)


def expand_command(sweep: SweepConfig, max_runs: int) -> list[CommandPoint]:
    """Every combination of the variations, each the command with its placeholders filled in; in a stable order.
    A placeholder that names no variation is a 422 naming the command's item."""
    command: list[str] = list(sweep.command or ())
    for index, arg in enumerate(command):
        for name in PLACEHOLDER.findall(arg):
            if name and name not in sweep.variations:  # "": an escaped brace
                known = ", ".join(sweep.variations) or "none"
                raise invalid_field(
                    f"config.command[{index}]",
                    f"placeholder {{{name}}} names no variation (variations: {known}); write {{{{ and }}}} for "
                    "literal braces",
                )
    for key, values in sweep.variations.items():
        if not values:
            raise invalid_field(f"config.variations.{key}", "must list at least one value")
        for index, value in enumerate(values):
            if value is None or not isinstance(value, str | int | float):
                raise invalid_field(f"config.variations.{key}[{index}]", "must be a string, a number or a boolean")
            if any(_argument(other) == _argument(value) for other in values[:index]):
                raise invalid_field(f"config.variations.{key}[{index}]", f"lists {_argument(value)} twice")
    size = math.prod(len(values) for values in sweep.variations.values())
    if size > max_runs:
        raise invalid_field(
            "config.variations", f"the grid has {size} runs; at most {max_runs} (setting max_sweep_runs)"
        )
    keys = list(sweep.variations)
    points = []
    for combination in itertools.product(*(sweep.variations[key] for key in keys)):
        assignment = dict(zip(keys, combination, strict=True))
        argv = [_substitute(arg, assignment) for arg in command]
        points.append(CommandPoint(group_label(assignment), argv, assignment, assignment.get(SEED_KEY)))
    return points
