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


async def test_the_session_routes_document_their_cookie(http: httpx.AsyncClient) -> None:
    session = (await http.get("/api/v1/openapi.json")).json()["paths"]["/api/v1/auth/session"]
    opened = session["post"]["responses"]["201"]
    assert opened["content"]["application/json"]["schema"]["$ref"] == "#/components/schemas/AuthSessionCreated"
    assert "HttpOnly; SameSite=Strict" in opened["headers"]["Set-Cookie"]["description"]
    assert "Max-Age=0" in session["delete"]["responses"]["204"]["headers"]["Set-Cookie"]["description"]


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
