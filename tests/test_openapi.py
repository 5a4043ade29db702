"""The OpenAPI document at /api/v1/openapi.json is complete: every route, with its body schema."""

from __future__ import annotations

import httpx

from tests.daemon import RunningDaemon, iter_routes


async def test_every_http_route_is_documented(daemon: RunningDaemon, http: httpx.AsyncClient) -> None:
    document = (await http.get("/api/v1/openapi.json")).json()
    documented = {(path, method.upper()) for path, item in document["paths"].items() for method in item}
    checked = 0
    for route in iter_routes(daemon.app):
        methods = getattr(route, "methods", None)  # WebSocket routes have none and no OpenAPI entry
        if not methods or route.path in ("/api/v1/openapi.json", "/docs", "/docs/oauth2-redirect"):
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


async def test_interactive_docs_are_served(http: httpx.AsyncClient) -> None:
    page = await http.get("/docs")
    assert page.status_code == 200 and "/api/v1/openapi.json" in page.text


def _refs(node: object) -> list[str]:
    if isinstance(node, dict):
        found = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return found + [ref for value in node.values() for ref in _refs(value)]
    if isinstance(node, list):
        return [ref for value in node for ref in _refs(value)]
    return []
