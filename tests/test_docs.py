"""The docs keep up with the code: every setting, route and /ws message type is documented."""

from __future__ import annotations

import re
from pathlib import Path

from pivotd.app import create_app
from pivotd.settings import Settings
from pivotd.store.schema import MIGRATIONS, SCHEMA_VERSION
from tests.daemon import iter_routes

ROOT = Path(__file__).parent.parent
DOCS = ROOT / "docs"


def test_every_setting_is_documented() -> None:
    configuration = (DOCS / "configuration.md").read_text()
    for name in Settings.model_fields:
        assert f"| `{name}` |" in configuration, name


def test_every_route_is_documented(tmp_path: Path) -> None:
    api = (DOCS / "api.md").read_text()
    app = create_app(Settings(data_dir=tmp_path), "token")
    for route in iter_routes(app):
        if route.path in ("/api/v1/openapi.json", "/docs", "/redoc", "/docs/assets"):
            continue
        for method in getattr(route, "methods", None) or {"WEBSOCKET"}:
            if method == "HEAD":
                continue
            heading = f"`{route.path}`" if method == "WEBSOCKET" else f"`{method} {route.path}`"
            assert heading in api, heading


def test_every_websocket_message_type_is_documented() -> None:
    api = (DOCS / "api.md").read_text()
    source = "\n".join(path.read_text() for path in (ROOT / "pivotd").rglob("*.py"))
    types = set(re.findall(r"""["']type["']\s*:\s*["'](\w+)["']""", source))
    types |= set(re.findall(r'\\?"type\\?":\\?"(\w+)', source))
    types |= {"subscribed", "unsubscribed"}  # built as f"{action}d"
    types -= {"string", "integer", "number", "boolean", "object", "array"}  # JSON Schema's, in OpenAPI extras
    assert {"initial_runs", "run_history", "new_metrics", "pong", "error", "lagged"} <= types
    for kind in types:
        assert f"`{kind}`" in api, kind
    for action in ("subscribe_run", "ping", "subscribe", "unsubscribe"):
        assert f"`{action}`" in api, action


def test_documented_schema_is_the_one_the_daemon_creates() -> None:
    architecture = (DOCS / "architecture.md").read_text()
    assert re.findall(r"\*\*Schema\*\* \(version (\d+);", architecture) == [str(SCHEMA_VERSION)]
    for table in set(re.findall(r"CREATE TABLE (\w+)", "".join(MIGRATIONS))):
        assert f"| `{table}` |" in architecture, table


def documented_modules(architecture: str) -> list[tuple[str, list[Path]]]:
    """Each file or package architecture.md names, with where it may be. In the package tree a bare name
    belongs to the package line it sits under; a path with a slash, here or in the prose, is relative to the
    repository or to pivotd/."""
    tree = architecture.split("## Packages\n\n```\n", 1)[1].split("\n```", 1)[0]
    named: list[tuple[str, list[Path]]] = []
    top = package = ROOT
    for line in tree.splitlines():
        head = re.match(r"(\S+)\s", line) or re.match(r"  (\S+)(\s|$)", line)
        rest = line
        if head is not None:
            token, rest = head[1], line[head.end(1) :]
            if line[0] != " ":
                top = package = ROOT / token
                named.append((token, [top]))
            else:
                package = top / token if token.endswith("/") else top
                named.append((token, [top / token]))
        for name in re.findall(r"[\w/]+\.py\b", rest):
            named.append((name, [ROOT / name, ROOT / "pivotd" / name] if "/" in name else [package / name]))
    for name in re.findall(r"`([\w/]+\.py)`", architecture):
        named.append((name, [ROOT / name, ROOT / "pivotd" / name]))
    return named


def test_the_modules_architecture_lists_exist() -> None:
    named = documented_modules((DOCS / "architecture.md").read_text())
    assert {"pivotd/", "store/", "schema.py", "pivot_tui/"} <= {name for name, _ in named}
    missing = [name for name, places in named if not any(place.exists() for place in places)]
    assert not missing, missing
