"""Layer-wise steps are stored compactly (`store/stepcodec.py`) and read back exactly as they were sent:
the API's answers are the bytes the JSON store gave before, for new steps and for converted old ones."""

from __future__ import annotations

import json
import sqlite3
import struct
from pathlib import Path
from typing import Any

import orjson

from pivotd.ingest import step_record
from pivotd.settings import Settings
from pivotd.store.schema import configure, migrate
from shared.models.layerwise import LayerwisePayload
from tests.daemon import daemon_client, running_daemon
from tests.payloads import layerwise_payload

LAYERWISE = "/api/v1/metrics/layerwise"
F32 = struct.Struct("<f")
# Floats at the edges of float64 and of the float32 shortcut: each must come back bit for bit.
AWKWARD = [5e-324, 2.2250738585072014e-308, 1.7976931348623157e308, 0.1, 1 / 3, 1e-5, 1e16, 123456789.125]


def float32(value: float) -> float:
    return F32.unpack(F32.pack(value))[0]


def awkward_payload(run_id: str, step: int) -> dict[str, Any]:
    """A plausible step whose numbers include extremes, float32 values (what the SDK sends) and zeros."""
    payload = layerwise_payload(run_id, step, layers=6)
    for index, layer in enumerate(payload["layer_statistics"]):
        gradients = layer["gradient_flow"]
        gradients["gradient_l2_norm"] = AWKWARD[(index + step) % len(AWKWARD)]
        gradients["gradient_std"] = float32(gradients["gradient_std"])
        gradients["gradient_max_abs"] = 0.0
        layer["intermediate_features"]["activation_mean"] = -0.0 if index % 2 else float32(-1 / 7)
        layer["layer_id"] = f'block "{index}" \u00e9\\n\t,:[1]'  # quotes, escapes and digits in a string
    payload["cross_layer_analysis"]["gradient_norm_ratio"] = {}
    return payload


def stored_form(payload: dict[str, Any]) -> bytes:
    """What the JSON store kept for this payload, and so what the API answered before."""
    return step_record(LayerwisePayload.model_validate(payload)).data


async def test_steps_read_back_byte_for_byte(tmp_path: Path) -> None:
    payloads = [awkward_payload("exact", step) for step in range(12)] + [layerwise_payload("exact", 12, layers=50)]
    async with running_daemon(tmp_path) as daemon, daemon_client(daemon.url) as http:
        assert (await http.post(f"{LAYERWISE}/batch", json=payloads[:6])).status_code == 202
        for payload in payloads[6:]:
            assert (await http.post(LAYERWISE, json=payload)).status_code == 202
        await daemon.services.store.writer.settled.wait()  # every step packed
        everything = await http.get("/api/v1/runs/exact")
        some = await http.get("/api/v1/runs/exact", params={"from_step": 3, "to_step": 5})
        latest = await http.get("/api/v1/runs/exact/latest")
        lite = await http.get("/api/v1/runs/exact", params={"lite": "true"})
    documents = [stored_form(payload) for payload in payloads]
    assert b'"steps":[' + b",".join(documents) + b"]}" in everything.content
    assert b'"steps":[' + b",".join(documents[3:6]) + b"]}" in some.content
    assert latest.content == documents[-1]
    assert lite.json()["steps"][0]["layers"][0]["gradient_l2_norm"] == AWKWARD[0]
    steps = everything.json()["steps"]
    sent = [layer["gradient_flow"]["gradient_l2_norm"] for step in steps for layer in step["layers"]]
    expected = [layer["gradient_flow"]["gradient_l2_norm"] for p in payloads for layer in p["layer_statistics"]]
    assert [struct.pack("<d", value) for value in sent] == [struct.pack("<d", value) for value in expected]


async def test_a_step_sent_again_replaces_the_stored_one(tmp_path: Path) -> None:
    async with running_daemon(tmp_path) as daemon, daemon_client(daemon.url) as http:
        first, second = layerwise_payload("again", 1, layers=4), awkward_payload("again", 1)
        for payload in (first, second):
            assert (await http.post(LAYERWISE, json=payload)).status_code == 202
            await daemon.services.store.writer.settled.wait()  # packed, then replaced by JSON, packed again
        detail = await http.get("/api/v1/runs/again")
    assert detail.json()["step_count"] == 1
    assert b'"steps":[' + stored_form(second) + b"]}" in detail.content


async def test_steps_of_the_json_store_are_converted_in_place(tmp_path: Path) -> None:
    """A database of schema 13 (steps as JSON) opened by this pivotd answers exactly as before."""
    path = Settings(data_dir=tmp_path, config_dir=tmp_path / "config").db_path
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path, isolation_level=None)
    configure(conn)
    migrate(conn, target=13)
    conn.execute("INSERT INTO runs (run_id, created_at, last_update) VALUES ('old', 1, 2)")
    documents = [stored_form(awkward_payload("old", step)) for step in range(5)]
    documents.append(json.dumps({"step": 5, "layers": [], "note": 1e-05}).encode())  # not orjson's spelling
    conn.executemany(
        "INSERT INTO steps (run, step, timestamp, batch_size, data) VALUES (1, ?, ?, 64, ?)",
        [(step, float(step), document) for step, document in enumerate(documents)],
    )
    conn.execute("INSERT INTO steps (run, step, timestamp, batch_size, data) VALUES (1, 6, 6.0, 64, '{\"step\":6}')")
    conn.close()
    documents.append(b'{"step":6}')  # stored as text by an early version
    async with running_daemon(tmp_path) as daemon, daemon_client(daemon.url) as http:
        await daemon.services.store.writer.settled.wait()  # the old steps are packed after the upgrade
        detail = await http.get("/api/v1/runs/old")
    assert detail.json()["step_count"] == 7
    assert b'"steps":[' + b",".join(documents) + b"]}" in detail.content
    conn = sqlite3.connect(path)
    shapes = conn.execute("SELECT count(*) FROM step_shapes").fetchone()[0]
    json_kept = conn.execute("SELECT count(*) FROM steps WHERE shape = 0").fetchone()[0]
    unpacked = conn.execute("SELECT count(*) FROM steps WHERE shape IS NULL").fetchone()[0]
    packed = conn.execute("SELECT max(length(data)) FROM steps WHERE shape IS NOT NULL").fetchone()[0]
    conn.close()
    assert shapes >= 1 and unpacked == 0
    assert json_kept == 1  # only the document json.dumps wrote stays JSON: orjson spells 1e-05 `1e-5`
    assert packed < min(len(document) for document in documents[:5]) / 2
    assert orjson.loads(documents[0])["step"] == 0
