"""The OpenAPI document at /api/v1/openapi.json is complete: every route, with its body schema."""

from __future__ import annotations

import re

import httpx
import pytest

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


def _refs(node: object) -> list[str]:
    if isinstance(node, dict):
        found = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return found + [ref for value in node.values() for ref in _refs(value)]
    if isinstance(node, list):
        return [ref for value in node for ref in _refs(value)]
    return []


TRAINING_PREFIXES = ("/api/v1/training/", "/api/v1/metrics/{session_id}", "/api/v1/monitor/", "/api/v1/models")
SIMPLE_FAMILY = re.compile(r"^/api/(models|train|runs|params|infer)")
STREAMS = {"/api/runs/{run_id}/events", "/api/v1/sse/training/{session_id}"}


async def test_training_model_and_monitor_operations_declare_what_they_answer(http: httpx.AsyncClient) -> None:
    """Sessions, the model registry (both families), runs, inference, monitor and health: each operation's success
    names a JSON schema (not `{}`), and every declared error names its family's envelope."""
    document = (await http.get("/api/v1/openapi.json")).json()
    checked = 0
    for path, item in document["paths"].items():
        ours = path.startswith(TRAINING_PREFIXES) or SIMPLE_FAMILY.match(path) or path in ("/health", "/api/v1/health")
        if not ours or path in STREAMS:
            continue
        for method, operation in item.items():
            responses = operation["responses"]
            success = next(code for code in responses if code.startswith("2"))
            if success == "204":
                continue
            schema = responses[success]["content"]["application/json"]["schema"]
            assert schema and schema != {}, (method, path, success)
            for code, response in responses.items():
                if code.startswith(("4", "5")) and code != "503":
                    error = response["content"]["application/json"]["schema"]["$ref"]
                    family = "SimpleErrorEnvelope" if SIMPLE_FAMILY.match(path) else "StructuredErrorEnvelope"
                    assert error.endswith(family), (method, path, code)
            checked += 1
    assert checked >= 28, checked
    session = document["components"]["schemas"]["SessionPublic"]
    assert session["properties"]["status"] == {"$ref": "#/components/schemas/SessionStatus"}
    assert document["components"]["schemas"]["SessionStatus"]["enum"] == [
        "created", "running", "stopped", "completed", "failed"
    ]  # fmt: skip
