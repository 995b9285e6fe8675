"""Column provider: similarity search in SQL, as macros stored in the database file.

For every encoder with stored vectors, and for the default one (the encoder of
the oldest dataset, as concepts use):

    pixql_similarity_<encoder>(row_id, target_id)    cosine of the two assets' vectors
    similarity_to_asset(row_id, target_id)           the same on the default encoder

so an image search is an ORDER BY over the user views, in the API's SQL, the web
console and the stock DuckDB CLI alike:

    SELECT coactive_image_id, path, similarity_to_asset(coactive_image_id, '<id>') AS similarity
    FROM coactive_table ORDER BY similarity DESC LIMIT 10

The vector column is the encoder's richest one (`similarity_column`), the one
`concepts/search.py` scores in bulk, so both give the same numbers.  Scalar
macros are what the query sandbox lets a read token call (the warehouse's own
macro names are allowed, table macros are not).  Text has no macro: the words
need the encoder's text side, which lives in Python; a text concept with the
sentence as its prompt is the SQL form (`ORDER BY <concept>_prob DESC`).
"""
from __future__ import annotations

import json

from .storage import safe_name
from .views import ViewParts, vectors_view_name

PREFIX = "pixql_similarity_"
DEFAULT_MACRO = "similarity_to_asset"


def similarity_column(con, encoder: str) -> str:
    """The vector column similarity reads: the widest one (ties by name)."""
    row = con.execute("SELECT vector_columns FROM catalog.encoders WHERE name = ?", [encoder]).fetchone()
    cols = json.loads(row[0]) if row else {}
    if not cols:
        raise LookupError(f"encoder {encoder!r} stores no vectors")
    return sorted(cols.items(), key=lambda kv: (-int(kv[1]), kv[0]))[0][0]


def macro_name(encoder: str) -> str:
    return PREFIX + safe_name(encoder).replace("-", "_").lower()


def _body(encoder: str, column: str, dim: int) -> str:
    v = vectors_view_name(encoder)
    return (f"(SELECT array_cosine_similarity(CAST(r.{column} AS FLOAT[{dim}]), CAST(t.{column} AS FLOAT[{dim}])) "
            f"FROM {v} r, {v} t WHERE r.coactive_image_id = row_id AND t.coactive_image_id = target_id)")


def contribute(con, root) -> ViewParts:
    parts = ViewParts()
    encoders = con.execute(
        "SELECT e.name, e.vector_columns FROM catalog.encoders e "
        "WHERE EXISTS (SELECT 1 FROM catalog.parts p WHERE p.kind = 'vectors' AND p.encoder = e.name) "
        "ORDER BY e.name").fetchall()
    current = set()
    for name, cols_json in encoders:
        cols = json.loads(cols_json)
        if not cols:
            continue
        column = similarity_column(con, name)
        macro = macro_name(name)
        current.add(macro)
        parts.pre.append(f"CREATE OR REPLACE MACRO {macro}(row_id, target_id) AS {_body(name, column, cols[column])}")
    default = con.execute(
        "SELECT d.encoder FROM catalog.datasets d WHERE EXISTS (SELECT 1 FROM catalog.parts p WHERE p.kind = "
        "'vectors' AND p.encoder = d.encoder) ORDER BY d.created_dt, d.name LIMIT 1").fetchone()
    if default and macro_name(default[0]) in current:
        parts.pre.append(f"CREATE OR REPLACE MACRO {DEFAULT_MACRO}(row_id, target_id) AS "
                         f"{macro_name(default[0])}(row_id, target_id)")
        current.add(DEFAULT_MACRO)
    for (name,) in con.execute(
            "SELECT DISTINCT function_name FROM duckdb_functions() WHERE function_type = 'macro' "
            "AND schema_name = 'main' AND (starts_with(function_name, ?) OR function_name = ?)",
            [PREFIX, DEFAULT_MACRO]).fetchall():
        if name not in current:
            parts.pre.insert(0, f"DROP MACRO IF EXISTS {name}")
    return parts
