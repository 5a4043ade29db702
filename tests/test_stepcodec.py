"""`stepcodec.Packer` packs a step shaped like its run's previous one from the step's bytes (`_Plan`), and must store
exactly what finding the template again stores (`pack`, and the walk as it was before the plan existed): the same
template, digest and numbers, and a read-back identical to the step."""

from __future__ import annotations

import hashlib
import json
import operator
import random
import struct
import zlib
from typing import Any

import orjson
import pytest

from pivotd.store import stepcodec
from shared.samples import layerwise_payload
from tests.test_step_storage import AWKWARD, float32, stored_form

F32 = struct.Struct("<f")
STRINGS = ["", "x", 'block "0" \u00e9\\n\t,:[1]', "1.5", "-2", "a,b:c]d}e[f{", "\u2028\x7f", "null"]
"""Keys and string values that hold what the plan splits on, digits, escapes and JSON literals."""


def pack_before(data: bytes) -> stepcodec.Packed | None:
    """`stepcodec.pack` as it was before the plan (2c4012f), kept as the oracle of what a step's packed form is."""
    floats: list[float] = []
    ints: list[int] = []
    try:
        template = orjson.dumps(stepcodec._hollow(orjson.loads(data), floats, ints))
        values = numbers_before(floats, ints)
    except (OverflowError, TypeError, struct.error, orjson.JSONDecodeError, orjson.JSONEncodeError):
        return None
    if stepcodec.unpack(stepcodec.shape(template), values) != data:
        return None
    return stepcodec.Packed(template, hashlib.blake2b(template, digest_size=16).digest(), values)


def numbers_before(floats: list[float], ints: list[int]) -> bytes:
    count = len(floats)
    try:
        narrow = struct.pack(f"<{count}f", *floats)
        back = struct.unpack(f"<{count}f", narrow)
        misses = 0 if list(back) == floats else sum(map(operator.ne, back, floats))
    except OverflowError:
        misses = count
    if misses * 4 > count:
        head, planes = struct.pack("<BI", 8, 0), stepcodec._planes(struct.pack(f"<{count}d", *floats), 8)
    else:
        inexact = [i for i, (a, b) in enumerate(zip(back, floats, strict=True)) if a != b] if misses else []
        wide = [floats[i] for i in inexact]
        head = struct.pack(f"<BI{len(inexact)}I{len(inexact)}d", 4, len(inexact), *inexact, *wide)
        planes = stepcodec._planes(narrow, 4)
    return zlib.compress(head + planes + struct.pack(f"<{len(ints)}q", *ints), 6)


def random_shape(rng: random.Random, depth: int = 0) -> Any:
    """A document's structure: `float` and `int` where numbers go, anything else as it is."""
    roll = rng.random()
    if depth >= 4 or roll < 0.55:
        return rng.choice([float, float, float, int, None, True, False, rng.choice(STRINGS)])
    if roll < 0.8:
        return {rng.choice(STRINGS) + str(index): random_shape(rng, depth + 1) for index in range(rng.randint(0, 5))}
    return [random_shape(rng, depth + 1) for _ in range(rng.randint(0, 5))]


def random_float(rng: random.Random, precision: str) -> float:
    value = rng.choice(
        [
            rng.random(),
            -rng.random() * 10 ** rng.randint(-30, 30),
            rng.choice(AWKWARD),
            0.0,
            -0.0,
            float(rng.randint(-3, 3)),
            1e300,
            3.4028234663852886e38,  # the largest float32
        ]
    )
    wanted = precision if precision != "mixed" else rng.choice(["float32", "float64"])
    return float32(value) if wanted == "float32" and abs(value) <= 3.4e38 else value


def random_int(rng: random.Random) -> int:
    return rng.choice([rng.randint(-9, 9), rng.randint(-(2**63), 2**63 - 1), 2**63 - 1, -(2**63), 2**53 + 1])


def fill(shape: Any, rng: random.Random, precision: str) -> Any:
    if shape is float:
        return random_float(rng, precision)
    if shape is int:
        return random_int(rng)
    if isinstance(shape, dict):
        return {key: fill(value, rng, precision) for key, value in shape.items()}
    if isinstance(shape, list):
        return [fill(value, rng, precision) for value in shape]
    return shape


def read_back(packed: stepcodec.Packed) -> bytes:
    return stepcodec.unpack(stepcodec.shape(packed.template), packed.values)


def check(packer: stepcodec.Packer, data: bytes, run: int) -> stepcodec.Packed | None:
    """Packs `data`, holds the result to the oracle's (which packs the same steps) and returns it."""
    packed = packer.pack(data, run)
    assert packed == pack_before(data)
    if packed is not None:
        assert read_back(packed) == data
    return packed


@pytest.mark.parametrize("seed", range(6))
def test_random_steps_pack_as_before(seed: int) -> None:
    """Interleaved runs whose shapes change mid-run, with float32, float64 and mixed values, integers to the
    edges of int64, and strings holding commas, colons and brackets."""
    rng = random.Random(seed)
    packer = stepcodec.Packer(runs=2)  # fewer than the runs: a run's plan is forgotten and found again
    shapes = {run: random_shape(rng, depth=1) for run in range(3)}
    packed = 0
    for _ in range(400):
        run = rng.randrange(3)
        if rng.random() < 0.08:
            shapes[run] = random_shape(rng, depth=1)
        value = fill(shapes[run], rng, rng.choice(["float32", "float64", "mixed"]))
        data = orjson.dumps(value) if rng.random() < 0.9 else json.dumps(value).encode()  # json: other spellings
        packed += check(packer, data, run) is not None
    assert packed > 200


def test_odd_documents() -> None:
    """Few or no numbers, numbers orjson would not write, numbers beyond int64, and JSON with spaces."""
    packer = stepcodec.Packer()
    documents = [  # each with whether it packs
        (b"{}", True),
        (b"[]", True),
        (b"1.5", True),
        (b"7", True),
        (b'{"a":1.5}', True),
        (b'{"a":7}', True),
        (b'{"a":1.5}', True),
        (b'{"a":1}', True),  # an integer where the float was
        (b'{"a":1.0}', True),
        (b'{"a":null}', True),
        (b'{"a":"1.5"}', True),
        (b'{"a":1e-05}', False),  # orjson writes 1e-5
        (b'{"a":1E5}', False),
        (b'{"a":1.50}', False),
        (b'{"a": 1.5}', False),
        (b'{"a":9223372036854775807}', True),
        (b'{"a":9223372036854775808}', False),  # beyond int64
        (b'{"a":-9223372036854775809}', False),
        (b'{"a":[1,2.5,[3,[]]],"b":{"c":-0.0}}', True),
        (b'{"a":[1,2.5,[3,[]]],"b":{"c":-0.5}}', True),
        (b'{"a":[1,2.5,[3,[]]],"b":{"c":-0.5},"d":1}', True),
        (b'{"a":[1,2.5,[3]],"b":{"c":-0.5}}', True),
        (b'{"a":[1,2.5,[3]],"b":{"c":-0.5}}\n', False),
        (b'{"a":"\\u0000","b":0.5}', True),
    ]
    assert [check(packer, document, 1) is not None for document, _ in documents] == [packs for _, packs in documents]


def test_a_run_walks_once_per_change_of_shape(monkeypatch: pytest.MonkeyPatch) -> None:
    """50-layer steps as the SDK sends them (float32 statistics, a float64 timestamp), then a layer more, then
    the first shape again: the template is found three times, and every other step is packed by the plan."""
    walks = []
    walk = stepcodec.pack
    monkeypatch.setattr(stepcodec, "pack", lambda data: walks.append(data) or walk(data))

    def step(number: int, layers: int) -> bytes:
        payload = layerwise_payload("sdk", number, layers=layers)
        for layer in payload["layer_statistics"]:
            for group in ("gradient_flow", "intermediate_features"):
                for key, value in layer[group].items():
                    if type(value) is float:
                        layer[group][key] = float32(value)
        return stored_form(payload)

    packer = stepcodec.Packer()
    documents = [step(number, 50 if number // 10 != 1 else 51) for number in range(30)]
    for document in documents:
        assert check(packer, document, 7) is not None
    assert walks == [documents[0], documents[10], documents[20]]


def test_the_guessed_misses_change_nothing() -> None:
    """`_inexact` tries the last step's misses first; a wrong, partial or stale guess gives the same answer."""
    floats = [0.5, 0.1, 0.25, 1 / 3, 2.0**-149]
    back = tuple(float32(value) for value in floats)
    for likely in ([], [1], [3], [1, 3], [0, 1, 3], [0, 1, 2, 3, 4], [2]):
        assert stepcodec._inexact(floats, back, likely) == [1, 3]
    assert stepcodec._inexact(floats[:1], back[:1], [0]) == []
