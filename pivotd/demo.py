"""`pivotd --demo`: a synthetic run fed through the public API, so a newcomer sees live data at once.

It goes through the same HTTP routes as any training script (the daemon trusts its own loopback
connection). Real training arrives with the trainer; this only shows the pipeline end to end.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time

from shared.client import AsyncPivotClient, PivotAPIError
from shared.samples import layerwise_payload, training_scalars

log = logging.getLogger(__name__)
DEMO_RUN = f"demo_{time.strftime('%Y%m%d_%H%M%S')}"


async def feed_demo(url: str, interval: float = 0.5, steps_per_tick: int = 10) -> None:
    rng = random.Random(0)
    log.info("demo: feeding run %s; try: curl %s/api/v1/runs", DEMO_RUN, url)
    async with AsyncPivotClient(url) as client:
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
