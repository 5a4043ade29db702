"""The stored form of a layer-wise step: its shape once per run, its numbers packed per step.

A step's JSON is mostly structure that repeats from step to step (keys, layer ids and types, group
names) around a few hundred numbers. The structure becomes a *template*: the document as orjson writes
it, with each number replaced by a hole byte (0x00 float, 0x01 integer), bytes that orjson never
writes raw because it escapes control characters inside strings. A run stores each distinct template
once (`step_shapes`); each step stores only its numbers:

    zlib( width (4 or 8) | the floats a float32 does not hold: count, indexes, float64 values
          | the floats as float32 or float64, in byte planes | the integers as int64 )

Floats that a float32 holds exactly (everything pivot's SDK sends: its statistics are float32 tensors)
take 4 bytes; the few that need 8 (a wall-clock timestamp) are listed again as float64; a step of mostly
float64 values stores them all as float64. Byte planes put the sign and exponent bytes together, which
zlib compresses well. `struct` rather than numpy: a 3-layer step has a few dozen numbers, where numpy's
per-call overhead would cost more than the packing. Decoding formats the numbers with orjson again and
splices them into the template, so the document read back is byte for byte the one that was stored; a
document whose packed form would not read back identically stays JSON.

Finding a step's template (parsing it, walking it, checking that the result reads back) costs more than
packing its numbers. A run's steps nearly all share one shape, so `Packer` keeps each run's latest template
and tries it first (`_Plan`): a step that fits it is packed from its bytes, without the walk.
"""

from __future__ import annotations

import functools
import hashlib
import operator
import re
import struct
import zlib
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import compress
from typing import Any

import msgspec
import orjson

FLOAT_HOLE = orjson.Fragment(b"\x00")
INT_HOLE = orjson.Fragment(b"\x01")
_HOLE = re.compile(rb"[\x00\x01]")
_LEVEL = 6
"""zlib level: 9 saved under 1% on 50-layer steps for twice the time."""


@dataclass(frozen=True, slots=True)
class Packed:
    template: bytes
    digest: bytes
    values: bytes


@dataclass(frozen=True, slots=True)
class Shape:
    """A template split for decoding: the text between holes, how many floats and integers fill them, and
    (None when they are in document order already) what puts the floats-then-integers in hole order."""

    segments: list[bytes]
    floats: int
    ints: int
    order: Callable[[list[bytes]], tuple[bytes, ...]] | None


def pack(data: bytes) -> Packed | None:
    """A step's JSON packed, or None where the packed form would not read back as exactly these bytes (JSON
    that orjson did not write, such as an older version's, or an integer beyond 64 bits)."""
    floats: list[float] = []
    ints: list[int] = []
    try:
        template = orjson.dumps(_hollow(orjson.loads(data), floats, ints))
        values = _pack_numbers(floats, ints)
    except (OverflowError, TypeError, struct.error, orjson.JSONDecodeError, orjson.JSONEncodeError):
        return None
    if unpack(shape(template), values) != data:
        return None
    return Packed(template, hashlib.blake2b(template, digest_size=16).digest(), values)


def _hollow(node: Any, floats: list[float], ints: list[int]) -> Any:
    """`node` with its numbers replaced by holes and appended to `floats` / `ints`, in document order.
    Leaves are handled inline, not by a call each: this walk is most of the cost of storing a step."""
    kind = type(node)
    if kind is float:
        floats.append(node)
        return FLOAT_HOLE
    if kind is int:
        ints.append(node)
        return INT_HOLE
    if kind is dict:
        out = {}
        for key, value in node.items():
            kind = type(value)
            if kind is float:
                floats.append(value)
                out[key] = FLOAT_HOLE
            elif kind is int:
                ints.append(value)
                out[key] = INT_HOLE
            elif kind is dict or kind is list:
                out[key] = _hollow(value, floats, ints)
            else:
                out[key] = value
        return out
    if kind is list:
        return [_hollow(value, floats, ints) for value in node]
    return node


def _pack_numbers(floats: list[float], ints: Sequence[int], likely: list[int] | None = None) -> bytes:
    """`likely`, where given: the floats a float32 missed in the last step packed with the same template, tried
    first and updated in place (only a guess: it changes nothing packed)."""
    count = len(floats)
    inexact: list[int] | None
    try:
        narrow = struct.pack(f"<{count}f", *floats)
        back = struct.unpack(f"<{count}f", narrow)
        inexact = _inexact(floats, back, likely or ())
    except OverflowError:  # a value too large for a float32
        inexact = None
    if inexact is None or len(inexact) * 4 > count:  # mostly float64 values: all of them as float64
        head, planes = struct.pack("<BI", 8, 0), _planes(struct.pack(f"<{count}d", *floats), 8)
        inexact = []  # not worth guessing next time
    else:  # float32, and the few that need it again as float64
        wide = [floats[i] for i in inexact]
        head = struct.pack(f"<BI{len(inexact)}I{len(inexact)}d", 4, len(inexact), *inexact, *wide)
        planes = _planes(narrow, 4)
    if likely is not None:
        likely[:] = inexact
    return zlib.compress(head + planes + struct.pack(f"<{len(ints)}q", *ints), _LEVEL)


def _inexact(floats: list[float], back: tuple[float, ...], likely: Sequence[int]) -> list[int]:
    """The indexes, in order, of the `floats` that `back` (them through a float32) does not hold, found in C: most
    steps have none, or one (a wall-clock timestamp, in every SDK step), which `likely` usually names."""
    if list(back) == floats:
        return []
    if likely:
        patched = list(back)
        for index in likely:
            patched[index] = floats[index]
        if patched == floats:  # no miss outside `likely`
            return [index for index in likely if back[index] != floats[index]]
    return list(compress(range(len(floats)), map(operator.ne, back, floats)))


def _planes(raw: bytes, width: int) -> bytes:
    return b"".join(raw[plane::width] for plane in range(width))


@functools.lru_cache(maxsize=64)
def shape(template: bytes) -> Shape:
    """Cached: packing checks each step against its template, and a run's steps share a few templates."""
    kinds = b"".join(_HOLE.findall(template))
    floats = [index for index, kind in enumerate(kinds) if kind == 0]
    ints = [index for index, kind in enumerate(kinds) if kind == 1]
    # Numbers are stored floats first, then integers; `order` puts them back in document order.
    position = {hole: index for index, hole in enumerate(floats + ints)}
    order = [position[hole] for hole in range(len(kinds))]
    reorder = None if order == sorted(order) else operator.itemgetter(*order)
    return Shape(_HOLE.split(template), len(floats), len(ints), reorder)


def unpack(found: Shape, values: bytes) -> bytes:
    """The step's JSON, from its shape and its packed numbers."""
    body = zlib.decompress(values)
    count = found.floats
    width, inexact = struct.unpack_from("<BI", body)
    offset = 5 + 12 * inexact
    raw = bytearray(count * width)
    for plane in range(width):
        raw[plane::width] = body[offset + plane * count : offset + (plane + 1) * count]
    floats = list(struct.unpack(f"<{count}{'f' if width == 4 else 'd'}", raw))
    if inexact:
        spots = struct.unpack_from(f"<{inexact}I{inexact}d", body, 5)
        for spot, value in zip(spots[:inexact], spots[inexact:], strict=True):
            floats[spot] = value
    tokens = orjson.dumps(floats)[1:-1].split(b",") if count else []
    if found.ints:
        tokens += orjson.dumps(struct.unpack_from(f"<{found.ints}q", body, offset + count * width))[1:-1].split(b",")
    parts: list[bytes] = [b""] * (2 * len(tokens) + 1)
    parts[0::2] = found.segments
    parts[1::2] = found.order(tokens) if found.order is not None else tokens
    return b"".join(parts)


_SEPARATORS = bytes.maketrans(b":[]}", b",,,,")
"""orjson writes every number between two of `,:[]}`: with these mapped to commas, a document splits into
pieces of which each number is one whole piece."""
_FLOATS = msgspec.json.Decoder(list[float])
_INTS = msgspec.json.Decoder(list[int])
_PLANS = 16
"""Templates whose plans are kept (`_plan`); runs with the same model share one."""


def _pick(indexes: list[int]) -> Callable[[list[bytes]], tuple[bytes, ...]]:
    """`operator.itemgetter` that gives a tuple for any number of indexes (itemgetter takes at least one, and
    gives the item itself for one)."""
    if len(indexes) > 1:
        return operator.itemgetter(*indexes)
    if indexes:
        (index,) = indexes
        return lambda pieces: (pieces[index],)
    return lambda pieces: ()


class _Plan:
    """A template ready to pack the steps that fit it, straight from their bytes.

    A step fits when it splits (`_SEPARATORS`) into as many pieces as the template and the template, filled with
    the step's pieces at its holes, is the step byte for byte. Its numbers are then those pieces, parsed as the
    hole's kind (msgspec; a float hole parses `1` as `1.0`) and written back by orjson, and the pack is kept
    only if that gives the same text, so the numbers are in orjson's spelling, of the hole's kind. That is the
    check `pack` makes by reading the packed step back, done without unpacking: `unpack` fills the same
    segments with the same numbers formatted by orjson again, after a round trip through `_pack_numbers` that
    returns them bit for bit (float32 only where it holds them exactly; `tests/test_stepcodec.py` compares
    the two paths' packs on random steps)."""

    __slots__ = ("digest", "floats", "ints", "misses", "parts", "pieces", "template", "tokens")

    def __init__(self, template: bytes, digest: bytes) -> None:
        self.template, self.digest = template, digest
        pieces = template.translate(_SEPARATORS).split(b",")
        self.pieces = len(pieces)
        holes = [index for index, piece in enumerate(pieces) if piece in (b"\x00", b"\x01")]
        self.tokens = _pick(holes)
        self.floats = _pick([index for index in holes if pieces[index] == b"\x00"])
        self.ints = _pick([index for index in holes if pieces[index] == b"\x01"])
        # The template's segments at even places; a step's numbers go in between.
        self.parts: list[bytes] = [b""] * (2 * len(holes) + 1)
        self.parts[0::2] = _HOLE.split(template)
        self.misses: list[int] = []
        """The floats a float32 missed in the last step packed (`_pack_numbers`' guess)."""

    def pack(self, data: bytes) -> Packed | None:
        """`data` packed with this template, or None where it does not fit (then `pack` decides)."""
        pieces = data.translate(_SEPARATORS).split(b",")
        if len(pieces) != self.pieces:
            return None
        parts = self.parts.copy()
        parts[1::2] = self.tokens(pieces)
        if b"".join(parts) != data:
            return None
        float_text = b"[" + b",".join(self.floats(pieces)) + b"]"
        int_text = b"[" + b",".join(self.ints(pieces)) + b"]"
        try:
            floats, ints = _FLOATS.decode(float_text), _INTS.decode(int_text)
            if orjson.dumps(floats) != float_text or orjson.dumps(ints) != int_text:
                return None
            values = _pack_numbers(floats, ints, self.misses)
        except (OverflowError, struct.error, msgspec.DecodeError, orjson.JSONEncodeError):
            return None
        return Packed(self.template, self.digest, values)


@functools.lru_cache(maxsize=_PLANS)
def _plan(template: bytes, digest: bytes) -> _Plan:
    return _Plan(template, digest)


class Packer:
    """`pack` for a database's steps, trying each run's latest template first: a step with the same shape as the
    one before it in its run (nearly every step) is packed by `_Plan`, for about half of what `pack` costs on a
    50-layer step and two thirds on a 3-layer one, where zlib is half of what is left (docs/performance.md). The
    result is the same `Packed` as `pack`'s."""

    def __init__(self, runs: int = 64) -> None:
        self._runs = runs
        self._plans: OrderedDict[int, _Plan] = OrderedDict()
        """The latest template of the `runs` runs packed last (a run's key: its id in the database)."""

    def pack(self, data: bytes, run: int) -> Packed | None:
        plan = self._plans.get(run)
        packed = plan.pack(data) if plan is not None else None
        if packed is None:
            packed = pack(data)
            if packed is None:
                return None
            self._plans[run] = _plan(packed.template, packed.digest)
        self._plans.move_to_end(run)
        if len(self._plans) > self._runs:
            self._plans.popitem(last=False)
        return packed
