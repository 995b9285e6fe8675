"""The catalog: the tables inside `pixql.duckdb` that describe what the warehouse holds.

The catalog lives in the DuckDB schema `catalog` so that users' tables (the views
in `main`) and bookkeeping never mix.  A Parquet part exists on disk before the
catalog row that references it is committed; a part without a row is an orphan
from a killed writer and is ignored by the views and deleted by `sweep_orphans`.

The tables are created and upgraded by the ordered migrations in
`warehouse/migrations.py`; this module holds the named reads and writes of them,
so callers (routers included) name what they want instead of writing SQL.
"""
from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

import duckdb

from . import migrations

# Ingest runs alive in this process.  DuckDB lets one process write the file, so a run
# found 'Running' on open that is not in here belongs to a process that is gone.
LIVE_RUNS: set[str] = set()
INTERRUPTED_RUN = "interrupted: the process stopped during this run; ingest the same paths again to resume"


def now() -> datetime:
    """Naive UTC, the form DuckDB's TIMESTAMP stores."""
    return datetime.now(timezone.utc).replace(tzinfo=None)


def create(con: duckdb.DuckDBPyConnection) -> list[int]:
    """Bring the catalog to the latest schema (warehouse/migrations.py), then housekeep.

    Returns the numbers of the migrations applied (none for an up-to-date warehouse).
    """
    applied = migrations.migrate(con)
    housekeep(con)
    return applied


def housekeep(con: duckdb.DuckDBPyConnection) -> None:
    """What a writable open tidies that is not schema: runs a dead process left Running."""
    close_interrupted_runs(con)


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
