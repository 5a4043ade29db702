"""The msgspec decoder of layer-wise bodies accepts only what pydantic accepts, and reads it the same way.

`pivotd.layerwise_decoder` is a second schema of the layer-wise payload, there for speed; pydantic's stays the
authority (it answers every body the decoder refuses). Each case below is decoded both ways: where the decoder
accepts, pydantic must accept too and produce the same layers, cross-layer analysis and metadata.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import TypeAdapter, ValidationError

from pivotd.ingest import step_record
from pivotd.layerwise_decoder import decode_batch, decode_step
from shared.models.layerwise import LayerwisePayload
from shared.samples import layerwise_payload
from tests.payloads import DELETE, contract_payload, mutated

pytestmark = pytest.mark.filterwarnings("ignore::hypothesis.errors.NonInteractiveExampleWarning")

ODD_VALUES = [
    None, True, False, 0, -1, 1, 1.0, 0.5, -0.5, 2**63 - 1, 2**63, -(2**63) - 1, 10**400, "", "x", "1.5", "a.b",
    "a\nb", "x" * 129, "x" * 257, [], [1], [1, 2], [1.0, 2.0], [-1, 2], ["a"], {}, {"a": 1.0}, {"a": "b"},
    {"a": ["b.c"]}, {"std": 0.1, "mean_abs": 0.2},
]  # fmt: skip
"""Values put in place of any one part of a valid payload: the types, bounds and lengths the schema checks."""


def _paths(node: Any, prefix: str = "") -> list[str]:
    """Every location in a document, in `tests.payloads.mutated`'s notation."""
    found: list[str] = []
    if isinstance(node, dict):
        for key, value in node.items():
            path = f"{prefix}.{key}" if prefix else key
            found += [path, *_paths(value, path)]
    elif isinstance(node, list):
        for index, value in enumerate(node):
            path = f"{prefix}[{index}]"
            found += [path, *_paths(value, path)]
    return found


def _assert_agree(body: bytes) -> bool:
    """Decode both ways; where the decoder accepts, pydantic agrees on everything stored. True if it accepted."""
    fast = decode_step(body)
    if fast is None:
        return False
    try:
        slow = LayerwisePayload.model_validate_json(body)
    except ValidationError as exc:
        raise AssertionError(f"the decoder accepted what pydantic refuses: {exc}") from None
    assert fast.layer_statistics == slow.layer_statistics
    assert fast.cross_layer_analysis == slow.cross_layer_analysis
    assert fast.metadata.model_extra is None and not slow.metadata.model_extra
    # Byte for byte: these bodies send each object's keys in the schema's order, as clients do.
    assert step_record(fast) == step_record(slow)
    return True


@pytest.mark.parametrize(
    "document",
    [contract_payload(), layerwise_payload("r1", 3, layers=3), layerwise_payload("r.2", 7, layers=50)],
    ids=["contract", "3 layers", "50 layers"],
)
def test_valid_payloads_decode_as_pydantic_reads_them(document: dict[str, Any]) -> None:
    assert _assert_agree(json.dumps(document).encode())


def test_every_single_mutation_is_refused_or_read_alike() -> None:
    base = contract_payload()
    accepted = refused = 0
    for path in _paths(base):
        for value in [*ODD_VALUES, DELETE]:
            body = json.dumps(mutated(path, value, base)).encode()
            if _assert_agree(body):
                accepted += 1
            else:
                refused += 1
    assert accepted and refused  # both paths exercised


def _edited(old: str, new: str) -> bytes:
    """The contract payload's JSON with one piece of text replaced."""
    text = json.dumps(contract_payload())
    assert old in text
    return text.replace(old, new).encode()


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"[]",
        b"null",
        b'{"metadata": 1}',
        json.dumps(contract_payload()).encode() + b" x",
        _edited('"run_id": "experiment', '"run_id": "\\u00e9xperiment'),
        _edited('"batch_size": 64', '"batch_size": 64.0'),
        _edited('"batch_size": 64', '"batch_size": "64"'),
        _edited('"activation_std": 0.82', '"activation_std": 1e400'),
        _edited('"activation_std": 0.82', '"activation_std": NaN'),
        _edited('"activation_mean": 0.05', '"activation_mean": 1' + "0" * 400),
        _edited('"run_id": "experiment_2024_0210_v2"', '"run_id": "run\\n"'),
        _edited('"run_id": "experiment_2024_0210_v2"', '"run_id": ".."'),
        _edited('"global_step": 1500', '"global_step": 1500, "global_step": -1'),
        _edited('"global_step": 1500', '"global_step": -1, "global_step": 2'),
        _edited('"batch_size": 64', '"batch_size": 64, "note": "extra"'),
        _edited('"depth_index": 1', '"depth_index": 5'),
        _edited('"layer_type": "ReLU"', '"layer_type": "ReLU", "extra": [1]'),
        _edited('"run_id": "experiment_2024_0210_v2"', '"run_id": "\\ud800"'),
    ],
)
def test_edge_bodies_are_refused_or_read_alike(body: bytes) -> None:
    _assert_agree(body)


def test_extra_metadata_and_unsorted_layers_are_left_to_pydantic() -> None:
    extra = mutated("metadata.note", "kept on the run")
    assert decode_step(json.dumps(extra).encode()) is None
    assert LayerwisePayload.model_validate(extra).metadata.model_extra == {"note": "kept on the run"}
    unsorted = mutated("layer_statistics[1].depth_index", 7)
    assert decode_step(json.dumps(unsorted).encode()) is None


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=6,
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.sampled_from(_paths(contract_payload())), _JSON), min_size=1, max_size=3))
def test_random_mutations_are_refused_or_read_alike(changes: list[tuple[str, Any]]) -> None:
    document = contract_payload()
    for path, value in changes:
        try:
            document = mutated(path, value, document)
        except (KeyError, IndexError, TypeError):  # an earlier change removed the place
            continue
    _assert_agree(json.dumps(document).encode())


_BATCH = TypeAdapter(list[LayerwisePayload])


@pytest.mark.parametrize(
    ("documents", "accepted"),
    [
        ([contract_payload(), layerwise_payload("r1", 3, layers=3), layerwise_payload("r.2", 7, layers=50)], True),
        ([], True),  # decoded as empty: the route refuses an empty batch itself
        ([contract_payload(), mutated("metadata.note", "extra")], False),  # one item only pydantic reads
        ([contract_payload(), mutated("metadata.batch_size", 0)], False),  # one invalid item
        ([contract_payload(), mutated("layer_statistics[1].depth_index", 7)], False),  # unsorted layers
    ],
    ids=["three valid", "empty", "extra metadata", "invalid item", "unsorted"],
)
def test_a_batch_is_decoded_whole_or_left_to_pydantic(documents: list[dict[str, Any]], accepted: bool) -> None:
    body = json.dumps(documents).encode()
    fast = decode_batch(body)
    assert (fast is not None) is accepted
    if fast is not None:
        slow = _BATCH.validate_json(body)
        assert [step_record(step) for step in fast] == [step_record(step) for step in slow]
    for bad in (b"{}", b"[1]", b"[" + body, body + b"]"):
        assert decode_batch(bad) is None
