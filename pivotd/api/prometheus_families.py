"""The metric families of `GET /metrics` (`pivotd.api.prometheus`), built at scrape time."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import generate_latest
from prometheus_client.registry import Collector, CollectorRegistry

from pivotd.api.telemetry import INGEST_EVENT
from pivotd.ingest import LAYERWISE_EVENT, SCALARS_EVENT
from pivotd.refusals import Refusals
from pivotd.services import Services
from shared import __version__
from shared.models.alerts import AlertSeverity, AlertStatus
from shared.models.monitor import ResourceSample, Usage
from shared.models.runs import RunState

GIB = 1024**3
RUN_KINDS = ("external", "managed", "job")
"""Always exported, with zeros, so a dashboard's series exist before the first run of a kind."""


async def exposition(services: Services, refusals: Refusals) -> bytes:
    # As `GET /api/v1/monitor/resources` does: the first scrape after start does not wait for the sampler.
    sample = ResourceSample.model_validate(services.monitor.latest or await services.monitor.sample_now())
    families = [
        *_daemon(services),
        *resource_families(sample),
        *await _runs(services),
        *_ingest(services, refusals),
        *await _alerts(services),
        *await _webhooks(services),
    ]
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Families(tuple(families)))
    return generate_latest(registry)


class _Families(Collector):
    """The families of one scrape, registered in a registry of that scrape's own (a daemon holds no global)."""

    def __init__(self, families: tuple[Metric, ...]) -> None:
        self.families = families

    def collect(self) -> Iterator[Metric]:
        yield from self.families


def _gauge(name: str, documentation: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, documentation, value=value)


def _daemon(services: Services) -> Iterable[Metric]:
    info = GaugeMetricFamily("pivot_build_info", "The running pivotd's version (always 1).", labels=["version"])
    info.add_metric([__version__], 1)
    yield info
    yield _gauge("pivot_start_time_seconds", "When this pivotd started, Unix seconds.", services.started_at)
    yield _gauge(
        "pivot_websocket_connections", "Open WebSocket connections (/ws and the others).", services.hub.connection_count
    )


def _usage(name: str, what: str, usage: Usage | None) -> Iterable[Metric]:
    if usage is None:  # the machine could not read it: no series rather than a made-up zero
        return
    yield _gauge(f"pivot_{name}_used_bytes", f"{what} in use, bytes.", usage.used_gb * GIB)
    yield _gauge(f"pivot_{name}_total_bytes", f"{what} in total, bytes.", usage.total_gb * GIB)


def resource_families(sample: ResourceSample) -> Iterable[Metric]:
    yield _gauge("pivot_resources_sample_time_seconds", "When the sample below was taken, Unix seconds.", sample.time)
    if sample.cpu is not None:
        yield _gauge("pivot_cpu_utilization_percent", "CPU utilisation over all cores, percent.", sample.cpu.percent)
        yield _gauge("pivot_cpus", "Logical CPUs.", sample.cpu.count)
    yield from _usage("memory", "Memory", sample.memory)
    yield from _usage("swap", "Swap", sample.swap)
    yield from _usage("disk", "The data directory's file system", sample.disk)
    if sample.load is not None:
        load = GaugeMetricFamily("pivot_load_average", "System load average.", labels=["window"])
        for window, value in (("1m", sample.load.one), ("5m", sample.load.five), ("15m", sample.load.fifteen)):
            load.add_metric([window], value)
        yield load
    yield from _gpus(sample)


def _gpus(sample: ResourceSample) -> Iterable[Metric]:
    labels = ["gpu", "name"]
    families = {
        "utilization": GaugeMetricFamily("pivot_gpu_utilization_percent", "GPU utilisation, percent.", labels=labels),
        "memory_used": GaugeMetricFamily("pivot_gpu_memory_used_bytes", "GPU memory in use, bytes.", labels=labels),
        "memory_total": GaugeMetricFamily("pivot_gpu_memory_total_bytes", "GPU memory in total, bytes.", labels=labels),
        "temperature": GaugeMetricFamily("pivot_gpu_temperature_celsius", "GPU temperature, °C.", labels=labels),
        "power": GaugeMetricFamily("pivot_gpu_power_watts", "GPU power draw, watts.", labels=labels),
        "processes": GaugeMetricFamily("pivot_gpu_processes", "Compute processes on the GPU.", labels=labels),
    }
    for gpu in sample.gpu or ():  # None: NVML could not be asked, so no GPU series at all
        key = [str(gpu.id), gpu.name or ""]
        readings = {
            "utilization": gpu.utilization,
            "memory_used": None if gpu.memory_used_gb is None else gpu.memory_used_gb * GIB,
            "memory_total": None if gpu.memory_total_gb is None else gpu.memory_total_gb * GIB,
            "temperature": gpu.temperature,
            "power": gpu.power_watts,
            "processes": None if gpu.processes is None else len(gpu.processes),
        }
        for reading, value in readings.items():
            if value is not None:  # a counter this GPU does not report stays absent, not 0
                families[reading].add_metric(key, value)
    yield from (family for family in families.values() if family.samples)


async def _runs(services: Services) -> Iterable[Metric]:
    counts = {(kind, state): 0 for kind in RUN_KINDS for state in RunState}
    for kind, state, count in await services.store.reader.run_counts():
        counts[kind, state] = count
    runs = GaugeMetricFamily("pivot_runs", "Runs in the store by kind and state.", labels=["kind", "state"])
    for (kind, state), count in sorted(counts.items()):
        runs.add_metric([kind, state], count)
    queued = sum(count for (_, state), count in counts.items() if state == RunState.QUEUED)
    busy = counts["managed", RunState.RUNNING] + counts["job", RunState.RUNNING]
    return [
        runs,
        _gauge("pivot_queue_length", "Managed runs queued for a training slot.", queued),
        _gauge("pivot_training_slots", "Training slots (runs pivotd trains at once).", services.supervisor.slots),
        _gauge("pivot_training_slots_busy", "Training slots in use.", busy),
    ]


def _ingest(services: Services, refusals: Refusals) -> Iterable[Metric]:
    totals = services.telemetry.totals
    layerwise, scalars, events = (totals.get(name, {}) for name in (LAYERWISE_EVENT, SCALARS_EVENT, INGEST_EVENT))
    requests = CounterMetricFamily(
        "pivot_ingest_requests", "Ingest requests accepted, by route.", labels=["route"]
    )  # `_total` is added by the format
    for route, counted in (("layerwise", layerwise), ("scalars", scalars), ("telemetry", events)):
        requests.add_metric([route], counted.get("requests", 0))
    yield requests
    yield CounterMetricFamily(
        "pivot_ingest_steps", "Layer-wise steps stored (a batch counts each step).", value=layerwise.get("steps", 0)
    )
    yield CounterMetricFamily("pivot_ingest_scalar_points", "Scalar points stored.", value=scalars.get("points", 0))
    yield CounterMetricFamily(
        "pivot_ingest_telemetry_events", "Telemetry events stored.", value=events.get("events", 0)
    )
    refused = CounterMetricFamily(
        "pivot_ingest_refused",
        "Ingest requests refused, by category (ingest: layer-wise and scalars; telemetry) and HTTP status.",
        labels=["category", "code"],
    )
    for (category, status), count in sorted(refusals.counts.items()):
        refused.add_metric([str(category), str(status)], count)
    yield refused


async def _alerts(services: Services) -> Iterable[Metric]:
    counts = {(severity, status): 0 for severity in AlertSeverity for status in AlertStatus}
    for severity, status, count in await services.store.monitoring.open_alert_counts():
        counts[severity, status] = count
    alerts = GaugeMetricFamily(
        "pivot_alerts_open", "Alerts not resolved, by severity and status.", labels=["severity", "status"]
    )
    for (severity, status), count in sorted(counts.items()):
        if status != AlertStatus.RESOLVED:
            alerts.add_metric([severity, status], count)
    return [alerts]


async def _webhooks(services: Services) -> Iterable[Metric]:
    attempts = CounterMetricFamily(
        "pivot_webhook_attempts", "Webhook delivery attempts, by outcome.", labels=["outcome"]
    )
    for outcome in ("delivered", "retrying", "failed"):
        attempts.add_metric([outcome], services.webhooks.attempts[outcome])
    pending = sum(
        per_hook.get("pending", 0) for per_hook in (await services.store.monitoring.delivery_counts()).values()
    )
    return [attempts, _gauge("pivot_webhook_deliveries_pending", "Webhook deliveries waiting to be sent.", pending)]
