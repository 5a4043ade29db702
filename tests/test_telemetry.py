"""Telemetry (seed 004) against a real daemon: ingest, queries, paging, aggregates, export, the hub topic."""

from __future__ import annotations

import csv
import io
import json
import random
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from websockets.asyncio.client import connect

from pivotd.telemetry.validate import batch_events, check_batch_fast, check_events
from tests.daemon import RunningDaemon, daemon_client, running_daemon

EVENTS = "/api/v1/telemetry/events"
AGGREGATE = "/api/v1/telemetry/aggregate"
EXPORT = "/api/v1/telemetry/export"
SEED_EVENT = {  # seed 004's ingest example
    "event_name": ["crucible", "model", "inference"],
    "measurements": {"duration_ms": 234, "tokens": 150},
    "metadata": {"experiment_id": "exp_abc123", "model": "gpt-4", "request_id": "req_12345"},
    "timestamp": "2024-01-15T10:35:00Z",
}
BASE = datetime(2024, 1, 15, tzinfo=UTC).timestamp()


@pytest.fixture(scope="module")
def daemon_settings() -> dict[str, Any]:
    """pivotd's own events off: these tests count exactly what they ingest (one test below turns them on)."""
    return {"telemetry_self_events": False}


def stamp(seconds: float) -> str:
    return datetime.fromtimestamp(BASE + seconds, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def event(seconds: float, duration: float, model: str = "m1", **metadata: Any) -> dict[str, Any]:
    return {
        "event_name": "crucible.model.inference",
        "measurements": {"duration_ms": duration},
        "metadata": {"model": model, **metadata},
        "timestamp": stamp(seconds),
    }


async def ingest(http: httpx.AsyncClient, events: list[dict[str, Any]]) -> dict[str, Any]:
    response = await http.post(EVENTS, json={"events": events})
    assert response.status_code == 202, response.text
    return response.json()["data"]  # type: ignore[no-any-return]


def error_field(response: httpx.Response) -> str:
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "validation_error"
    return str(error["details"][0]["field"])


async def test_seed_examples_ingest_query_aggregate_export(http: httpx.AsyncClient) -> None:
    assert (await http.post(EVENTS, json={"events": [SEED_EVENT]})).json() == {"data": {"accepted": 1, "rejected": 0}}
    query = await http.get(
        EVENTS,
        params={
            "filter[event_name]": "crucible.model.inference",
            "filter[experiment_id]": "exp_abc123",
            "filter[after]": "2024-01-15T00:00:00Z",
            "filter[before]": "2024-01-16T00:00:00Z",
        },
    )
    assert query.status_code == 200, query.text
    [found] = query.json()["data"]
    assert found["id"].startswith("evt_")
    assert {k: found[k] for k in ("event_name", "measurements", "metadata")} == {
        k: SEED_EVENT[k] for k in ("event_name", "measurements", "metadata")
    }
    assert found["timestamp"] == "2024-01-15T10:35:00.000Z"
    aggregate = await http.get(AGGREGATE, params={"metric": "duration_ms", "agg": "avg", "interval": "1h"})
    assert aggregate.json()["data"] == [{"timestamp": "2024-01-15T10:00:00.000Z", "value": 234.0, "count": 1}]
    export = await http.post(
        EXPORT,
        json={
            "format": "csv",
            "filters": {"experiment_id": "exp_abc123", "after": "2024-01-15T00:00:00Z"},
            "fields": ["timestamp", "event_name", "measurements.duration_ms"],
        },
    )
    assert export.status_code == 200 and export.headers["content-type"].startswith("text/csv")
    assert "attachment" in export.headers["content-disposition"]
    assert (
        export.text
        == "timestamp,event_name,measurements.duration_ms\n2024-01-15T10:35:00.000Z,crucible.model.inference,234\n"
    )


async def test_bad_events_are_rejected_one_by_one(http: httpx.AsyncClient) -> None:
    good = event(0, 1.0)
    bad = [
        ({"measurements": {"x": 1}}, "event_name"),
        ({**good, "event_name": ["a", ""]}, "event_name"),
        ({**good, "event_name": "   "}, "event_name"),
        ({**good, "event_name": ["a", "\t "]}, "event_name"),
        ({**good, "event_name": []}, "event_name"),
        ({**good, "measurements": {"x": True}}, "measurements.x"),
        ({**good, "measurements": {"x": "12"}}, "measurements.x"),
        ({**good, "measurements": [1, 2]}, "measurements"),
        ({**good, "metadata": {"nested": {"a": 1}}}, "metadata.nested"),
        ({**good, "metadata": {"huge": "x" * 5000}}, "metadata.huge"),
        ({**good, "timestamp": "yesterday"}, "timestamp"),
        ({**good, "timestamp": 1705314900}, "timestamp"),
        ({**good, "timestamp": "1969-07-20T20:17:00Z"}, "timestamp"),
        ({**good, "surprise": 1}, "surprise"),
        ("not an object", "event"),
        (None, "event"),
    ]
    data = await ingest(http, [good, *(item for item, _ in bad), good])
    assert data["accepted"] == 2 and data["rejected"] == len(bad)
    assert [(e["index"], e["field"]) for e in data["errors"]] == [(i + 1, f) for i, (_, f) in enumerate(bad)]
    # NaN and Infinity are not JSON, but Python clients send them: rejected per event, never a 500.
    junk = [b'{"x": NaN}', b'{"y": Infinity}', b'{"z": 100000000000000000000000000000}']
    body = b'{"events": [' + b",".join(b'{"event_name": "a.b", "measurements": ' + m + b"}" for m in junk) + b"]}"
    response = await http.post(EVENTS, content=body, headers={"content-type": "application/json"})
    assert response.status_code == 202, response.text
    assert response.json()["data"]["rejected"] == 3
    # A batch of well-formed events (the fast path): one from year 99999 is refused, not stored to sort first.
    far = await ingest(http, [good, {**good, "timestamp": "99999-01-01T00:00:00"}])
    assert far["accepted"] == 1 and far["errors"] == [
        {"index": 1, "field": "timestamp", "message": "must be between 1970-01-01T00:00:00Z and one day after the "
         "server's clock"}
    ]  # fmt: skip
    newest = (await http.get(EVENTS, params={"per_page": 1})).json()["data"][0]
    assert newest["timestamp"] == good["timestamp"]


@pytest.mark.shared_daemon  # refused requests: one daemon for all these cases
@pytest.mark.shared_daemon  # refused requests: one daemon for all these cases
@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "events"),
        ({"events": {}}, "events"),
        ({"events": []}, "events"),
        ([SEED_EVENT], "body"),
        ({"events": [SEED_EVENT], "extra": 1}, "extra"),
    ],
)
async def test_bodies_that_are_not_a_batch(http: httpx.AsyncClient, body: Any, field: str) -> None:
    assert error_field(await http.post(EVENTS, json=body)) == field


async def test_batch_cap_and_junk_json(tmp_path: Path) -> None:
    async with running_daemon(tmp_path / "s", telemetry_max_batch=10) as daemon, daemon_client(daemon.url) as http:
        response = await http.post(EVENTS, json={"events": [SEED_EVENT] * 11})
        assert error_field(response) == "events" and "maximum of 10" in response.json()["error"]["message"]
        junk = await http.post(
            EVENTS, content=b'{"events": [' + b"[" * 5000, headers={"content-type": "application/json"}
        )
        assert junk.status_code == 400


async def test_filters_paging_and_cursor(http: httpx.AsyncClient) -> None:
    events = [
        event(i, float(i), model="a" if i % 2 else "b", experiment_id="exp_1" if i < 30 else "exp_2") for i in range(60)
    ]
    # Two events share a timestamp: the id breaks the tie.
    events.append(event(10, 99.0, model="a", experiment_id="exp_1"))
    await ingest(http, events[:40])
    await ingest(http, events[40:])
    everything = (await http.get(EVENTS, params={"per_page": 100, "sort": "timestamp"})).json()
    assert everything["meta"]["total"] == 61 and not everything["meta"]["has_more"]
    stamps = [e["timestamp"] for e in everything["data"]]
    assert stamps == sorted(stamps)
    newest = (await http.get(EVENTS, params={"per_page": 5})).json()["data"]
    assert newest[0]["timestamp"] == stamp(59)
    models = await http.get(
        EVENTS, params={"filter[metadata.model]": "a", "filter[experiment_id]": "exp_1", "per_page": 100}
    )
    assert {e["metadata"]["model"] for e in models.json()["data"]} == {"a"} and models.json()["meta"]["total"] == 16
    window = await http.get(EVENTS, params={"filter[after]": stamp(10), "filter[before]": stamp(20)})
    assert window.json()["meta"]["total"] == 11  # 10..19 plus the tie at 10
    # Walk with the cursor while new events arrive: nothing repeats, nothing is skipped.
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        params: dict[str, Any] = {"per_page": 7, "sort": "timestamp", "filter[metadata.model]": "a"}
        if cursor:
            params["cursor"] = cursor
        page = (await http.get(EVENTS, params=params)).json()
        seen += [e["id"] for e in page["data"]]
        pages += 1
        if pages == 2:  # later than everything, so they belong at the end of the walk
            await ingest(http, [event(1000 + i, 1.0, model="a") for i in range(3)])
        if not page["meta"]["has_more"]:
            assert page["meta"]["next_cursor"] is None
            break
        cursor = page["meta"]["next_cursor"]
    assert len(seen) == len(set(seen)) == 31 + 3
    last = (await http.get(EVENTS, params={"page": 13, "per_page": 5, "sort": "timestamp"})).json()
    assert len(last["data"]) == 4 and not last["meta"]["has_more"]
    beyond = (await http.get(EVENTS, params={"page": 50, "per_page": 5})).json()
    assert beyond["data"] == [] and beyond["meta"]["total"] == 64


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"per_page": 101}, "per_page"),
        ({"per_page": 0}, "per_page"),
        ({"page": 0}, "page"),
        ({"cursor": "not-a-cursor"}, "cursor"),
        ({"sort": "duration"}, "sort"),
        ({"filter[after]": "soon"}, "filter[after]"),
        ({"filter[event_name]": "a..b"}, "filter[event_name]"),
        ({"filter[colour]": "red"}, "filter[colour]"),
        ({"agg": "median", "agg_field": "x"}, "agg"),
        ({"agg": "avg"}, "agg_field"),
    ],
)
async def test_query_parameters_are_checked(http: httpx.AsyncClient, params: dict[str, Any], field: str) -> None:
    assert error_field(await http.get(EVENTS, params=params)) == field


async def test_cursor_of_another_sort_is_refused(http: httpx.AsyncClient) -> None:
    await ingest(http, [event(i, 1.0) for i in range(3)])
    cursor = (await http.get(EVENTS, params={"per_page": 1})).json()["meta"]["next_cursor"]
    assert error_field(await http.get(EVENTS, params={"cursor": cursor, "sort": "timestamp"})) == "cursor"


async def test_aggregates_match_numpy(http: httpx.AsyncClient) -> None:
    rng = random.Random(3)
    events = [
        event(rng.uniform(0, 3 * 3600), rng.lognormvariate(4, 1), model=rng.choice(["a", "b", "c"]))
        for _ in range(3000)
    ]
    events += [{"event_name": "other.event", "measurements": {"duration_ms": 1e6}, "timestamp": stamp(10)}]
    await ingest(http, events)
    expected: dict[tuple[int, str], list[float]] = {}
    for item in events[:-1]:
        seconds = datetime.fromisoformat(item["timestamp"]).timestamp() - BASE
        expected.setdefault((int(seconds // 3600), item["metadata"]["model"]), []).append(
            item["measurements"]["duration_ms"]
        )
    reducers = {
        "avg": np.mean, "sum": np.sum, "min": np.min, "max": np.max, "count": len,
        "p50": lambda v: np.percentile(v, 50), "p95": lambda v: np.percentile(v, 95),
        "p99": lambda v: np.percentile(v, 99),
    }  # fmt: skip
    for agg, reduce in reducers.items():
        response = await http.get(
            AGGREGATE,
            params={"metric": "duration_ms", "agg": agg, "group_by": "model", "interval": "1h",
                    "filter[event_name]": "crucible.model.inference"},
        )  # fmt: skip
        rows = response.json()["data"]
        assert len(rows) == 9, agg
        for row in rows:
            hour = int((datetime.fromisoformat(row["timestamp"]).timestamp() - BASE) // 3600)
            values = expected[(hour, row["group"])]
            assert row["value"] == pytest.approx(float(reduce(values)), rel=1e-9), (agg, row)
            assert row["count"] == len(values)
    # 1m buckets: 180 x 3 cells, more than the per-cell loop handles, so the vectorised percentile path runs.
    params = {"metric": "duration_ms", "agg": "p95", "interval": "1m", "group_by": "model"}
    params["filter[event_name]"] = "crucible.model.inference"
    minutes = (await http.get(AGGREGATE, params=params)).json()["data"]
    assert len(minutes) > 512
    by_minute: dict[tuple[int, str], list[float]] = {}
    for item in events[:-1]:
        seconds = datetime.fromisoformat(item["timestamp"]).timestamp() - BASE
        by_minute.setdefault((int(seconds // 60), item["metadata"]["model"]), []).append(
            item["measurements"]["duration_ms"]
        )
    for row in minutes:
        minute = int((datetime.fromisoformat(row["timestamp"]).timestamp() - BASE) // 60)
        assert row["value"] == pytest.approx(float(np.percentile(by_minute[(minute, row["group"])], 95)), rel=1e-9)


async def test_interval_bucketing_and_grouping(http: httpx.AsyncClient) -> None:
    await ingest(
        http,
        [event(0, 1.0), event(59.999, 3.0), event(60, 10.0), event(299, 20.0), event(300, 30.0, model="m2"),
         {"event_name": ["x", "y"], "measurements": {"n": 1}, "timestamp": stamp(86400 + 5)}],
    )  # fmt: skip
    one_minute = (await http.get(AGGREGATE, params={"metric": "duration_ms", "interval": "1m"})).json()["data"]
    assert [(r["timestamp"], r["value"], r["count"]) for r in one_minute] == [
        (stamp(0), 2.0, 2), (stamp(60), 10.0, 1),
        (stamp(240), 20.0, 1), (stamp(300), 30.0, 1),
    ]  # fmt: skip
    five = (await http.get(AGGREGATE, params={"metric": "duration_ms", "interval": "5m", "agg": "sum"})).json()["data"]
    assert [r["value"] for r in five] == [34.0, 30.0]
    days = (await http.get(AGGREGATE, params={"interval": "1d", "group_by": "event_name"})).json()
    assert days["meta"]["agg"] == "count"
    assert [(r["timestamp"][:10], r["group"], r["value"]) for r in days["data"]] == [
        ("2024-01-15", "crucible.model.inference", 5.0), ("2024-01-16", "x.y", 1.0)
    ]  # fmt: skip
    grouped = (
        await http.get(EVENTS, params={"agg": "max", "agg_field": "duration_ms", "group_by": "metadata.model"})
    ).json()
    assert sorted((r["group"], r["value"]) for r in grouped["data"]) == [("m1", 20.0), ("m2", 30.0)]
    missing_key = (await http.get(AGGREGATE, params={"interval": "1d", "group_by": "absent"})).json()["data"]
    assert [r["group"] for r in missing_key] == [None, None]
    for params, field in (
        ({"interval": "2h"}, "interval"),
        ({"agg": "p95"}, "metric"),
        ({"agg": "mode", "metric": "x"}, "agg"),
    ):
        assert error_field(await http.get(AGGREGATE, params=params)) == field


async def test_export_csv_and_json(http: httpx.AsyncClient) -> None:
    await ingest(http, [
        event(5, 2.5, model="a, with comma", flag=True, none=None),
        event(1, 7.0, model="b", experiment_id="exp_x"),
        {"event_name": ["other"], "measurements": {}, "timestamp": stamp(3)},
    ])  # fmt: skip
    text = (await http.post(EXPORT, json={"format": "csv"})).text
    rows = list(csv.reader(io.StringIO(text)))
    assert rows[0] == ["id", "timestamp", "event_name", "measurements", "metadata"]
    assert [r[2] for r in rows[1:]] == ["crucible.model.inference", "other", "crucible.model.inference"]  # by time
    assert json.loads(rows[3][4]) == {"model": "a, with comma", "flag": True, "none": None}
    fields = ["timestamp", "measurements.duration_ms", "metadata.model", "metadata.flag", "metadata.absent"]
    picked = list(csv.reader(io.StringIO((await http.post(EXPORT, json={"format": "csv", "fields": fields})).text)))
    assert picked[1] == [stamp(1), "7", "b", "", ""]  # integral measurements read back as integers
    assert picked[3][1:4] == ["2.5", "a, with comma", "true"]
    whole = await http.post(
        EXPORT, json={"format": "json", "filters": {"event_name": ["crucible", "model", "inference"]}}
    )
    assert whole.headers["content-type"] == "application/json"
    assert [e["measurements"]["duration_ms"] for e in whole.json()] == [7.0, 2.5]
    flat = await http.post(
        EXPORT, json={"filters": {"experiment_id": "exp_x"}, "fields": ["event_name", "metadata.model"]}
    )
    assert flat.json() == [{"event_name": "crucible.model.inference", "metadata.model": "b"}]
    by_metadata = await http.post(EXPORT, json={"filters": {"metadata": {"flag": True}}, "fields": ["metadata.model"]})
    assert by_metadata.json() == [{"metadata.model": "a, with comma"}]
    empty = await http.post(EXPORT, json={"format": "json", "filters": {"after": "2030-01-01T00:00:00Z"}})
    assert empty.json() == []
    for body, field in (
        ({"format": "xml"}, "format"),
        ({"fields": ["colour"]}, "fields[0]"),
        ({"fields": []}, "fields"),
        ({"filters": {"after": "then"}}, "filters.after"),
        ({"filters": {"colour": "red"}}, "filters.colour"),
        ({"filters": {"metadata": {"k": 123456789012345678901234567890}}}, "filters.metadata.k"),
        ({"filters": {"metadata": {"k": 2**63}}}, "filters.metadata.k"),
        ({"filters": {"metadata": {"k": -(2**63) - 1}}}, "filters.metadata.k"),
        ({"filters": {"metadata": {"x": [1]}}}, "filters.metadata.x"),  # not `.str`: pydantic's union tag
        ({"filters": {"event_name": 5}}, "filters.event_name"),
    ):
        assert error_field(await http.post(EXPORT, json=body)) == field
    infinite = b'{"filters": {"metadata": {"k": 1e400}}}'
    response = await http.post(EXPORT, content=infinite, headers={"content-type": "application/json"})
    assert error_field(response) == "filters.metadata.k"
    # The 64-bit bounds themselves filter; so does a query-string value of any length (it is compared as text).
    await ingest(http, [{"event_name": "big", "metadata": {"k": 2**63 - 1}, "timestamp": stamp(9)}])
    edge = await http.post(EXPORT, json={"filters": {"metadata": {"k": 2**63 - 1}}, "fields": ["event_name"]})
    assert edge.json() == [{"event_name": "big"}]
    assert (await http.post(EXPORT, json={"filters": {"metadata": {"k": -(2**63)}}})).json() == []
    for value in (str(2**63 - 1), "123456789012345678901234567890"):
        found = await http.get(EVENTS, params={"filter[metadata.k]": value})
        assert found.status_code == 200 and found.json()["meta"]["total"] == (value == str(2**63 - 1))


def held_bytes(value: Any) -> int:
    """What a decoded value really holds in memory (numpy views over a block's body hold nothing of their own)."""
    if isinstance(value, np.ndarray):
        return 0 if value.base is not None else value.nbytes
    size = sys.getsizeof(value)
    if isinstance(value, dict):
        return size + sum(held_bytes(k) + held_bytes(v) for k, v in value.items())
    if isinstance(value, list | tuple):
        return size + sum(held_bytes(item) for item in value)
    return size


async def test_block_cache_bound_counts_decoded_dictionaries(tmp_path: Path) -> None:
    # Unique request ids: each block's request_id dictionary, once decoded, outweighs its stored bytes.
    bound = 1_000_000
    settings = {"telemetry_self_events": False, "telemetry_cache_bytes": bound}
    async with running_daemon(tmp_path / "s", **settings) as daemon, daemon_client(daemon.url) as http:
        for batch in range(10):
            await ingest(http, [event(i, 1.0, request_id=f"req-{batch}-{i:06d}-{'x' * 24}") for i in range(2000)])
        grouped = await http.get(EVENTS, params={"agg": "count", "group_by": "request_id"})
        assert grouped.status_code == 200 and len(grouped.json()["data"]) == 20_000
        reader = daemon.services.telemetry.reader
        cached = reader.cached_blocks()
        assert 0 < len(cached) < 10  # the stored bytes of all ten (about 0.7 MB) fit; decoded, they do not
        held = [len(b.body) + held_bytes(b.header) + held_bytes(b._cache) for b in cached]
        assert reader.cached_bytes == sum(b.memory_bytes() for b in cached) <= bound
        assert sum(held) <= bound * 1.1  # the estimate is close to what is really held
        for block, real in zip(cached, held, strict=True):
            assert 0.9 * real <= block.memory_bytes() <= 1.2 * real, (block.memory_bytes(), real)
    # A bound of 0 keeps nothing between queries.
    async with running_daemon(tmp_path / "s", **{**settings, "telemetry_cache_bytes": 0}) as daemon:
        async with daemon_client(daemon.url) as http:
            assert (await http.get(EVENTS, params={"per_page": 1})).json()["meta"]["total"] == 20_000
        assert daemon.services.telemetry.reader.cached_blocks() == []


async def test_retention_drops_the_oldest_batches(tmp_path: Path) -> None:
    settings = {"telemetry_max_events": 1000, "telemetry_self_events": False}
    async with running_daemon(tmp_path / "s", **settings) as daemon, daemon_client(daemon.url) as http:
        for batch in range(4):
            await ingest(http, [event(batch * 1000 + i, float(batch)) for i in range(400)])
        kept = (await http.get(EVENTS, params={"per_page": 1})).json()["meta"]["total"]
        assert kept == 800  # whole batches: 1,200 would exceed 1,000, so the two oldest went
        oldest = (await http.get(EVENTS, params={"per_page": 1, "sort": "timestamp"})).json()["data"][0]
        assert oldest["measurements"]["duration_ms"] == 2
    settings = {"telemetry_max_events": 1000, "telemetry_self_events": False}
    async with running_daemon(tmp_path / "s", **settings) as daemon, daemon_client(daemon.url) as http:
        await ingest(http, [event(9000 + i, 9.0) for i in range(400)])  # the count survives a restart
        assert (await http.get(EVENTS, params={"per_page": 1})).json()["meta"]["total"] == 800


async def test_events_reach_telemetry_subscribers(daemon: RunningDaemon, http: httpx.AsyncClient) -> None:
    async with connect(daemon.ws_url) as ws:
        await ws.send(json.dumps({"action": "subscribe", "topics": ["telemetry"]}))
        while json.loads(await ws.recv()).get("type") != "subscribed":
            pass
        await ingest(http, [SEED_EVENT, {"event_name": "a.b", "measurements": {"x": 1}}])
        received = []
        while len(received) < 2:
            message = json.loads(await ws.recv())
            if message["type"] == "telemetry_event":
                received.append(message)
    assert received[0] == {
        "type": "telemetry_event",
        "topic": "telemetry",
        "event": {
            "id": received[0]["event"]["id"],
            "event_name": ["crucible", "model", "inference"],
            "measurements": {"duration_ms": 234, "tokens": 150},
            "metadata": SEED_EVENT["metadata"],
            "timestamp": "2024-01-15T10:35:00.000Z",
        },
    }
    assert received[1]["event"]["event_name"] == ["a", "b"] and received[1]["event"]["timestamp"].endswith("Z")


async def test_pivotd_counts_what_it_ingests(tmp_path: Path) -> None:
    async with running_daemon(tmp_path / "s") as daemon, daemon_client(daemon.url) as http:
        await _counts_what_it_ingests(http)


async def _counts_what_it_ingests(http: httpx.AsyncClient) -> None:
    await http.post(
        "/api/v1/runs/r1/scalars", json=[{"step": 1, "values": {"loss": 1.0}}, {"step": 2, "values": {"loss": 0.5}}]
    )
    await ingest(http, [SEED_EVENT])
    rows = (
        await http.get(
            EVENTS, params={"agg": "sum", "agg_field": "points", "filter[event_name]": "pivot.ingest.scalars"}
        )
    ).json()
    assert rows["data"][0]["value"] == 2
    telemetry = (await http.get(EVENTS, params={"filter[event_name]": "pivot.ingest.telemetry"})).json()["data"]
    assert telemetry[0]["measurements"]["events"] == 1


# ---- the fast path (msgspec) and the careful path (per event) agree ------------------------------------------

GOOD_EVENTS: list[Any] = [
    {"event_name": ["a", "b"], "measurements": {"x": 1, "y": 2.5}, "metadata": {"k": "v", "n": 3, "f": 1.5}},
    {"event_name": "a.b.c", "timestamp": "2024-01-15T10:35:00Z"},
    {"event_name": ["a"], "metadata": {"b": True, "z": None, "s": "x" * 1024}, "timestamp": "2024-01-15T10:35:00"},
    {"event_name": ["p" * 64] * 16, "measurements": {"m" * 128: -(2**63)}, "timestamp": None},
    {"event_name": ["a"], "measurements": {"big": 1.5e308}, "metadata": {"i": 2**63 - 1}},
    {"event_name": ["a"], "timestamp": "not a time"},  # passes both checks; rejected with its timestamp
    {"event_name": ["a"], "timestamp": "99999-01-01T00:00:00"},  # parses (numpy), rejected: out of range
    {"event_name": ["a"], "timestamp": "1969-12-31T23:59:59Z"},  # before 1970
    {"event_name": ["a"], "timestamp": "1970-01-01T00:30:00+01:00"},  # before 1970, by its offset
    {"event_name": ["a"], "timestamp": "2024-03-10T16:00:01Z"},  # a day and a second after `now` below
    {"event_name": ["a"], "timestamp": "1970-01-01T00:00:00Z"},  # the bounds themselves are accepted
    {"event_name": ["a"], "timestamp": "2024-03-10T16:00:00Z"},
    {"event_name": ["a"], "timestamp": "2024-03-10T17:00:00+01:00"},
]
OUT_OF_RANGE = 4  # the events above that parse but are rejected for their range
BAD_EVENTS: list[Any] = [
    1,
    [],
    {},
    {"event_name": []},
    {"event_name": [""]},
    {"event_name": "a..b"},
    {"event_name": "a. .b"},
    {"event_name": [" "]},
    {"event_name": ["a", "\u3000\n"]},
    {"event_name": ["p" * 65]},
    {"event_name": ["a"] * 17},
    {"event_name": ["a", 1]},
    {"event_name": ["a"], "extra": 1},
    {"event_name": ["a"], "measurements": {"x": True}},
    {"event_name": ["a"], "measurements": {"x": "1"}},
    {"event_name": ["a"], "measurements": {"": 1}},
    {"event_name": ["a"], "measurements": {"x": 2**63 + 1}},
    {"event_name": ["a"], "measurements": {f"m{i}": i for i in range(65)}},
    {"event_name": ["a"], "metadata": {"k": {"nested": 1}}},
    {"event_name": ["a"], "metadata": {"k": [1]}},
    {"event_name": ["a"], "metadata": {"k": "x" * 1025}},
    {"event_name": ["a"], "metadata": {"k" * 129: 1}},
    {"event_name": ["a"], "metadata": {"k": -(2**63) - 1}},
    {"event_name": ["a"], "timestamp": 1705315200},
]


def test_fast_and_careful_checks_store_the_same_events() -> None:
    now = 1_710_000_000.0  # 2024-03-09T16:00:00Z
    body = json.dumps({"events": GOOD_EVENTS}).encode()
    fast = check_batch_fast(body, 100, now)
    careful = check_events(batch_events(json.loads(body), 100), now)
    assert fast is not None
    assert (fast.accepted, fast.rejected, fast.errors) == (careful.accepted, careful.rejected, careful.errors)
    assert careful.rejected == 1 + OUT_OF_RANGE and len(careful.accepted) == len(GOOD_EVENTS) - 1 - OUT_OF_RANGE
    assert [e["message"] for e in careful.errors[1:]] == [
        "must be between 1970-01-01T00:00:00Z and one day after the server's clock"
    ] * OUT_OF_RANGE
    assert [event[1] for event in careful.accepted[-3:]] == [0.0, now + 86400, now + 86400]
    # The same range when a whole batch goes the per-value path (numpy refuses one of its timestamps).
    mixed = [{"event_name": "a", "timestamp": t} for t in ("2024-02-30T00:00:00", "1960-01-01", "2999-01-01T00:00Z")]
    stamps = check_events(mixed, now)
    assert stamps.rejected == 3 and [e["message"] for e in stamps.errors[1:]] == [careful.errors[1]["message"]] * 2
    for bad in BAD_EVENTS:
        body = json.dumps({"events": [GOOD_EVENTS[0], bad]}).encode()
        assert check_batch_fast(body, 100, now) is None, bad  # falls back, so the careful path names the field
        assert check_events(batch_events(json.loads(body), 100), now).rejected == 1, bad
    # Valid, but outside the fast schema: the careful path stores them.
    body = json.dumps({"events": [{"event_name": ["a"], "measurements": None, "metadata": None}]}).encode()
    assert check_batch_fast(body, 100, now) is None
    assert check_events(batch_events(json.loads(body), 100), now).accepted == [(("a",), now, {}, {})]
    nan = b'{"events": [{"event_name": ["a"], "measurements": {"x": NaN}}]}'
    for body in (b'{"events": []}', b'{"events": [{"event_name": ["a"]}], "x": 1}', nan):
        assert check_batch_fast(body, 100, now) is None
    assert check_batch_fast(json.dumps({"events": GOOD_EVENTS[:2]}).encode(), 1, now) is None  # over the cap
