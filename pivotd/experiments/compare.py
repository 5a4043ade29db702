"""A statistical comparison of an experiment's runs: resolve groups to runs, runs to values, run the test.

Every way the request can fail to describe data is a 422 that names the offending group or run, so a client
can fix the request instead of guessing. Only runs whose values are results enter a test (`report.counts`, as in
exports): a queued or training run has no final value yet, a failed or cancelled one only a partial one. Runs left
out are listed in `excluded_runs` with a `note`; asked while the experiment still runs, the note says so, and a
test those finished runs cannot support yet is a 409 naming the state rather than a 422 about the data.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pivotd.errors import Conflict, ValidationFailed, invalid_field
from pivotd.experiments.report import counts
from pivotd.experiments.stats import StatsError, TestOutcome, run_test, summary
from pivotd.store.experiments import ExperimentsReader, MemberRun
from shared.models.experiments import (
    FINAL_EXPERIMENT_STATUSES,
    TEST_TYPES,
    Aggregate,
    Alternative,
    ExperimentRunStatus,
)

# The experiments API names Welch's test `two_sample_t_test`; the other spellings are what people type.
TEST_ALIASES = {
    "two_sample_t_test": "t_test",
    "welch_t_test": "t_test",
    "mann_whitney_u": "mann_whitney",
    "one_way_anova": "anova",
}


@dataclass(frozen=True, slots=True)
class Comparison:
    test_type: str
    groups: list[str] | dict[str, list[str]]
    metric: str
    alpha: float
    alternative: Alternative
    aggregate: Aggregate


def canonical_test(test_type: str) -> str:
    test = TEST_ALIASES.get(test_type, test_type)
    if test not in TEST_TYPES:
        known = ", ".join((*TEST_TYPES, *TEST_ALIASES))
        raise invalid_field("test_type", f"unknown test {test_type!r}; one of {known}")
    return test


async def _resolve(
    reader: ExperimentsReader, experiment_id: str, groups: list[str] | dict[str, list[str]]
) -> dict[str, list[MemberRun]]:
    if isinstance(groups, list):
        if len(set(groups)) != len(groups):
            raise invalid_field("groups", "a group label is listed twice")
        resolved = {}
        for index, label in enumerate(groups):
            runs = await reader.group_runs(experiment_id, label)
            if not runs:
                raise invalid_field(f"groups[{index}]", f"experiment {experiment_id} has no runs in group {label!r}")
            resolved[label] = runs
        return resolved
    wanted = [run_id for run_ids in groups.values() for run_id in run_ids]
    found = await reader.runs_by_id(wanted) if wanted else {}
    missing = [run_id for run_id in wanted if run_id not in found]
    if missing:
        raise invalid_field("groups", f"run(s) not found: {', '.join(missing)}")
    return {label: [found[run_id] for run_id in run_ids] for label, run_ids in groups.items()}


def _seed(run: MemberRun) -> Any:
    for source in (run.metadata, run.hyperparameters, run.config):
        if "seed" in source:
            return source["seed"]
    return None


def _pair(resolved: dict[str, list[MemberRun]]) -> str:
    """Order both groups so position i pairs run i with its counterpart: by seed when every run has one.

    Runs without seeds keep their order (the order given, or creation order for group labels).
    """
    seeds = {label: [_seed(run) for run in runs] for label, runs in resolved.items()}
    if any(seed is None for values in seeds.values() for seed in values):
        return "order"
    sets = [set(map(str, values)) for values in seeds.values()]
    if any(len(s) != len(values) for s, values in zip(sets, seeds.values(), strict=True)):
        raise invalid_field("groups", "two runs of one group share a seed; cannot pair them")
    if len(sets) == 2 and sets[0] != sets[1]:
        unmatched = sorted(sets[0] ^ sets[1])
        raise invalid_field("groups", f"seeds without a partner in the other group: {', '.join(unmatched)}")
    for runs in resolved.values():
        runs.sort(key=lambda run: str(_seed(run)))
    return "seed"


async def _state(reader: ExperimentsReader, experiment_id: str) -> str | None:
    """`experiment exp_x is running: 2 of 6 runs finished` while it has runs still to finish, else None."""
    row = await reader.get(experiment_id)
    if row.status in FINAL_EXPERIMENT_STATUSES:
        return None
    progress = await reader.progress(experiment_id)
    return f"experiment {experiment_id} is {row.status}: {progress.finished} of {progress.total} runs finished"


def _note(state: str | None, resolved: dict[str, list[MemberRun]], excluded: dict[str, list[MemberRun]]) -> str | None:
    left_out = [run for runs in excluded.values() for run in runs]
    if not left_out:
        return None
    if state is not None:
        reporting = any(run.status == ExperimentRunStatus.RUNNING for runs in resolved.values() for run in runs)
        scope = "finished runs and external runs still reporting" if reporting else "finished runs only"
        return f"{state}; results are for {scope}"
    by_status: dict[str, int] = {}
    for run in left_out:
        by_status[run.status] = by_status.get(run.status, 0) + 1
    tally = ", ".join(f"{count} {status}" for status, count in by_status.items())
    return f"left out {len(left_out)} run(s) that did not complete ({tally}); results are for completed runs only"


def _waiting(
    state: str | None, resolved: dict[str, list[MemberRun]], excluded: dict[str, list[MemberRun]], paired: bool
) -> Conflict | None:
    """The 409 for a test that the finished runs cannot support yet but the unfinished ones may, else None."""
    if state is None:
        return None
    short = [label for label, runs in resolved.items() if len(runs) < 2 and excluded[label]]
    if short:
        groups = ", ".join(repr(label) for label in short)
        reason = f"group(s) {groups} have fewer than 2 finished runs"
    elif paired and any(excluded.values()) and len({len(runs) for runs in resolved.values()}) > 1:
        reason = "the paired groups have different numbers of finished runs"
    else:
        return None
    return Conflict(f"{state}; {reason}; ask again once more runs have finished", details={"groups": list(resolved)})


async def compare(reader: ExperimentsReader, experiment_id: str, request: Comparison) -> dict[str, Any]:
    """Run the comparison; returns the result document (without id and timestamps)."""
    test = canonical_test(request.test_type)
    everything = await _resolve(reader, experiment_id, request.groups)
    resolved = {label: [run for run in runs if counts(run)] for label, runs in everything.items()}
    excluded = {label: [run for run in runs if not counts(run)] for label, runs in everything.items()}
    state = await _state(reader, experiment_id)
    waiting = _waiting(state, resolved, excluded, test == "paired_t_test")
    if waiting is not None:
        raise waiting
    try:
        pairing = _pair(resolved) if test == "paired_t_test" else None
    except ValidationFailed as exc:
        if state is None or not any(excluded.values()):
            raise
        raise Conflict(f"{state}; {exc.message}; ask again once more runs have finished", exc.details) from None
    note = _note(state, resolved, excluded)
    refs = [run.ref for runs in resolved.values() for run in runs]
    values = await reader.metric_values(refs, request.metric, request.aggregate) if refs else {}
    lacking = [run.run_id for runs in resolved.values() for run in runs if run.ref not in values]
    if lacking:
        # An external run still running may not have posted the metric yet: say the experiment is running.
        message = f"run(s) without a {request.metric!r} scalar: {', '.join(lacking)}"
        raise invalid_field("metric", message if state is None else f"{state}; {message}")
    samples = {label: [values[run.ref] for run in runs] for label, runs in resolved.items()}
    try:
        outcome = run_test(test, samples, request.alpha, request.alternative)
    except StatsError as exc:
        raise invalid_field("groups", f"{exc}; {note}" if note else str(exc)) from None
    document = _document(outcome, request, samples)
    document |= {
        "test": test,
        "runs": {label: [run.run_id for run in runs] for label, runs in resolved.items()},
        "note": note,
        "excluded_runs": {label: [run.run_id for run in runs] for label, runs in excluded.items() if runs},
    }
    if pairing is not None:
        document["pairing"] = pairing
    return document


def _document(outcome: TestOutcome, request: Comparison, samples: dict[str, list[float]]) -> dict[str, Any]:
    sentence = summary(outcome, request.metric)
    significance = "significant" if outcome.significant else "not_significant"
    return {
        "test_type": request.test_type,
        "metric": request.metric,
        "aggregate": request.aggregate,
        "groups": list(samples),
        "values": samples,
        "statistic": outcome.statistic,
        "p_value": outcome.p_value,
        "degrees_of_freedom": outcome.degrees_of_freedom,
        "effect_size": outcome.effect_size,
        "effect_size_type": outcome.effect_size_type,
        "effect_sizes": outcome.effect_sizes,
        "confidence_interval": outcome.confidence_interval,
        "confidence_level": 1 - outcome.alpha,
        "alpha": outcome.alpha,
        "alternative": outcome.alternative,
        "sample_sizes": [group.n for group in outcome.groups],
        "means": [group.mean for group in outcome.groups],
        "std_devs": [group.std for group in outcome.groups],
        "group_stats": [{"label": g.label, "n": g.n, "mean": g.mean, "std": g.std} for g in outcome.groups],
        **outcome.extra,
        "interpretation": {
            "significant": outcome.significant,
            "magnitude": outcome.magnitude,
            "summary": sentence,
            # The same three facts under the names the experiments API documents.
            "significance": significance,
            "effect_magnitude": outcome.magnitude,
            "practical_significance": sentence,
        },
    }
