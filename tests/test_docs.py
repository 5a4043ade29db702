"""The docs keep up with the code: every setting, route and /ws message type is documented."""

from __future__ import annotations

import re
from pathlib import Path

from pivotd.app import create_app
from pivotd.settings import Settings
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
    assert {"initial_runs", "run_history", "new_metrics", "pong", "error", "lagged"} <= types
    for kind in types:
        assert f"`{kind}`" in api, kind
    for action in ("subscribe_run", "ping", "subscribe", "unsubscribe"):
        assert f"`{action}`" in api, action
