"""Builds the views users query (`coactive_table`, `coactive_table_adv`, ...) from the catalog.

Views are plain DuckDB views over `read_parquet([...])` of the committed parts, with
absolute paths, so the stock DuckDB CLI opening `pixql.duckdb` sees the same rows
as the SDK.  Internal building blocks live in the schema `pixql_internal`.

Columns beyond the base ones come from *column providers*: small modules in this
package that turn catalog data (concept heads, analyzer runs, moderation
decisions) into SQL.  Each returns a `ViewParts`; the builder only concatenates.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from . import catalog
from .schema import ASSET_SCHEMA, empty_select
from .storage import safe_name

INTERNAL = "pixql_internal"

BASE_COLUMNS = ["coactive_image_id", "dataset", "path", "media_type", "width", "height", "created_dt"]
ADV_BASE_COLUMNS = [
    "coactive_video_id",
    "keyframe_index",
    "keyframe_time_ms",
    "sha256",
    "size_bytes",
    "format",
    "file_mtime",
    "metadata",
]
USER_VIEWS = ("coactive_table", "coactive_table_adv")


@dataclass
class ViewParts:
    """What a column provider adds to the user views.

    `pre` statements run first (e.g. CREATE MACRO); `joins` are clauses joined onto
    the asset alias `a` in both user views, `adv_joins` only in
    `coactive_table_adv` (DuckDB never drops an unused LEFT JOIN, so a join
    that only adv columns need must not cost `coactive_table` anything);
    `columns` go into both user views, `adv_columns` only
    into `coactive_table_adv`; `views` are extra (name, SELECT) user views built
    after the two tables (e.g. `coactive_videos`).  A view's SELECT may be a
    callable `f(con) -> str`, called once the two tables exist, so it can build
    on columns other providers added (e.g. every concept's `_latest_prob`).
    """

    pre: list[str] = field(default_factory=list)
    joins: list[str] = field(default_factory=list)
    adv_joins: list[str] = field(default_factory=list)
    columns: list[str] = field(default_factory=list)
    adv_columns: list[str] = field(default_factory=list)
    views: list[tuple[str, str]] = field(default_factory=list)

    def extend(self, other: "ViewParts") -> None:
        self.pre += other.pre
        self.joins += [j for j in other.joins if j not in self.joins]
        self.adv_joins += [j for j in other.adv_joins if j not in self.adv_joins]
        self.columns += other.columns
        self.adv_columns += other.adv_columns
        self.views += other.views


def vectors_view_name(encoder: str) -> str:
    return f"{INTERNAL}.vectors_{safe_name(encoder)}"


def vectors_join(encoder: str) -> tuple[str, str]:
    """(alias, LEFT JOIN clause) joining an encoder's vectors onto assets `a`."""
    alias = f"v_{safe_name(encoder)}"
    return alias, (
        f"LEFT JOIN {vectors_view_name(encoder)} {alias} "
        f"ON {alias}.coactive_image_id = a.coactive_image_id"
    )


def _parquet_source(root: Path, rel_paths: list[str]) -> str:
    files = ", ".join("'" + str(root / p).replace("'", "''") + "'" for p in rel_paths)
    return f"read_parquet([{files}], union_by_name = true)"


def _providers():
    # Imported here so each provider module stays a leaf that can import views.
    from . import analyzer_sql, concept_sql, encoder_sql, moderation_sql

    return [encoder_sql, concept_sql, analyzer_sql, moderation_sql]


def rebuild(con, root: Path, in_transaction: bool = False) -> None:
    """Replace every view from the current catalog, in one transaction.

    Writers that change the catalog call this with `in_transaction=True` inside
    their own transaction, so catalog rows and view definitions commit together.
    """
    if in_transaction:
        _rebuild(con, root)
        return
    con.execute("BEGIN TRANSACTION")
    try:
        _rebuild(con, root)
        con.execute("COMMIT")
    except Exception:
        con.execute("ROLLBACK")
        raise


def _rebuild(con, root: Path) -> None:
    con.execute(f"CREATE SCHEMA IF NOT EXISTS {INTERNAL}")
    asset_parts = catalog.part_paths(con, "assets")
    if asset_parts:
        src = _parquet_source(root, asset_parts)
        cols = ", ".join(f.name for f in ASSET_SCHEMA)
        assets_sql = f"SELECT {cols} FROM {src}"
    else:
        assets_sql = empty_select(ASSET_SCHEMA)
    con.execute(f"CREATE OR REPLACE VIEW {INTERNAL}.assets AS {assets_sql}")

    for (encoder, columns_json) in con.execute("SELECT name, vector_columns FROM catalog.encoders").fetchall():
        parts = catalog.part_paths(con, "vectors", encoder=encoder)
        if parts:
            vec_sql = f"SELECT * FROM {_parquet_source(root, parts)}"
        else:
            import json

            dims = json.loads(columns_json)
            cols = ", ".join(f"NULL::FLOAT[{d}] AS {c}" for c, d in dims.items())
            vec_sql = f"SELECT NULL::VARCHAR AS coactive_image_id, {cols} WHERE false"
        con.execute(f"CREATE OR REPLACE VIEW {vectors_view_name(encoder)} AS {vec_sql}")

    parts = ViewParts()
    for provider in _providers():
        parts.extend(provider.contribute(con, root))
    for stmt in parts.pre:
        con.execute(stmt)

    # POSITIONAL JOINs (materialised concept scores, aligned row by row with the
    # asset parts) must bind to the asset scan itself, before any hash join
    # reorders rows; the sort is stable for everything else.
    def join_clause(clauses: list[str]) -> str:
        ordered = sorted(clauses, key=lambda j: not j.lstrip().upper().startswith("POSITIONAL JOIN"))
        return "\n  ".join(ordered)

    joins = join_clause(parts.joins)
    adv_joins = join_clause(parts.joins + [j for j in parts.adv_joins if j not in parts.joins])
    base = ", ".join(f"a.{c}" for c in BASE_COLUMNS)
    extra = "".join(f",\n  {c}" for c in parts.columns)
    con.execute(
        f"CREATE OR REPLACE VIEW main.coactive_table AS\nSELECT {base}{extra}\n"
        f"FROM {INTERNAL}.assets a\n  {joins}"
    )
    adv_base = ", ".join(
        "CAST(a.metadata AS JSON) AS metadata" if c == "metadata" else f"a.{c}" for c in ADV_BASE_COLUMNS
    )
    adv_extra = "".join(f",\n  {c}" for c in parts.adv_columns)
    con.execute(
        f"CREATE OR REPLACE VIEW main.coactive_table_adv AS\nSELECT {base}, {adv_base}{extra}{adv_extra}\n"
        f"FROM {INTERNAL}.assets a\n  {adv_joins}"
    )
    for name, select in parts.views:
        if callable(select):
            select = select(con)
        con.execute(f"CREATE OR REPLACE VIEW main.{name} AS {select}")
    # Bumped with every rebuild, in the same transaction: the query engine polls
    # it to know when its sandbox copies of the views are stale.
    con.execute(
        "INSERT INTO catalog.meta VALUES ('views_generation', '1') ON CONFLICT (key) "
        "DO UPDATE SET value = CAST(CAST(value AS BIGINT) + 1 AS VARCHAR)"
    )


def user_views(con) -> list[str]:
    rows = con.execute(
        "SELECT view_name FROM duckdb_views() WHERE schema_name = 'main' AND NOT internal"
    ).fetchall()
    return sorted(r[0] for r in rows)
