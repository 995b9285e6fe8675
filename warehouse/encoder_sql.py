"""Column provider: what an encoder itself says about an asset (e.g. the ImageNet top class).

The SQL is data: ingest copies each encoder's `sql_columns()` into
`catalog.encoder_sql` when it registers the encoder, so this module runs
stored fragments and knows no encoder (it must not import `encoders`).
`{vectors}` in a fragment is the alias of that encoder's vectors; `{class_names}`
becomes a list literal of its `catalog.class_names`, so the stock DuckDB CLI
computes the same columns without any Python.  An encoder whose fragments need
class names contributes nothing until they are stored.
"""
from __future__ import annotations

from .views import ViewParts, vectors_join

KINDS = ("macro", "column")

def register(con, encoder: str, rows: list[tuple[str, str]]) -> None:
    """Store (replace) the SQL fragments of `encoder`, in order."""
    for kind, _ in rows:
        if kind not in KINDS:
            raise ValueError(f"encoder SQL kind must be one of {KINDS}, got {kind!r}")
    con.execute("DELETE FROM catalog.encoder_sql WHERE encoder = ?", [encoder])
    if rows:
        con.executemany("INSERT INTO catalog.encoder_sql (encoder, position, kind, sql) VALUES (?, ?, ?, ?)",
                        [[encoder, i, kind, sql] for i, (kind, sql) in enumerate(rows)])


def _literal(names: list[str]) -> str:
    return "[" + ", ".join("'" + n.replace("'", "''") + "'" for n in names) + "]"


def contribute(con, root) -> ViewParts:
    parts = ViewParts()
    stored: dict[str, list[tuple[str, str]]] = {}
    for encoder, kind, sql in con.execute(
            "SELECT encoder, kind, sql FROM catalog.encoder_sql ORDER BY encoder, position").fetchall():
        stored.setdefault(encoder, []).append((kind, sql))
    for encoder, rows in stored.items():
        literal = None
        if any("{class_names}" in sql for _, sql in rows):
            names = [r[0] for r in con.execute(
                "SELECT name FROM catalog.class_names WHERE encoder = ? ORDER BY class_index", [encoder]).fetchall()]
            if not names:
                continue
            literal = _literal(names)
        alias, join = vectors_join(encoder)
        for kind, sql in rows:
            sql = sql.replace("{vectors}", alias)
            if literal is not None:
                sql = sql.replace("{class_names}", literal)
            if kind == "macro":
                parts.pre.append(sql)
            else:
                parts.adv_columns.append(sql)
        if any(kind == "column" for kind, _ in rows):
            parts.adv_joins.append(join)
    return parts
