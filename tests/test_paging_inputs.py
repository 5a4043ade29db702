"""Bad paging inputs on every family C list route, and integer query parameters elsewhere that reach SQLite: a 4xx
naming the field, never a 500.

A cursor is base64 JSON, so a client can hand back any JSON in it; page numbers arrive as unbounded ints, and
SQLite binds no integer beyond 64 bits.
"""

from __future__ import annotations

import base64
import json
from typing import Any

import httpx
import pytest

from tests.daemon import RunningDaemon

# One daemon for the module: each test pages its own experiment or asks for pages past any end.
pytestmark = pytest.mark.shared_daemon

HUGE = 123456789012345678901234567890
# (route, the sort its cursors carry); {e} is an experiment's id.
LISTS = [
    ("/api/v1/experiments", "-created_at"),
    ("/api/v1/experiments/{e}/runs", "created_at"),
    ("/api/v1/statistical-results", "-created_at"),
    ("/api/v1/experiments/{e}/statistical-results", "-created_at"),
    ("/api/v1/models", "created_at"),
    ("/api/v1/telemetry/events", "-timestamp"),
]


def forged(sort: str, value: Any, row_id: Any) -> str:
    raw = json.dumps({"s": sort, "v": value, "id": row_id}).encode()  # json.dumps writes NaN as NaN
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


BAD_CURSORS = [
    ({"a": 1}, "x"),
    ([1], "x"),
    (HUGE, "x"),
    (-HUGE, 1),
    (float("nan"), 1),
    (float("inf"), 1),
    (True, 1),
    (None, 1),
    (1.5, {"a": 1}),
    (1.5, [1]),
    (1.5, HUGE),
    (1.5, None),
]
BAD_PAGES = [0, -1, 1_000_001, 922337203685477580, 99999999999999999999999]
MAX_INT64 = 2**63 - 1
# Integer query parameters outside family C's paging that reach SQLite: (route, parameter, largest accepted).
BOUNDED = [
    ("/api/v1/runs", "page", 1_000_000),
    ("/api/v1/runs/ext-a1", "from_step", MAX_INT64),
    ("/api/v1/runs/ext-a1", "to_step", MAX_INT64),
    ("/api/v1/runs/ext-a1/scalars", "from_step", MAX_INT64),
    ("/api/v1/runs/ext-a1/scalars", "to_step", MAX_INT64),
    ("/api/v1/training/sessions", "offset", 100_000_000),
]


@pytest.fixture
async def experiment_id(http: httpx.AsyncClient) -> str:
    response = await http.post("/api/v1/experiments", json={"experiment": {"name": "paged"}})
    assert response.status_code == 201, response.text
    return str(response.json()["data"]["id"])


def assert_invalid(response: httpx.Response, field: str) -> str:
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "validation_error" and error["details"][0]["field"] == field, error
    return str(error["message"])


@pytest.mark.parametrize(("route", "sort"), LISTS)
async def test_bad_cursors_and_pages_are_422s(
    daemon: RunningDaemon, http: httpx.AsyncClient, experiment_id: str, route: str, sort: str
) -> None:
    url = route.format(e=experiment_id)
    for value, row_id in BAD_CURSORS:
        message = assert_invalid(await http.get(url, params={"cursor": forged(sort, value, row_id)}), "cursor")
        assert message == "cursor: is not a cursor this server issued", (value, row_id)
    for page in BAD_PAGES:
        assert "between 1 and 1,000,000" in assert_invalid(await http.get(url, params={"page": page}), "page"), page
    # The bounds themselves are fine: the deepest page is simply empty.
    deepest = await http.get(url, params={"page": 1_000_000, "per_page": 100})
    assert deepest.status_code == 200, deepest.text
    assert deepest.json()["data"] == [] and deepest.json()["meta"]["page"] == 1_000_000
    # A well-formed cursor with a plain string or integer position still pages (past the end: nothing).
    for value, row_id in [("zzz", "zzz"), (2**63 - 1, 2**63 - 1), (-(2**63), 0), (1e300, "x")]:
        response = await http.get(url, params={"cursor": forged(sort, value, row_id)})
        assert response.status_code in (200, 422), response.text  # 422 only where the route checks the types


@pytest.mark.parametrize(("route", "sort"), LISTS)
async def test_unknown_filters_and_sorts_are_422s(
    http: httpx.AsyncClient, experiment_id: str, route: str, sort: str
) -> None:
    """A typo in a filter or a sort must not answer as if it were not there."""
    url = route.format(e=experiment_id)
    assert (await http.get(url, params={"sort": sort})).status_code == 200  # each route's own order
    assert_invalid(await http.get(url, params={"filter[bogus]": "1"}), "filter[bogus]")
    assert_invalid(await http.get(url, params={"sort": "bogus"}), "sort")


def invalid_field(response: httpx.Response) -> str:
    """The field a 422 names, in family L's envelope or P/C's."""
    assert response.status_code == 422, response.text
    body = response.json()
    details = body["detail"] if "detail" in body else body["error"]["details"]  # family L's is FastAPI's list
    return str(details[0]["field"])


@pytest.mark.parametrize(("route", "param", "largest"), BOUNDED)
async def test_integers_beyond_their_bound_are_422s(
    http: httpx.AsyncClient, route: str, param: str, largest: int
) -> None:
    scalars = await http.post("/api/v1/runs/ext-a1/scalars", json=[{"step": 1, "values": {"loss": 1.0}}])
    assert scalars.status_code == 202, scalars.text
    assert (await http.get(route, params={param: largest})).status_code == 200
    for value in (largest + 1, 400000000000000000000, HUGE):
        assert invalid_field(await http.get(route, params={param: value})) == param, value


async def test_a_model_runs_cursor_beyond_64_bits_is_a_400(http: httpx.AsyncClient) -> None:
    model = {"architecture": {"input_size": 784, "layers": [{"type": "linear", "in": 784, "out": 10}]}}
    model_id = (await http.post("/api/models", json=model)).json()["model_id"]
    url = f"/api/models/{model_id}/runs"
    for ref, status in [(MAX_INT64, 200), (MAX_INT64 + 1, 400), (HUGE, 400), (-1, 400)]:
        cursor = base64.urlsafe_b64encode(str(ref).encode()).decode()
        response = await http.get(url, params={"cursor": cursor})
        assert response.status_code == status, (ref, response.text)
