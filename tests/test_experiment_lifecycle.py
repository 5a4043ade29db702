"""Experiment lifecycle rules that need no training: what `start` refuses (422 naming the field), illegal
transitions (409), clone; and exports and comparison reports over runs posted by a script."""

from __future__ import annotations

import csv
import io
import json
import statistics
from typing import Any

import httpx
import pytest
from scipy import stats

from pivotd.experiments.report import GroupSummary, latex_escape, latex_table
from pivotd.experiments.sweep import expand, group_label, parse
from tests.payloads import SEED_004_CREATE_EXPERIMENT

MLP = {
    "input_size": 784,
    "layers": [{"type": "linear", "in": 784, "out": 16}, {"type": "relu"}, {"type": "linear", "in": 16, "out": 10}],
}
ENSEMBLE = {"type": "ensemble", "models": ["gpt-4", "claude-3"], "voting_strategy": "majority", "dataset": "mmlu"}

# Each test creates its own experiments and runs under run ids of its own: one daemon for the module, except the
# tests that count every experiment or model the daemon holds.
pytestmark = pytest.mark.shared_daemon


def sweep(**changes: Any) -> dict[str, Any]:
    config = {
        "type": "sweep",
        "architecture": MLP,
        "hyperparams": {"epochs": 1, "max_samples": 100, "dataset": "digits"},
        "variations": {"seed": [1, 2], "optimizer.lr": [0.1, 0.01]},
        "metric": "val_accuracy",
    }
    return {k: v for k, v in (config | changes).items() if v is not None}


async def create(http: httpx.AsyncClient, name: str, config: dict[str, Any]) -> str:
    response = await http.post("/api/v1/experiments", json={"experiment": {"name": name, "config": config}})
    assert response.status_code == 201, response.text
    experiment_id: str = response.json()["data"]["id"]
    return experiment_id


def error(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()["error"]
    assert body["code"] == code and set(body) == {"code", "message", "details"}
    return body


async def test_start_refuses_a_config_that_is_not_a_sweep(http: httpx.AsyncClient) -> None:
    exp_id = await create(http, "ensemble", ENSEMBLE)
    body = error(await http.post(f"/api/v1/experiments/{exp_id}/start"), 422, "validation_error")
    assert body["details"][0]["field"] == "config.type" and "'ensemble'" in body["message"]
    assert "not runnable" in body["message"]
    detail = (await http.get(f"/api/v1/experiments/{exp_id}")).json()["data"]
    assert detail["status"] == "pending" and detail["runs"] == [] and detail["started_at"] is None


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"architecture": None}, "config.model_id"),
        ({"model_id": "m_0000"}, "config.model_id"),
        ({"architecture": None, "model_id": "m_missing"}, "config.model_id"),
        ({"architecture": {**MLP, "layers": [{"type": "linear", "in": 784, "out": 7}]}}, "config.architecture"),
        ({"architecture": {"layers": "no"}}, "config.architecture.layers"),
        ({"hyperparams": {"epochs": 0}}, "config.hyperparams.epochs"),
        ({"hyperparams": {"layerwise_overhead": 1.5}}, "config.hyperparams.layerwise_overhead"),
        ({"hyperparams": {"optimiser": {}}}, "config.hyperparams.optimiser"),
        ({"variations": {"optimizer.lrr": [0.1]}}, "config.variations.optimizer.lrr"),
        ({"variations": {"learning_rate": [0.1]}}, "config.variations.learning_rate"),
        ({"variations": {"epochs.x": [1]}}, "config.variations.epochs.x"),
        ({"variations": {"seed": []}}, "config.variations.seed"),
        ({"variations": {"seed": [1, 1]}}, "config.variations.seed[1]"),
        ({"variations": {"optimizer.lr": [0.1, -1]}}, "config.variations.optimizer.lr[1]"),
        # Listed twice once coerced (one config in two groups), or of another JSON type than the hyperparameter.
        ({"variations": {"optimizer.lr": [1, 1.0]}}, "config.variations.optimizer.lr[1]"),
        ({"variations": {"optimizer": [{"type": "sgd"}, {}]}}, "config.variations.optimizer[1]"),
        ({"variations": {"seed": [True, False]}}, "config.variations.seed[0]"),
        ({"variations": {"shuffle": [False, 1]}}, "config.variations.shuffle[1]"),
        ({"variations": {"batch_size": [16, "32"]}}, "config.variations.batch_size[1]"),
        ({"variations": {"batch_size": "32"}}, "config.variations.batch_size"),
        ({"variations": {"seed": list(range(17)), "batch_size": list(range(1, 17))}}, "config.variations"),
        ({"metric": "accuracy"}, "config.metric"),
        ({"extra": 1}, "config.extra"),
    ],
)
async def test_bad_sweeps_are_refused_at_creation_naming_the_field(
    http: httpx.AsyncClient, changes: dict[str, Any], field: str
) -> None:
    """What `start` would refuse is refused when the sweep is created or its config changed: it never sits
    `pending` waiting for a start that cannot succeed."""
    body = {"experiment": {"name": "bad sweep", "config": sweep(**changes)}}
    before = (await http.get("/api/v1/experiments")).json()["meta"]["total"]
    refused = error(await http.post("/api/v1/experiments", json=body), 422, "validation_error")
    assert f"experiment.{field}" in [d["field"] for d in refused["details"]], refused
    assert (await http.get("/api/v1/experiments")).json()["meta"]["total"] == before
    exp_id = await create(http, "good sweep", sweep())
    patch = {"experiment": {"config": sweep(**changes)}}
    refused = error(await http.patch(f"/api/v1/experiments/{exp_id}", json=patch), 422, "validation_error")
    assert f"experiment.{field}" in [d["field"] for d in refused["details"]], refused
    assert (await http.get(f"/api/v1/experiments/{exp_id}")).json()["data"]["config"] == sweep()


@pytest.mark.own_daemon  # counts every model or experiment
async def test_start_refuses_a_sweep_whose_model_went_away(http: httpx.AsyncClient) -> None:
    """The one check that can change after creation: the stored model it names. Refused at start, writing
    nothing; the experiment stays pending and a PATCH naming another model makes it startable."""
    created = await http.post("/api/models", json={"architecture": MLP, "hyperparams": {"epochs": 1}})
    model_id = created.json()["model_id"]
    exp_id = await create(http, "on a model", sweep(architecture=None, model_id=model_id))
    assert (await http.delete(f"/api/v1/models/{model_id}")).status_code == 204
    body = error(await http.post(f"/api/v1/experiments/{exp_id}/start"), 422, "validation_error")
    assert body["details"] == [{"field": "config.model_id", "message": f"no model {model_id!r}"}]
    detail = (await http.get(f"/api/v1/experiments/{exp_id}")).json()["data"]
    assert (detail["status"], detail["total_runs"]) == ("pending", 0)
    assert (await http.get("/api/v1/models")).json()["meta"]["total"] == 0  # the refused start made no model
    # Unknown experiment and bad config together: the 404 comes first.
    error(await http.patch("/api/v1/experiments/exp_missing", json={"experiment": {"config": sweep(metric="x")}}),
          404, "not_found")  # fmt: skip


@pytest.mark.own_daemon  # counts every model or experiment
async def test_transitions_of_an_experiment_that_never_started(http: httpx.AsyncClient) -> None:
    exp_id = await create(http, "idle", sweep())
    for action, past in (("pause", "paused"), ("resume", "resumed")):
        body = error(await http.post(f"/api/v1/experiments/{exp_id}/{action}"), 409, "conflict")
        assert body["message"].endswith(f"has not been started; only a started experiment can be {past}")
    # Called off before it ever ran: cancelled, and no longer startable (a clone is).
    cancelled = await http.post(f"/api/v1/experiments/{exp_id}/cancel")
    assert cancelled.status_code == 200, cancelled.text
    data = cancelled.json()["data"]
    assert (data["status"], data["total_runs"], data["started_at"]) == ("cancelled", 0, None)
    assert data["completed_at"] is not None
    body = error(await http.post(f"/api/v1/experiments/{exp_id}/start"), 409, "conflict")
    assert "was cancelled" in body["message"]
    assert "is cancelled" in error(await http.post(f"/api/v1/experiments/{exp_id}/cancel"), 409, "conflict")["message"]
    assert (await http.get(f"/api/v1/experiments/{exp_id}")).json()["data"]["total_runs"] == 0
    assert (await http.get("/api/v1/models")).json()["meta"]["total"] == 0  # the refused start made no model
    for action in ("start", "pause", "resume", "cancel"):
        error(await http.post(f"/api/v1/experiments/exp_missing/{action}"), 404, "not_found")
    error(await http.post("/api/v1/experiments/exp_missing/clone", json={}), 404, "not_found")
    body = error(await http.post(f"/api/v1/experiments/{exp_id}/clone", json={"name": ""}), 422, "validation_error")
    assert body["details"][0]["field"] == "name"


def test_grid_points_carry_the_coerced_values() -> None:
    config = sweep(variations={"optimizer.lr": [1, 0.5], "seed": [3], "shuffle": [False]})
    points = expand(parse(config), config["hyperparams"], 10)
    assert [point.group for point in points] == ["optimizer.lr=1.0,shuffle=false", "optimizer.lr=0.5,shuffle=false"]
    assert [(point.hyperparams.optimizer.lr, point.seed) for point in points] == [(1.0, 3), (0.5, 3)]
    # An object names its group by the keys listed, not by every default it takes.
    config = sweep(variations={"optimizer": [{"type": "sgd", "lr": 1}, {"type": "adam", "lr": 0.001}]})
    points = expand(parse(config), config["hyperparams"], 10)
    assert [point.group for point in points] == ['optimizer={"lr": 1.0, "type": "sgd"}',
                                                 'optimizer={"lr": 0.001, "type": "adam"}']  # fmt: skip
    assert [point.hyperparams.optimizer.type for point in points] == ["sgd", "adam"]


def test_group_labels_name_the_non_seed_variations_in_a_stable_order() -> None:
    assert group_label({"seed": 1, "optimizer.lr": 0.1}) == "optimizer.lr=0.1"
    assert group_label({"optimizer.type": "adam", "batch_size": 32, "seed": 3}) == "batch_size=32,optimizer.type=adam"
    assert group_label({"seed": 7}) == group_label({}) == "default"


def test_latex_escape_covers_every_special() -> None:
    assert latex_escape(r"a_b & 50% $x$ #1 {y} ~z ^w \v") == (
        r"a\_b \& 50\% \$x\$ \#1 \{y\} \textasciitilde{}z \textasciicircum{}w \textbackslash{}v"
    )


def test_a_wide_table_cell_over_fewer_runs_gives_its_n() -> None:
    rows = [
        GroupSummary("exp_1", "A", "g", "accuracy", [0.8, 0.9, 0.7], ["r1", "r2", "r3"]),
        GroupSummary("exp_1", "A", "g", "bleu", [30.0, 32.0], ["r1", "r2"]),
        GroupSummary("exp_1", "A", "h", "accuracy", [0.5, 0.6], ["r4", "r5"]),
    ]
    tex = latex_table(rows, {})
    assert "A & g & 3 & \\textbf{0.8000 $\\pm$ 0.1000} & \\textbf{31.0000 $\\pm$ 1.4142} ($n=2$) \\\\" in tex
    assert "A & h & 2 & 0.5500 $\\pm$ 0.0707 & -- \\\\" in tex and "footnotesize" not in tex


# ---- exports over runs a script posted ----------------------------------------------------------------------

VALUES = {"lr=0.1": [0.91, 0.93, 0.92], "lr=0.01": [0.85, 0.88, 0.86]}


async def seeded(http: httpx.AsyncClient, name: str, values: dict[str, list[float]], prefix: str) -> str:
    exp_id = await create(http, name, {"metric": "val_accuracy", "note": "a_b"})
    for number, (group, accuracies) in enumerate(values.items()):
        for index, accuracy in enumerate(accuracies):
            body = {
                "points": [{"step": 1, "values": {"val_accuracy": accuracy, "val_loss": 1 - accuracy}}],
                "experiment_id": exp_id,
                "group": group,
            }
            response = await http.post(f"/api/v1/runs/{prefix}-{number}-{index}/scalars", json=body)
            assert response.status_code == 202, response.text
    return exp_id


def attachment(response: httpx.Response, media: str, suffix: str) -> str:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith(media)
    disposition = response.headers["content-disposition"]
    assert disposition.startswith("attachment; filename=") and disposition.endswith(f'{suffix}"')
    return response.text


async def test_experiment_export_json_and_csv(http: httpx.AsyncClient) -> None:
    exp_id = await seeded(http, "exported", VALUES, "ex")
    events = [
        {"event_name": ["crucible", "model", "inference"], "measurements": {"duration_ms": ms},
         "metadata": {"experiment_id": experiment}, "timestamp": f"2024-01-15T10:35:0{ms}Z"}
        for experiment, ms in ((exp_id, 1), ("exp_other", 2), (exp_id, 3))
    ]  # fmt: skip
    assert (await http.post("/api/v1/telemetry/events", json={"events": events})).json()["data"]["accepted"] == 3
    url = f"/api/v1/experiments/{exp_id}/export"
    document = json.loads(attachment(await http.post(url, json={"format": "json"}), "application/json", ".json"))
    assert document["include"] == ["config", "results", "runs", "telemetry"]
    assert document["experiment"]["id"] == exp_id and document["config"]["metric"] == "val_accuracy"
    assert len(document["runs"]) == 6
    assert [e["measurements"]["duration_ms"] for e in document["telemetry"]] == [1, 3]  # this experiment's only
    assert document["telemetry"][0]["event_name"] == ["crucible", "model", "inference"]
    groups = {g["group"]: g for g in document["results"]["groups"]}
    assert groups["lr=0.1"]["n"] == 3 and groups["lr=0.1"]["mean"] == pytest.approx(0.92)
    assert groups["lr=0.1"]["std"] == pytest.approx(statistics.stdev(VALUES["lr=0.1"]))
    assert groups["lr=0.1"]["best"] == 0.93 and groups["lr=0.01"]["best"] == 0.88
    assert document["results"]["results_summary"]["best_val_accuracy"] == 0.93

    only = json.loads((await http.post(url, json={"include": ["runs"]})).text)
    assert set(only) == {"experiment", "include", "exported_at", "runs"}

    text = attachment(await http.post(url, json={"format": "csv"}), "text/csv", ".csv")
    rows = list(csv.DictReader(io.StringIO(text)))
    assert len(rows) == 6 and list(rows[0])[:3] == ["id", "group", "status"]
    first = next(row for row in rows if row["id"] == "ex-0-1")
    assert first["metrics.val_accuracy"] == "0.93" and first["config.note"] == "a_b"
    assert float(first["group_mean"]) == pytest.approx(0.92) and first["is_best_run"] == "True"
    assert sum(row["is_best_run"] == "True" for row in rows) == 1 and "started_at" in first
    bare = list(csv.DictReader(io.StringIO((await http.post(url, json={"format": "csv", "include": ["runs"]})).text)))
    assert not [key for key in bare[0] if key.startswith(("config.", "group_"))]

    for body, field in (({"format": "xml"}, "format"), ({"include": ["everything"]}, "include[0]")):
        details = error(await http.post(url, json=body), 422, "validation_error")["details"]
        assert field in [d["field"] for d in details]
    error(await http.post("/api/v1/experiments/exp_missing/export", json={}), 404, "not_found")


async def test_comparison_report_in_json_csv_and_latex(http: httpx.AsyncClient) -> None:
    exp_a = await seeded(http, "Baseline_A & co", {"x": VALUES["lr=0.1"]}, "a")
    exp_b = await seeded(http, "Variant 100%", {"y": VALUES["lr=0.01"]}, "b")
    url = "/api/v1/export/comparison"
    body = {"experiment_ids": [exp_a, exp_b], "format": "json", "template": "publication"}
    report = json.loads(attachment(await http.post(url, json=body), "application/json", ".json"))
    rows = report["rows"]
    assert [(r["experiment_id"], r["group"], r["n"]) for r in rows] == [(exp_a, "x", 3), (exp_b, "y", 3)]
    a, b = VALUES["lr=0.1"], VALUES["lr=0.01"]
    interval = stats.t.interval(0.95, 2, loc=statistics.fmean(a), scale=statistics.stdev(a) / 3**0.5)
    assert rows[0]["ci95"] == pytest.approx(list(interval), rel=1e-9)
    direct = stats.ttest_ind(a, b, equal_var=False)
    assert report["metrics"] == ["val_accuracy"] and list(report["welch_tests"]) == ["val_accuracy"]
    welch = report["welch_tests"]["val_accuracy"]
    assert welch["statistic"] == pytest.approx(direct.statistic, rel=1e-9)
    assert welch["p_value"] == pytest.approx(direct.pvalue, rel=1e-9)
    assert welch["effect_size_type"] == "hedges_g" and welch["metric"] == "val_accuracy"

    lines = list(
        csv.DictReader(io.StringIO(attachment(await http.post(url, json=body | {"format": "csv"}), "text/csv", ".csv")))
    )
    assert [line["group"] for line in lines] == ["x", "y"] and float(lines[0]["ci95_low"]) == pytest.approx(interval[0])

    tex = attachment(await http.post(url, json=body | {"format": "latex"}), "application/x-tex", ".tex")
    assert tex.count("\\begin{table}") == tex.count("\\end{table}") == 1
    assert tex.index("\\toprule") < tex.index("\\midrule") < tex.index("\\bottomrule") < tex.index("\\end{tabular}")
    assert "\\caption{" in tex and "\\label{tab:comparison}" in tex and "booktabs" in tex
    assert "Baseline\\_A \\& co" in tex and "Variant 100\\%" in tex
    assert "\\textbf{0.9200 $\\pm$ 0.0100}" in tex and "\\textbf{0.8633" not in tex
    assert f"= {direct.statistic:.3f}$" in tex and "Welch's $t$-test on val\\_accuracy" in tex
    assert f"Hedges' $g = {welch['effect_size']:.3f}$" in tex
    data_rows = [line for line in tex.splitlines() if line.endswith("\\\\") and " & 3 & " in line]
    assert len(data_rows) == 2 and all(line.count(" & ") == 6 for line in data_rows)

    # The metric can be named; with more than two rows there is no pairwise test.
    three = await seeded(http, "three groups", VALUES | {"lr=1": [0.5, 0.6]}, "c")
    loss = json.loads((await http.post(url, json={"experiment_ids": [three], "metric": "val_loss"})).text)
    assert loss["welch_tests"] == {} and {r["metric"] for r in loss["rows"]} == {"val_loss"}
    assert next(r for r in loss["rows"] if r["group"] == "lr=0.1")["best"] == pytest.approx(0.07)

    missing = error(await http.post(url, json={"experiment_ids": [exp_a, "exp_nope"]}), 404, "not_found")
    assert missing["details"] == {"experiment_ids": ["exp_nope"]}
    no_metric = await create(http, "no metric", ENSEMBLE)  # and no runs: nothing to report, and it says so
    details = error(await http.post(url, json={"experiment_ids": [no_metric]}), 422, "validation_error")["details"]
    assert details[0]["field"] == "metric" and "none of its finished runs recorded one" in details[0]["message"]
    for bad, field in (
        ({"experiment_ids": []}, "experiment_ids"),
        ({"experiment_ids": [exp_a], "format": "pdf"}, "format"),
        ({"experiment_ids": [exp_a], "template": "poster"}, "template"),
        ({"experiment_ids": [exp_a], "metric": ""}, "metric"),
        ({"experiment_ids": "exp_1"}, "experiment_ids"),
    ):
        assert field in [d["field"] for d in error(await http.post(url, json=bad), 422, "validation_error")["details"]]


# Seed 004's literal bodies: "Create Experiment" (SEED_004_CREATE_EXPERIMENT) and "Export Comparison Report"
# (only the experiment ids are ours: the daemon makes them).
FINALS = [  # per experiment, per run: the final value of each metric the run recorded
    [{"accuracy": 0.81, "val_loss": 0.52}, {"accuracy": 0.83, "val_loss": 0.48}],
    [{"accuracy": 0.86, "val_loss": 0.47}, {"accuracy": 0.90, "val_loss": 0.41}],
]


async def ensemble(http: httpx.AsyncClient, finals: list[dict[str, float]], prefix: str) -> str:
    response = await http.post("/api/v1/experiments", json=SEED_004_CREATE_EXPERIMENT)
    assert response.status_code == 201, response.text
    experiment_id: str = response.json()["data"]["id"]
    for index, values in enumerate(finals):
        run_id = f"{prefix}-{index}"
        points = [{"step": 0, "values": {key: 0.0 for key in values}}, {"step": 1, "values": values}]
        sent = await http.post(
            f"/api/v1/runs/{run_id}/scalars", json={"points": points, "experiment_id": experiment_id}
        )
        assert sent.status_code == 202, sent.text
        assert (await http.post(f"/api/v1/runs/{run_id}/finish", json={"status": "succeeded"})).status_code == 200
    # A run that crashed recorded another scalar: its partial values are no result, and add no column.
    crash = {"points": [{"step": 0, "values": {"accuracy": 0.1, "grad_norm": 9.0}}], "experiment_id": experiment_id}
    assert (await http.post(f"/api/v1/runs/{prefix}-crash/scalars", json=crash)).status_code == 202
    ended = await http.post(f"/api/v1/runs/{prefix}-crash/finish", json={"status": "failed", "error": "OOM"})
    assert ended.status_code == 200
    return experiment_id


def cell(values: list[float], bold: bool) -> str:
    text = f"{statistics.fmean(values):.4f} $\\pm$ {statistics.stdev(values):.4f}"
    return f"\\textbf{{{text}}}" if bold else text


async def test_seed_comparison_of_experiments_naming_no_metric_reports_every_final_metric(
    http: httpx.AsyncClient,
) -> None:
    ids = [await ensemble(http, finals, f"e{index}") for index, finals in enumerate(FINALS)]
    url = "/api/v1/export/comparison"
    seed_body = {"experiment_ids": ids, "format": "latex", "template": "publication"}
    tex = attachment(await http.post(url, json=seed_body), "application/x-tex", ".tex")
    assert tex.count("\\begin{table}") == tex.count("\\end{table}") == 1 and "\\begin{tabular}{llrcc}" in tex
    assert "Experiment & Group & $n$ & accuracy & val\\_loss \\\\" in tex and "grad" not in tex
    # One row per experiment (the two share seed 004's name, so the id tells them apart), a column per metric,
    # the best mean per column in bold: the higher accuracy and the lower loss, both the second experiment's.
    for index, finals in enumerate(FINALS):
        accuracy, loss = ([run[key] for run in finals] for key in ("accuracy", "val_loss"))
        shown = f"New Ensemble Test ({latex_escape(ids[index])})"
        row = f"{shown} & (none) & 2 & {cell(accuracy, index == 1)} & {cell(loss, index == 1)}"
        assert row + " \\\\" in tex, tex
    for metric, key in (("accuracy", "accuracy"), ("val\\_loss", "val_loss")):
        a, b = ([run[key] for run in finals] for finals in FINALS)
        direct = stats.ttest_ind(a, b, equal_var=False)
        first, second = (latex_escape(f"{experiment_id} / (none)") for experiment_id in ids)
        line = f"Welch's $t$-test on {metric}, {first} vs.\\ {second}: "
        assert line + f"$t({direct.df:.2f}) = {direct.statistic:.3f}$" in tex

    report = json.loads(attachment(await http.post(url, json=seed_body | {"format": "json"}), "application/json", ""))
    assert report["template"] == "publication" and report["metrics"] == ["accuracy", "val_loss"]
    assert [(r["experiment_id"], r["metric"], r["n"]) for r in report["rows"]] == [
        (ids[0], "accuracy", 2), (ids[0], "val_loss", 2), (ids[1], "accuracy", 2), (ids[1], "val_loss", 2)
    ]  # fmt: skip
    assert report["rows"][0]["mean"] == pytest.approx(0.82) and report["rows"][1]["best"] == pytest.approx(0.48)
    assert set(report["welch_tests"]) == {"accuracy", "val_loss"}
    text = attachment(await http.post(url, json=seed_body | {"format": "csv"}), "text/csv", ".csv")
    lines = list(csv.DictReader(io.StringIO(text)))
    assert [(line["metric"], line["n"]) for line in lines] == [("accuracy", "2"), ("val_loss", "2")] * 2

    # A metric given narrows the report to it, in the one-metric layout.
    tex = attachment(await http.post(url, json=seed_body | {"metric": "accuracy"}), "application/x-tex", ".tex")
    assert "\\begin{tabular}{lllrccr}" in tex and "loss" not in tex


@pytest.mark.own_daemon  # counts every model or experiment
async def test_a_refused_sweep_writes_nothing(http: httpx.AsyncClient) -> None:
    """Every check runs before anything is stored: a 422 leaves no experiment and no model behind."""
    for config in (sweep(variations={"optimizer.lrr": [0.1]}), sweep(variations={"seed": list(range(300))})):
        body = {"experiment": {"name": "refused", "config": config}}
        error(await http.post("/api/v1/experiments", json=body), 422, "validation_error")
    assert (await http.get("/api/v1/experiments")).json()["meta"]["total"] == 0
    assert (await http.get("/api/v1/models")).json()["meta"]["total"] == 0


async def test_a_sweep_without_a_metric_is_judged_by_val_accuracy(http: httpx.AsyncClient) -> None:
    exp_id = await seeded(http, "no metric", VALUES, "nm")
    config = {k: v for k, v in sweep().items() if k != "metric"}
    assert (await http.patch(f"/api/v1/experiments/{exp_id}", json={"experiment": {"config": config}})).is_success
    summary = (await http.get(f"/api/v1/experiments/{exp_id}")).json()["data"]["results_summary"]
    assert summary["metric"] == "val_accuracy" and summary["best_val_accuracy"] == 0.93
    document = json.loads((await http.post(f"/api/v1/experiments/{exp_id}/export")).text)
    assert {group["group"] for group in document["results"]["groups"]} == set(VALUES)
    report = await http.post("/api/v1/export/comparison", json={"experiment_ids": [exp_id], "format": "json"})
    assert report.status_code == 200, report.text


async def test_unknown_filters_are_refused_not_ignored(http: httpx.AsyncClient) -> None:
    exp_id = await create(http, "filters", ENSEMBLE)
    for url in ("/api/v1/experiments", f"/api/v1/experiments/{exp_id}/runs"):
        body = error(await http.get(url, params={"filter[stauts]": "running"}), 422, "validation_error")
        assert body["details"][0]["field"] == "filter[stauts]"
    assert (await http.get("/api/v1/experiments", params={"filter[status]": "pending"})).status_code == 200
