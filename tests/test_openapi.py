"""The OpenAPI document at /api/v1/openapi.json is complete: every route, with its body schema."""

from __future__ import annotations

import re

import httpx
import pytest

from pivotd.api.contract import CREATES_WHAT_THE_PATH_NAMES
from pivotd.api.responses import ERROR_ENVELOPES
from pivotd.auth import OPEN_PATHS
from pivotd.errors import Family, family_for_path
from pivotd.policy import SAFE_METHODS, requirement
from shared.models.experiments import ExperimentRunStatus, ExperimentStatus
from tests.daemon import RunningDaemon, iter_routes

# One daemon for the module: these tests read the OpenAPI document and send refused requests.
pytestmark = pytest.mark.shared_daemon

ENVELOPE = {Family.LAYERWISE: "LayerwiseErrorEnvelope", Family.SIMPLE: "SimpleErrorEnvelope"}
OPERATIONS_DOMAIN = (
    "/api/v1/alerts",
    "/api/v1/notifications",
    "/api/v1/webhooks",
    "/api/v1/api-keys",
    "/api/v1/auth/session",
    "/api/v1/telemetry",
    "/api/v1/metrics/layerwise",
    "/api/v1/runs",
)


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


def test_error_envelopes_are_documented_by_reference_not_as_response_models(daemon: RunningDaemon) -> None:
    """FastAPI builds a pydantic serializer for each `model` of each route's responses, used for the document alone:
    declared so, the error envelopes were about 500 of them and a tenth of a second of every daemon's start."""
    for route in iter_routes(daemon.app):
        for code, field in getattr(route, "response_fields", {}).items():
            assert field.field_info.annotation not in ERROR_ENVELOPES, (route.path, code)


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


def _operations(document: dict) -> list[tuple[str, str, dict]]:
    return [(path, method, operation) for path, item in document["paths"].items() for method, operation in item.items()]


def _ref(response: dict) -> str | None:
    schema = response.get("content", {}).get("application/json", {}).get("schema", {})
    return schema["$ref"].removeprefix("#/components/schemas/") if "$ref" in schema else None


async def test_operations_declare_what_their_success_holds(http: httpx.AsyncClient) -> None:
    """Alerts, notifications, webhooks, API keys, browser sessions, telemetry and the layer-wise routes each name the
    schema of the JSON they answer with (not FastAPI's `{}` for a route returning a bare Response)."""
    document = (await http.get("/api/v1/openapi.json")).json()
    checked = 0
    for path, method, operation in _operations(document):
        if not path.startswith(OPERATIONS_DOMAIN) or family_for_path(path) is Family.STRUCTURED and "/runs/" in path:
            continue  # run logs and checkpoints, under /api/v1/runs, are another domain's
        status = next(code for code in operation["responses"] if code.startswith("2"))
        if status == "204":
            assert "content" not in operation["responses"][status], (method, path)
            continue
        schema = operation["responses"][status]["content"]["application/json"]["schema"]
        assert schema and schema != {}, (method, path)
        checked += 1
    assert checked >= 30


HEALTH_ANSWERS = {"/health": "Health", "/api/v1/health": "HealthDetail"}


async def test_every_operation_declares_the_errors_it_can_answer(http: httpx.AsyncClient) -> None:
    """401 and 429 wherever the access middleware runs, 403 where `pivotd.policy` (or a cross-site session cookie)
    can refuse, 404 where the path names an id, 422 where there is anything to validate: each in the envelope of the
    operation's family, family L's 422 in FastAPI's shape, and FastAPI's own 422 model nowhere."""
    document = (await http.get("/api/v1/openapi.json")).json()
    assert "HTTPValidationError" not in document["components"]["schemas"]
    for path, method, operation in _operations(document):
        responses = operation["responses"]
        family = family_for_path(path)
        expected: set[str] = set()
        if path not in OPEN_PATHS:
            expected |= {"401", "429"}
            if method.upper() not in SAFE_METHODS or requirement(method.upper(), path).scope != "read":
                expected.add("403")
        if "{" in path and (method, path) not in CREATES_WHAT_THE_PATH_NAMES:
            expected.add("404")
        if operation.get("parameters") or operation.get("requestBody"):
            expected.add("422")
        missing = expected - set(responses)
        assert not missing, (method, path, missing)
        envelope = ENVELOPE.get(family, "StructuredErrorEnvelope")
        for code, response in responses.items():
            if code.startswith(("4", "5")):
                wanted = "LayerwiseValidationError" if family is Family.LAYERWISE and code == "422" else envelope
                if code == "503" and path in HEALTH_ANSWERS:  # unhealthy: the health document itself, not an error
                    wanted = HEALTH_ANSWERS[path]
                assert _ref(response) == wanted, (method, path, code)


async def test_the_404s_operations_answer_are_declared(http: httpx.AsyncClient) -> None:
    """Every operation whose path names an id, asked about one nothing has, either finds nothing (404, declared) or
    is one that creates what it names."""
    document = (await http.get("/api/v1/openapi.json")).json()
    for path, method, operation in _operations(document):
        if "{" not in path or path.startswith("/api/v1/sse/"):
            continue  # an event stream for an unknown session is a 404 too, but an open stream would never end
        url = re.sub(r"\{[^}]+\}", "nothing-has-this-id", path)
        body = {"json": {}} if method in ("post", "put", "patch") else {}
        response = await http.request(method.upper(), url, **body)
        if response.status_code == 404:
            assert "404" in operation["responses"], (method, path)
        if (method, path) in CREATES_WHAT_THE_PATH_NAMES:
            assert response.status_code != 404, (method, path)


@pytest.mark.parametrize(
    ("method", "path", "allow", "envelope"),
    [
        ("PUT", "/api/v1/alerts/rules", "GET, POST", "error"),
        ("POST", "/api/v1/alerts/rules/rule_x", "DELETE, GET, PATCH, PUT", "error"),
        ("PUT", "/api/v1/metrics/layerwise", "POST", "detail"),
        ("POST", "/api/v1/runs/r1", "DELETE, GET", "detail"),
        ("DELETE", "/api/models", "GET, POST", "error"),
    ],
)
async def test_405_says_which_methods_the_path_allows(
    http: httpx.AsyncClient, method: str, path: str, allow: str, envelope: str
) -> None:
    response = await http.request(method, path)
    assert response.status_code == 405
    assert response.headers["allow"] == allow
    assert envelope in response.json()


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


def _untyped(schema: dict, schemas: dict) -> bool:
    """A schema that says nothing of what it holds: `{}`, an object without properties or a value schema, or a
    list or union with such a member."""
    while "$ref" in schema:
        schema = schemas[schema["$ref"].rsplit("/", 1)[1]]
    if "anyOf" in schema or "oneOf" in schema:
        return any(_untyped(member, schemas) for member in schema.get("anyOf", schema.get("oneOf", [])))
    if schema.get("type") == "array":
        return _untyped(schema.get("items", {}), schemas)
    if schema.get("type") in ("object", None):
        return not schema.get("properties") and schema.get("additionalProperties") in (None, True, {})
    return False


async def test_every_success_names_what_it_holds(http: httpx.AsyncClient) -> None:
    """Every operation's 2xx says what it answers: a typed JSON schema (not `{}`, nor an object of anything), an
    event stream whose every event names its model, a file's media type, or no content for a 204."""
    document = (await http.get("/api/v1/openapi.json")).json()
    schemas = document["components"]["schemas"]
    streams = 0
    for path, method, operation in _operations(document):
        success = {code: response for code, response in operation["responses"].items() if code.startswith("2")}
        assert success, (method, path)
        for code, response in success.items():
            content = response.get("content", {})
            assert bool(content) == (code != "204"), (method, path, code)
            if "application/json" in content:
                assert not _untyped(content["application/json"]["schema"], schemas), (method, path, code)
            if "text/event-stream" in content:
                event = content["text/event-stream"]["schema"]
                for variant in event["oneOf"]:
                    ref = variant["properties"]["data"]["contentSchema"]["$ref"]
                    assert not _untyped({"$ref": ref}, schemas), (method, path, ref)
                streams += 1
    assert streams == len(STREAMS)
