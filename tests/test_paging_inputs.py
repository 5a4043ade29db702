"""Bad paging inputs on every family C list route: a 422 naming the field, never a 500.

A cursor is base64 JSON, so a client can hand back any JSON in it; page numbers arrive as unbounded ints.
"""

from __future__ import annotations

import base64
import json
from typing import Any

import httpx
import pytest

from tests.daemon import RunningDaemon

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
