"""A FakeDaemonClient with fixed data, for snapshot tests that must render the same every time."""

from __future__ import annotations

import asyncio
import math
from typing import Any

from pivot_tui.client import Connection, DaemonClient, Event, EventSink, StateSink
from shared.client import PivotAPIError
from shared.models import RunSummary, ScalarSeries, ScalarsResponse

OLD = "2024-02-10T12:34:56.789+00:00"  # far enough in the past to render as a date, not "Ns ago"


def summary(status: str, step: int | None, loss: float | None, kind: str = "external") -> dict[str, Any]:
    return {
        "created_at": OLD, "last_update": OLD, "step_count": 0 if step is None else step // 10 + 1,
        "latest_step": step, "kind": kind, "status": status, "experiment_id": None, "group": None, "tags": [],
        "latest": {} if loss is None else {"train_loss": loss},
    }  # fmt: skip


RUNS = {
    "mnist_cnn_lr0.1": summary("running", 1500, 0.3121, "managed"),
    "mnist_mlp_baseline": summary("succeeded", 4690, 0.0841, "managed"),
    "resnet18_ablation_no_bn": summary("running", 820, 2.2871),
    "exploding_rnn": summary("failed", 130, None),
}


def lite_step(step: int, explode: bool = False) -> dict[str, Any]:
    layers = []
    for depth, name in enumerate(("conv1", "conv2", "fc1", "fc2")):
        norm = 0.5 / (1 + depth) * math.exp(-step / 3000) * (1000 if explode and depth == 3 else 1)
        layers.append({
            "layer_id": f"features/{name}" if depth < 2 else f"classifier/{name}", "layer_type": "Linear",
            "depth_index": depth, "activation_std": 1 / (1 + 0.2 * depth),
            "cross_layer_std_ratio": None if depth == 0 else 0.9,
            "gradient_l2_norm": norm if depth else norm * 1e-5, "gradient_max_abs": norm / 5,
        })  # fmt: skip
    return {"step": step, "timestamp": 0.0, "layers": layers}


class FakeDaemonClient(DaemonClient):
    def __init__(self, *, resources: dict[str, Any] | None = None, alerts: list[dict[str, Any]] | None = None) -> None:
        super().__init__("http://gpu-box:8000", None)
        self._resources = resources
        self._alerts = alerts
        self.posted: list[tuple[str, Any]] = []

    async def run_forever(self, on_event: EventSink, on_state: StateSink) -> None:
        on_state(Connection.ONLINE, self.url)
        on_event(Event("initial_runs", {"type": "initial_runs", "data": RUNS}))
        on_event(Event("resync", {"reason": "connected"}))  # as the real client does once subscribed
        if self._resources is not None:
            on_event(Event("resources", {"type": "resources", "topic": "resources", "data": self._resources}))
        await asyncio.Event().wait()

    async def runs(self) -> dict[str, RunSummary]:
        return {run_id: RunSummary.model_validate(run) for run_id, run in RUNS.items()}

    async def run(self, run_id: str, *, lite: bool = True) -> dict[str, Any]:
        return {"steps": [lite_step(step, explode=step >= 1400) for step in range(0, 1510, 10)], "events": []}

    async def scalars(self, run_id: str, names: Any = None, max_points: int = 400) -> ScalarsResponse:
        steps = list(range(0, 1501, 10))
        series = {
            "train_loss": ScalarSeries(steps=steps, values=[2.3 * math.exp(-s / 500) + 0.3 for s in steps],
                                       timestamps=[None] * len(steps)),
            "val_loss": ScalarSeries(steps=steps[::10], values=[2.4 * math.exp(-s / 500) + 0.35 for s in steps[::10]],
                                     timestamps=[None] * len(steps[::10])),
        }  # fmt: skip
        return ScalarsResponse(run_id=run_id, series=series)

    async def get_json(self, path: str, params: dict[str, Any] | None = None) -> Any:
        if path == "/api/v1/monitor/resources" and self._resources is not None:
            return self._resources
        if path == "/api/v1/alerts" and self._alerts is not None:
            wanted = (params or {}).get("status")
            return {"alerts": [a for a in self._alerts if wanted is None or a["status"] == wanted]}
        if path == "/api/v1/notifications" and self._alerts is not None:
            return {"notifications": [
                {"id": "notif_2", "type": "training", "priority": "high", "read": False,
                 "message": "Training run exploding_rnn failed", "created_at": "2024-02-10T12:31:00.000+00:00"},
                {"id": "notif_1", "type": "alert", "priority": "critical", "read": True,
                 "message": "Alert: gpu_temperature on gpu:0 is 86", "created_at": "2024-02-10T12:30:00.000+00:00"},
            ]}  # fmt: skip
        if path == "/api/v1/alerts/rules" and self._alerts is not None:
            return {"rules": [{"name": "GPU too hot", "metric": "gpu_temperature", "condition": "greater_than",
                               "threshold": 85, "severity": "critical", "enabled": True}]}  # fmt: skip
        raise PivotAPIError(404, "not_found", f"no route for GET {path}")

    async def post_json(self, path: str, body: Any) -> Any:
        self.posted.append((path, body))
        return {}

    async def watch_run(self, run_id: str | None) -> None:
        return None

    async def aclose(self) -> None:
        await super().aclose()
