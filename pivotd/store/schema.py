"""Schema migrations keyed by `PRAGMA user_version`: each entry upgrades version N-1 to N in place."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable

# Append only: a released migration is never edited, so every older database upgrades the same way.
MIGRATIONS: list[str] = [
    # 1: runs, layer-wise steps and scalar points.
    """
    CREATE TABLE runs (
        id          INTEGER PRIMARY KEY,
        run_id      TEXT NOT NULL UNIQUE,
        kind        TEXT NOT NULL DEFAULT 'external',
        status      TEXT NOT NULL DEFAULT 'running',
        created_at  REAL NOT NULL,
        last_update REAL NOT NULL,
        step_count  INTEGER NOT NULL DEFAULT 0,
        latest_step INTEGER
    );
    CREATE INDEX runs_by_last_update ON runs(last_update);
    CREATE TABLE steps (
        id         INTEGER PRIMARY KEY,
        run        INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
        step       INTEGER NOT NULL,
        timestamp  REAL NOT NULL,
        batch_size INTEGER NOT NULL,
        data       BLOB NOT NULL,
        UNIQUE (run, step)
    );
    -- Counts kept by triggers, not count(*) per write: an upsert that replaces a step takes the
    -- UPDATE path and leaves the count alone; only trims of the oldest steps delete.
    CREATE TRIGGER steps_counted AFTER INSERT ON steps BEGIN
        UPDATE runs SET step_count = step_count + 1,
                        latest_step = max(coalesce(latest_step, NEW.step), NEW.step)
        WHERE id = NEW.run;
    END;
    CREATE TRIGGER steps_uncounted AFTER DELETE ON steps BEGIN
        UPDATE runs SET step_count = step_count - 1 WHERE id = OLD.run;
    END;
    -- A series is one scalar name of one run; points key on its integer id, so the name is
    -- stored once and each point's key stays small.
    CREATE TABLE series (
        id   INTEGER PRIMARY KEY,
        run  INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
        name TEXT NOT NULL,
        UNIQUE (run, name)
    );
    CREATE TABLE scalars (
        series    INTEGER NOT NULL REFERENCES series(id) ON DELETE CASCADE,
        step      INTEGER NOT NULL,
        value     REAL NOT NULL,
        epoch     INTEGER,
        timestamp REAL,
        PRIMARY KEY (series, step)
    ) WITHOUT ROWID;
    """,
    # 2: experiment membership, tags and free metadata on runs; run events (rejected payloads, ...).
    """
    ALTER TABLE runs ADD COLUMN experiment_id TEXT;
    ALTER TABLE runs ADD COLUMN group_name TEXT;
    ALTER TABLE runs ADD COLUMN tags TEXT NOT NULL DEFAULT '[]';
    ALTER TABLE runs ADD COLUMN metadata TEXT NOT NULL DEFAULT '{}';
    CREATE INDEX runs_by_experiment ON runs(experiment_id);
    CREATE TABLE run_events (
        id        INTEGER PRIMARY KEY,
        run       INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
        timestamp REAL NOT NULL,
        kind      TEXT NOT NULL,
        step      INTEGER,
        field     TEXT,
        message   TEXT NOT NULL
    );
    CREATE INDEX run_events_by_run ON run_events(run, id);
    """,
    # 3: each series remembers its last point, so run lists show latest loss without reading points.
    """
    ALTER TABLE series ADD COLUMN last_step INTEGER;
    ALTER TABLE series ADD COLUMN last_value REAL;
    """,
    # 4: resource history, alert rules (with the built-in defaults), alerts, notifications, webhooks and
    # their delivery outbox. Built-ins are inserted here, once: a user who deletes one keeps it deleted.
    """
    CREATE TABLE resource_history (
        time REAL PRIMARY KEY,
        data TEXT NOT NULL
    );
    CREATE TABLE alert_rules (
        id         TEXT PRIMARY KEY,
        spec       TEXT NOT NULL,
        builtin    INTEGER NOT NULL DEFAULT 0,
        created_at REAL NOT NULL,
        updated_at REAL NOT NULL
    );
    CREATE TABLE alerts (
        id           TEXT PRIMARY KEY,
        rule_id      TEXT NOT NULL,
        subject      TEXT NOT NULL,
        status       TEXT NOT NULL,
        severity     TEXT NOT NULL,
        triggered_at REAL NOT NULL,
        data         TEXT NOT NULL
    );
    CREATE INDEX alerts_by_time ON alerts(triggered_at);
    -- The database enforces what the engine promises: one open alert per rule and subject.
    CREATE UNIQUE INDEX alerts_one_open ON alerts(rule_id, subject) WHERE status != 'resolved';
    CREATE TABLE notifications (
        id         TEXT PRIMARY KEY,
        seq        INTEGER NOT NULL,
        type       TEXT NOT NULL,
        priority   TEXT NOT NULL,
        message    TEXT NOT NULL,
        data       TEXT NOT NULL,
        read       INTEGER NOT NULL DEFAULT 0,
        created_at REAL NOT NULL
    );
    CREATE INDEX notifications_by_seq ON notifications(seq);
    CREATE TABLE webhooks (
        id         TEXT PRIMARY KEY,
        url        TEXT NOT NULL,
        events     TEXT NOT NULL,
        secret     TEXT NOT NULL,
        format     TEXT NOT NULL,
        created_at REAL NOT NULL
    );
    CREATE TABLE webhook_outbox (
        id              TEXT PRIMARY KEY,
        webhook_id      TEXT NOT NULL REFERENCES webhooks(id) ON DELETE CASCADE,
        event           TEXT NOT NULL,
        body            BLOB NOT NULL,
        status          TEXT NOT NULL DEFAULT 'pending',
        attempts        INTEGER NOT NULL DEFAULT 0,
        next_attempt_at REAL NOT NULL,
        last_status     INTEGER,
        last_error      TEXT,
        created_at      REAL NOT NULL,
        finished_at     REAL
    );
    CREATE INDEX webhook_outbox_due ON webhook_outbox(status, next_attempt_at);
    INSERT INTO alert_rules (id, spec, builtin, created_at, updated_at) VALUES
      ('rule_gpu_hot', '{"name": "gpu_hot", "metric": "gpu_temperature", "condition": "greater_than",
        "threshold": 85, "severity": "high", "for_seconds": 30}', 1, unixepoch(), unixepoch()),
      ('rule_disk_full', '{"name": "disk_full", "metric": "disk_percent", "condition": "greater_than",
        "threshold": 90, "severity": "high"}', 1, unixepoch(), unixepoch()),
      ('rule_non_finite', '{"name": "non_finite_values", "metric": "any_value", "condition": "not_finite",
        "severity": "critical"}', 1, unixepoch(), unixepoch()),
      ('rule_exploding_gradient', '{"name": "exploding_gradient", "metric": "gradient_l2_norm",
        "condition": "greater_than", "threshold": 1000, "severity": "high"}', 1, unixepoch(), unixepoch()),
      ('rule_gradient_spike', '{"name": "gradient_spike", "metric": "gradient_l2_norm",
        "condition": "grows_by_factor", "threshold": 100, "severity": "high"}', 1, unixepoch(), unixepoch()),
      ('rule_vanishing_gradient', '{"name": "vanishing_gradient", "metric": "gradient_l2_norm",
        "condition": "less_than", "threshold": 1e-7, "severity": "medium", "for_seconds": 60,
        "scope": {"layer": "@first"}}', 1, unixepoch(), unixepoch()),
      ('rule_run_silent', '{"name": "run_silent", "metric": "any_value", "condition": "no_data_for",
        "threshold": 600, "severity": "medium"}', 1, unixepoch(), unixepoch());
    """,
    # 5: managed training: model definitions, the job fields of runs, trained params, checkpoints, worker logs.
    """
    CREATE TABLE models (
        id               INTEGER PRIMARY KEY,
        model_id         TEXT NOT NULL UNIQUE,
        name             TEXT,
        description      TEXT,
        architecture     TEXT,
        hyperparams      TEXT,
        trained          INTEGER NOT NULL DEFAULT 0,
        saved_model_path TEXT,
        saved_run_id     TEXT,
        created_at       REAL NOT NULL,
        updated_at       REAL NOT NULL,
        last_trained_at  REAL
    );
    ALTER TABLE runs ADD COLUMN model_id TEXT;
    ALTER TABLE runs ADD COLUMN name TEXT;
    ALTER TABLE runs ADD COLUMN config TEXT;
    ALTER TABLE runs ADD COLUMN error TEXT;
    ALTER TABLE runs ADD COLUMN queued_at REAL;
    ALTER TABLE runs ADD COLUMN started_at REAL;
    ALTER TABLE runs ADD COLUMN finished_at REAL;
    ALTER TABLE runs ADD COLUMN epoch INTEGER;
    ALTER TABLE runs ADD COLUMN epochs_total INTEGER;
    ALTER TABLE runs ADD COLUMN param_id TEXT;
    CREATE INDEX runs_by_model ON runs(model_id, id);
    CREATE INDEX runs_by_status ON runs(kind, status);
    -- Params outlive their run row (retention may evict a finished run; the model keeps its weights).
    CREATE TABLE params (
        id         INTEGER PRIMARY KEY,
        param_id   TEXT NOT NULL UNIQUE,
        run_id     TEXT NOT NULL,
        model_id   TEXT,
        path       TEXT NOT NULL,
        size_bytes INTEGER NOT NULL,
        created_at REAL NOT NULL
    );
    CREATE TABLE checkpoints (
        id            INTEGER PRIMARY KEY,
        checkpoint_id TEXT NOT NULL UNIQUE,
        run           INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
        epoch         INTEGER,
        metric_name   TEXT,
        metric_value  REAL,
        metrics       TEXT NOT NULL DEFAULT '{}',
        path          TEXT NOT NULL,
        size_bytes    INTEGER NOT NULL,
        is_best       INTEGER NOT NULL DEFAULT 0,
        source        TEXT NOT NULL DEFAULT 'trainer',
        created_at    REAL NOT NULL
    );
    CREATE INDEX checkpoints_by_run ON checkpoints(run, id);
    CREATE TABLE run_logs (
        id        INTEGER PRIMARY KEY,
        run       INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
        timestamp REAL NOT NULL,
        level     TEXT NOT NULL,
        message   TEXT NOT NULL
    );
    CREATE INDEX run_logs_by_run ON run_logs(run, id);
    """,
    # 6: experiments (runs join through runs.experiment_id, added in 2) and stored statistical results.
    """
    CREATE TABLE experiments (
        id          TEXT PRIMARY KEY,
        name        TEXT NOT NULL,
        description TEXT,
        config      TEXT NOT NULL DEFAULT '{}',
        tags        TEXT NOT NULL DEFAULT '[]',
        created_at  REAL NOT NULL,
        updated_at  REAL NOT NULL
    );
    -- Keyset (cursor) paging walks (created_at, id); the index makes each page a range scan.
    CREATE INDEX experiments_by_created ON experiments(created_at, id);
    CREATE TABLE statistical_results (
        id            TEXT PRIMARY KEY,
        experiment_id TEXT NOT NULL REFERENCES experiments(id) ON DELETE CASCADE,
        test_type     TEXT NOT NULL,
        created_at    REAL NOT NULL,
        data          TEXT NOT NULL
    );
    CREATE INDEX statistical_results_by_created ON statistical_results(created_at, id);
    CREATE INDEX statistical_results_by_experiment ON statistical_results(experiment_id, created_at);
    """,
    # 7: the experiment lifecycle. launched_at: when `start` enqueued its sweep (once only); paused_at: the
    # queue skips its runs while set (persisted, so a pause survives a restart); cancelled_at: cancelled for good.
    """
    ALTER TABLE experiments ADD COLUMN launched_at REAL;
    ALTER TABLE experiments ADD COLUMN paused_at REAL;
    ALTER TABLE experiments ADD COLUMN cancelled_at REAL;
    """,
    # 8: named API keys. Only the SHA-256 digest of a key is stored; the key itself is shown once.
    """
    CREATE TABLE api_keys (
        id           TEXT PRIMARY KEY,
        name         TEXT NOT NULL,
        scopes       TEXT NOT NULL,
        prefix       TEXT NOT NULL,
        digest       BLOB NOT NULL UNIQUE,
        created_at   REAL NOT NULL,
        last_used_at REAL,
        revoked_at   REAL
    );
    """,
    # 9 (issue 7, telemetry and `/api/v1/models`): telemetry events stored as columnar blocks, one row per
    # ingest batch (pivotd/telemetry/columns.py); event ids run first_event .. first_event + count - 1, and the
    # small columns come first so scanning ids and time ranges never reads the bodies' overflow pages. Models
    # keep `/api/v1/models` fields that have no column of their own (provider, type, status, config) in `extra`.
    """
    ALTER TABLE models ADD COLUMN extra TEXT NOT NULL DEFAULT '{}';
    CREATE TABLE telemetry_blocks (
        id          INTEGER PRIMARY KEY,
        first_event INTEGER NOT NULL,
        count       INTEGER NOT NULL,
        min_ts      REAL NOT NULL,
        max_ts      REAL NOT NULL,
        header      BLOB NOT NULL,
        body        BLOB NOT NULL
    );
    -- Retention sums counts on every batch past the cap: from this index, not from every block's row page.
    CREATE INDEX telemetry_block_counts ON telemetry_blocks(id, count);
    """,
    # 10 (issue 11): artifact paths relative to the data directory, so a moved or restored directory reads its
    # own files. Every artifact is under `<data_dir>/runs/<run_id>/` with the run id known from its row, so the
    # path is cut before `runs/<run_id>/` without guessing the old data directory; one without it stays as it was.
    """
    UPDATE params SET path = substr(path, instr(path, '/runs/' || run_id || '/') + 1)
    WHERE instr(path, '/runs/' || run_id || '/') > 0;
    UPDATE checkpoints SET path = substr(checkpoints.path, instr(checkpoints.path, '/runs/' || runs.run_id || '/') + 1)
    FROM runs WHERE runs.id = checkpoints.run AND instr(checkpoints.path, '/runs/' || runs.run_id || '/') > 0;
    -- A promoted model names its run's params file.
    UPDATE models SET saved_model_path =
        substr(saved_model_path, instr(saved_model_path, '/runs/' || saved_run_id || '/') + 1)
    WHERE instr(saved_model_path, '/runs/' || saved_run_id || '/') > 0;
    UPDATE runs SET config = json_set(config, '$.resume_from.path', substr(
        json_extract(config, '$.resume_from.path'),
        instr(json_extract(config, '$.resume_from.path'), '/runs/' || run_id || '/') + 1))
    WHERE instr(json_extract(config, '$.resume_from.path'), '/runs/' || run_id || '/') > 0;
    """,
    # 11 (issue 12): browser sessions (the `_crucible_ui_key` cookie). Like API keys, only the token's
    # SHA-256 digest is stored. A session opened with an API key names it (NULL: the owner's), so revoking the
    # key ends them; each has a fixed expiry, and expired rows are deleted as new sessions open.
    """
    CREATE TABLE auth_sessions (
        id         TEXT PRIMARY KEY,
        digest     BLOB NOT NULL UNIQUE,
        scopes     TEXT NOT NULL,
        api_key_id TEXT REFERENCES api_keys(id),
        created_at REAL NOT NULL,
        expires_at REAL NOT NULL
    );
    CREATE INDEX auth_sessions_by_expiry ON auth_sessions(expires_at);
    CREATE INDEX auth_sessions_by_key ON auth_sessions(api_key_id);
    """,
    # 12 (issue 14): the GPUs a managed run's worker was pinned to, as JSON `[{index, uuid, name}]` (NVML's
    # index and UUID); NULL for a run that got none or started before this version.
    """
    ALTER TABLE runs ADD COLUMN gpus TEXT;
    """,
    # 13 (issue 15): jobs, people's own commands as runs of kind `job` (their argv, cwd and requests in `config`).
    # The queue orders by priority, then age: the partial index keeps that order to hand with thousands queued.
    # `attempts` counts starts (retries), `exit_code` is a finished job's status (negative: the killing signal).
    """
    ALTER TABLE runs ADD COLUMN priority INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE runs ADD COLUMN attempts INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE runs ADD COLUMN exit_code INTEGER;
    CREATE INDEX runs_queue ON runs(priority DESC, queued_at, id) WHERE status = 'queued';
    """,
    # 14 (issue 17): compact layer-wise steps. A step is written as JSON (shape NULL), as before, and packed
    # later by the writer when it is idle (`store/compaction.py`): its numbers in `data`, its structure once
    # per run in `step_shapes` (`store/stepcodec.py`). Shape 0: kept as JSON (it would not read back
    # identically). Steps of older versions are packed the same way, after the upgrade, in the background.
    # AUTOINCREMENT: shape ids are never reused, so readers may cache templates by id.
    """
    CREATE TABLE step_shapes (
        id       INTEGER PRIMARY KEY AUTOINCREMENT,
        run      INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
        digest   BLOB NOT NULL,
        template BLOB NOT NULL,
        UNIQUE (run, digest)
    );
    ALTER TABLE steps ADD COLUMN shape INTEGER;
    CREATE INDEX steps_unpacked ON steps(id) WHERE shape IS NULL;
    """,
    # 15 (issue 17): scalar points as columnar chunks (`store/scalarcodec.py`): a row per run of a series' points,
    # their steps, values, epochs and timestamps as arrays. A series' chunks never overlap in steps, so the index
    # orders them by either end. Epochs come last: a read of a series stops before them (a row's blobs are a chain of
    # overflow pages, read in order). The points of `scalars` move into chunks (`DATA_MIGRATIONS`), then it is dropped.
    """
    CREATE TABLE scalar_chunks (
        id         INTEGER PRIMARY KEY,
        series     INTEGER NOT NULL REFERENCES series(id) ON DELETE CASCADE,
        first_step INTEGER NOT NULL,
        last_step  INTEGER NOT NULL,
        count      INTEGER NOT NULL,
        steps      BLOB NOT NULL,
        vals       BLOB NOT NULL,
        timestamps BLOB,
        epochs     BLOB
    );
    CREATE INDEX scalar_chunks_by_series ON scalar_chunks(series, last_step, first_step);
    -- Writes tell appends from overwrites by a series' last step; points stored before migration 3 left it NULL.
    UPDATE series SET last_step = (SELECT max(step) FROM scalars WHERE scalars.series = series.id)
    WHERE last_step IS NULL;
    """,
]


def _chunk_scalars(conn: sqlite3.Connection) -> None:
    """Migration 15's data: each series' rows of `scalars`, in step order, become chunks; then `scalars` goes."""
    # Here, not at the top: `pivotd.store.integrity` reads SCHEMA_VERSION for `pivotd backup`/`restore`, which
    # need no numpy.
    import numpy as np  # noqa: PLC0415

    from pivotd.store import scalarcodec  # noqa: PLC0415

    for (series,) in conn.execute("SELECT id FROM series").fetchall():
        rows = conn.execute(
            "SELECT step, value, ifnull(epoch, ?), timestamp FROM scalars WHERE series = ? ORDER BY step",
            (scalarcodec.NO_EPOCH, series),
        ).fetchall()
        if not rows:
            continue
        steps, values, epochs, stamps = zip(*rows, strict=True)
        found = scalarcodec.Points(
            np.array(steps, np.int64),
            np.array(values, np.float64),
            np.array(epochs, np.int64),
            np.array(stamps, np.float64),  # a NULL timestamp (None) becomes NaN: none
        )
        conn.executemany(
            "INSERT INTO scalar_chunks (series, first_step, last_step, count, steps, vals, epochs, timestamps) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [(series, *scalarcodec.encode(piece)) for piece in scalarcodec.pieces(found)],
        )
    conn.execute("DROP TABLE scalars")


DATA_MIGRATIONS: dict[int, Callable[[sqlite3.Connection], None]] = {15: _chunk_scalars}
"""Migrations that move data in Python after their SQL, inside the same transaction."""

SCHEMA_VERSION = len(MIGRATIONS)


PAGE_SIZE = 16384


class SchemaTooNewError(RuntimeError):
    """The database was written by a newer pivotd; refusing to guess how to read it."""


def configure(conn: sqlite3.Connection) -> None:
    """Connection settings every pivotd connection uses."""
    # Only a new database takes this (a database's page size is fixed once written, and in WAL mode for good).
    # A packed 50-layer step is about 2.3 KB: a 4 KB page holds one of them and wastes the rest.
    conn.execute(f"PRAGMA page_size={PAGE_SIZE}")
    conn.execute("PRAGMA journal_mode=WAL")
    # NORMAL in WAL: a commit survives a killed process (it is in the WAL file); only an OS crash
    # or power loss can drop the last transactions. See docs/architecture.md.
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("PRAGMA foreign_keys=ON")
    conn.execute("PRAGMA busy_timeout=5000")


def migrate(conn: sqlite3.Connection, target: int = SCHEMA_VERSION) -> int:
    """Bring the database to `target`, one transaction per migration. Returns the version found."""
    found = conn.execute("PRAGMA user_version").fetchone()[0]
    if found > SCHEMA_VERSION:
        raise SchemaTooNewError(f"database schema version {found} is newer than this pivotd ({SCHEMA_VERSION})")
    for version in range(found + 1, target + 1):
        move = DATA_MIGRATIONS.get(version)
        if move is None:
            # executescript commits first; wrap each migration so a failure leaves the old version intact.
            conn.executescript(f"BEGIN; {MIGRATIONS[version - 1]} PRAGMA user_version = {version}; COMMIT;")
            continue
        try:
            conn.executescript(f"BEGIN; {MIGRATIONS[version - 1]}")
            move(conn)
            conn.execute(f"PRAGMA user_version = {version}")
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
    return found
