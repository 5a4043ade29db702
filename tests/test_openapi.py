"""The OpenAPI document at /api/v1/openapi.json is complete: every route, with its body schema."""

from __future__ import annotations

import re

import httpx
import pytest

from shared.models.experiments import ExperimentRunStatus, ExperimentStatus
from tests.daemon import RunningDaemon, iter_routes


async def test_every_http_route_is_documented(daemon: RunningDaemon, http: httpx.AsyncClient) -> None:
    document = (await http.get("/api/v1/openapi.json")).json()
    documented = {(path, method.upper()) for path, item in document["paths"].items() for method in item}
    checked = 0
    for route in iter_routes(daemon.app):
        methods = getattr(route, "methods", None)  # WebSocket routes have none and no OpenAPI entry
        if not methods or route.path in ("/api/v1/openapi.json", "/docs", "/redoc"):
            continue
        for method in methods - {"HEAD"}:
            assert (route.path, method) in documented, (route.path, method)
            checked += 1
    assert checked >= 9


async def test_self_validated_bodies_have_schemas(http: httpx.AsyncClient) -> None:
    document = (await http.get("/api/v1/openapi.json")).json()
    schemas = document["components"]["schemas"]
    body = document["paths"]["/api/v1/metrics/layerwise"]["post"]["requestBody"]["content"]["application/json"]
    assert body["schema"]["$ref"] == "#/components/schemas/LayerwisePayload"
    assert {"LayerwisePayload", "LayerStatistic", "Metadata", "CrossLayerAnalysis", "ScalarsBody"} <= set(schemas)
    dangling = [ref for ref in _refs(document) if ref.removeprefix("#/components/schemas/") not in schemas]
    assert not dangling


async def test_the_session_routes_document_their_cookie(http: httpx.AsyncClient) -> None:
    session = (await http.get("/api/v1/openapi.json")).json()["paths"]["/api/v1/auth/session"]
    opened = session["post"]["responses"]["201"]
    assert opened["content"]["application/json"]["schema"]["$ref"] == "#/components/schemas/AuthSessionCreated"
    assert "HttpOnly; SameSite=Strict" in opened["headers"]["Set-Cookie"]["description"]
    assert "Max-Age=0" in session["delete"]["responses"]["204"]["headers"]["Set-Cookie"]["description"]


ASSET_TYPES = {".js": ("text/javascript", "application/javascript"), ".css": ("text/css",), ".png": ("image/png",)}


@pytest.mark.parametrize(
    ("page", "assets", "global_name"),
    [
        ("/docs", {"/docs/assets/swagger-ui-bundle.js", "/docs/assets/swagger-ui.css"}, b"SwaggerUIBundle"),
        ("/redoc", {"/docs/assets/redoc.standalone.js"}, b"Redoc"),
    ],
)
async def test_interactive_docs_load_only_local_assets(
    http: httpx.AsyncClient, page: str, assets: set[str], global_name: bytes
) -> None:
    """Swagger UI and ReDoc work on a box without internet: every script, stylesheet and icon the page loads is
    served by pivotd itself, and nothing else on the page points off the machine."""
    html = await http.get(page)
    assert html.status_code == 200 and html.headers["content-type"].startswith("text/html")
    assert "/api/v1/openapi.json" in html.text
    loaded = set(re.findall(r'(?:src|href|spec-url)="([^"]+)"', html.text)) | set(
        re.findall(r"url: '([^']+)'", html.text)
    )
    assert loaded == assets | {"/docs/assets/favicon.png", "/api/v1/openapi.json"}, loaded
    assert "http://" not in html.text and "https://" not in html.text
    for url in sorted(loaded - {"/api/v1/openapi.json"}):
        asset = await http.get(url)
        assert asset.status_code == 200, url
        assert asset.headers["content-type"].split(";")[0] in ASSET_TYPES[url[url.rindex(".") :]], url
        assert int(asset.headers["content-length"]) == len(asset.content) > 1000
    script = await http.get(next(url for url in assets if url.endswith(".js")))
    assert global_name in script.content  # the bundle that defines what the page calls, not some other file
    if page == "/docs":  # Swagger UI's validator badge would send the document to validator.swagger.io
        assert '"validatorUrl": null' in html.text


async def test_docs_assets_are_only_the_packaged_files(http: httpx.AsyncClient) -> None:
    for path in ("/docs/assets/missing.js", "/docs/assets/../../pivotd/app.py", "/docs/assets/%2e%2e/app.py"):
        response = await http.get(path)
        assert response.status_code == 404 and response.json()["error"]["code"] == "not_found", path


async def test_layerwise_validation_errors_are_documented_in_fastapis_shape(http: httpx.AsyncClient) -> None:
    """Family L answers a validation failure, a body that is not JSON included, as FastAPI's HTTPValidationError;
    its other errors, and other families' 422s, keep their envelopes."""
    document = (await http.get("/api/v1/openapi.json")).json()
    schemas = document["components"]["schemas"]
    paths = document["paths"]

    def schema(path: str, method: str, status: str) -> str:
        ref: str = paths[path][method]["responses"][status]["content"]["application/json"]["schema"]["$ref"]
        return ref.removeprefix("#/components/schemas/")

    for path, method in [
        ("/api/v1/metrics/layerwise", "post"),
        ("/api/v1/metrics/layerwise/batch", "post"),
        ("/api/v1/runs", "get"),
        ("/api/v1/runs/{run_id}", "get"),
        ("/api/v1/runs/{run_id}/latest", "get"),
        ("/api/v1/runs/{run_id}/scalars", "post"),
        ("/api/v1/runs/{run_id}/finish", "post"),
    ]:
        assert schema(path, method, "422") == "LayerwiseValidationError", path
        assert "400" not in paths[path][method]["responses"], path
    assert schema("/api/v1/runs/{run_id}", "get", "404") == "LayerwiseErrorEnvelope"
    assert schema("/api/v1/metrics/layerwise", "post", "413") == "LayerwiseErrorEnvelope"
    assert schema("/api/v1/runs/{run_id}/logs", "get", "422") == "StructuredErrorEnvelope"
    envelope = schemas["LayerwiseValidationError"]
    assert envelope["required"] == ["detail"] and envelope["properties"]["detail"]["type"] == "array"
    item = schemas[envelope["properties"]["detail"]["items"]["$ref"].removeprefix("#/components/schemas/")]
    assert {"loc", "msg", "type"} <= set(item["required"])
    assert item["properties"]["loc"]["items"] == {"anyOf": [{"type": "string"}, {"type": "integer"}]}


EXPERIMENTS_DOMAIN = re.compile(
    r"^/api/v1/(experiments|statistical-results|export/|datasets/|checkpoints|runs/\{run_id\}/(logs|checkpoints))"
)
"""Experiments, statistics, exports, datasets, checkpoints and a run's logs."""
READ_ONLY_POSTS = ("/api/v1/experiments/{experiment_id}/export", "/api/v1/export/comparison")


async def test_the_experiments_domain_declares_every_answer_and_error(http: httpx.AsyncClient) -> None:
    """Each operation declares its one success: a model, a file's media types, or nothing for a 204; its errors in
    the `{"error"}` envelope, the auth middleware's 401, 403 and 429 among them, and a write's 503 and 507."""
    document = (await http.get("/api/v1/openapi.json")).json()
    checked = 0
    for path, item in document["paths"].items():
        if not EXPERIMENTS_DOMAIN.match(path):
            continue
        for method, operation in item.items():
            where = f"{method.upper()} {path}"
            responses = operation["responses"]
            assert operation["tags"][0] in ("experiments", "statistics", "exports", "datasets", "checkpoints", "runs")
            success = [code for code in responses if code.startswith("2")]
            assert len(success) == 1, where
            content = responses[success[0]].get("content", {})
            if success[0] == "204":
                assert not content, where
            for media, body in content.items():
                schema = body.get("schema", {})
                assert "$ref" in schema or schema.get("type") == "string", (where, media)
            assert "application/json" in content or "application/octet-stream" in content or success[0] == "204"
            writes = method != "get" and path not in READ_ONLY_POSTS
            assert {"401", "403", "429", *(("503", "507") if writes else ())} <= set(responses), where
            for code, response in responses.items():
                if code.startswith(("4", "5")):
                    ref = response["content"]["application/json"]["schema"]["$ref"]
                    assert ref.endswith("/StructuredErrorEnvelope"), (where, code)
            checked += 1
    assert checked >= 27

    def status_enum(path: str) -> list[str]:
        params = document["paths"][path]["get"]["parameters"]
        schema = next(p for p in params if p["name"] == "filter[status]")["schema"]
        ref = next(part["$ref"] for part in schema["anyOf"] if "$ref" in part)
        enum: list[str] = document["components"]["schemas"][ref.rsplit("/", 1)[1]]["enum"]
        return enum

    assert status_enum("/api/v1/experiments") == [str(s) for s in ExperimentStatus]
    assert status_enum("/api/v1/experiments/{experiment_id}/runs") == [str(s) for s in ExperimentRunStatus]
    exports = document["paths"]["/api/v1/export/comparison"]["post"]["responses"]["200"]["content"]
    assert set(exports) == {"application/json", "text/csv", "application/x-tex"}


def _refs(node: object) -> list[str]:
    if isinstance(node, dict):
        found = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return found + [ref for value in node.values() for ref in _refs(value)]
    if isinstance(node, list):
        return [ref for value in node for ref in _refs(value)]
    return []
