"""Statistical results: the numbers against published values and scipy, and the routes against a real daemon."""

from __future__ import annotations

import math
import statistics
from typing import Any

import httpx
import pytest
from scipy import stats

from pivotd.experiments.stats import StatsError, cohens_d, hedges_correction, hedges_g, run_test, summary
from tests.payloads import SEED_004_CREATE_EXPERIMENT, contract_payload

# Wikipedia, "Welch's t-test", example 1: t = -2.46, df = 25.0, p = 0.021.
WELCH_A = [27.5, 21.0, 19.0, 23.6, 17.0, 17.9, 16.9, 20.1, 21.9, 22.6, 23.1, 19.6, 19.0, 21.7, 21.4]
WELCH_B = [27.1, 22.0, 20.8, 23.4, 23.4, 23.5, 25.8, 22.0, 24.8, 20.2, 21.9, 22.1, 22.9, 20.5, 24.4]
# Wikipedia, "One-way analysis of variance", worked example: SS between 84, within 68, F(2, 15) = 9.26.
ANOVA = {"a1": [6.0, 8, 4, 5, 3, 4], "a2": [8.0, 12, 9, 11, 6, 8], "a3": [13.0, 9, 11, 8, 7, 12]}
# scipy's mannwhitneyu documentation (Conover's example): U = 17, exact two-sided p = 1/9.
MALES = [19.0, 22, 16, 29, 24]
FEMALES = [20.0, 11, 17, 12]


def test_welch_matches_the_published_example() -> None:
    outcome = run_test("t_test", {"a": WELCH_A, "b": WELCH_B})
    assert round(outcome.statistic, 2) == -2.46
    assert round(outcome.degrees_of_freedom, 1) == 25.0  # type: ignore[arg-type]
    assert round(outcome.p_value, 3) == 0.021
    assert outcome.significant and outcome.magnitude == "large"
    direct = stats.ttest_ind(WELCH_A, WELCH_B, equal_var=False)
    assert outcome.statistic == pytest.approx(direct.statistic, rel=1e-12)
    assert outcome.p_value == pytest.approx(direct.pvalue, rel=1e-12)
    interval = direct.confidence_interval(0.95)
    assert outcome.confidence_interval == pytest.approx([interval.low, interval.high], rel=1e-9)


def test_anova_matches_the_published_table() -> None:
    outcome = run_test("anova", ANOVA)
    assert outcome.degrees_of_freedom == [2.0, 15.0]
    assert outcome.extra["sum_of_squares"] == pytest.approx({"between": 84.0, "within": 68.0, "total": 152.0})
    assert round(outcome.statistic, 2) == 9.26  # 42 / 4.533
    assert outcome.effect_size == pytest.approx(84 / 152)
    direct = stats.f_oneway(*ANOVA.values())
    assert outcome.p_value == pytest.approx(direct.pvalue, rel=1e-12) and outcome.p_value < 0.01
    assert outcome.magnitude == "large" and outcome.confidence_interval is None


def test_mann_whitney_matches_the_documented_example() -> None:
    outcome = run_test("mann_whitney", {"males": MALES, "females": FEMALES})
    assert outcome.statistic == 17.0 and outcome.p_value == pytest.approx(1 / 9)
    assert outcome.effect_sizes["rank_biserial"] == pytest.approx(2 * 17 / 20 - 1)
    assert outcome.degrees_of_freedom is None and outcome.confidence_interval is None


def test_paired_t_by_hand() -> None:
    # Differences -1, 0, -1, 0, -2: mean -0.8, sd sqrt(0.7), t = -0.8 / (sqrt(0.7) / sqrt(5)) = -2.138, df 4.
    outcome = run_test("paired_t_test", {"a": [1.0, 2, 3, 4, 5], "b": [2.0, 2, 4, 4, 7]})
    assert outcome.statistic == pytest.approx(-0.8 / (math.sqrt(0.7) / math.sqrt(5)))
    assert outcome.degrees_of_freedom == 4.0
    assert outcome.p_value == pytest.approx(stats.ttest_rel([1, 2, 3, 4, 5], [2, 2, 4, 4, 7]).pvalue, rel=1e-12)
    half = stats.t.ppf(0.975, 4) * math.sqrt(0.7) / math.sqrt(5)
    assert outcome.confidence_interval == pytest.approx([-0.8 - half, -0.8 + half])
    assert outcome.effect_sizes["cohens_dz"] == pytest.approx(-0.8 / math.sqrt(0.7))


def _with_moments(mean: float, sd: float, n: int) -> list[float]:
    """n values whose sample mean and standard deviation are exactly `mean` and `sd`."""
    base = [float(i) for i in range(n)]
    center, spread = statistics.fmean(base), statistics.stdev(base)
    return [mean + sd * (x - center) / spread for x in base]


def test_effect_sizes_match_the_published_example() -> None:
    # Borenstein, Hedges, Higgins & Rothstein (2009), Introduction to Meta-Analysis, ch. 4: means 103 and 100,
    # SDs 5.5 and 4.5, n = 50 each: S_within = 5.0249, d = 0.5970, J = 0.9923, g = 0.5924. The book uses the
    # approximation J = 1 - 3 / (4 df - 1); at df = 98 the exact form agrees to 4 decimals.
    a, b = _with_moments(103, 5.5, 50), _with_moments(100, 4.5, 50)
    outcome = run_test("t_test", {"treated": a, "control": b})
    assert round(outcome.effect_sizes["cohens_d"], 4) == 0.5970
    assert round(hedges_correction(98), 4) == 0.9923 == round(1 - 3 / (4 * 98 - 1), 4)
    assert round(outcome.effect_size, 4) == 0.5924 and outcome.effect_size_type == "hedges_g"
    assert outcome.effect_sizes["hedges_g"] == outcome.effect_size and outcome.magnitude == "medium"


def test_hedges_correction_is_the_exact_gamma_form() -> None:
    # Closed forms of Gamma(m/2) / (sqrt(m/2) Gamma((m-1)/2)): J(2) = 1/sqrt(pi), J(4) = sqrt(2/pi), the
    # values of Hedges & Olkin (1985, Table 2) 0.5642 and 0.7979; the approximation would give 0.5714 and 0.8.
    assert hedges_correction(2) == pytest.approx(1 / math.sqrt(math.pi), rel=1e-12)
    assert hedges_correction(4) == pytest.approx(math.sqrt(2 / math.pi), rel=1e-12)
    assert round(hedges_correction(2), 4) == 0.5642 and round(hedges_correction(4), 4) == 0.7979
    assert 0.99999 < hedges_correction(100_000) < 1  # finite and tending to 1 for large df


def test_effect_sizes_by_hand() -> None:
    # Means 2 and 4, both variances 1: pooled sd 1, d = -2; three runs a group: df = 4, J = sqrt(2/pi).
    a, b = [1.0, 2, 3], [3.0, 4, 5]
    g = -2 * math.sqrt(2 / math.pi)
    assert cohens_d(a, b) == pytest.approx(-2.0)
    assert hedges_g(-2.0, 6) == pytest.approx(g)
    outcome = run_test("t_test", {"a": a, "b": b})
    assert outcome.effect_sizes == pytest.approx({"cohens_d": -2.0, "hedges_g": g})
    assert (outcome.effect_size, outcome.effect_size_type) == (pytest.approx(g), "hedges_g")
    assert "(Hedges' g = -1.6)" in summary(outcome, "m") and "Cohen" not in summary(outcome, "m")


def test_one_sided_tests_have_one_sided_intervals() -> None:
    outcome = run_test("t_test", {"a": WELCH_A, "b": WELCH_B}, alternative="less")
    direct = stats.ttest_ind(WELCH_A, WELCH_B, equal_var=False, alternative="less")
    assert outcome.p_value == pytest.approx(direct.pvalue)
    assert outcome.confidence_interval is not None and outcome.confidence_interval[0] is None
    assert outcome.confidence_interval[1] == pytest.approx(direct.confidence_interval(0.95).high)


@pytest.mark.parametrize(
    ("test", "groups", "message"),
    [
        ("t_test", {"a": [1.0], "b": [1.0, 2.0]}, "group 'a' has 1 value"),
        ("t_test", {"a": [1.0, 2], "b": [1.0, 2], "c": [3.0, 4]}, "exactly 2 groups"),
        ("paired_t_test", {"a": [1.0, 2, 3], "b": [1.0, 2]}, "equal size"),
        ("t_test", {"a": [1.0, 1.0], "b": [1.0, 1.0]}, "zero variance"),
        ("anova", {"a": [1.0, 2]}, "at least 2 groups"),
        ("z_test", {"a": [1.0, 2], "b": [1.0, 2]}, "unknown test"),
    ],
)
def test_undefined_tests_say_why(test: str, groups: dict[str, list[float]], message: str) -> None:
    with pytest.raises(StatsError, match=message):
        run_test(test, groups)


# ---- against a real daemon ----------------------------------------------------------------------------------


ACCURACY = {"lr=0.1": [0.91, 0.93, 0.92], "lr=0.01": [0.86, 0.88, 0.85]}
SEEDS = [1, 2, 3]


async def seeded_experiment(http: httpx.AsyncClient) -> str:
    """2 groups x 3 seeds of external runs: a layer-wise post joins each run, then val_accuracy per epoch."""
    body = {"experiment": {"name": "lr sweep", "config": {"metric": "val_accuracy"}}}
    exp_id: str = (await http.post("/api/v1/experiments", json=body)).json()["data"]["id"]
    for group, finals in ACCURACY.items():
        for seed, final in zip(SEEDS, finals, strict=True):
            run_id = f"{group.replace('=', '_')}-s{seed}"
            payload = contract_payload(run_id, step=1)
            payload["metadata"] |= {"experiment_id": exp_id, "group": group, "seed": seed}
            assert (await http.post("/api/v1/metrics/layerwise", json=payload)).status_code == 202
            points = [{"step": e, "epoch": e, "values": {"val_accuracy": final - 0.1 * (3 - e)}} for e in range(4)]
            assert (await http.post(f"/api/v1/runs/{run_id}/scalars", json=points)).status_code == 202
    return exp_id


async def post_test(http: httpx.AsyncClient, exp_id: str, **test: Any) -> httpx.Response:
    return await http.post(f"/api/v1/experiments/{exp_id}/statistical-results", json={"test": test})


async def test_full_flow_t_test_equals_scipy(http: httpx.AsyncClient) -> None:
    exp_id = await seeded_experiment(http)
    response = await post_test(http, exp_id, test_type="t_test", groups=list(ACCURACY), metric="val_accuracy")
    assert response.status_code == 201, response.text
    result = response.json()["data"]
    a, b = ACCURACY.values()
    direct = stats.ttest_ind(a, b, equal_var=False)
    assert result["id"].startswith("stat_") and result["experiment_id"] == exp_id
    assert result["values"] == ACCURACY and result["sample_sizes"] == [3, 3]
    assert result["statistic"] == pytest.approx(direct.statistic, rel=1e-9)
    assert result["p_value"] == pytest.approx(direct.pvalue, rel=1e-9)
    assert result["degrees_of_freedom"] == pytest.approx(direct.df, rel=1e-9)
    interval = direct.confidence_interval(0.95)
    assert result["confidence_interval"] == pytest.approx([interval.low, interval.high], rel=1e-9)
    assert result["means"] == pytest.approx([statistics.fmean(a), statistics.fmean(b)])
    assert result["std_devs"] == pytest.approx([statistics.stdev(a), statistics.stdev(b)])
    # Three runs a group: Hedges' g, d corrected by J(4) = sqrt(2/pi), is the effect size; d stays beside it.
    g = cohens_d(a, b) * math.sqrt(2 / math.pi)
    assert result["effect_size_type"] == "hedges_g" and result["effect_size"] == pytest.approx(g)
    assert result["effect_sizes"]["cohens_d"] == pytest.approx(cohens_d(a, b))
    assert f"(Hedges' g = {g:.3g})" in result["interpretation"]["summary"]
    interpretation = result["interpretation"]
    assert interpretation["significant"] is True and interpretation["significance"] == "significant"
    assert interpretation["magnitude"] == interpretation["effect_magnitude"] == "large"
    assert interpretation["summary"].startswith("lr=0.1 (mean 0.92, n = 3) scored higher than lr=0.01")
    assert "statistically significant" in interpretation["summary"]
    assert result["runs"]["lr=0.1"] == ["lr_0.1-s1", "lr_0.1-s2", "lr_0.1-s3"]

    # Stored: readable by id, in the global list and in the experiment's list.
    stored = (await http.get(f"/api/v1/statistical-results/{result['id']}")).json()["data"]
    assert stored == result
    listed = (await http.get("/api/v1/statistical-results", params={"filter[experiment_id]": exp_id})).json()
    assert [r["id"] for r in listed["data"]] == [result["id"]] and listed["meta"]["total"] == 1
    mine = (await http.get(f"/api/v1/experiments/{exp_id}/statistical-results")).json()
    assert [r["id"] for r in mine["data"]] == [result["id"]]


async def test_paired_mann_whitney_anova_and_aggregates(http: httpx.AsyncClient) -> None:
    exp_id = await seeded_experiment(http)
    a, b = ACCURACY.values()
    paired = (
        await post_test(http, exp_id, test_type="paired_t_test", groups=list(ACCURACY), metric="val_accuracy")
    ).json()
    assert paired["data"]["pairing"] == "seed"
    assert paired["data"]["p_value"] == pytest.approx(stats.ttest_rel(a, b).pvalue, rel=1e-9)
    mw = (await post_test(http, exp_id, test_type="mann_whitney", groups=list(ACCURACY), metric="val_accuracy")).json()
    assert mw["data"]["statistic"] == stats.mannwhitneyu(a, b).statistic == 9.0
    # Seed 004's spelling and body form, with the runs named explicitly.
    explicit = {
        "top": ["lr_0.1-s1", "lr_0.1-s2"],
        "mid": ["lr_0.01-s1", "lr_0.01-s2"],
        "low": ["lr_0.01-s3", "lr_0.1-s3"],
    }
    body = {
        "test": {"experiment_id": exp_id, "test_type": "one_way_anova", "groups": explicit, "metric": "val_accuracy"}
    }
    anova = (await http.post("/api/v1/statistical-results", json=body)).json()["data"]
    samples = [[0.91, 0.93], [0.86, 0.88], [0.85, 0.92]]
    assert anova["test"] == "anova" and anova["test_type"] == "one_way_anova"
    assert anova["p_value"] == pytest.approx(stats.f_oneway(*samples).pvalue, rel=1e-9)
    assert anova["degrees_of_freedom"] == [2, 3] and anova["effect_size_type"] == "eta_squared"
    # mean over each run's epochs shifts every value by the same -0.15; best (max for accuracy) is the last.
    mean = (
        await post_test(
            http,
            exp_id,
            test_type="t_test",
            groups=list(ACCURACY),
            metric="val_accuracy",
            options={"aggregate": "mean", "alpha": 0.01},
        )
    ).json()["data"]
    assert mean["values"]["lr=0.1"] == pytest.approx([0.76, 0.78, 0.77]) and mean["alpha"] == 0.01
    best = (
        await post_test(
            http,
            exp_id,
            test_type="t_test",
            groups=list(ACCURACY),
            metric="val_accuracy",
            options={"aggregate": "best"},
        )
    ).json()["data"]
    assert best["values"] == ACCURACY
    listed = (await http.get("/api/v1/statistical-results", params={"per_page": 2})).json()
    assert listed["meta"]["total"] == 5 and listed["meta"]["has_more"] is True
    rest = (
        await http.get("/api/v1/statistical-results", params={"per_page": 2, "cursor": listed["meta"]["next_cursor"]})
    ).json()
    assert len(rest["data"]) == 2 and rest["data"][0]["id"] not in {r["id"] for r in listed["data"]}
    only = (await http.get("/api/v1/statistical-results", params={"filter[test_type]": "anova"})).json()
    assert [r["id"] for r in only["data"]] == [anova["id"]]


def error(response: httpx.Response, status: int, code: str) -> str:
    assert response.status_code == status, response.text
    body = response.json()["error"]
    assert body["code"] == code
    message: str = body["message"]
    return message


async def test_error_details_name_fields_the_client_sent_each_with_a_message(http: httpx.AsyncClient) -> None:
    body = {"experiment": {"name": "details", "config": {}}}
    exp_id = (await http.post("/api/v1/experiments", json=body)).json()["data"]["id"]
    no_id = {"test": {"test_type": "t_test", "groups": ["a", "b"], "metric": "m"}}
    response = await http.post("/api/v1/statistical-results", json=no_id)
    assert response.status_code == 422 and response.json()["error"]["details"] == [
        {"field": "test.experiment_id", "message": "required"}
    ]
    other = await post_test(http, exp_id, experiment_id="exp_other", test_type="t_test", groups=["a", "b"], metric="m")
    assert [d["field"] for d in other.json()["error"]["details"]] == ["test.experiment_id"]
    assert "exp_other" in other.json()["error"]["details"][0]["message"]
    # `groups` is a list or an object: pydantic tags each member's errors (`list[constrained-str]`); not a field.
    response = await post_test(http, exp_id, test_type="t_test", groups=["a", ""], metric="m")
    details = response.json()["error"]["details"]
    assert [d["field"] for d in details] == ["test.groups[1]", "test.groups"], details
    assert all(d["message"] for d in details) and "constrained" not in response.json()["error"]["message"]


async def test_errors_name_what_is_wrong(http: httpx.AsyncClient) -> None:
    exp_id = await seeded_experiment(http)
    groups = list(ACCURACY)
    assert "unknown test 'z_test'" in error(
        await post_test(http, exp_id, test_type="z_test", groups=groups, metric="val_accuracy"), 422, "validation_error"
    )
    assert "no runs in group 'lr=1'" in error(
        await post_test(http, exp_id, test_type="t_test", groups=["lr=0.1", "lr=1"], metric="val_accuracy"),
        422,
        "validation_error",
    )
    assert "ghost" in error(
        await post_test(
            http,
            exp_id,
            test_type="t_test",
            groups={"a": ["ghost", "lr_0.1-s1"], "b": ["lr_0.01-s1"]},
            metric="val_accuracy",
        ),
        422,
        "validation_error",
    )
    assert "group 'b' has 1 value" in error(
        await post_test(
            http,
            exp_id,
            test_type="t_test",
            groups={"a": ["lr_0.1-s1", "lr_0.1-s2"], "b": ["lr_0.01-s1"]},
            metric="val_accuracy",
        ),
        422,
        "validation_error",
    )
    await http.post("/api/v1/runs/lr_0.1-s1/scalars", json=[{"step": 9, "values": {"train_loss": 0.1}}])
    message = error(
        await post_test(http, exp_id, test_type="t_test", groups=groups, metric="train_loss"), 422, "validation_error"
    )
    assert "without a 'train_loss' scalar" in message and "lr_0.1-s2" in message and "lr_0.1-s1" not in message
    error(
        await post_test(http, exp_id, test_type="t_test", groups=groups, metric="val_accuracy", options={"alpha": 2}),
        422,
        "validation_error",
    )
    error(
        await post_test(
            http, exp_id, test_type="t_test", groups=groups, metric="val_accuracy", options={"aggregate": "median"}
        ),
        422,
        "validation_error",
    )
    error(
        await post_test(
            http, exp_id, experiment_id="exp_other", test_type="t_test", groups=groups, metric="val_accuracy"
        ),
        422,
        "validation_error",
    )
    error(
        await post_test(http, "exp_missing", test_type="t_test", groups=groups, metric="val_accuracy"), 404, "not_found"
    )
    missing_id = {"test": {"test_type": "t_test", "groups": groups, "metric": "val_accuracy"}}
    error(await http.post("/api/v1/statistical-results", json=missing_id), 422, "validation_error")
    error(await http.get("/api/v1/statistical-results/stat_none"), 404, "not_found")
    error(await http.get("/api/v1/experiments/exp_missing/statistical-results"), 404, "not_found")
    error(await http.get("/api/v1/statistical-results", params={"per_page": 101}), 422, "validation_error")
    error(await http.get("/api/v1/statistical-results", params={"cursor": "@@"}), 422, "validation_error")
    # Nothing failed was stored; deleting the experiment deletes its results.
    assert (await http.get("/api/v1/statistical-results")).json()["meta"]["total"] == 0
    await post_test(http, exp_id, test_type="t_test", groups=groups, metric="val_accuracy")
    assert (await http.delete(f"/api/v1/experiments/{exp_id}")).status_code == 204
    assert (await http.get("/api/v1/statistical-results")).json()["meta"]["total"] == 0


# ---- a test asked for while the experiment still runs -------------------------------------------------------

MLP = {"input_size": 784, "layers": [{"type": "linear", "in": 784, "out": 10}]}
# Seed 004's literal bodies: "Create Experiment" (SEED_004_CREATE_EXPERIMENT) and "Run Statistical Test"
# (only the experiment id is ours).


def seed_test(exp_id: str) -> dict[str, Any]:
    return {
        "test": {
            "experiment_id": exp_id,
            "test_type": "two_sample_t_test",
            "groups": ["model_a", "model_b"],
            "metric": "accuracy",
            "options": {"alpha": 0.05, "alternative": "two_sided"},
        }
    }


async def finished_run(http: httpx.AsyncClient, exp_id: str, run_id: str, group: str, accuracy: float) -> None:
    body = {"points": [{"step": 1, "values": {"accuracy": accuracy}}], "experiment_id": exp_id, "group": group}
    assert (await http.post(f"/api/v1/runs/{run_id}/scalars", json=body)).status_code == 202
    assert (await http.post(f"/api/v1/runs/{run_id}/finish", json={"status": "succeeded"})).status_code == 200


async def pending_run(http: httpx.AsyncClient, exp_id: str, group: str) -> str:
    """A managed run not yet started (a training session never started): pending, with no final value."""
    session = {"config": {"architecture": MLP, "hyperparams": {"epochs": 1}}}
    run_id: str = (await http.post("/api/v1/training/sessions", json=session)).json()["session_id"]
    attach = {"run_ids": [run_id], "group": group}
    assert (await http.post(f"/api/v1/experiments/{exp_id}/runs", json=attach)).status_code == 200
    return run_id


async def test_a_test_while_the_experiment_runs_is_for_finished_runs_and_says_so(http: httpx.AsyncClient) -> None:
    exp_id = (await http.post("/api/v1/experiments", json=SEED_004_CREATE_EXPERIMENT)).json()["data"]["id"]
    for index, accuracy in enumerate([0.91, 0.93, 0.92]):
        await finished_run(http, exp_id, f"a{index}", "model_a", accuracy)
    await finished_run(http, exp_id, "b0", "model_b", 0.86)
    waiting = [await pending_run(http, exp_id, "model_b") for _ in range(2)]
    assert (await http.get(f"/api/v1/experiments/{exp_id}")).json()["data"]["status"] == "running"

    # One finished run in model_b: the test cannot run yet, and the 409 says why (not "runs without a scalar").
    body = error(await http.post("/api/v1/statistical-results", json=seed_test(exp_id)), 409, "conflict")
    assert body.startswith(f"experiment {exp_id} is running: 4 of 6 runs finished; group(s) 'model_b' have fewer")
    assert "scalar" not in body

    await finished_run(http, exp_id, "b1", "model_b", 0.88)
    response = await http.post("/api/v1/statistical-results", json=seed_test(exp_id))
    assert response.status_code == 201, response.text
    result = response.json()["data"]
    assert result["note"] == f"experiment {exp_id} is running: 5 of 7 runs finished; results are for finished runs only"
    assert result["excluded_runs"] == {"model_b": waiting}
    assert result["values"] == {"model_a": [0.91, 0.93, 0.92], "model_b": [0.86, 0.88]}
    assert result["sample_sizes"] == [3, 2] and result["effect_size_type"] == "hedges_g"
    direct = stats.ttest_ind([0.91, 0.93, 0.92], [0.86, 0.88], equal_var=False)
    assert result["p_value"] == pytest.approx(direct.pvalue, rel=1e-9)
    # A metric no finished run has is still the request's mistake: 422 naming it, with the state.
    typo = seed_test(exp_id)
    typo["test"]["metric"] = "acuracy"
    message = error(await http.post("/api/v1/statistical-results", json=typo), 422, "validation_error")
    assert message.startswith(f"metric: experiment {exp_id} is running") and "'acuracy'" in message


async def test_runs_that_did_not_complete_are_left_out_with_a_note(http: httpx.AsyncClient) -> None:
    exp_id = (await http.post("/api/v1/experiments", json=SEED_004_CREATE_EXPERIMENT)).json()["data"]["id"]
    for group, values in (("model_a", [0.91, 0.93]), ("model_b", [0.86, 0.88])):
        for index, accuracy in enumerate(values):
            await finished_run(http, exp_id, f"{group}-{index}", group, accuracy)
    body = {"points": [{"step": 1, "values": {"accuracy": 0.1}}], "experiment_id": exp_id, "group": "model_a"}
    assert (await http.post("/api/v1/runs/crashed/scalars", json=body)).status_code == 202
    ended = await http.post("/api/v1/runs/crashed/finish", json={"status": "failed", "error": "CUDA OOM"})
    assert ended.status_code == 200
    assert (await http.get(f"/api/v1/experiments/{exp_id}")).json()["data"]["status"] == "failed"
    result = (await http.post("/api/v1/statistical-results", json=seed_test(exp_id))).json()["data"]
    assert result["values"]["model_a"] == [0.91, 0.93] and result["excluded_runs"] == {"model_a": ["crashed"]}
    assert result["note"] == "left out 1 run(s) that did not complete (1 failed); results are for completed runs only"
    # Nothing left out: no note.
    clean = seed_test(exp_id)
    clean["test"]["groups"] = {"a": ["model_a-0", "model_a-1"], "b": ["model_b-0", "model_b-1"]}
    result = (await http.post("/api/v1/statistical-results", json=clean)).json()["data"]
    assert result["note"] is None and result["excluded_runs"] == {}
