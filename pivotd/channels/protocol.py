"""Phoenix Channels frames: the v2 JSON array serializer, the v1 object one, and what makes a frame bad.

A v2 frame is `[join_ref, ref, topic, event, payload]`; v1 is `{"join_ref", "ref", "topic", "event",
"payload"}`. Both are what Phoenix's own serializers read and write, so the npm `phoenix` client connects
unchanged. A frame that is not one of these cannot be answered (there is no trustworthy ref to answer), so
the connection is closed, as a Phoenix server does when its serializer fails to decode.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Protocol

import orjson

PHOENIX_TOPIC = "phoenix"
HEARTBEAT = "heartbeat"
JOIN, LEAVE, REPLY, CLOSE = "phx_join", "phx_leave", "phx_reply", "phx_close"
MAX_FRAME_CHARS = 64 * 1024
"""Client frames are small (joins, heartbeats, filters); a larger one is refused and the socket closed."""
MAX_NAME_CHARS = 255
"""Longest topic or event name (the v2 binary serializer's limit, kept for the JSON one too)."""

# WebSocket close codes (RFC 6455) used for frames we cannot read.
CLOSE_NORMAL = 1000
CLOSE_UNSUPPORTED_DATA = 1003
CLOSE_POLICY_VIOLATION = 1008
CLOSE_TOO_BIG = 1009

Ref = str | int | None


class FrameError(ValueError):
    """A client frame that is not a Phoenix message; the connection is closed with `code`."""

    def __init__(self, message: str, code: int = CLOSE_POLICY_VIOLATION) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True, slots=True)
class Frame:
    join_ref: Ref
    ref: Ref
    topic: str
    event: str
    payload: Any


def _ref(value: Any, name: str) -> Ref:
    # Phoenix's client sends string refs; other clients send numbers. Either is echoed back unchanged.
    if value is None or isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool)):
        return value
    raise FrameError(f"{name} must be a string, a number or null")


def _name(value: Any, name: str) -> str:
    if not isinstance(value, str) or not value or len(value) > MAX_NAME_CHARS:
        raise FrameError(f"{name} must be a non-empty string of at most {MAX_NAME_CHARS} characters")
    return value


def _load(text: str) -> Any:
    if len(text) > MAX_FRAME_CHARS:
        raise FrameError(f"frame larger than {MAX_FRAME_CHARS} characters", CLOSE_TOO_BIG)
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise FrameError(f"frame is not JSON: {exc}") from None


class Serializer(Protocol):
    vsn: str

    def decode(self, text: str) -> Frame: ...

    def encode(self, frame: Frame) -> str: ...


class V2JsonSerializer:
    vsn = "2.0.0"

    def decode(self, text: str) -> Frame:
        data = _load(text)
        if not isinstance(data, list) or len(data) != 5:
            raise FrameError("frame must be a JSON array [join_ref, ref, topic, event, payload]")
        join_ref, ref, topic, event, payload = data
        return Frame(
            _ref(join_ref, "join_ref"), _ref(ref, "ref"), _name(topic, "topic"), _name(event, "event"), payload
        )

    def encode(self, frame: Frame) -> str:
        return orjson.dumps([frame.join_ref, frame.ref, frame.topic, frame.event, frame.payload]).decode()


class V1JsonSerializer:
    vsn = "1.0.0"

    def decode(self, text: str) -> Frame:
        data = _load(text)
        if not isinstance(data, dict):
            raise FrameError('frame must be a JSON object {"topic", "event", "payload", "ref"}')
        return Frame(
            _ref(data.get("join_ref"), "join_ref"),
            _ref(data.get("ref"), "ref"),
            _name(data.get("topic"), "topic"),
            _name(data.get("event"), "event"),
            data.get("payload"),
        )

    def encode(self, frame: Frame) -> str:
        message = {"topic": frame.topic, "event": frame.event, "payload": frame.payload, "ref": frame.ref}
        return orjson.dumps(message | {"join_ref": frame.join_ref}).decode()


_VSN = re.compile(r"(\d+)\.(\d+)\.(\d+)")


def negotiate(vsn: str | None) -> Serializer | None:
    """The serializer for a connect's `vsn` (Phoenix's defaults: `~> 1.0.0` and `~> 2.0.0`; absent means 1.0.0)."""
    match = _VSN.fullmatch(vsn or "1.0.0")
    if match is None:
        return None
    major, minor = int(match[1]), int(match[2])
    if (major, minor) == (2, 0):
        return V2JsonSerializer()
    if (major, minor) == (1, 0):
        return V1JsonSerializer()
    return None


def reply(frame: Frame, status: str, response: dict[str, Any], join_ref: Ref = None) -> Frame:
    """`phx_reply` to `frame` (matched by the client on its `ref`)."""
    return Frame(join_ref, frame.ref, frame.topic, REPLY, {"status": status, "response": response})


def push(join_ref: Ref, topic: str, event: str, payload: dict[str, Any]) -> Frame:
    """A server push on a joined channel: its join_ref, no ref."""
    return Frame(join_ref, None, topic, event, payload)


def close(join_ref: Ref, topic: str) -> Frame:
    """`phx_close` ends a channel on the client; Phoenix sends the join's ref as both refs."""
    return Frame(join_ref, join_ref, topic, CLOSE, {})
