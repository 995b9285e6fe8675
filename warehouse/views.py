"""Builds the views users query (`coactive_table`, `coactive_table_adv`, ...) from the catalog.

Views are plain DuckDB views over `read_parquet(pixql_internal.files_<x>())` of the
committed parts: each list of part files (absolute paths, in catalog order) is a
macro of its own, so a view's SQL stays the same length however many parts a
dataset has, and the stock DuckDB CLI opening `pixql.duckdb` sees the same rows
as the SDK.  (DuckDB refuses subqueries as table-function arguments, so the list
cannot be read from `catalog.parts` at query time; a macro is expanded at bind.)
Internal building blocks live in the schema `pixql_internal`.

Columns beyond the base ones come from *column providers*: small modules in this
package that turn catalog data (concept heads, analyzer runs, moderation
decisions) into SQL.  Each returns a `ViewParts`; the builder only concatenates.
`build` is a pure function of the catalog (it reads, never scores or writes);
`rebuild` runs its statements inside the writer's transaction, which
`transaction.transaction` does at commit when asked.

The views are data-aware: a LEFT JOIN onto a catalog table that has no rows is
left out and its columns read typed NULLs (same names and types), because DuckDB
keeps a join a view selects from even when a query names none of its columns
(tests/test_adv_joins.py).  Which of those tables had rows is recorded when the
views are built (`DATA_SHAPE_META`); a commit that changed their rows
(`data_changed()`) rebuilds the views when that record no longer holds
(`data_shape_moved`), so a table going from empty to non-empty or back brings
its join back or takes it away in the same transaction.
"""
from __future__ import annotations

import json
import re
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

# Tables a view joins only when they hold rows (see the module docstring): name -> the check.
# A moderation decision an erasure kept as an audit row is no one's (moderation_sql).
DATA_AWARE = {
    "asset_metadata": "SELECT EXISTS (FROM catalog.asset_metadata)",
    "moderation_decisions": "SELECT EXISTS (FROM catalog.moderation_decisions WHERE subject_id NOT LIKE 'erased:%')",
}
DATA_SHAPE_META = "views_data_shape"  # {table: has rows} as the current views were built with


def data_shape(con) -> dict[str, bool]:
    """Which `DATA_AWARE` tables hold rows now (a few EXISTS lookups)."""
    return {name: bool(con.execute(sql).fetchone()[0]) for name, sql in DATA_AWARE.items()}


def data_shape_moved(con) -> bool:
    """Whether the views were built for other `data_shape` than now: they must be rebuilt."""
    row = con.execute("SELECT value FROM catalog.meta WHERE key = ?", [DATA_SHAPE_META]).fetchone()
    return row is None or json.loads(row[0]) != data_shape(con)


@dataclass
class ViewParts:
    """What a column provider adds to the user views.

    `pre` statements run first (e.g. CREATE MACRO); `base`, when set, is the source
    the views read as `a` instead of `pixql_internal.assets`: the same rows in the
    same order with every asset column, and more columns (the materialised concept
    scores; one provider at most sets it); `joins` are clauses joined onto
    the asset alias `a` in both user views, `adv_joins` only in
    `coactive_table_adv` (DuckDB keeps a LEFT JOIN that a view selects from
    even when a query names none of its columns, tests/test_adv_joins.py, so a
    join that only adv columns need must not cost `coactive_table` anything);
    `columns` go into both user views, `adv_columns` only
    into `coactive_table_adv`; `views` are extra (name, SELECT) user views built
    after the two tables (e.g. `coactive_videos`).  A view's SELECT may be a
    callable `f(columns) -> str` given the column names of `coactive_table_adv`,
    so it can build on columns other providers added (e.g. every concept's
    `_latest_prob`).  Providers only read the catalog: they never score nor
    write files (see `build`).
    """

    pre: list[str] = field(default_factory=list)
    base: str | None = None
    joins: list[str] = field(default_factory=list)
    adv_joins: list[str] = field(default_factory=list)
    columns: list[str] = field(default_factory=list)
    adv_columns: list[str] = field(default_factory=list)
    views: list[tuple[str, str]] = field(default_factory=list)

    def extend(self, other: "ViewParts") -> None:
        self.pre += other.pre
        if other.base is not None:
            if self.base is not None:
                raise ValueError("two column providers replace the views' base scan")
            self.base = other.base
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


FILES_PREFIX = "files_"


def files_macro(name: str, root: Path, rel_paths: list[str]) -> tuple[str, str]:
    """(CREATE MACRO statement, the macro's name) for a list of part files, in order."""
    macro = f"{INTERNAL}.{FILES_PREFIX}{safe_name(name)}"
    files = ", ".join("'" + str(root / p).replace("'", "''") + "'" for p in rel_paths)
    return f"CREATE OR REPLACE MACRO {macro}() AS [{files}]::VARCHAR[]", macro


def parquet_source(name: str, root: Path, rel_paths: list[str], out: list[str],
                   union_by_name: bool = True) -> str:
    """`read_parquet(<macro>())` over `rel_paths`; the macro's statement is appended to `out`."""
    stmt, macro = files_macro(name, root, rel_paths)
    out.append(stmt)
    return f"read_parquet({macro}()" + (", union_by_name = true)" if union_by_name else ")")


def _providers():
    # Imported here so each provider module stays a leaf that can import views.
    from . import analyzer_sql, concept_sql, encoder_sql, moderation_sql, similarity_sql

    return [encoder_sql, concept_sql, analyzer_sql, moderation_sql, similarity_sql]


def rebuild(con, root: Path) -> None:
    """Replace every view from the current catalog, inside the caller's transaction.

    Writers do not call this directly: `transaction.transaction` does at commit
    (when asked to), so catalog rows, views and the change counter commit together.
    """
    for stmt in build(con, root):
        con.execute(stmt)
    con.execute("INSERT OR REPLACE INTO catalog.meta VALUES (?, ?)", [DATA_SHAPE_META, json.dumps(data_shape(con))])


def build(con, root: Path) -> list[str]:
    """The statements that (re)create every view and macro: a pure function of the catalog.

    It only reads (catalog rows, the macros that exist): no scoring, no file
    writes, the same list for the same catalog.  Concept score caches are
    brought up to date beforehand by `concept_cache.refresh`, when a writer asks.
    """
    out = [f"CREATE SCHEMA IF NOT EXISTS {INTERNAL}"]
    asset_parts = catalog.part_paths(con, "assets")
    if asset_parts:
        src = parquet_source("assets", root, asset_parts, out)
        cols = ", ".join(f.name for f in ASSET_SCHEMA)
        assets_sql = f"SELECT {cols} FROM {src}"
    else:
        assets_sql = empty_select(ASSET_SCHEMA)
    out.append(f"CREATE OR REPLACE VIEW {INTERNAL}.assets AS {assets_sql}")

    for (encoder, columns_json) in con.execute(
            "SELECT name, vector_columns FROM catalog.encoders ORDER BY name").fetchall():
        parts = catalog.part_paths(con, "vectors", encoder=encoder)
        if parts:
            vec_sql = f"SELECT * FROM {parquet_source(f'vectors_{encoder}', root, parts, out)}"
        else:
            dims = json.loads(columns_json)
            cols = ", ".join(f"NULL::FLOAT[{d}] AS {c}" for c, d in dims.items())
            vec_sql = f"SELECT NULL::VARCHAR AS coactive_image_id, {cols} WHERE false"
        out.append(f"CREATE OR REPLACE VIEW {vectors_view_name(encoder)} AS {vec_sql}")

    parts = ViewParts()
    for provider in _providers():
        parts.extend(provider.contribute(con, root))
    out += parts.pre

    base_src = parts.base or f"{INTERNAL}.assets"
    joins = "\n  ".join(parts.joins)
    base = ", ".join(f"a.{c}" for c in BASE_COLUMNS)
    extra = "".join(f",\n  {c}" for c in parts.columns)
    out.append(
        f"CREATE OR REPLACE VIEW main.coactive_table AS\nSELECT {base}{extra}\n"
        f"FROM {base_src} a\n  {joins}"
    )
    # Metadata replaced after ingest (catalog.asset_metadata: the image's own, else its video's)
    # wins over what the asset part was written with; while none was, no join.
    replaced = data_shape(con)["asset_metadata"]
    metadata = "COALESCE(md_img.metadata, md_vid.metadata, a.metadata)" if replaced else "a.metadata"
    adv_base = ", ".join(
        f"CAST({metadata} AS JSON) AS metadata" if c == "metadata" else f"a.{c}" for c in ADV_BASE_COLUMNS
    )
    adv_joins = "\n  ".join(parts.joins + [j for j in parts.adv_joins if j not in parts.joins] + ([
        "LEFT JOIN catalog.asset_metadata md_img ON md_img.subject_id = a.coactive_image_id",
        "LEFT JOIN catalog.asset_metadata md_vid ON md_vid.subject_id = a.coactive_video_id"] if replaced else []))
    adv_extra = "".join(f",\n  {c}" for c in parts.adv_columns)
    out.append(
        f"CREATE OR REPLACE VIEW main.coactive_table_adv AS\nSELECT {base}, {adv_base}{extra}{adv_extra}\n"
        f"FROM {base_src} a\n  {adv_joins}"
    )
    # The current problem of each file that did not ingest (README "Ingest details").
    out.append("CREATE OR REPLACE VIEW main.ingest_errors AS SELECT run_id, dataset, path, reason, created_dt "
               "FROM catalog.ingest_errors")
    for name, select in parts.views:
        if callable(select):
            select = select(adv_column_names(parts))
        out.append(f"CREATE OR REPLACE VIEW main.{name} AS {select}")
    return out


_ALIAS = re.compile(r'\bAS\s+("?)([A-Za-z_][A-Za-z0-9_]*)\1\s*$', re.IGNORECASE)


def adv_column_names(parts: ViewParts) -> list[str]:
    """The columns of `coactive_table_adv` built from `parts`, as DuckDB names them."""
    return [column_name(c) for c in BASE_COLUMNS + ADV_BASE_COLUMNS + parts.columns + parts.adv_columns]


def column_name(expr: str) -> str:
    """The name a select-list item gets: its trailing `AS name`, else the column it names."""
    m = _ALIAS.search(expr)
    return m.group(2) if m else expr.rsplit(".", 1)[-1].strip().strip('"')


def user_views(con) -> list[str]:
    rows = con.execute(
        "SELECT view_name FROM duckdb_views() WHERE schema_name = 'main' AND NOT internal"
    ).fetchall()
    return sorted(r[0] for r in rows)
