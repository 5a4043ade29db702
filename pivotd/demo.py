"""`pivotd --demo`: something live at once for a newcomer.

With the training stack installed, the daemon trains the reference CNN on the 5,000 real digits shipped with
pivotd, as a managed run started through the public API (`POST /api/train`): per-epoch metrics, per-step
scalars and layer-wise statistics arrive exactly as they would from any script. Without torch, a synthetic
run is fed through the same ingest routes instead, so the monitor still has something to show.
"""

from __future__ import annotations

import asyncio
import importlib.util
import logging
import random
import time
from typing import Any

from shared.client import AsyncPivotClient, PivotAPIError
from shared.models.seeds import SEED_001_CNN
from shared.samples import layerwise_payload, training_scalars

log = logging.getLogger(__name__)
DEMO_RUN = f"demo_{time.strftime('%Y%m%d_%H%M%S')}"

# The reference CNN, unchanged, trained on the shipped digits: about a minute of live training on two CPU cores.
DEMO_ARCHITECTURE = SEED_001_CNN
DEMO_HYPERPARAMS: dict[str, Any] = {
    "epochs": 10,
    "batch_size": 64,
    "optimizer": {"type": "sgd", "lr": 0.1, "momentum": 0.0},
    "loss": "cross_entropy",
    "seed": 42,
    "train_split": 0.9,
    "shuffle": True,
    "dataset": "digits",
    "layerwise_every": 10,
}


async def feed_demo(url: str, token: str | None = None) -> None:
    """`token`: this daemon's own, so the demo never presents another local daemon's token file."""
    if importlib.util.find_spec("torch") is None:
        await feed_synthetic(url, token)
        return
    async with AsyncPivotClient(url, token) as client:
        try:
            started = await client.train(DEMO_ARCHITECTURE, DEMO_HYPERPARAMS)
        except (PivotAPIError, OSError) as exc:
            log.warning("demo: could not start the training run: %s", exc)
            return
    log.info(
        "demo: training the reference CNN on real digits as run %s; watch it: .venv/bin/pivot-tui, or curl -N %s%s",
        started.run_id, url, started.events_url,
    )  # fmt: skip


async def feed_synthetic(url: str, token: str | None = None, interval: float = 0.5, steps_per_tick: int = 10) -> None:
    """No torch here: a synthetic run through the public ingest routes."""
    rng = random.Random(0)
    log.info("demo: torch is not installed; feeding synthetic run %s; try: curl %s/api/v1/runs", DEMO_RUN, url)
    async with AsyncPivotClient(url, token) as client:
        step = 0
        while True:
            try:
                await client.post_layerwise(layerwise_payload(DEMO_RUN, step, layers=6, rng=rng))
                points = [{"step": s, "values": training_scalars(s, rng)} for s in range(step, step + steps_per_tick)]
                await client.post_scalars(DEMO_RUN, points, tags=["demo"])
            except (PivotAPIError, OSError) as exc:
                log.warning("demo: post failed: %s", exc)
            step += steps_per_tick
            await asyncio.sleep(interval)
