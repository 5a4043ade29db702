"""The layer-wise bodies the SDK's sender thread builds, seen on their way out (the transport still delivers them)."""

from __future__ import annotations

from typing import Any

import pytest

from shared.sdk.transport import Item, Transport


def capture_layerwise_bodies(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    bodies: list[dict[str, Any]] = []
    original = Transport.put

    def put(self: Transport, item: Item) -> None:
        if item.kind == "layerwise" and callable(item.body):
            build = item.body

            def capture() -> dict[str, Any]:
                body = build()
                bodies.append(body)
                return body

            item.body = capture
        original(self, item)

    monkeypatch.setattr(Transport, "put", put)
    return bodies
