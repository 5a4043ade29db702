"""Packing a stored step alone (`pivotd/store/stepcodec.py`), this tree's against a baseline tree's.

Steps are the stored form of `shared.samples.layerwise_payload` steps (distinct values each), of 3 and 50 layers,
with `sdk` values (float32 statistics and a float64 timestamp, as pivot's SDK sends them) and `float64` ones. Each
round times, in process time over all steps (best of `--rounds`):

- `before`: the baseline tree's `stepcodec.pack` (what the writer did per step there);
- `walk`: this tree's `stepcodec.pack`, what a step costs when its template is new;
- `packer`: this tree's `stepcodec.Packer.pack`, what the writer does now, once the run's template is known (every
  step of the same shape as the one before it).

Every step's packed form is compared with the baseline's first: they must be equal.

    mkdir /tmp/pack-before && git archive 2c4012f | tar -x -C /tmp/pack-before
    .venv/bin/python bench/packing.py --baseline /tmp/pack-before
"""

from __future__ import annotations

import argparse
import functools
import importlib.util
import struct
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pivotd.ingest import step_record
from pivotd.layerwise_decoder import decode_step
from pivotd.store import stepcodec
from shared.samples import layerwise_payload

F32 = struct.Struct("<f")


def baseline_codec(tree: Path) -> ModuleType:
    """The baseline tree's stepcodec, loaded under another name beside this tree's."""
    spec = importlib.util.spec_from_file_location("baseline_stepcodec", tree / "pivotd/store/stepcodec.py")
    if spec is None or spec.loader is None:
        raise SystemExit(f"no pivotd/store/stepcodec.py under {tree}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def rounded(node: object) -> object:
    if isinstance(node, dict):
        return {key: rounded(value) for key, value in node.items()}
    if isinstance(node, list):
        return [rounded(value) for value in node]
    return F32.unpack(F32.pack(node))[0] if type(node) is float else node


def steps(layers: int, kind: str, count: int) -> list[bytes]:
    documents = []
    for step in range(count):
        payload = layerwise_payload("bench", step, layers=layers, timestamp=1.7e9 + step * 0.37)
        if kind == "sdk":
            timestamp = payload["metadata"]["timestamp"]
            payload = rounded(payload)  # type: ignore[assignment]
            payload["metadata"]["timestamp"] = timestamp
        decoded = decode_step(orjson.dumps(payload))
        assert decoded is not None
        documents.append(step_record(decoded).data)
    return documents


def per_step(function: Callable[[bytes], object], documents: list[bytes]) -> float:
    started = time.process_time()
    for document in documents:
        function(document)
    return (time.process_time() - started) / len(documents)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--baseline", type=Path, required=True, help="a tree of an older commit (git archive)")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--steps", type=int, default=100, help="distinct steps per case (timed 10x more for 3 layers)")
    args = parser.parse_args()
    before = baseline_codec(args.baseline)
    print("case                 before    walk  packer  before/packer (us per step, process time, best of rounds)")
    for layers in (3, 50):
        for kind in ("sdk", "float64"):
            documents = steps(layers, kind, args.steps * (10 if layers == 3 else 1))
            packer = stepcodec.Packer()
            for document in documents:
                old, new = before.pack(document), packer.pack(document, 1)
                assert old is not None and new is not None
                assert (old.template, old.digest, old.values) == (new.template, new.digest, new.values)
            run = functools.partial(packer.pack, run=1)
            best = {"before": float("inf"), "walk": float("inf"), "packer": float("inf")}
            for _ in range(args.rounds):  # the three alternate within each round
                best["before"] = min(best["before"], per_step(before.pack, documents))
                best["walk"] = min(best["walk"], per_step(stepcodec.pack, documents))
                best["packer"] = min(best["packer"], per_step(run, documents))
            figures = "  ".join(f"{best[name] * 1e6:6.1f}" for name in ("before", "walk", "packer"))
            print(f"{layers:2d} layers, {kind:8}  {figures}  {best['before'] / best['packer']:.2f}x")


if __name__ == "__main__":
    main()
