"""Column provider: what an encoder itself says about an asset (e.g. the ImageNet top class).

The SQL is data: ingest copies each encoder's `sql_columns()` into
`catalog.encoder_sql` when it registers the encoder, so this module runs
stored fragments and knows no encoder (it must not import `encoders`).
`{vectors}` in a fragment is the alias of that encoder's vectors; `{class_names}`
becomes a list literal of its `catalog.class_names`, so the stock DuckDB CLI
computes the same columns without any Python.  An encoder whose fragments need
class names contributes nothing until they are stored.

The columns are also materialised: `concept_cache` writes them into the wide score
segments (computed once per vector part by these same fragments, run by DuckDB,
numpy doing their list reductions: `encoder_columns.part_values`),
so `coactive_table_adv` reads them from its base scan with no join to the vectors,
which DuckDB would otherwise keep for every query (tests/test_adv_joins.py).
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

from .views import ViewParts, column_name, vectors_join

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


@dataclass
class Spec:
    """One encoder's stored fragments, class names filled in: macro statements, and
    `(column name, expression)` per column, `{vectors}` still standing for its vectors."""
    macros: list[str]
    columns: list[tuple[str, str]]

    def key(self) -> str:
        """Names what the columns compute (the materialised values are valid while it stays)."""
        return hashlib.sha256(json.dumps([self.macros, self.columns]).encode()).hexdigest()[:16]


def specs(con) -> dict[str, Spec]:
    """{encoder: Spec} for every encoder with column fragments whose class names (if needed) are stored."""
    stored: dict[str, list[tuple[str, str]]] = {}
    for encoder, kind, sql in con.execute(
            "SELECT encoder, kind, sql FROM catalog.encoder_sql ORDER BY encoder, position").fetchall():
        stored.setdefault(encoder, []).append((kind, sql))
    out = {}
    for encoder, rows in stored.items():
        if any("{class_names}" in sql for _, sql in rows):
            names = [r[0] for r in con.execute(
                "SELECT name FROM catalog.class_names WHERE encoder = ? ORDER BY class_index", [encoder]).fetchall()]
            if not names:
                continue
            literal = _literal(names)
            rows = [(kind, sql.replace("{class_names}", literal)) for kind, sql in rows]
        spec = Spec([sql for kind, sql in rows if kind == "macro"],
                    [(column_name(sql), sql) for kind, sql in rows if kind == "column"])
        if spec.columns or spec.macros:
            out[encoder] = spec
    return out


def contribute(con, root) -> ViewParts:
    """Each encoder's columns in `coactive_table_adv`: read from the views' base scan when the
    score segments carry them (`concept_cache.served_encoder_columns`, no join), else computed
    over a LEFT JOIN onto the encoder's vectors."""
    from . import concept_cache

    parts = ViewParts()
    all_specs = specs(con)
    served = concept_cache.served_encoder_columns(con, all_specs) if any(s.columns for s in all_specs.values()) \
        else {}
    for encoder, spec in all_specs.items():
        alias, join = vectors_join(encoder)
        parts.pre += [m.replace("{vectors}", alias) for m in spec.macros]
        if encoder in served:
            parts.adv_columns += [f"a.{served[encoder][name]} AS {name}" for name, _ in spec.columns]
            continue
        parts.adv_columns += [sql.replace("{vectors}", alias) for _, sql in spec.columns]
        if spec.columns:
            parts.adv_joins.append(join)
    return parts
