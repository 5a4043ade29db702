"""Daemon settings: defaults < TOML file < `PIVOT_*` environment < command-line flags.

Every field is documented in docs/configuration.md (a test keeps the two in step) and listed
in systemd/pivotd.env.example.
"""

from __future__ import annotations

import ipaddress
import os
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from shared.locations import config_dir, state_dir

ENV_PREFIX = "PIVOT_"
DB_FILE = "pivot.db"
RUNS_DIR = "runs"
"""Per-run artifacts below the data directory: job spec, checkpoints, params."""
LogLevel = Literal["debug", "info", "warning", "error"]


class Settings(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    host: str = "127.0.0.1"
    """Address to listen on. A non-loopback address requires a token."""
    port: Annotated[int, Field(ge=0, le=65535)] = 8000
    """TCP port; 0 picks a free one (the chosen URL is written to `daemon.json` in the data dir)."""
    data_dir: Path = Field(default_factory=state_dir)
    """Holds the SQLite database, the token and `daemon.json`. Default: `$STATE_DIRECTORY`, else XDG state."""
    config_dir: Path = Field(default_factory=config_dir)
    """Where training-session config files live (read by later features); never read outside it."""
    log_level: LogLevel = "info"
    """Log verbosity on stderr."""
    access_log: bool = False
    """Log every HTTP request (costs about 30% of ingest throughput)."""
    token: str | None = None
    """Bearer token. Unset: read `<data_dir>/token`, creating it (mode 0600) on first start."""
    trust_loopback: bool = True
    """Requests from 127.0.0.0/8 and ::1 need no token. Set false on shared multi-user machines."""
    max_body_bytes: Annotated[int, Field(ge=1024)] = 2 * 1024 * 1024
    """Largest accepted request body; larger ones get 413."""
    max_runs: Annotated[int, Field(ge=1)] = 1000
    """Past this many runs, the run with the oldest last update is evicted."""
    max_steps_per_run: Annotated[int, Field(ge=1)] = 10_000
    """Past this many layer-wise steps in a run, its older steps are thinned (`step_retention`)."""
    step_retention: Literal["thin", "drop_oldest"] = "thin"
    """`thin`: a run past `max_steps_per_run` keeps its whole timeline at decreasing resolution (older steps
    sparser), and the steps next to its alerts and non-finite events; `drop_oldest`: its oldest steps go."""
    max_db_bytes: Annotated[int, Field(ge=1024 * 1024)] = 10 * 1024**3
    """Past this much data in the database, the oldest runs are evicted."""
    ws_queue_size: Annotated[int, Field(ge=1)] = 1000
    """Messages buffered per WebSocket client before the oldest are dropped and it is told `lagged`."""
    socket_idle_timeout_s: Annotated[float, Field(gt=0, le=3600)] = 60.0
    """`/socket/websocket` closes a connection that sent nothing (not even a heartbeat) for this long."""
    shutdown_timeout_s: Annotated[float, Field(gt=0, le=300)] = 10.0
    """How long a graceful shutdown waits for open requests before cancelling them."""
    http_header_timeout_s: Annotated[float, Field(gt=0, le=300)] = 10.0
    """A connection must send a request's complete headers this soon after it opens or after its last response."""
    http_idle_timeout_s: Annotated[float, Field(gt=0, le=3600)] = 5.0
    """A keep-alive connection that sends nothing for this long after a response is closed."""
    sample_interval_s: Annotated[float, Field(ge=0.2, le=60)] = 1.0
    """Seconds between resource samples (CPU, memory, disk, GPUs); each sample feeds the alert rules."""
    resource_buffer_size: Annotated[int, Field(ge=10, le=100_000)] = 600
    """Recent samples kept in memory at full resolution (600 at 1 s = the last 10 minutes)."""
    resource_history_step_s: Annotated[float, Field(ge=1, le=3600)] = 60.0
    """Samples are averaged over this many seconds into one row of the stored resource history."""
    resource_history_hours: Annotated[float, Field(gt=0, le=24 * 365)] = 168.0
    """Stored resource history older than this is deleted."""
    alert_check_interval_s: Annotated[float, Field(ge=0.05, le=300)] = 5.0
    """How often time-based conditions (`no_data_for`, `for_seconds` on silent subjects) are checked."""
    webhook_timeout_s: Annotated[float, Field(gt=0, le=120)] = 10.0
    """Time allowed for one webhook delivery attempt (connect + response)."""
    webhook_max_attempts: Annotated[int, Field(ge=1, le=50)] = 8
    """Delivery attempts before a webhook delivery is marked failed."""
    webhook_retry_base_s: Annotated[float, Field(ge=0.01, le=3600)] = 2.0
    """First retry delay; each further retry waits twice as long (capped at one hour)."""
    webhook_allow_private: bool = True
    """Allow webhook URLs that resolve to addresses that are not public (global). Set false on shared hosts."""
    webhook_deliveries: bool = True
    """Send webhooks. False: nothing is sent, deliveries wait in the outbox (test and fuzzing daemons)."""
    training_slots: Annotated[int, Field(ge=1, le=64)] | None = None
    """Managed runs trained at once. Unset: one per visible GPU, one on a CPU-only machine."""
    dataset_dir: Path | None = None
    """Where the `mnist` dataset's IDX files are read from (and downloaded to). Unset: `<data_dir>/datasets`."""
    cancel_grace_s: Annotated[float, Field(gt=0, le=600)] = 10.0
    """After SIGTERM, how long a cancelled worker may take to stop before it gets SIGKILL."""
    heartbeat_timeout_s: Annotated[float, Field(ge=1, le=3600)] = 60.0
    """A worker silent for this long is killed and its run failed (a hung process)."""
    run_lost_after_s: Annotated[float, Field(ge=1, le=30 * 86400)] = 900.0
    """A script's run that sends nothing for this long is marked `lost` (killed or hung without a word)."""
    resume_interrupted: bool = False
    """On start, runs a dead daemon left running continue from their last checkpoint instead of failing."""
    worker_memory_limit_mb: Annotated[int, Field(ge=0)] = 0
    """Resident-memory cap per training worker (and its children) in MiB (0: none), checked by the supervisor
    every 0.25 s; past it the worker is killed and its run fails instead of the box."""
    jobs_enabled: bool = True
    """Accept jobs (`POST /api/v1/jobs`: any command, run as the daemon's user). False refuses them (403)."""
    worker_threads: Annotated[int, Field(ge=0, le=256)] = 0
    """CPU threads per training worker (torch.set_num_threads); 0 leaves torch's default."""
    max_linear_layers: Annotated[int, Field(ge=1, le=256)] = 5
    """Most linear layers an architecture may have (the registry's documented default is 5)."""
    max_sweep_runs: Annotated[int, Field(ge=1, le=10_000)] = 256
    """Most runs one experiment's sweep grid may generate; a larger grid is refused at `start` with 422."""
    max_checkpoint_bytes: Annotated[int, Field(ge=1024)] = 512 * 1024 * 1024
    """Largest checkpoint upload accepted; larger ones get 413."""
    max_infer_body_bytes: Annotated[int, Field(ge=1024)] = 16 * 1024 * 1024
    """Largest inference request body: 512 inputs of 784 numbers written at full precision need about 6 MB."""
    inference_cache_size: Annotated[int, Field(ge=1, le=1024)] = 8
    """Trained models kept loaded for inference (least recently used ones are dropped)."""
    sse_keepalive_s: Annotated[float, Field(gt=0, le=300)] = 15.0
    """Idle SSE streams get a `: keep-alive` comment this often, so proxies do not time them out."""
    inference_device: str = "cpu"
    """Device inference runs on: `cpu`, `cuda` or `cuda:N`."""
    session_lifetime_s: Annotated[float, Field(gt=0, le=365 * 86400)] = 7 * 86400.0
    """How long a browser session (the `_crucible_ui_key` cookie) lasts once opened; use does not extend it."""
    session_cookie_secure: bool = False
    """Mark every session cookie `Secure`; otherwise only when a proxy says the request came over TLS."""
    rate_limit_read_per_min: Annotated[int, Field(ge=0)] = 1000
    """Reads (GET, WebSocket handshakes, inference) per minute per API key or client address; 0: no limit."""
    rate_limit_write_per_min: Annotated[int, Field(ge=0)] = 100
    """Writes (POST, PUT, PATCH, DELETE) per minute per API key or client address; 0: no limit."""
    rate_limit_ingest_per_min: Annotated[int, Field(ge=0)] = 60_000
    """Layer-wise and scalar metric posts per minute per API key or client address; 0: no limit."""
    rate_limit_telemetry_events_per_min: Annotated[int, Field(ge=0)] = 10_000
    """Telemetry events (not requests) ingested per minute per API key or client address; 0: no limit."""
    rate_limit_export_per_min: Annotated[int, Field(ge=0)] = 10
    """Exports per minute per API key or client address; 0: no limit."""
    rate_limit_max_clients: Annotated[int, Field(ge=100)] = 10_000
    """Rate-limit buckets kept in memory; past this the least recently used are forgotten."""

    telemetry_max_events: Annotated[int, Field(ge=1000)] = 2_000_000
    """Telemetry events kept; past this the oldest are dropped, a whole ingest batch at a time."""
    telemetry_max_batch: Annotated[int, Field(ge=1, le=1_000_000)] = 10_000
    """Most events in one `POST /api/v1/telemetry/events`; more is a 422."""
    telemetry_max_body_bytes: Annotated[int, Field(ge=1024)] = 32 * 1024 * 1024
    """Largest telemetry ingest body (a full batch of 10,000 events is a few MB); larger ones get 413."""
    telemetry_self_events: bool = True
    """pivotd records its own telemetry: inference latency, epoch times, ingest volumes per interval."""
    telemetry_flush_interval_s: Annotated[float, Field(ge=0.01, le=60)] = 1.0
    """pivotd's own telemetry events are buffered and written together this often."""
    telemetry_cache_bytes: Annotated[int, Field(ge=0)] = 256 * 1024 * 1024
    """Memory for decoded telemetry blocks kept between queries (bodies and the dictionaries queries decoded)."""

    @property
    def db_path(self) -> Path:
        return self.data_dir / DB_FILE

    @property
    def datasets_path(self) -> Path:
        return self.dataset_dir or self.data_dir / "datasets"

    @property
    def runs_path(self) -> Path:
        return self.data_dir / RUNS_DIR

    def artifact_ref(self, path: Path) -> str:
        """How the database records an artifact file: relative to the data directory, so that a moved or restored
        directory finds its own files. A path outside the data directory is recorded whole."""
        return str(path.relative_to(self.data_dir)) if path.is_relative_to(self.data_dir) else str(path)

    def artifact_path(self, ref: str) -> Path:
        """The file a recorded artifact path names now: under this data directory, unless it is absolute."""
        return self.data_dir / ref

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def listens_on_loopback(self) -> bool:
        if self.host == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return False


class SettingsError(ValueError):
    """A setting could not be read; the message names its source and field."""


def _from_env(environ: dict[str, str]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for name in Settings.model_fields:
        raw = environ.get(ENV_PREFIX + name.upper())
        if raw is not None and raw != "":
            values[name] = raw
    return values


def load_settings(
    config_file: Path | None = None,
    overrides: dict[str, Any] | None = None,
    environ: dict[str, str] | None = None,
) -> Settings:
    """Merge the sources in precedence order and validate once, naming the offending source."""
    env = dict(os.environ if environ is None else environ)
    config_file = config_file or (Path(env["PIVOT_CONFIG"]) if env.get("PIVOT_CONFIG") else None)
    merged: dict[str, Any] = {}
    sources: dict[str, str] = {}
    if config_file is not None:
        try:
            with config_file.open("rb") as handle:
                document = tomllib.load(handle)
        except OSError as exc:
            raise SettingsError(f"cannot read config file {config_file}: {exc.strerror}") from exc
        except tomllib.TOMLDecodeError as exc:
            raise SettingsError(f"config file {config_file} is not valid TOML: {exc}") from exc
        section = document.get("pivotd", document)
        merged.update(section)
        sources.update(dict.fromkeys(section, str(config_file)))
    for layer, origin in ((_from_env(env), "environment"), (overrides or {}, "command line")):
        clean = {k: v for k, v in layer.items() if v is not None}
        merged.update(clean)
        sources.update(dict.fromkeys(clean, origin))
    try:
        return Settings.model_validate(merged)
    except ValidationError as exc:
        problems = []
        for error in exc.errors(include_url=False):
            field = ".".join(str(part) for part in error["loc"]) or "settings"
            origin = sources.get(field, "defaults")
            shown = f"{ENV_PREFIX}{field.upper()}" if origin == "environment" else field
            problems.append(f"{shown} (from {origin}): {error['msg']}")
        raise SettingsError("invalid settings: " + "; ".join(problems)) from exc
