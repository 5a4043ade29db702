"""Exports and comparison reports: per-group summaries of a metric, flattened CSV rows, a booktabs LaTeX table.

Pure functions over runs and values; the routes in `pivotd.api.exports` gather the data and pick the format.
Which runs count: completed runs, and external runs still running (a script that never says how its run ended,
such as one posting with curl, keeps it running until it is lost); a failed, cancelled, lost or unfinished managed
run's last value is a partial result and would bias the mean.
"""

from __future__ import annotations

import csv
import io
import json
import statistics
from dataclasses import dataclass
from typing import Any

from pivotd.experiments.stats import StatsError, mean_interval, run_test
from pivotd.store.experiments import MemberRun

NO_GROUP = "(none)"
"""The label of runs that joined an experiment without a group."""


def counts(run: MemberRun) -> bool:
    """Whether the run's value enters a summary (see the module docstring)."""
    return run.status == "completed" or (run.kind == "external" and run.status == "running")


def lower_is_better(metric: str) -> bool:
    return "loss" in metric.lower()


@dataclass(frozen=True, slots=True)
class GroupSummary:
    experiment_id: str
    experiment_name: str
    group: str
    metric: str
    values: list[float]
    run_ids: list[str]

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def mean(self) -> float | None:
        return statistics.fmean(self.values) if self.values else None

    @property
    def std(self) -> float | None:
        return statistics.stdev(self.values) if len(self.values) > 1 else None

    @property
    def best(self) -> float | None:
        if not self.values:
            return None
        return min(self.values) if lower_is_better(self.metric) else max(self.values)

    def document(self) -> dict[str, Any]:
        return {
            "experiment_id": self.experiment_id,
            "experiment_name": self.experiment_name,
            "group": self.group,
            "metric": self.metric,
            "n": self.n,
            "mean": self.mean,
            "std": self.std,
            "ci95": mean_interval(self.values),
            "best": self.best,
            "run_ids": self.run_ids,
        }


def summarize(
    experiment_id: str, name: str, metric: str, runs: list[MemberRun], values: dict[int, float]
) -> list[GroupSummary]:
    """One summary per group of `runs` (in first-seen order), over the runs that count and have a value."""
    groups: dict[str, GroupSummary] = {}
    for run in runs:
        label = run.group or NO_GROUP
        summary = groups.setdefault(label, GroupSummary(experiment_id, name, label, metric, [], []))
        if counts(run) and run.ref in values:
            summary.values.append(values[run.ref])
            summary.run_ids.append(run.run_id)
    return list(groups.values())


def welch(rows: list[GroupSummary]) -> dict[str, Any] | None:
    """Welch's t-test between exactly two rows (else None); `{"error"}` when the data cannot support it."""
    if len(rows) != 2:
        return None
    labels = [f"{row.experiment_name} / {row.group}" for row in rows]
    if labels[0] == labels[1]:
        labels = [f"{row.experiment_id} / {row.group}" for row in rows]
    try:
        outcome = run_test("t_test", {labels[0]: rows[0].values, labels[1]: rows[1].values})
    except StatsError as exc:
        return {"test": "welch_t_test", "groups": labels, "error": str(exc)}
    return {
        "test": "welch_t_test",
        "groups": labels,
        "statistic": outcome.statistic,
        "degrees_of_freedom": outcome.degrees_of_freedom,
        "p_value": outcome.p_value,
        "effect_size": outcome.effect_size,
        "effect_size_type": outcome.effect_size_type,
        "confidence_interval": outcome.confidence_interval,
        "significant": outcome.significant,
    }


# ---- CSV ----------------------------------------------------------------------------------------------------


def flatten(value: Any, prefix: str) -> dict[str, Any]:
    """Nested objects as dotted columns; lists as JSON text (a cell holds one value)."""
    if isinstance(value, dict):
        flat: dict[str, Any] = {}
        for key, inner in value.items():
            flat |= flatten(inner, f"{prefix}.{key}")
        return flat
    if isinstance(value, list):
        return {prefix: json.dumps(value)}
    return {prefix: value}


def to_csv(rows: list[dict[str, Any]], leading: list[str]) -> str:
    """`leading` columns first, then every other column any row has, sorted."""
    rest = sorted({key for row in rows for key in row} - set(leading))
    out = io.StringIO()
    writer = csv.DictWriter(out, [*leading, *rest], lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()


# ---- LaTeX --------------------------------------------------------------------------------------------------

_LATEX_SPECIALS = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
}


def latex_escape(text: str) -> str:
    return "".join(_LATEX_SPECIALS.get(char, char) for char in text)


def _number(value: float | None) -> str:
    return "--" if value is None else f"{value:.4f}"


def _p(value: float) -> str:
    return "< 0.001" if value < 0.001 else f"= {value:.3f}"


def latex_table(rows: list[GroupSummary], test: dict[str, Any] | None, label: str = "tab:comparison") -> str:
    """A booktabs table (needs `\\usepackage{booktabs}`): one row per experiment and group, the best mean per
    metric in bold, mean $\\pm$ std, the 95% CI, and Welch's test below when two rows are compared."""
    metrics = list(dict.fromkeys(row.metric for row in rows))
    best: dict[str, float] = {}
    for metric in metrics:
        means = [row.mean for row in rows if row.metric == metric and row.mean is not None]
        if means:
            best[metric] = min(means) if lower_is_better(metric) else max(means)
    lines = [
        "% Requires \\usepackage{booktabs} in the preamble.",
        "\\begin{table}[htbp]",
        "\\centering",
        f"\\caption{{Comparison of {latex_escape(', '.join(metrics))}: mean $\\pm$ standard deviation over runs, "
        "95\\% confidence interval of the mean, and best run. The best mean is in bold.}",
        f"\\label{{{label}}}",
        "\\begin{tabular}{lllrccr}",
        "\\toprule",
        "Experiment & Group & Metric & $n$ & Mean $\\pm$ Std & 95\\% CI & Best \\\\",
        "\\midrule",
    ]
    for row in rows:
        mean = row.mean
        cell = "--" if mean is None else f"{_number(mean)} $\\pm$ {_number(row.std)}"
        if mean is not None and best.get(row.metric) == mean:
            cell = f"\\textbf{{{cell}}}"
        interval = mean_interval(row.values)
        ci = "--" if interval is None else f"[{_number(interval[0])}, {_number(interval[1])}]"
        cells = [latex_escape(row.experiment_name), latex_escape(row.group), latex_escape(row.metric)]
        lines.append(" & ".join([*cells, str(row.n), cell, ci, _number(row.best)]) + " \\\\")
    lines += ["\\bottomrule", "\\end{tabular}"]
    if test is not None and "error" not in test:
        first, second = (latex_escape(label) for label in test["groups"])
        lines += [
            "\\par\\smallskip",
            f"{{\\footnotesize Welch's $t$-test, {first} vs.\\ {second}: "
            f"$t({test['degrees_of_freedom']:.2f}) = {test['statistic']:.3f}$, $p {_p(test['p_value'])}$, "
            f"Hedges' $g = {test['effect_size']:.3f}$.}}",
        ]
    lines.append("\\end{table}")
    return "\n".join(lines) + "\n"
