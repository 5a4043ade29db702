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
from shared.models.runs import RunState

NO_GROUP = "(none)"
"""The label of runs that joined an experiment without a group."""


def counts(run: MemberRun) -> bool:
    """Whether the run's value enters a summary (see the module docstring)."""
    return run.state == RunState.SUCCEEDED or (run.kind == "external" and run.state == RunState.RUNNING)


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


def welch(rows: list[GroupSummary]) -> dict[str, Any]:
    """Welch's t-test between two rows of one metric; `{"error"}` when the data cannot support it."""
    labels = [f"{row.experiment_name} / {row.group}" for row in rows]
    if labels[0] == labels[1]:
        labels = [f"{row.experiment_id} / {row.group}" for row in rows]
    base = {"test": "welch_t_test", "metric": rows[0].metric, "groups": labels}
    try:
        outcome = run_test("t_test", {labels[0]: rows[0].values, labels[1]: rows[1].values})
    except StatsError as exc:
        return base | {"error": str(exc)}
    return base | {
        "statistic": outcome.statistic,
        "degrees_of_freedom": outcome.degrees_of_freedom,
        "p_value": outcome.p_value,
        "effect_size": outcome.effect_size,
        "effect_size_type": outcome.effect_size_type,
        "confidence_interval": outcome.confidence_interval,
        "significant": outcome.significant,
    }


def welch_tests(rows: list[GroupSummary]) -> dict[str, dict[str, Any]]:
    """Per metric that exactly two rows report (two experiments of one group, or one with two groups), Welch's
    test between them; more rows have no single pairwise test."""
    tests = {}
    for metric in metrics_of(rows):
        pair = [row for row in rows if row.metric == metric]
        if len(pair) == 2:
            tests[metric] = welch(pair)
    return tests


def metrics_of(rows: list[GroupSummary]) -> list[str]:
    return list(dict.fromkeys(row.metric for row in rows))


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


def latex_table(rows: list[GroupSummary], tests: dict[str, dict[str, Any]], label: str = "tab:comparison") -> str:
    """A booktabs table (needs `\\usepackage{booktabs}`), the best mean per metric in bold, Welch's tests below.

    One metric: a row per experiment and group with $n$, mean $\\pm$ std, the 95% CI and the best run. Several
    (experiments judged by none report every final metric): a paper's results table, a row per experiment and
    group, a column per metric, mean $\\pm$ std in each cell."""
    metrics = metrics_of(rows)
    best: dict[str, float] = {}
    for metric in metrics:
        means = [row.mean for row in rows if row.metric == metric and row.mean is not None]
        if means:
            best[metric] = min(means) if lower_is_better(metric) else max(means)
    names = latex_escape(", ".join(metrics))
    shown = _shown_names(rows)
    if len(metrics) <= 1:
        caption = (
            f"Comparison of {names}: mean $\\pm$ standard deviation over runs, 95\\% confidence interval of the mean, "
            "and best run. The best mean is in bold."
        )
        columns, header, body = (
            "lllrccr",
            "Experiment & Group & Metric & $n$ & Mean $\\pm$ Std & 95\\% CI & Best",
            [_long_row(row, shown, best) for row in rows],
        )
    else:
        caption = (
            f"Final {names}: mean $\\pm$ standard deviation over each group's runs. The best mean per metric is in "
            "bold (lowest for a loss); a cell over fewer runs than $n$ gives its own."
        )
        columns = "llr" + "c" * len(metrics)
        header = " & ".join(["Experiment", "Group", "$n$", *(latex_escape(metric) for metric in metrics)])
        body = _wide_rows(rows, metrics, shown, best)
    lines = [
        "% Requires \\usepackage{booktabs} in the preamble.",
        "\\begin{table}[htbp]",
        "\\centering",
        f"\\caption{{{caption}}}",
        f"\\label{{{label}}}",
        f"\\begin{{tabular}}{{{columns}}}",
        "\\toprule",
        f"{header} \\\\",
        "\\midrule",
        *(line + " \\\\" for line in body),
        "\\bottomrule",
        "\\end{tabular}",
    ]
    done = [test for test in tests.values() if "error" not in test]
    if done:
        lines += ["\\par\\smallskip", "{\\footnotesize " + " \\\\\n".join(_welch_line(test) for test in done) + "}"]
    lines.append("\\end{table}")
    return "\n".join(lines) + "\n"


def _mean_std(row: GroupSummary, best: dict[str, float]) -> str:
    if row.mean is None:
        return "--"
    cell = f"{_number(row.mean)} $\\pm$ {_number(row.std)}"
    return f"\\textbf{{{cell}}}" if best.get(row.metric) == row.mean else cell


def _shown_names(rows: list[GroupSummary]) -> dict[str, str]:
    """Each experiment's name, escaped; with its id where two experiments share a name (clones do)."""
    names = {row.experiment_id: row.experiment_name for row in rows}
    shared = {name for name in names.values() if list(names.values()).count(name) > 1}
    return {eid: latex_escape(f"{name} ({eid})" if name in shared else name) for eid, name in names.items()}


def _long_row(row: GroupSummary, shown: dict[str, str], best: dict[str, float]) -> str:
    interval = mean_interval(row.values)
    ci = "--" if interval is None else f"[{_number(interval[0])}, {_number(interval[1])}]"
    cells = [shown[row.experiment_id], latex_escape(row.group), latex_escape(row.metric)]
    return " & ".join([*cells, str(row.n), _mean_std(row, best), ci, _number(row.best)])


def _wide_rows(
    rows: list[GroupSummary], metrics: list[str], shown: dict[str, str], best: dict[str, float]
) -> list[str]:
    by_group: dict[tuple[str, str], dict[str, GroupSummary]] = {}
    for row in rows:
        by_group.setdefault((row.experiment_id, row.group), {})[row.metric] = row
    lines = []
    for (experiment_id, group), cells in by_group.items():
        n = max(cell.n for cell in cells.values())
        values = []
        for metric in metrics:
            cell = cells.get(metric)
            text = "--" if cell is None else _mean_std(cell, best)
            if cell is not None and cell.mean is not None and cell.n < n:
                text += f" ($n={cell.n}$)"
            values.append(text)
        lines.append(" & ".join([shown[experiment_id], latex_escape(group), str(n), *values]))
    return lines


def _welch_line(test: dict[str, Any]) -> str:
    first, second = (latex_escape(label) for label in test["groups"])
    return (
        f"Welch's $t$-test on {latex_escape(test['metric'])}, {first} vs.\\ {second}: "
        f"$t({test['degrees_of_freedom']:.2f}) = {test['statistic']:.3f}$, $p {_p(test['p_value'])}$, "
        f"Hedges' $g = {test['effect_size']:.3f}$."
    )
