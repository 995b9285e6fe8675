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

import uuid

import json
from datetime import datetime, timezone
from pathlib import Path

import duckdb

from . import migrations
from .errors import Gone, NotFound

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
        """INSERT INTO catalog.encoders (name, kind, vector_columns, created_dt) VALUES (?, ?, ?, ?)
           ON CONFLICT (name) DO UPDATE SET vector_columns = excluded.vector_columns""",
        [name, kind, json.dumps(vector_columns), now()],
    )


def register_class_names(con, encoder: str, names: list[str]) -> None:
    if con.execute("SELECT count(*) FROM catalog.class_names WHERE encoder = ?", [encoder]).fetchone()[0]:
        return
    insert(con, "class_names", [dict(encoder=encoder, class_index=i, name=n) for i, n in enumerate(names)])


def encoder_columns(con, name: str) -> dict[str, int]:
    row = con.execute("SELECT vector_columns FROM catalog.encoders WHERE name = ?", [name]).fetchone()
    return json.loads(row[0]) if row else {}


def ensure_dataset(con, name: str, encoder: str, description: str | None = None,
                   created_by: str | None = None) -> str:
    """Create the dataset if new, with a fresh UUID; return its default encoder."""
    row = con.execute("SELECT encoder FROM catalog.datasets WHERE name = ?", [name]).fetchone()
    if row:
        return row[0]
    t = now()
    insert(con, "datasets", dict(name=name, dataset_id=str(uuid.uuid4()), encoder=encoder, description=description, created_dt=t,
                                 created_by=created_by, updated_by=created_by, updated_dt=t))
    return encoder


def part_rows(con, kind: str) -> dict[str, int]:
    """{path: row count} of every committed part of `kind`."""
    return dict(con.execute("SELECT path, row_count FROM catalog.parts WHERE kind = ?", [kind]).fetchall())


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


def in_list(column: str, param: str = "?") -> str:
    """`column IN <a VARCHAR[] parameter>` as a hash semi-join: `list_contains(?, column)` scans the
    whole list for every row (10,000 ids against 1M rows: 10^10 comparisons)."""
    return f"{column} IN (SELECT unnest(CAST({param} AS VARCHAR[])))"


def sweep_orphans(con, root: Path) -> list[Path]:
    """Delete Parquet parts under datasets/ that no committed catalog row references (parts a
    compaction retired stay until their grace period ends: `erasure_files.remove_retired`)."""
    from .erasure_files import retired_files

    known = {r[0] for r in con.execute("SELECT path FROM catalog.parts").fetchall()} | retired_files(con)
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


# -- named writes: columns by name, so a migration that adds one cannot shift them -------
def insert(con, table: str, rows: dict | list[dict], on_conflict: str = "", or_replace: bool = False) -> None:
    """Insert row dicts (all with the same keys) into `catalog.<table>`, naming every column.

    `on_conflict` is appended as written (e.g. "ON CONFLICT DO NOTHING"); `or_replace`
    makes it INSERT OR REPLACE.
    """
    rows = [rows] if isinstance(rows, dict) else list(rows)
    if not rows:
        return
    cols = list(rows[0])
    verb = "INSERT OR REPLACE INTO" if or_replace else "INSERT INTO"
    if len(rows) >= ARROW_INSERT_ROWS and not on_conflict and not or_replace and _insert_arrow(con, table, cols, rows):
        return
    sql = (f"{verb} catalog.{table} ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})"
           + (f" {on_conflict}" if on_conflict else ""))
    con.executemany(sql, [[r[c] for c in cols] for r in rows])


# A plain INSERT of this many rows or more goes through one Arrow table: executemany binds and
# runs the statement once per row (512 asset rows: ~60 ms, as Arrow ~4 ms).  Upserts keep
# executemany: one INSERT ... ON CONFLICT statement cannot touch the same key twice.
ARROW_INSERT_ROWS = 32


def _insert_arrow(con, table: str, cols: list[str], rows: list[dict]) -> bool:
    """INSERT ... SELECT from the rows as an Arrow table; False (nothing written) if Arrow cannot
    type them exactly (mixed types, time zones), for executemany to do it."""
    import pyarrow as pa

    try:
        t = pa.Table.from_pylist(rows)
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError, OverflowError):
        return False
    if any(pa.types.is_timestamp(f.type) and f.type.tz for f in t.schema):
        return False  # an aware datetime: let DuckDB's parameter binding convert it as before
    name = f"_pixql_insert_{uuid.uuid4().hex}"
    con.register(name, t)
    try:
        con.execute(f"INSERT INTO catalog.{table} ({', '.join(cols)}) SELECT {', '.join(cols)} FROM {name}")
    finally:
        con.unregister(name)
    return True


def insert_part(con, path: str, dataset: str, kind: str, encoder: str | None, row_count: int,
                run_id: str | None, created_dt: datetime) -> None:
    insert(con, "parts", dict(path=path, dataset=dataset, kind=kind, encoder=encoder, row_count=row_count,
                              run_id=run_id, created_dt=created_dt))


def insert_assets(con, dataset: str, part: str, rows: list[dict], created_dt: datetime) -> None:
    """Asset rows of one part; each row has coactive_image_id, path, sha256, media_type."""
    insert(con, "assets", [dict(coactive_image_id=r["coactive_image_id"], dataset=dataset, path=r["path"],
                                sha256=r["sha256"], media_type=r["media_type"], part=part, created_dt=created_dt)
                           for r in rows])


def insert_embeddings(con, ids: list[str], encoder: str, part: str) -> None:
    insert(con, "embeddings", [dict(coactive_image_id=i, encoder=encoder, part=part) for i in ids])


def insert_labels(con, concept: str, rows, created_dt: datetime) -> None:
    """(coactive_image_id, label, created_by) rows appended to a concept's label history."""
    insert(con, "concept_labels", [dict(concept=concept, coactive_image_id=i, label=lab, created_by=who,
                                        created_dt=created_dt) for i, lab, who in rows])


def record_ingest_errors(con, run_id: str | None, dataset: str | None, errors, created_dt: datetime) -> None:
    """(path, reason) pairs as the current ingest errors of their paths."""
    insert(con, "ingest_errors", [dict(run_id=run_id, dataset=dataset, path=p, reason=r, created_dt=created_dt)
                                  for p, r in errors])


# -- named reads ----------------------------------------------------------------------
_DATASET_SUMMARY = """SELECT d.name AS dataset, d.encoder, d.created_dt,
          (SELECT count(*) FROM catalog.assets a WHERE a.dataset = d.name) AS assets,
          (SELECT list(DISTINCT p.encoder ORDER BY p.encoder) FROM catalog.parts p
            WHERE p.dataset = d.name AND p.kind = 'vectors') AS encoders,
          (SELECT count(*) FROM catalog.ingest_errors e WHERE e.dataset = d.name) AS errors
   FROM catalog.datasets d"""


def dataset_summaries(con, name: str | None = None) -> duckdb.DuckDBPyRelation:
    """Datasets (or the one named) with asset count, vector encoders and error count, by name."""
    if name is None:
        return con.sql(_DATASET_SUMMARY + " ORDER BY d.name")
    return con.sql(_DATASET_SUMMARY + " WHERE d.name = $name ORDER BY d.name", params={"name": name})


def dataset_encoder(con, name: str) -> str | None:
    """The dataset's default encoder; None for a dataset not made yet."""
    row = con.execute("SELECT encoder FROM catalog.datasets WHERE name = ?", [name]).fetchone()
    return row[0] if row else None


def asset_id_column(con, dataset: str, embedded_by: str | None = None, paths: list[str] | None = None):
    """Ids of the dataset's assets (only those with `embedded_by` vectors, and at one of `paths`,
    if given), as an Arrow column: no Python string per id (ingest keeps them in `ingest.idset.IdSet`)."""
    where, args = "a.dataset = ?", [dataset]
    if paths is not None:
        where, args = where + f" AND {in_list('a.path')}", args + [list(paths)]
    if embedded_by is None:
        rel = con.execute(f"SELECT a.coactive_image_id FROM catalog.assets a WHERE {where}", args)
    else:  # the dataset's (few) matching assets first, then their embeddings rows
        rel = con.execute(f"SELECT e.coactive_image_id FROM (SELECT coactive_image_id FROM catalog.assets a"
                          f" WHERE {where}) a JOIN catalog.embeddings e USING (coactive_image_id)"
                          " WHERE e.encoder = ?", args + [embedded_by])
    return rel.fetch_arrow_table().column(0)


def asset_paths(con, dataset: str) -> list[str]:
    return [r[0] for r in con.execute("SELECT DISTINCT path FROM catalog.assets WHERE dataset = ? ORDER BY path",
                                      [dataset]).fetchall()]


def resolve_dataset(con, ref: str) -> str:
    """The name of the dataset `ref` names, by name or by its UUID (`dataset_id`); NotFound otherwise.

    The one place a client's dataset reference becomes a name: routers, the SDK-compatible
    routes and deletion all call this, so every route takes either form.  A dataset that was
    erased (its tombstone names it, by name or UUID) is `Gone` with the date.
    """
    row = con.execute("SELECT name FROM catalog.datasets WHERE name = $r UNION ALL "
                      "SELECT name FROM catalog.datasets WHERE dataset_id = $r LIMIT 1", {"r": ref}).fetchone()
    if row is not None:
        return row[0]
    erased = con.execute("SELECT max(created_dt) FROM catalog.tombstones WHERE kind = 'dataset' AND subject_id = ?",
                         [ref]).fetchone()[0]
    if erased is not None:
        raise Gone(f"dataset {ref} was erased on {erased:%Y-%m-%d %H:%M:%S} UTC")
    raise NotFound(f"unknown dataset {ref!r}")


def dataset_uuid(con, name: str | None) -> str | None:
    """The UUID of the dataset called `name` (None for None or a dataset gone)."""
    if name is None:
        return None
    row = con.execute("SELECT dataset_id FROM catalog.datasets WHERE name = ?", [name]).fetchone()
    return row[0] if row else None


DATASET_RECORD_FIELDS = ["name", "dataset_uuid", "description", "encoder", "created_dt", "created_by",
                         "updated_dt", "updated_by", "asset_count", "image_count", "video_count", "encoders",
                         "error_count", "ingesting"]


def dataset_records(con, name: str | None = None, offset: int = 0, limit: int | None = None) -> tuple[list[dict], int]:
    """Datasets (or the one named) with their counts, as dicts of DATASET_RECORD_FIELDS, and the total.

    `ingesting` counts the ingest jobs of the dataset still queued or running.
    """
    where, args = ("WHERE d.name = $name", {"name": name}) if name is not None else ("", {})
    total = con.execute(f"SELECT count(*) FROM catalog.datasets d {where}", args).fetchone()[0]
    page = f" LIMIT {int(limit)} OFFSET {int(offset)}" if limit is not None else ""
    rows = con.execute(f"""SELECT d.name, d.dataset_id, d.description, d.encoder, d.created_dt, d.created_by,
          coalesce(d.updated_dt, d.created_dt), d.updated_by,
          (SELECT count(*) FROM catalog.assets a WHERE a.dataset = d.name),
          (SELECT count(*) FROM catalog.assets a WHERE a.dataset = d.name AND a.media_type = 'image'),
          (SELECT count(*) FROM catalog.videos v WHERE v.dataset = d.name AND v.status <> 'partial'),
          (SELECT list(DISTINCT p.encoder ORDER BY p.encoder) FROM catalog.parts p
            WHERE p.dataset = d.name AND p.kind = 'vectors'),
          (SELECT count(*) FROM catalog.ingest_errors e WHERE e.dataset = d.name),
          (SELECT count(*) FROM catalog.jobs j WHERE j.kind = 'ingest' AND j.status IN ('Queued', 'Running')
            AND json_extract_string(j.params, '$.dataset') = d.name)
       FROM catalog.datasets d {where} ORDER BY d.created_dt, d.name{page}""", args).fetchall()
    return [dict(zip(DATASET_RECORD_FIELDS, r)) for r in rows], int(total)


def update_dataset(con, name: str, description: str | None, updated_by: str | None) -> None:
    con.execute("UPDATE catalog.datasets SET description = ?, updated_by = ?, updated_dt = ? WHERE name = ?",
                [description, updated_by, now(), name])


def set_asset_metadata(con, rows: list[dict], updated_by: str | None) -> datetime:
    """Replace the user metadata of images or videos: rows of subject_id, subject_kind ('image' |
    'video'), dataset, metadata and optionally user_id (kept when not given).  Returns the time.

    Read back through coactive_table_adv.metadata, where it wins over the metadata ingest
    wrote (a video's applies to its keyframes); the caller's transaction must call
    `data_changed()`, since the views read this table.
    """
    t = now()
    for r in rows:
        con.execute(
            """INSERT INTO catalog.asset_metadata (subject_id, subject_kind, dataset, metadata, user_id, updated_by,
                   updated_dt) VALUES (?, ?, ?, ?, ?, ?, ?)
               ON CONFLICT (subject_id) DO UPDATE SET metadata = excluded.metadata, updated_by = excluded.updated_by,
                   updated_dt = excluded.updated_dt, user_id = coalesce(excluded.user_id, asset_metadata.user_id)""",
            [r["subject_id"], r["subject_kind"], r["dataset"],
             None if r["metadata"] is None else json.dumps(r["metadata"]), r.get("user_id"), updated_by, t])
    return t


def _subject_filter(where: str, args: dict, id_col: str, ids: list[str] | None, path_col: str,
                    paths: list[str] | None) -> tuple[str, dict]:
    """`where` narrowed to the given ids and paths (None: no narrowing), with its parameters."""
    if ids is not None:
        where, args = f"{where} AND list_contains($ids, {id_col})", {**args, "ids": ids}
    if paths is not None:
        where, args = f"{where} AND list_contains($paths, {path_col})", {**args, "paths": paths}
    return where, args


_IMAGE_FIELDS = ["coactive_image_id", "path", "created_dt", "metadata", "user_id", "updated_by", "updated_dt"]


def dataset_images(con, dataset: str, offset: int = 0, limit: int = 100, ids: list[str] | None = None,
                   paths: list[str] | None = None) -> tuple[list[dict], int]:
    """A dataset's images (not keyframes) in ingest order with their current metadata, and their count;
    `ids`/`paths` keep only those."""
    where, args = _subject_filter("a.dataset = $d AND a.media_type = 'image'", {"d": dataset},
                                  "a.coactive_image_id", ids, "a.path", paths)
    total = con.execute(f"SELECT count(*) FROM pixql_internal.assets a WHERE {where}", args).fetchone()[0]
    rows = con.execute(
        f"""SELECT a.coactive_image_id, a.path, a.created_dt, CAST(coalesce(m.metadata, a.metadata) AS VARCHAR),
                   m.user_id, m.updated_by, m.updated_dt
            FROM pixql_internal.assets a LEFT JOIN catalog.asset_metadata m ON m.subject_id = a.coactive_image_id
            WHERE {where} ORDER BY a.created_dt, a.path, a.coactive_image_id LIMIT {int(limit)} OFFSET {int(offset)}""",
        args).fetchall()
    return [dict(zip(_IMAGE_FIELDS, r)) for r in rows], int(total)


_VIDEO_FIELDS = ["coactive_video_id", "path", "created_dt", "metadata", "updated_by", "updated_dt"]


def dataset_videos(con, dataset: str, offset: int = 0, limit: int = 100, ids: list[str] | None = None,
                   paths: list[str] | None = None) -> tuple[list[dict], int]:
    """A dataset's videos in ingest order with their user metadata, and their count."""
    where, args = _subject_filter("v.dataset = $d", {"d": dataset}, "v.coactive_video_id", ids, "v.path", paths)
    total = con.execute(f"SELECT count(*) FROM catalog.videos v WHERE {where}", args).fetchone()[0]
    rows = con.execute(
        f"""SELECT v.coactive_video_id, v.path, v.created_dt, CAST(m.metadata AS VARCHAR), m.updated_by, m.updated_dt
            FROM catalog.videos v LEFT JOIN catalog.asset_metadata m ON m.subject_id = v.coactive_video_id
            WHERE {where} ORDER BY v.created_dt, v.path LIMIT {int(limit)} OFFSET {int(offset)}""", args).fetchall()
    return [dict(zip(_VIDEO_FIELDS, r)) for r in rows], int(total)


def dataset_exists(con, name: str) -> bool:
    return con.execute("SELECT count(*) FROM catalog.datasets WHERE name = ?", [name]).fetchone()[0] > 0


def dataset_errors(con, dataset: str, limit: int) -> list[dict]:
    """The current ingest errors of a dataset's files, oldest first."""
    rows = con.execute("SELECT run_id, path, reason, created_dt FROM catalog.ingest_errors WHERE dataset = ?"
                       " ORDER BY created_dt, path LIMIT ?", [dataset, limit]).fetchall()
    return [dict(zip(["run_id", "path", "reason", "created_dt"], r)) for r in rows]


# Asset reads go through the `pixql_internal.assets` view (warehouse/views.py), which
# joins these rows with their part's decoded columns (width, height, keyframe fields).
ASSET_FIELDS = ["coactive_image_id", "dataset", "path", "media_type", "width", "height", "created_dt",
                "keyframe_time_ms"]


def asset(con, asset_id: str) -> dict | None:
    row = con.execute(f"SELECT {', '.join(ASSET_FIELDS)} FROM pixql_internal.assets WHERE coactive_image_id = ?",
                      [asset_id]).fetchone()
    return dict(zip(ASSET_FIELDS, row)) if row else None


def asset_id_at_path(con, path: str, dataset: str | None = None) -> str | None:
    """The asset stored at `path` (for a video: its first keyframe), in `dataset` if given."""
    sql, args = "SELECT coactive_image_id FROM pixql_internal.assets WHERE path = ?", [path]
    if dataset is not None:
        sql, args = sql + " AND dataset = ?", args + [dataset]
    row = con.execute(sql + " ORDER BY keyframe_index NULLS FIRST LIMIT 1", args).fetchone()
    return row[0] if row else None


def video(con, video_id: str) -> dict | None:
    row = con.execute("SELECT path, dataset, duration_ms FROM catalog.videos WHERE coactive_video_id = ?",
                      [video_id]).fetchone()
    return dict(zip(["path", "dataset", "duration_ms"], row)) if row else None


def video_keyframes(con, video_id: str) -> list[tuple[str, int, int]]:
    """(coactive_image_id, keyframe_index, keyframe_time_ms) of a video, in order."""
    return con.execute("SELECT coactive_image_id, keyframe_index, keyframe_time_ms FROM pixql_internal.assets"
                       " WHERE coactive_video_id = ? ORDER BY keyframe_index", [video_id]).fetchall()
