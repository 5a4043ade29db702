"""A statistical comparison of an experiment's runs: resolve groups to runs, runs to values, run the test.

Every way the request can fail to describe data is a 422 that names the offending group or run, so a client
can fix the request instead of guessing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pivotd.errors import invalid_field
from pivotd.experiments.stats import TEST_TYPES, Alternative, StatsError, TestOutcome, run_test, summary
from pivotd.store.experiments import Aggregate, ExperimentsReader, MemberRun

# Seed 004 calls Welch's test `two_sample_t_test`; the other spellings are what people type.
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


async def compare(reader: ExperimentsReader, experiment_id: str, request: Comparison) -> dict[str, Any]:
    """Run the comparison; returns the result document (without id and timestamps)."""
    test = canonical_test(request.test_type)
    resolved = await _resolve(reader, experiment_id, request.groups)
    pairing = _pair(resolved) if test == "paired_t_test" else None
    refs = [run.ref for runs in resolved.values() for run in runs]
    values = await reader.metric_values(refs, request.metric, request.aggregate)
    lacking = [run.run_id for runs in resolved.values() for run in runs if run.ref not in values]
    if lacking:
        raise invalid_field("metric", f"run(s) without a {request.metric!r} scalar: {', '.join(lacking)}")
    samples = {label: [values[run.ref] for run in runs] for label, runs in resolved.items()}
    try:
        outcome = run_test(test, samples, request.alpha, request.alternative)
    except StatsError as exc:
        raise invalid_field("groups", str(exc)) from None
    document = _document(outcome, request, samples)
    document |= {"test": test, "runs": {label: [run.run_id for run in runs] for label, runs in resolved.items()}}
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
            # Seed 004's names for the same three facts.
            "significance": significance,
            "effect_magnitude": outcome.magnitude,
            "practical_significance": sentence,
        },
    }
