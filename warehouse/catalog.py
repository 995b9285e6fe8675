"""The catalog: the tables inside `pixql.duckdb` that describe what the warehouse holds.

The catalog lives in the DuckDB schema `catalog` so that users' tables (the views
in `main`) and bookkeeping never mix.  A Parquet part exists on disk before the
catalog row that references it is committed; a part without a row is an orphan
from a killed writer and is ignored by the views and deleted by `sweep_orphans`.
"""
from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

import duckdb

SCHEMA_VERSION = 1

DDL = [
    "CREATE SCHEMA IF NOT EXISTS catalog",
    """CREATE TABLE IF NOT EXISTS catalog.meta(
        key VARCHAR PRIMARY KEY, value VARCHAR)""",
    """CREATE TABLE IF NOT EXISTS catalog.datasets(
        name VARCHAR PRIMARY KEY,
        encoder VARCHAR NOT NULL,
        description VARCHAR,
        created_dt TIMESTAMP NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS catalog.encoders(
        name VARCHAR PRIMARY KEY,
        kind VARCHAR NOT NULL,
        vector_columns JSON NOT NULL,
        created_dt TIMESTAMP NOT NULL)""",
    # Video ingest (ingest/video.py): one row per video; its keyframes are assets.
    # sample_fps/max_frames are fixed at the first ingest so keyframe ids stay stable;
    # status is 'partial' while its keyframes are still being committed.
    """CREATE TABLE IF NOT EXISTS catalog.videos(
        coactive_video_id VARCHAR PRIMARY KEY,
        dataset VARCHAR NOT NULL,
        path VARCHAR NOT NULL,
        sha256 VARCHAR NOT NULL,
        size_bytes BIGINT,
        container VARCHAR,
        codec VARCHAR,
        width INTEGER,
        height INTEGER,
        duration_ms BIGINT,
        fps DOUBLE,
        sample_fps DOUBLE NOT NULL,
        max_frames INTEGER,
        frames_sampled INTEGER NOT NULL,
        status VARCHAR NOT NULL,
        error VARCHAR,
        run_id VARCHAR,
        created_dt TIMESTAMP NOT NULL)""",
    # Analyzers (ingest/analyzers): columns maps each output column to its DuckDB type.
    """CREATE TABLE IF NOT EXISTS catalog.analyzers(
        name VARCHAR PRIMARY KEY,
        version VARCHAR,
        columns JSON NOT NULL,
        created_dt TIMESTAMP NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS catalog.dataset_analyzers(
        dataset VARCHAR NOT NULL,
        analyzer VARCHAR NOT NULL,
        created_dt TIMESTAMP NOT NULL,
        PRIMARY KEY (dataset, analyzer))""",
    """CREATE TABLE IF NOT EXISTS catalog.analyses(
        coactive_image_id VARCHAR NOT NULL,
        analyzer VARCHAR NOT NULL,
        part VARCHAR NOT NULL,
        PRIMARY KEY (coactive_image_id, analyzer))""",
    # User overrides of the OCR moderation patterns (defaults: warehouse/analyzer_sql.py);
    # a NULL pattern switches a default flag off.
    """CREATE TABLE IF NOT EXISTS catalog.ocr_patterns(
        flag VARCHAR PRIMARY KEY,
        pattern VARCHAR,
        description VARCHAR,
        created_dt TIMESTAMP NOT NULL)""",
    # kind: 'assets' | 'vectors' | 'analyzer'; encoder holds the encoder name for
    # vectors and the analyzer name for analyzer parts.
    """CREATE TABLE IF NOT EXISTS catalog.parts(
        path VARCHAR PRIMARY KEY,
        dataset VARCHAR NOT NULL,
        kind VARCHAR NOT NULL,
        encoder VARCHAR,
        row_count BIGINT NOT NULL,
        run_id VARCHAR,
        created_dt TIMESTAMP NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS catalog.assets(
        coactive_image_id VARCHAR PRIMARY KEY,
        dataset VARCHAR NOT NULL,
        path VARCHAR NOT NULL,
        sha256 VARCHAR,
        media_type VARCHAR NOT NULL,
        part VARCHAR NOT NULL,
        created_dt TIMESTAMP NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS catalog.embeddings(
        coactive_image_id VARCHAR NOT NULL,
        encoder VARCHAR NOT NULL,
        part VARCHAR NOT NULL,
        PRIMARY KEY (coactive_image_id, encoder))""",
    """CREATE TABLE IF NOT EXISTS catalog.ingest_runs(
        run_id VARCHAR PRIMARY KEY,
        dataset VARCHAR NOT NULL,
        encoder VARCHAR,
        sources JSON,
        status VARCHAR NOT NULL,
        started_dt TIMESTAMP NOT NULL,
        finished_dt TIMESTAMP,
        files_seen BIGINT DEFAULT 0,
        assets_added BIGINT DEFAULT 0,
        skipped BIGINT DEFAULT 0,
        errors BIGINT DEFAULT 0)""",
    # SQL an encoder adds to the views (written by ingest from the encoder, read by
    # warehouse/encoder_sql.py): kind 'macro' | 'column'; {vectors} and {class_names}
    # stand for the vectors alias and the list literal of catalog.class_names.
    """CREATE TABLE IF NOT EXISTS catalog.encoder_sql(
        encoder VARCHAR NOT NULL,
        position INTEGER NOT NULL,
        kind VARCHAR NOT NULL,
        sql VARCHAR NOT NULL,
        PRIMARY KEY (encoder, position))""",
    """CREATE TABLE IF NOT EXISTS catalog.class_names(
        encoder VARCHAR NOT NULL,
        class_index INTEGER NOT NULL,
        name VARCHAR NOT NULL,
        PRIMARY KEY (encoder, class_index))""",
    # Concepts (owned by concepts/ and warehouse/concept_sql.py).  A head is data:
    # prob = link(scale * <vector_column> . weights + bias), link 'logistic' | 'linear'.
    """CREATE TABLE IF NOT EXISTS catalog.concepts(
        name VARCHAR PRIMARY KEY,
        description VARCHAR,
        encoder VARCHAR NOT NULL,
        parent VARCHAR,
        threshold DOUBLE NOT NULL,
        latest_version INTEGER NOT NULL,
        created_dt TIMESTAMP NOT NULL,
        updated_dt TIMESTAMP NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS catalog.concept_versions(
        concept VARCHAR NOT NULL,
        version INTEGER NOT NULL,
        kind VARCHAR NOT NULL,
        encoder VARCHAR NOT NULL,
        vector_column VARCHAR NOT NULL,
        dim INTEGER NOT NULL,
        weights FLOAT[] NOT NULL,
        scale DOUBLE NOT NULL,
        bias DOUBLE NOT NULL,
        link VARCHAR NOT NULL,
        threshold DOUBLE NOT NULL,
        prompts JSON,
        negative_prompts JSON,
        training JSON,
        created_dt TIMESTAMP NOT NULL,
        PRIMARY KEY (concept, version))""",
    # Append-only: the newest row per (concept, asset) is the asset's label;
    # label 'none' withdraws an earlier one.
    """CREATE TABLE IF NOT EXISTS catalog.concept_labels(
        concept VARCHAR NOT NULL,
        coactive_image_id VARCHAR NOT NULL,
        label VARCHAR NOT NULL,
        created_by VARCHAR,
        created_dt TIMESTAMP NOT NULL)""",
    # Materialised scores: files of one `prob` column aligned row by row with the
    # asset parts listed in `asset_parts` (concatenated in `seq` order).
    """CREATE TABLE IF NOT EXISTS catalog.concept_scores(
        concept VARCHAR NOT NULL,
        version INTEGER NOT NULL,
        seq INTEGER NOT NULL,
        path VARCHAR NOT NULL,
        asset_parts JSON NOT NULL,
        vector_parts JSON NOT NULL,
        row_count BIGINT NOT NULL,
        created_dt TIMESTAMP NOT NULL,
        PRIMARY KEY (concept, version, seq))""",
    """CREATE TABLE IF NOT EXISTS catalog.ingest_errors(
        run_id VARCHAR,
        dataset VARCHAR,
        path VARCHAR NOT NULL,
        reason VARCHAR NOT NULL,
        created_dt TIMESTAMP NOT NULL)""",
    # HTTP API (warehouse/queries.py): one row per submitted query; results in
    # results/<query_id>.parquet.  columns: [{name, type}] of the result.
    """CREATE TABLE IF NOT EXISTS catalog.queries(
        query_id VARCHAR PRIMARY KEY,
        query VARCHAR NOT NULL,
        dataset_id VARCHAR,
        embedding_id VARCHAR,
        status VARCHAR NOT NULL,
        created_dt TIMESTAMP NOT NULL,
        start_dt TIMESTAMP,
        end_dt TIMESTAMP,
        total_row_count BIGINT,
        columns JSON,
        error VARCHAR,
        owner VARCHAR)""",
    # Moderation (concepts/policy.py, concepts/moderation.py, api/webhooks.py).
    # Policies: one row per version; overrides holds {category: threshold | null (ignore)}.
    """CREATE TABLE IF NOT EXISTS catalog.moderation_policies(
        name VARCHAR NOT NULL,
        version INTEGER NOT NULL,
        overrides JSON NOT NULL,
        review_band DOUBLE NOT NULL,
        similarity DOUBLE NOT NULL,
        description VARCHAR,
        created_dt TIMESTAMP NOT NULL,
        created_by VARCHAR,
        deleted_dt TIMESTAMP,
        PRIMARY KEY (name, version))""",
    # Every decision ever made; subject is an asset (image or keyframe) or a video.
    # decided_by: 'model' | 'user'; a user's decision outranks any model decision.
    "CREATE SEQUENCE IF NOT EXISTS catalog.moderation_decision_seq",
    """CREATE TABLE IF NOT EXISTS catalog.moderation_decisions(
        seq BIGINT PRIMARY KEY,
        subject_id VARCHAR NOT NULL,
        subject_kind VARCHAR NOT NULL,
        status VARCHAR NOT NULL,
        reasons JSON,
        policy VARCHAR,
        policy_version INTEGER,
        policy_spec VARCHAR,
        decided_by VARCHAR NOT NULL,
        user_name VARCHAR,
        comment VARCHAR,
        task_id VARCHAR,
        created_dt TIMESTAMP NOT NULL)""",
    # A user decision keeps the model verdict it replaced (NULL on older rows and model rows),
    # so the overturn rate reads it directly; older warehouses gain the column on open.
    "ALTER TABLE catalog.moderation_decisions ADD COLUMN IF NOT EXISTS model_status VARCHAR",
    # Similar-image lists: an asset marked block/pass; its vector is read from the store.
    """CREATE TABLE IF NOT EXISTS catalog.moderation_feedback(
        coactive_image_id VARCHAR PRIMARY KEY,
        verdict VARCHAR NOT NULL,
        categories JSON,
        encoder VARCHAR NOT NULL,
        comment VARCHAR,
        created_by VARCHAR,
        created_dt TIMESTAMP NOT NULL)""",
    # Results by content hash and policy fingerprint (+ model state), until expires_dt.
    """CREATE TABLE IF NOT EXISTS catalog.moderation_cache(
        cache_key VARCHAR PRIMARY KEY,
        sha256 VARCHAR NOT NULL,
        policy VARCHAR,
        result JSON NOT NULL,
        created_dt TIMESTAMP NOT NULL,
        expires_dt TIMESTAMP NOT NULL)""",
    # Asynchronous moderation requests and their callback deliveries.
    """CREATE TABLE IF NOT EXISTS catalog.moderation_tasks(
        task_id VARCHAR PRIMARY KEY,
        status VARCHAR NOT NULL,
        policy VARCHAR,
        callback_url VARCHAR,
        request JSON,
        result JSON,
        error VARCHAR,
        delivery_status VARCHAR,
        delivered_dt TIMESTAMP,
        created_by VARCHAR,
        created_dt TIMESTAMP NOT NULL,
        finished_dt TIMESTAMP)""",
    """CREATE TABLE IF NOT EXISTS catalog.webhook_deliveries(
        delivery_id VARCHAR NOT NULL,
        task_id VARCHAR NOT NULL,
        attempt INTEGER NOT NULL,
        url VARCHAR NOT NULL,
        status_code INTEGER,
        error VARCHAR,
        ok BOOLEAN NOT NULL,
        sent_dt TIMESTAMP NOT NULL)""",
    # Background jobs (warehouse/jobs.py): ingestion, async moderation, webhook deliveries.
    # status: Queued | Running | Complete | Error | Stopped (the query vocabulary).
    """CREATE TABLE IF NOT EXISTS catalog.jobs(
        job_id VARCHAR PRIMARY KEY,
        kind VARCHAR NOT NULL,
        params JSON,
        status VARCHAR NOT NULL,
        counters JSON,
        error VARCHAR,
        owner VARCHAR,
        attempts INTEGER NOT NULL DEFAULT 0,
        not_before TIMESTAMP,
        created_dt TIMESTAMP NOT NULL,
        start_dt TIMESTAMP,
        end_dt TIMESTAMP)""",
    # HTTP API tokens (api/auth.py): only the SHA-256 of the secret is stored.
    """CREATE TABLE IF NOT EXISTS catalog.api_tokens(
        client_id VARCHAR PRIMARY KEY,
        name VARCHAR NOT NULL,
        scope VARCHAR NOT NULL,
        secret_sha256 VARCHAR NOT NULL,
        created_dt TIMESTAMP NOT NULL,
        revoked_dt TIMESTAMP)""",
]


# Columns added after a table first shipped: applied on every open, idempotent, so a
# warehouse made by older code upgrades in place (ordered migrations come later).
ADDED_COLUMNS = [
    "ALTER TABLE catalog.ingest_runs ADD COLUMN IF NOT EXISTS error VARCHAR",
]

# Ingest runs alive in this process.  DuckDB lets one process write the file, so a run
# found 'Running' on open that is not in here belongs to a process that is gone.
LIVE_RUNS: set[str] = set()
INTERRUPTED_RUN = "interrupted: the process stopped during this run; ingest the same paths again to resume"


def now() -> datetime:
    """Naive UTC, the form DuckDB's TIMESTAMP stores."""
    return datetime.now(timezone.utc).replace(tzinfo=None)


def create(con: duckdb.DuckDBPyConnection) -> None:
    for stmt in DDL + ADDED_COLUMNS:
        con.execute(stmt)
    close_interrupted_runs(con)
    con.execute(
        "INSERT INTO catalog.meta VALUES ('schema_version', ?) ON CONFLICT DO NOTHING",
        [str(SCHEMA_VERSION)],
    )
    from .encoder_sql import upgrade

    upgrade(con)


def run_counts(con, run_id: str) -> tuple[int, int]:
    """(assets committed, paths with a current error) by a run, read from the catalog, which a kill cannot undo."""
    added = con.execute("SELECT coalesce(sum(row_count), 0) FROM catalog.parts WHERE run_id = ? AND kind = 'assets'",
                        [run_id]).fetchone()[0]
    errors = con.execute("SELECT count(*) FROM catalog.ingest_errors WHERE run_id = ?", [run_id]).fetchone()[0]
    return int(added), int(errors)


def close_interrupted_runs(con) -> list[str]:
    """End runs left 'Running' by a dead process as 'Error' with the reason and their committed counts."""
    stale = [r[0] for r in con.execute("SELECT run_id FROM catalog.ingest_runs WHERE status = 'Running'").fetchall()
             if r[0] not in LIVE_RUNS]
    for run_id in stale:
        added, errors = run_counts(con, run_id)
        con.execute(
            "UPDATE catalog.ingest_runs SET status = 'Error', error = ?, assets_added = ?, errors = ?,"
            " finished_dt = coalesce(finished_dt, ?) WHERE run_id = ?",
            [INTERRUPTED_RUN, added, errors, now(), run_id])
    return stale


def register_encoder(con, name: str, kind: str, vector_columns: dict[str, int]) -> None:
    con.execute(
        """INSERT INTO catalog.encoders VALUES (?, ?, ?, ?)
           ON CONFLICT (name) DO UPDATE SET vector_columns = excluded.vector_columns""",
        [name, kind, json.dumps(vector_columns), now()],
    )


def register_class_names(con, encoder: str, names: list[str]) -> None:
    if con.execute("SELECT count(*) FROM catalog.class_names WHERE encoder = ?", [encoder]).fetchone()[0]:
        return
    con.executemany("INSERT INTO catalog.class_names VALUES (?, ?, ?)", [[encoder, i, n] for i, n in enumerate(names)])


def encoder_columns(con, name: str) -> dict[str, int]:
    row = con.execute("SELECT vector_columns FROM catalog.encoders WHERE name = ?", [name]).fetchone()
    return json.loads(row[0]) if row else {}


def ensure_dataset(con, name: str, encoder: str, description: str | None = None) -> str:
    """Create the dataset if new; return its default encoder (the first one it got)."""
    row = con.execute("SELECT encoder FROM catalog.datasets WHERE name = ?", [name]).fetchone()
    if row:
        return row[0]
    con.execute("INSERT INTO catalog.datasets VALUES (?, ?, ?, ?)", [name, encoder, description, now()])
    return encoder


def part_paths(con, kind: str, dataset: str | None = None, encoder: str | None = None) -> list[str]:
    sql = "SELECT path FROM catalog.parts WHERE kind = ?"
    args: list = [kind]
    if dataset is not None:
        sql += " AND dataset = ?"
        args.append(dataset)
    if encoder is not None:
        sql += " AND encoder = ?"
        args.append(encoder)
    return [r[0] for r in con.execute(sql + " ORDER BY created_dt, path", args).fetchall()]


def sweep_orphans(con, root: Path) -> list[Path]:
    """Delete Parquet parts under datasets/ that no committed catalog row references."""
    known = {r[0] for r in con.execute("SELECT path FROM catalog.parts").fetchall()}
    removed = []
    base = root / "datasets"
    if not base.exists():
        return removed
    for p in base.rglob("part-*.parquet"):
        if str(p.relative_to(root)) not in known:
            try:
                p.unlink()
                removed.append(p)
            except OSError:
                pass
    return removed
