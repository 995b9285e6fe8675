"""Ordered schema migrations of the catalog (`pixql.duckdb`, schema `catalog`).

`catalog.meta.schema_version` says how many of `MIGRATIONS` a warehouse has had.
`migrate` reads it on open and applies the missing ones in order, each in its own
transaction together with the version it reaches, so a crash leaves the warehouse
at the last whole step.  A warehouse newer than this code is refused, never
guessed at; a read-only open of a warehouse that needs a migration is refused
with the version it has and the version it needs.

A migration is frozen once released: change the schema by appending one.  Each
is a list of SQL strings and/or functions of the connection.  Steps after 1 are
written to be idempotent (IF NOT EXISTS) because every release before migrations
wrote schema_version 1 whatever tables it had (see `_LEGACY_VERSION`).

Housekeeping that is not schema (closing stale runs, sweeping orphans) is not a
migration: `catalog.housekeep` runs it on every writable open.

This module is long because migration 1 is the whole schema of the first release.
"""
from __future__ import annotations

from typing import Callable, Union

import duckdb

Step = Union[str, Callable[[duckdb.DuckDBPyConnection], None]]


class SchemaVersionError(RuntimeError):
    """The warehouse's schema version cannot be used by this code as it is opened."""


# Migration 1: the catalog as the release before migrations (commit 22fe60c) created it.
_RELEASE_SCHEMA: list[Step] = [
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
    # HTTP API tokens (api/auth.py): only the SHA-256 of the secret is stored.
    """CREATE TABLE IF NOT EXISTS catalog.api_tokens(
        client_id VARCHAR PRIMARY KEY,
        name VARCHAR NOT NULL,
        scope VARCHAR NOT NULL,
        secret_sha256 VARCHAR NOT NULL,
        created_dt TIMESTAMP NOT NULL,
        revoked_dt TIMESTAMP)""",

]

# What the release before `catalog.encoder_sql` computed for the default encoder
# from its class names alone: the rows migration 5 writes into such a warehouse.
# Frozen here, so later changes to encoders cannot change what an old warehouse gets.
_PRE_ENCODER_SQL = {"imagenet-lite0": [
    ("macro", "CREATE OR REPLACE MACRO pixql_imagenet_class(i) AS {class_names}[i]"),
    ("column", "pixql_imagenet_class(list_position({vectors}.probs::FLOAT[], "
               "list_max({vectors}.probs::FLOAT[]))) AS imagenet_top_class"),
    ("column", "list_max({vectors}.probs::FLOAT[]) AS imagenet_top_prob"),
]}


def _backfill_encoder_sql(con) -> None:
    """A warehouse written before encoder SQL was stored gets the rows that release implied."""
    have = {r[0] for r in con.execute("SELECT DISTINCT encoder FROM catalog.encoder_sql").fetchall()}
    named = {r[0] for r in con.execute("SELECT DISTINCT encoder FROM catalog.class_names").fetchall()}
    for encoder, rows in _PRE_ENCODER_SQL.items():
        if encoder in named and encoder not in have:
            con.executemany("INSERT INTO catalog.encoder_sql (encoder, position, kind, sql) VALUES (?, ?, ?, ?)",
                            [[encoder, i, kind, sql] for i, (kind, sql) in enumerate(rows)])


# (number, what it does, steps).  Append only; numbers are consecutive from 1.
MIGRATIONS: list[tuple[int, str, list[Step]]] = [
    (1, "the schema of the first release (22fe60c)", _RELEASE_SCHEMA),
    # Background jobs (warehouse/jobs.py): ingestion, async moderation, webhook deliveries.
    # status: Queued | Running | Complete | Error | Stopped (the query vocabulary).
    (2, "catalog.jobs for the job runner", [
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
    ]),
    # Why a run ended in Error (e.g. interrupted by a dead process).
    (3, "ingest_runs.error", [
        "ALTER TABLE catalog.ingest_runs ADD COLUMN IF NOT EXISTS error VARCHAR",
    ]),
    # A user decision keeps the model verdict it replaced (NULL on older rows and model
    # rows), so the overturn rate reads it directly.
    (4, "moderation_decisions.model_status", [
        "ALTER TABLE catalog.moderation_decisions ADD COLUMN IF NOT EXISTS model_status VARCHAR",
    ]),
    # SQL an encoder adds to the views (written by ingest from the encoder, read by
    # warehouse/encoder_sql.py): kind 'macro' | 'column'; {vectors} and {class_names}
    # stand for the vectors alias and the list literal of catalog.class_names.
    (5, "catalog.encoder_sql, backfilled for warehouses that predate it", [
        """CREATE TABLE IF NOT EXISTS catalog.encoder_sql(
            encoder VARCHAR NOT NULL,
            position INTEGER NOT NULL,
            kind VARCHAR NOT NULL,
            sql VARCHAR NOT NULL,
            PRIMARY KEY (encoder, position))""",
        _backfill_encoder_sql,
    ]),
    # Stable dataset ids for clients that address datasets by id (the Coactive SDK); names
    # keep working (catalog.resolve_dataset).  Existing rows get a UUID here, new ones
    # from catalog.ensure_dataset.  asset_metadata: user metadata set after ingest (the SDK's
    # update_asset_metadata), keyed by coactive_image_id or coactive_video_id; it replaces
    # the metadata the asset part was written with in coactive_table_adv.metadata.  user_id
    # is the client's own id for an image (the SDK's AddImageRequest.id).
    (6, "datasets.dataset_id (UUID) and who/when updated; catalog.asset_metadata", [
        # No volatile DEFAULT: DuckDB 1.5.6 cannot replay an ALTER with one from the WAL after a
        # kill ("GetDefaultDatabase with no default database set"); catalog.ensure_dataset sets it.
        "ALTER TABLE catalog.datasets ADD COLUMN IF NOT EXISTS dataset_id VARCHAR",
        "ALTER TABLE catalog.datasets ADD COLUMN IF NOT EXISTS created_by VARCHAR",
        "ALTER TABLE catalog.datasets ADD COLUMN IF NOT EXISTS updated_by VARCHAR",
        "ALTER TABLE catalog.datasets ADD COLUMN IF NOT EXISTS updated_dt TIMESTAMP",
        """CREATE TABLE IF NOT EXISTS catalog.asset_metadata(
            subject_id VARCHAR PRIMARY KEY,
            subject_kind VARCHAR NOT NULL,
            dataset VARCHAR NOT NULL,
            metadata JSON,
            user_id VARCHAR,
            updated_by VARCHAR,
            updated_dt TIMESTAMP NOT NULL)""",
    ]),
    # DuckDB refuses an UPDATE of a table altered in the same transaction, so backfills of
    # added columns are migrations of their own (7 and 10).
    (7, "datasets.dataset_id backfilled with UUIDs", [
        "UPDATE catalog.datasets SET dataset_id = gen_random_uuid()::VARCHAR WHERE dataset_id IS NULL",
    ]),
    # Erasure (warehouse/erasure.py, warehouse/tombstones.py): what was deleted (no content),
    # the intent journal of an erasure in progress, and why a query's result was withdrawn
    # (an erasure or the results retention) - one column for both.
    (8, "catalog.tombstones, catalog.erasure_journal, queries.withdrawn", [
        """CREATE TABLE IF NOT EXISTS catalog.tombstones(
            tombstone_id VARCHAR PRIMARY KEY,
            erasure_id VARCHAR NOT NULL,
            kind VARCHAR NOT NULL,
            subject_id VARCHAR,
            sha256 VARCHAR,
            block BOOLEAN NOT NULL,
            reason VARCHAR,
            created_by VARCHAR,
            created_dt TIMESTAMP NOT NULL)""",
        """CREATE TABLE IF NOT EXISTS catalog.erasure_journal(
            erasure_id VARCHAR PRIMARY KEY,
            state VARCHAR NOT NULL,
            files JSON,
            created_dt TIMESTAMP NOT NULL)""",
        "ALTER TABLE catalog.queries ADD COLUMN IF NOT EXISTS withdrawn VARCHAR",
    ]),
    # Coactive clients address concepts by a stable UUID (`concept_id`) beside the name;
    # a concept may belong to a dataset (the SDK's `datasetId`), keep Coactive's
    # `regularization` (1/C of the labelled head's fit) and who created/changed it.
    (9, "concepts.concept_id (UUID), dataset, regularization, created_by, updated_by", [
        "ALTER TABLE catalog.concepts ADD COLUMN IF NOT EXISTS concept_id VARCHAR",
        "ALTER TABLE catalog.concepts ADD COLUMN IF NOT EXISTS dataset VARCHAR",
        "ALTER TABLE catalog.concepts ADD COLUMN IF NOT EXISTS regularization DOUBLE",
        "ALTER TABLE catalog.concepts ADD COLUMN IF NOT EXISTS created_by VARCHAR",
        "ALTER TABLE catalog.concepts ADD COLUMN IF NOT EXISTS updated_by VARCHAR",
    ]),
    (10, "concepts.concept_id backfilled with UUIDs", [
        "UPDATE catalog.concepts SET concept_id = CAST(uuid() AS VARCHAR) WHERE concept_id IS NULL",
    ]),
]

LATEST = MIGRATIONS[-1][0]

# Every release before migrations wrote '1' whatever it had created, so a warehouse
# at 1 is of unknown shape: it gets every migration, 1 included (all idempotent).
_LEGACY_VERSION = 1


def schema_version(con) -> int:
    """The version a warehouse records; 0 for a file with no catalog yet."""
    has_meta = con.execute(
        "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'catalog' AND table_name = 'meta'"
    ).fetchone()[0]
    if not has_meta:
        return 0
    row = con.execute("SELECT value FROM catalog.meta WHERE key = 'schema_version'").fetchone()
    if row is None:
        return 0
    try:
        return int(row[0])
    except (TypeError, ValueError):
        raise SchemaVersionError(f"catalog.meta holds a schema_version that is not a number: {row[0]!r}") from None


def pending(version: int) -> list[tuple[int, str, list[Step]]]:
    """The migrations a warehouse at `version` still needs, in order."""
    if version > LATEST:
        raise SchemaVersionError(
            f"this warehouse has schema version {version}, newer than this PixQL understands "
            f"(up to {LATEST}); upgrade PixQL to open it")
    start = 1 if version <= _LEGACY_VERSION else version + 1
    return [m for m in MIGRATIONS if m[0] >= start]


def check(con) -> int:
    """For a read-only open: the version, if this code can read it without migrating."""
    version = schema_version(con)
    pending(version)  # refuses a newer warehouse
    if version != LATEST:
        raise SchemaVersionError(
            f"this warehouse has schema version {version} and PixQL needs {LATEST}; "
            "open it writable once (e.g. `pixql ingest` or `pixql serve`) to upgrade it")
    return version


def migrate(con) -> list[int]:
    """Apply the missing migrations in order, one transaction each; return their numbers."""
    version = schema_version(con)
    todo = pending(version)
    if version == LATEST:
        return []
    done = []
    for number, _, steps in todo:
        con.execute("BEGIN TRANSACTION")
        try:
            for step in steps:
                if callable(step):
                    step(con)
                else:
                    con.execute(step)
            con.execute(
                "INSERT INTO catalog.meta (key, value) VALUES ('schema_version', ?)"
                " ON CONFLICT (key) DO UPDATE SET value = excluded.value", [str(number)])
            con.execute("COMMIT")
        except Exception:
            con.execute("ROLLBACK")
            raise
        done.append(number)
    return done
