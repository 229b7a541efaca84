-- The projection store's tables (DuckDB). All timestamps are UTC (TIMESTAMP, microseconds).
-- tags/metadata/environment are JSON text. Rows are never hard-deleted by events:
-- `deleted` hides them from the query service, the log keeps everything.
-- A change of what these tables hold bumps PROJECTION_FORMAT (projections/store.py):
-- projections of another format are rebuilt from the log when opened.

CREATE TABLE IF NOT EXISTS projection_format (
    version INTEGER NOT NULL
);

CREATE TABLE IF NOT EXISTS projection_offsets (
    "partition" INTEGER PRIMARY KEY,
    next_offset BIGINT NOT NULL
);

CREATE TABLE IF NOT EXISTS applied_events (
    event_id VARCHAR PRIMARY KEY
);

CREATE TABLE IF NOT EXISTS projects (
    project_id VARCHAR PRIMARY KEY,
    name VARCHAR NOT NULL,
    description VARCHAR NOT NULL,
    notes VARCHAR NOT NULL,
    tags JSON NOT NULL,
    metadata JSON NOT NULL,
    archived BOOLEAN NOT NULL,
    deleted BOOLEAN NOT NULL,
    created_by VARCHAR NOT NULL,
    created_at TIMESTAMP NOT NULL,
    updated_at TIMESTAMP NOT NULL
);

CREATE TABLE IF NOT EXISTS experiments (
    experiment_id VARCHAR PRIMARY KEY,
    project_id VARCHAR NOT NULL,
    name VARCHAR NOT NULL,
    description VARCHAR NOT NULL,
    status VARCHAR NOT NULL,
    notes VARCHAR NOT NULL,
    tags JSON NOT NULL,
    metadata JSON NOT NULL,
    archived BOOLEAN NOT NULL,
    deleted BOOLEAN NOT NULL,
    created_by VARCHAR NOT NULL,
    created_at TIMESTAMP NOT NULL,
    updated_at TIMESTAMP NOT NULL,
    end_date TIMESTAMP
);

CREATE TABLE IF NOT EXISTS iterations (
    iteration_id VARCHAR PRIMARY KEY,
    experiment_id VARCHAR NOT NULL,
    project_id VARCHAR NOT NULL,
    name VARCHAR NOT NULL,
    parent_iteration_id VARCHAR,
    external_id VARCHAR,
    status VARCHAR NOT NULL,
    error_message VARCHAR NOT NULL,
    notes VARCHAR NOT NULL,
    tags JSON NOT NULL,
    metadata JSON NOT NULL,
    environment JSON,
    archived BOOLEAN NOT NULL,
    deleted BOOLEAN NOT NULL,
    created_by VARCHAR NOT NULL,
    created_at TIMESTAMP NOT NULL,
    updated_at TIMESTAMP NOT NULL,
    end_date TIMESTAMP,
    last_heartbeat TIMESTAMP NOT NULL,
    description VARCHAR NOT NULL,
    config JSON NOT NULL,
    cloned_from VARCHAR
);

-- Params are write-once per (iteration, section, key); `type` is the logged value's type
-- (int, float, bool, str, none, json) while `value` is its text, which filters compare.
CREATE TABLE IF NOT EXISTS params (
    iteration_id VARCHAR NOT NULL,
    key VARCHAR NOT NULL,
    value VARCHAR NOT NULL,
    section VARCHAR NOT NULL,
    logged_at TIMESTAMP NOT NULL,
    type VARCHAR NOT NULL,
    PRIMARY KEY (iteration_id, section, key)
);

-- Metric points not yet compacted into Parquet segments. Each (iteration, key, group)
-- is stored once in metric_series_hot and the points refer to it by number, so a batch
-- writes numbers, not strings (half the bytes); the metric_points_hot view puts the
-- strings back. The `metrics` view is the registered segments UNION ALL that view.
CREATE TABLE IF NOT EXISTS metric_series_hot (
    series INTEGER PRIMARY KEY,
    iteration_id VARCHAR NOT NULL,
    key VARCHAR NOT NULL,
    "group" VARCHAR NOT NULL
);

CREATE TABLE IF NOT EXISTS metric_points_hot_data (
    series INTEGER NOT NULL,
    step BIGINT NOT NULL,
    value DOUBLE NOT NULL,
    recorded_at TIMESTAMP NOT NULL,
    client_time TIMESTAMP NOT NULL,
    "partition" INTEGER NOT NULL,
    "offset" BIGINT NOT NULL,
    seq INTEGER NOT NULL
);

CREATE VIEW IF NOT EXISTS metric_points_hot AS
SELECT s.iteration_id, s.key, p.step, p.value, p.recorded_at, p.client_time, s."group",
       p."partition", p."offset", p.seq
FROM metric_points_hot_data p JOIN metric_series_hot s USING (series);

CREATE TABLE IF NOT EXISTS metric_segments (
    path VARCHAR PRIMARY KEY,
    num_rows BIGINT NOT NULL,
    size_bytes BIGINT NOT NULL,
    created_seq BIGINT NOT NULL
);

CREATE TABLE IF NOT EXISTS last_metrics (
    iteration_id VARCHAR NOT NULL,
    key VARCHAR NOT NULL,
    "first" DOUBLE NOT NULL,
    "last" DOUBLE NOT NULL,
    "min" DOUBLE,
    "max" DOUBLE,
    mean DOUBLE,
    count BIGINT NOT NULL,
    "sum" DOUBLE NOT NULL,
    finite_count BIGINT NOT NULL,
    min_step BIGINT,
    max_step BIGINT,
    first_step BIGINT NOT NULL,
    last_step BIGINT NOT NULL,
    top_step BIGINT NOT NULL,
    last_recorded_at TIMESTAMP NOT NULL,
    "group" VARCHAR NOT NULL,
    PRIMARY KEY (iteration_id, key, "group")
);

CREATE TABLE IF NOT EXISTS logs (
    iteration_id VARCHAR NOT NULL,
    "time" TIMESTAMP NOT NULL,
    level VARCHAR NOT NULL,
    message VARCHAR NOT NULL,
    source VARCHAR NOT NULL,
    recorded_at TIMESTAMP NOT NULL,
    "partition" INTEGER NOT NULL,
    "offset" BIGINT NOT NULL,
    seq INTEGER NOT NULL
);

CREATE TABLE IF NOT EXISTS artifacts (
    artifact_id VARCHAR PRIMARY KEY,
    experiment_id VARCHAR NOT NULL,
    iteration_id VARCHAR,
    name VARCHAR NOT NULL,
    description VARCHAR NOT NULL,
    backend VARCHAR NOT NULL,
    uri VARCHAR NOT NULL,
    size_bytes BIGINT NOT NULL,
    content_hash VARCHAR NOT NULL,
    media_type VARCHAR NOT NULL,
    tags JSON NOT NULL,
    archived BOOLEAN NOT NULL,
    deleted BOOLEAN NOT NULL,
    created_by VARCHAR NOT NULL,
    created_at TIMESTAMP NOT NULL,
    updated_at TIMESTAMP NOT NULL,
    notes VARCHAR NOT NULL,
    metadata JSON NOT NULL
);

CREATE TABLE IF NOT EXISTS models (
    model_id VARCHAR PRIMARY KEY,
    project_id VARCHAR NOT NULL,
    name VARCHAR NOT NULL,
    description VARCHAR NOT NULL,
    notes VARCHAR NOT NULL,
    tags JSON NOT NULL,
    metadata JSON NOT NULL,
    latest_version BIGINT NOT NULL,
    archived BOOLEAN NOT NULL,
    deleted BOOLEAN NOT NULL,
    created_by VARCHAR NOT NULL,
    created_at TIMESTAMP NOT NULL,
    updated_at TIMESTAMP NOT NULL
);

CREATE TABLE IF NOT EXISTS model_versions (
    model_version_id VARCHAR PRIMARY KEY,
    model_id VARCHAR NOT NULL,
    version BIGINT NOT NULL,
    iteration_id VARCHAR,
    artifact_id VARCHAR,
    stage VARCHAR NOT NULL,
    description VARCHAR NOT NULL,
    notes VARCHAR NOT NULL,
    tags JSON NOT NULL,
    metadata JSON NOT NULL,
    aliases JSON NOT NULL,
    archived BOOLEAN NOT NULL,
    deleted BOOLEAN NOT NULL,
    created_by VARCHAR NOT NULL,
    created_at TIMESTAMP NOT NULL,
    updated_at TIMESTAMP NOT NULL,
    checkpoint_id VARCHAR
);

-- Rich media of iterations per (key, step, index): bytes in the artifact store by hash,
-- or inline text. media_id is derived from those four (projections/folds/media.py).
CREATE TABLE IF NOT EXISTS media (
    media_id VARCHAR PRIMARY KEY,
    iteration_id VARCHAR NOT NULL,
    key VARCHAR NOT NULL,
    step BIGINT NOT NULL,
    "index" INTEGER NOT NULL,
    kind VARCHAR NOT NULL,
    content_hash VARCHAR NOT NULL,
    size_bytes BIGINT NOT NULL,
    media_type VARCHAR NOT NULL,
    caption VARCHAR NOT NULL,
    "text" VARCHAR NOT NULL,
    width INTEGER NOT NULL,
    height INTEGER NOT NULL,
    metadata JSON NOT NULL,
    client_time TIMESTAMP NOT NULL,
    logged_at TIMESTAMP NOT NULL
);

-- Distributions per (iteration, key, step): bin edges and counts.
CREATE TABLE IF NOT EXISTS histograms (
    histogram_id VARCHAR PRIMARY KEY,
    iteration_id VARCHAR NOT NULL,
    key VARCHAR NOT NULL,
    step BIGINT NOT NULL,
    edges DOUBLE[] NOT NULL,
    counts DOUBLE[] NOT NULL,
    count DOUBLE NOT NULL,
    "min" DOUBLE NOT NULL,
    "max" DOUBLE NOT NULL,
    client_time TIMESTAMP NOT NULL,
    logged_at TIMESTAMP NOT NULL
);

-- Checkpoints: files (path, content_hash, size_bytes) saved at a step, with the metrics at
-- that step; retention marks them discarded (and frees content nothing else names).
CREATE TABLE IF NOT EXISTS checkpoints (
    checkpoint_id VARCHAR PRIMARY KEY,
    iteration_id VARCHAR NOT NULL,
    step BIGINT NOT NULL,
    name VARCHAR NOT NULL,
    files JSON NOT NULL,
    size_bytes BIGINT NOT NULL,
    metrics JSON NOT NULL,
    metadata JSON NOT NULL,
    discarded BOOLEAN NOT NULL,
    discarded_reason VARCHAR NOT NULL,
    created_by VARCHAR NOT NULL,
    created_at TIMESTAMP NOT NULL,
    updated_at TIMESTAMP NOT NULL
);

-- Model versions iterations used (ModelVersionUsed): a model's consuming runs.
CREATE TABLE IF NOT EXISTS model_uses (
    use_id VARCHAR PRIMARY KEY,
    iteration_id VARCHAR NOT NULL,
    model_version_id VARCHAR NOT NULL,
    purpose VARCHAR NOT NULL,
    used_by VARCHAR NOT NULL,
    used_at TIMESTAMP NOT NULL
);

CREATE TABLE IF NOT EXISTS users (
    user_id VARCHAR PRIMARY KEY,
    username VARCHAR NOT NULL,
    first_name VARCHAR NOT NULL,
    last_name VARCHAR NOT NULL,
    password_hash VARCHAR NOT NULL,
    is_admin BOOLEAN NOT NULL,
    created_at TIMESTAMP NOT NULL,
    updated_at TIMESTAMP NOT NULL
);

CREATE TABLE IF NOT EXISTS permissions (
    user_id VARCHAR NOT NULL,
    project_id VARCHAR NOT NULL,
    can_create BOOLEAN NOT NULL,
    can_read BOOLEAN NOT NULL,
    can_update BOOLEAN NOT NULL,
    can_delete BOOLEAN NOT NULL,
    updated_at TIMESTAMP NOT NULL,
    PRIMARY KEY (user_id, project_id)
);

CREATE TABLE IF NOT EXISTS access_tokens (
    token_id VARCHAR PRIMARY KEY,
    user_id VARCHAR NOT NULL,
    token_hash VARCHAR NOT NULL,
    description VARCHAR NOT NULL,
    expires_at TIMESTAMP,
    revoked BOOLEAN NOT NULL,
    created_at TIMESTAMP NOT NULL
);

-- Every applied event, for "who changed what, when" and as-of-time replays.
CREATE TABLE IF NOT EXISTS events (
    "partition" INTEGER NOT NULL,
    "offset" BIGINT NOT NULL,
    event_id VARCHAR NOT NULL,
    type VARCHAR NOT NULL,
    actor VARCHAR NOT NULL,
    client_time TIMESTAMP NOT NULL,
    log_time TIMESTAMP NOT NULL,
    entity_kind VARCHAR NOT NULL,
    entity_id VARCHAR NOT NULL,
    summary JSON NOT NULL
);

-- Events that were valid to append but could not be applied (e.g. a parameter
-- logged again with a different value): recorded, never silently dropped.
CREATE TABLE IF NOT EXISTS conflicts (
    "partition" INTEGER NOT NULL,
    "offset" BIGINT NOT NULL,
    event_id VARCHAR NOT NULL,
    kind VARCHAR NOT NULL,
    entity_id VARCHAR NOT NULL,
    detail VARCHAR NOT NULL
);

-- Records of unknown type or undecodable bytes (e.g. written by a newer release).
CREATE TABLE IF NOT EXISTS parked_events (
    "partition" INTEGER NOT NULL,
    "offset" BIGINT NOT NULL,
    event_id VARCHAR NOT NULL,
    event_type VARCHAR NOT NULL,
    error VARCHAR NOT NULL,
    payload BLOB NOT NULL
);
